"""Affine probability paths x_t = alpha(t) x1 + sigma(t) x0 and conversions between predictions.

Time runs from t=0 (source ``x0``, N(0, I) noise) to t=1 (data ``x1``). Reference: Lipman et
al. 2023, "Flow Matching for Generative Modeling" (conditional paths, eq. 10-11) and Lipman et
al. 2024, "Flow Matching Guide and Code" (sec. 4.8, affine paths and their parameterizations).
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from flowmatch.schedules import SCHEDULES, Linear, Schedule, ScheduleOutput

__all__ = [
    "PREDICTION_KINDS",
    "AffinePath",
    "BrownianBridgePath",
    "PathSample",
    "check_time",
    "path_from_dict",
    "path_to_dict",
]

PredictionKind = Literal["velocity", "x1", "x0", "epsilon", "score"]
PREDICTION_KINDS: tuple[str, ...] = ("velocity", "x1", "x0", "epsilon", "score")
"""What a model may predict. ``epsilon`` is the source sample ``x0`` (the same thing for a
Gaussian source); ``score`` is the gradient of the log-density of x_t (Gaussian source only)."""


class PathSample(NamedTuple):
    """A point on the path and its conditional velocity, both (B, *D)."""

    x_t: Tensor
    u_t: Tensor


def check_time(t: Tensor, x: Tensor, *, name: str = "t") -> None:
    """Check that t is a (B,) tensor of times matching the batch of x (B, *D).

    Raises:
        ValueError: naming ``name`` and the expected shape.
    """
    if not isinstance(t, Tensor):
        raise ValueError(
            f"{name} must be a tensor of shape ({x.shape[0]},), got {type(t).__name__}"
        )
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must have shape ({x.shape[0]},) (one time per batch element), "
            f"got {tuple(t.shape)}"
        )


def _expand(c: Tensor, x: Tensor) -> Tensor:
    """View a (B,) coefficient as (B, 1, ..., 1) to broadcast over the data dims of x."""
    return c.reshape(c.shape[0], *([1] * (x.ndim - 1)))


class AffinePath:
    """The affine probability path x_t = alpha(t) x1 + sigma(t) x0 of a schedule.

    Args:
        schedule: the alpha/sigma schedule; :class:`~flowmatch.schedules.Linear` by default.
        eps: lower bound on the divisors of :meth:`convert` (alpha_t, sigma_t and the
            determinant alpha_t sigma_t' - sigma_t alpha_t'); see there.

    Example:
        >>> path = AffinePath()
        >>> x_t, u_t = path.sample(torch.randn(4, 2), torch.randn(4, 2), torch.rand(4))
    """

    def __init__(self, schedule: Schedule | None = None, *, eps: float = 1e-5) -> None:
        if schedule is None:
            schedule = Linear()
        if not isinstance(schedule, Schedule):
            raise ValueError(
                f"schedule must be a flowmatch.schedules.Schedule, got {type(schedule).__name__}"
            )
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.schedule = schedule
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"AffinePath({self.schedule!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is AffinePath and self.schedule == other.schedule and self.eps == other.eps
        )

    def __hash__(self) -> int:
        return hash((AffinePath, self.schedule, self.eps))

    @property
    def is_gaussian(self) -> bool:
        """True: from an N(0, I) source its marginals are Gaussian given x1, so the score
        (and the SDE, DDPM and DDIM samplers) follow from a velocity by :meth:`convert`."""
        return True

    def coefficients(self, t: Tensor, like: Tensor) -> ScheduleOutput:
        """The schedule at t, each coefficient shaped (B, 1, ..., 1) to broadcast over ``like``."""
        c = self.schedule(t.to(like.dtype))
        return ScheduleOutput(*(_expand(v, like) for v in c))

    def sample(
        self, x0: Tensor, x1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> PathSample:
        """Draw x_t on the path between paired source and data points.

        Args:
            x0: source points, shape (B, *D).
            x1: data points, shape (B, *D).
            t: times in [0, 1], shape (B,); t=0 is the source, t=1 the data.
            generator: unused (an affine path draws nothing); accepted so that every path
                is sampled with the same call.

        Returns:
            PathSample with x_t = alpha_t x1 + sigma_t x0 and the conditional velocity
            u_t = alpha_t' x1 + sigma_t' x0, both (B, *D).

        Raises:
            ValueError: if x0 and x1 differ in shape or t is not (B,).
        """
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        check_time(t, x1)
        if type(self.schedule) is Linear:
            # The same formula in 2 kernels instead of ~10 (this sits on the training hot
            # path): x_t = x0 + t (x1 - x0), u_t = x1 - x0.
            u_t = x1 - x0
            t = t if t.dtype == x1.dtype else t.to(x1.dtype)
            return PathSample(torch.addcmul(x0, _expand(t, x1), u_t), u_t)
        a, s, da, ds = self.coefficients(t, x1)
        return PathSample(a * x1 + s * x0, da * x1 + ds * x0)

    def convert(
        self,
        pred: Tensor,
        *,
        src: PredictionKind,
        dst: PredictionKind,
        x_t: Tensor,
        t: Tensor,
    ) -> Tensor:
        """Convert a prediction of one kind into another at the point (x_t, t).

        With a Gaussian source, x_t = alpha x1 + sigma x0 fixes any two of (x1, x0) from the
        other and x_t, and the velocity is alpha' x1 + sigma' x0, the score -x0 / sigma. Every
        conversion is exact wherever its divisor is nonzero.

        Edge times: recovering x1 divides by alpha (zero at t=0), recovering x0 or using the
        score divides by sigma (zero at t=1), and recovering (x1, x0) from a velocity divides by
        alpha sigma' - sigma alpha' (nonzero for the schedules here except Polynomial(n>1) at
        t=0, where the velocity vanishes). These divisors are clamped to at least ``eps`` in
        magnitude, so the result is always finite; at those exact times x_t carries no
        information about the quantity asked for, and the result there is a finite fallback,
        not a meaningful estimate.

        Args:
            pred: the prediction, shape (B, *D).
            src: kind of ``pred``: velocity, x1, x0, epsilon or score.
            dst: kind wanted, same choices.
            x_t: the point it was predicted at, shape (B, *D).
            t: times, shape (B,).

        Returns:
            The prediction of kind ``dst``, shape (B, *D).
        """
        for name, kind in (("src", src), ("dst", dst)):
            if kind not in PREDICTION_KINDS:
                raise ValueError(f"{name} must be one of {PREDICTION_KINDS}, got {kind!r}")
        if pred.shape != x_t.shape:
            raise ValueError(
                f"pred and x_t must have the same shape, got {tuple(pred.shape)} and "
                f"{tuple(x_t.shape)}"
            )
        check_time(t, x_t)
        if src == "epsilon":
            src = "x0"
        if dst == "epsilon":
            dst = "x0"
        if src == dst:
            return pred
        a, s, da, ds = self.coefficients(t, x_t)
        eps = self.eps
        s_safe = s.clamp_min(eps)

        # Step 1: (x1, x0) from the prediction and x_t.
        if src == "velocity":
            # Solve [a s; da ds] [x1; x0] = [x_t; v]; det = a ds - s da <= 0 for our schedules.
            det = a * ds - s * da
            det = torch.where(det < 0, det.clamp(max=-eps), det.clamp(min=eps))
            if dst == "x1":
                return (ds * x_t - s * pred) / det
            x0 = (a * pred - da * x_t) / det
            if dst == "x0":
                return x0
            return -x0 / s_safe  # score
        if src == "x1":
            x1 = pred
            x0 = (x_t - a * x1) / s_safe
        else:
            x0 = pred if src == "x0" else -s * pred  # score = -x0 / sigma
            if dst == "x0":
                return x0
            if dst == "score":
                return -x0 / s_safe
            x1 = (x_t - s * x0) / a.clamp_min(eps)

        # Step 2: the wanted kind from (x1, x0).
        if dst == "x1":
            return x1
        if dst == "x0":
            return x0
        if dst == "score":
            return -x0 / s_safe
        return da * x1 + ds * x0


class BrownianBridgePath:
    """The Brownian bridge between paired points: the path of the Schrödinger bridge.

    Between a pair (x0, x1) the bridge with a Brownian reference of scale sigma is

        x_t = t x1 + (1 - t) x0 + sigma sqrt(t (1 - t)) eps,   eps ~ N(0, I),

    whose variance given the pair is sigma^2 t (1 - t), with the velocity target of the
    matching probability flow (Tong et al. 2024, SB-CFM, eq. 14)

        u_t = x1 - x0 + sigma (1 - 2t) / (2 sqrt(t (1 - t))) eps.

    Times are clamped to [eps, 1 - eps] in the velocity, where the noise term is singular. A
    model trained on this path predicts a velocity, and its marginals are not those of an
    affine Gaussian path, so it is sampled with the ODE solvers only (no score: no SDE, DDPM
    or DDIM) and its predictions are not converted. ``sigma = 0`` is the linear path.

    Args:
        sigma: noise scale of the bridge, >= 0.
        eps: time clamp of the velocity's singular factor, in (0, 0.5).

    Example:
        >>> path = BrownianBridgePath(0.5)
        >>> x_t, u_t = path.sample(x0, x1, torch.rand(len(x0)), generator=g)
    """

    is_gaussian = False

    def __init__(self, sigma: float = 0.5, *, eps: float = 1e-4) -> None:
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, (int, float))
            or not (math.isfinite(sigma) and sigma >= 0)
        ):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        self.sigma = float(sigma)
        self.eps = float(eps)

    def __repr__(self) -> str:
        return f"BrownianBridgePath(sigma={self.sigma!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is BrownianBridgePath
            and self.sigma == other.sigma
            and self.eps == other.eps
        )

    def __hash__(self) -> int:
        return hash((BrownianBridgePath, self.sigma, self.eps))

    def marginal_std(self, t: Tensor) -> Tensor:
        """Standard deviation of x_t given the pair: sigma sqrt(t (1 - t)), shape of t."""
        return self.sigma * (t * (1 - t)).clamp_min(0).sqrt()

    def sample(
        self, x0: Tensor, x1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> PathSample:
        """Draw x_t on the bridge between paired points and its velocity target.

        Args:
            x0: source points, shape (B, *D).
            x1: data points paired with them, shape (B, *D).
            t: times in [0, 1], shape (B,).
            generator: torch RNG of the bridge noise eps.

        Returns:
            ``PathSample(x_t, u_t)``, both of shape (B, *D).
        """
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        check_time(t, x1)
        tt = _expand(t.to(x1.dtype), x1)
        eps = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
        x_t = tt * x1 + (1 - tt) * x0 + self.marginal_std(tt) * eps
        tc = tt.clamp(self.eps, 1 - self.eps)
        u_t = x1 - x0 + self.sigma * (1 - 2 * tc) / (2 * (tc * (1 - tc)).sqrt()) * eps
        return PathSample(x_t, u_t)


Path = AffinePath | BrownianBridgePath


def path_to_dict(path: AffinePath | BrownianBridgePath) -> dict[str, Any]:
    """A JSON description of a path, read back by :func:`path_from_dict`.

    An affine path is ``{"schedule": name, **parameters}`` (e.g. ``{"schedule": "vp",
    "beta_min": 0.1, "beta_max": 20.0, "eps": 1e-05}``); a bridge is
    ``{"schedule": "brownian_bridge", "sigma": s}``.
    """
    if isinstance(path, BrownianBridgePath):
        return {"schedule": "brownian_bridge", "sigma": path.sigma}
    if not isinstance(path, AffinePath):
        raise ValueError(f"expected an AffinePath or BrownianBridgePath, got {path!r}")
    names = [name for name, cls in SCHEDULES.items() if type(path.schedule) is cls]
    if not names:
        raise ValueError(
            f"schedule {type(path.schedule).__name__} is not one of the named schedules "
            f"({', '.join(SCHEDULES)}), so it cannot be saved"
        )
    return {"schedule": names[0], **vars(path.schedule)}


def path_from_dict(spec: dict[str, Any]) -> AffinePath | BrownianBridgePath:
    """The path of a :func:`path_to_dict` description (``schedule`` defaults to linear).

    Raises:
        ValueError: an unknown schedule or bad parameters.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"a path must be a mapping with a 'schedule', got {spec!r}")
    params = dict(spec)
    name = params.pop("schedule", "linear")
    if name == "brownian_bridge":
        return BrownianBridgePath(**params)
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {(*SCHEDULES, 'brownian_bridge')}, got {name!r}")
    return AffinePath(SCHEDULES[name](**params))
