"""Affine probability paths x_t = alpha(t) x1 + sigma(t) x0 and conversions between predictions.

Time runs from t=0 (source ``x0``, N(0, I) noise) to t=1 (data ``x1``). Reference: Lipman et
al. 2023, "Flow Matching for Generative Modeling" (conditional paths, eq. 10-11) and Lipman et
al. 2024, "Flow Matching Guide and Code" (sec. 4.8, affine paths and their parameterizations).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from flowmatch.schedules import Linear, Schedule, ScheduleOutput

__all__ = ["PREDICTION_KINDS", "AffinePath", "PathSample", "check_time"]

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

    def coefficients(self, t: Tensor, like: Tensor) -> ScheduleOutput:
        """The schedule at t, each coefficient shaped (B, 1, ..., 1) to broadcast over ``like``."""
        c = self.schedule(t.to(like.dtype))
        return ScheduleOutput(*(_expand(v, like) for v in c))

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """Draw x_t on the path between paired source and data points.

        Args:
            x0: source points, shape (B, *D).
            x1: data points, shape (B, *D).
            t: times in [0, 1], shape (B,); t=0 is the source, t=1 the data.

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
