"""The conditional flow matching loss.

Reference: Lipman et al. 2023, "Flow Matching for Generative Modeling", eq. 9 (CFM objective);
Tong et al. 2024 (couplings). Time runs from t=0 (source x0) to t=1 (data x1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch.couplings import Coupling, Independent, SchrodingerBridge
from flowmatch.models.base import call_model
from flowmatch.paths import AffinePath, BrownianBridgePath
from flowmatch.schedules import Linear
from flowmatch.time import TimeSampler, Uniform

__all__ = [
    "TRAINABLE_PREDICTIONS",
    "FlowMatchingLoss",
    "check_label_dropout",
    "couple_batch",
    "drop_labels",
    "source_batch",
]

TRAINABLE_PREDICTIONS: tuple[str, ...] = ("velocity", "x1", "x0", "epsilon")
"""The kinds a model can be trained to predict (``score`` is derived, never regressed)."""


def source_batch(
    x1: Tensor,
    x0: Tensor | None,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Check a training batch and return its source points: ``x0`` as given, or N(0, I) draws.

    Raises:
        ValueError: x1 with fewer than 2 dims, x0 of another shape than x1, or cond without
            one entry per data point.
    """
    if x1.ndim < 2:
        raise ValueError(f"x1 must have shape (B, *D) with at least 2 dims, got {tuple(x1.shape)}")
    if cond is not None and cond.shape[0] != x1.shape[0]:
        raise ValueError(
            f"cond must have one entry per data point ({x1.shape[0]}), got {tuple(cond.shape)}"
        )
    if x0 is None:
        return torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    return x0


def drop_labels(
    cond: Tensor, p: float, null_cond: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each label by ``null_cond`` with probability p (classifier-free guidance).

    Args:
        cond: integer labels, shape (B,).
        p: the drop probability, in [0, 1).
        null_cond: the "no label" value.
        generator: torch RNG of the draws.

    Returns:
        The labels with about a fraction p set to ``null_cond``, shape (B,).
    """
    if cond.dtype.is_floating_point or cond.ndim != 1:
        raise ValueError(
            f"label dropout needs integer labels of shape (B,), got {cond.dtype} "
            f"{tuple(cond.shape)}"
        )
    drop = torch.rand(cond.shape[0], generator=generator, device=cond.device) < p
    return torch.where(drop, torch.full_like(cond, null_cond), cond)


def check_label_dropout(cond_dropout: float, null_cond: int | None) -> float:
    """Check a label-dropout setting of a loss and return the probability as a float.

    Raises:
        ValueError: ``cond_dropout`` outside [0, 1), or > 0 without an integer ``null_cond``.
    """
    if isinstance(cond_dropout, bool) or not (
        isinstance(cond_dropout, (int, float)) and 0.0 <= cond_dropout < 1.0
    ):
        raise ValueError(f"cond_dropout must be a number in [0, 1), got {cond_dropout!r}")
    if cond_dropout > 0 and (isinstance(null_cond, bool) or not isinstance(null_cond, int)):
        raise ValueError(
            f"cond_dropout={cond_dropout} needs null_cond, the integer label meaning "
            f"'no label', got {null_cond!r}"
        )
    return float(cond_dropout)


def couple_batch(
    coupling: Coupling,
    x0: Tensor,
    x1: Tensor,
    cond: Tensor | None,
    *,
    cond_dropout: float = 0.0,
    null_cond: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Pair a training batch with the coupling (labels travel with their data points), then
    drop labels with probability ``cond_dropout`` (see :func:`drop_labels`)."""
    x0, x1, cond = coupling(x0, x1, cond, generator=generator)
    if cond is not None and cond_dropout > 0:
        assert null_cond is not None  # check_label_dropout
        cond = drop_labels(cond, cond_dropout, null_cond, generator=generator)
    return x0, x1, cond


def _resolve_path(
    path: AffinePath | BrownianBridgePath | None, coupling: Coupling
) -> AffinePath | BrownianBridgePath:
    """The path a loss trains on: the given one, or the linear path; a Schrödinger bridge
    coupling brings its own Brownian bridge (it replaces a linear affine path)."""
    if isinstance(coupling, SchrodingerBridge):
        if path is None or (isinstance(path, AffinePath) and type(path.schedule) is Linear):
            return coupling.path
        if isinstance(path, AffinePath):
            raise ValueError(
                "path: a SchrodingerBridge coupling has its own (linear + bridge noise) path, "
                f"got path with schedule {path.schedule!r}; use AffinePath() (linear)"
            )
    if path is None:
        return AffinePath()
    if not isinstance(path, (AffinePath, BrownianBridgePath)):
        raise ValueError(
            f"path must be an AffinePath or a BrownianBridgePath, got {type(path).__name__}"
        )
    return path


class FlowMatchingLoss:
    """Mean squared error between a model's prediction at (x_t, t) and its conditional target.

    For each data point x1 a source point x0 ~ N(0, I) (or the one given) and a time t are
    drawn, the pair is passed through the coupling, x_t = alpha_t x1 + sigma_t x0 is formed and
    the model output is regressed on the target of its prediction kind: the conditional
    velocity u_t (``velocity``), x1 (``x1``) or x0 (``x0`` / ``epsilon``). With a
    :class:`~flowmatch.couplings.SchrodingerBridge` coupling the path is its Brownian bridge
    (:class:`~flowmatch.paths.BrownianBridgePath`; velocity prediction only).

    Args:
        path: the probability path: an :class:`AffinePath` (linear by default) or a
            :class:`~flowmatch.paths.BrownianBridgePath`.
        coupling: pairs x0 with x1; :class:`~flowmatch.couplings.Independent` by default.
        time_sampler: draws t; :class:`~flowmatch.time.Uniform` by default.
        prediction: what the model predicts: velocity, x1, x0 or epsilon.
        cond_dropout: probability in [0, 1) of replacing a point's label by ``null_cond``
            (classifier-free guidance trains the unconditional model this way; Ho & Salimans
            2022, Algorithm 1). Needs integer labels and ``null_cond``.
        null_cond: the label that means "no label" (e.g. ``UNet.null_class``).

    Example:
        >>> loss_fn = FlowMatchingLoss(AffinePath())
        >>> loss = loss_fn(model, x1)   # scalar
        >>> loss.backward()
    """

    def __init__(
        self,
        path: AffinePath | BrownianBridgePath | None = None,
        *,
        coupling: Coupling | None = None,
        time_sampler: TimeSampler | None = None,
        prediction: str = "velocity",
        cond_dropout: float = 0.0,
        null_cond: int | None = None,
    ) -> None:
        coupling = coupling if coupling is not None else Independent()
        if not isinstance(coupling, Coupling):
            raise ValueError(f"coupling must be a Coupling, got {type(coupling).__name__}")
        path = _resolve_path(path, coupling)
        if prediction not in TRAINABLE_PREDICTIONS:
            raise ValueError(
                f"prediction must be one of {TRAINABLE_PREDICTIONS}, got {prediction!r}"
            )
        if not isinstance(path, AffinePath) and prediction != "velocity":
            raise ValueError(
                "prediction: the Schrödinger bridge (a SchrodingerBridge coupling, its "
                "BrownianBridgePath) trains a velocity, its path is not affine; got "
                f"prediction={prediction!r}"
            )
        time_sampler = time_sampler if time_sampler is not None else Uniform()
        if not isinstance(time_sampler, TimeSampler):
            raise ValueError(
                f"time_sampler must be a TimeSampler, got {type(time_sampler).__name__}"
            )
        self.cond_dropout = check_label_dropout(cond_dropout, null_cond)
        self.path = path
        self.coupling = coupling
        self.time_sampler = time_sampler
        self.prediction = prediction
        self.null_cond = null_cond

    def __repr__(self) -> str:
        return (
            f"FlowMatchingLoss({self.path!r}, coupling={self.coupling!r}, "
            f"time_sampler={self.time_sampler!r}, prediction={self.prediction!r}, "
            f"cond_dropout={self.cond_dropout!r}, null_cond={self.null_cond!r})"
        )

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss on one batch.

        Args:
            model: called as ``model(x_t, t)`` or ``model(x_t, t, cond=cond)``; returns (B, *D).
            x1: data batch, shape (B, *D).
            cond: optional conditioning (e.g. labels), shape (B, ...).
            x0: optional source batch (B, *D); N(0, I) draws when None.
            generator: torch RNG for x0, t and the coupling's draws; torch's global RNG when None.

        Returns:
            Scalar tensor: the mean squared error over batch and data dimensions.
        """
        x0 = source_batch(x1, x0, cond, generator)
        t = self.time_sampler(x1.shape[0], device=x1.device, dtype=x1.dtype, generator=generator)
        x0, x1, cond = couple_batch(
            self.coupling,
            x0,
            x1,
            cond,
            cond_dropout=self.cond_dropout,
            null_cond=self.null_cond,
            generator=generator,
        )
        x_t, u_t = self.path.sample(x0, x1, t, generator=generator)
        out = call_model(model, x_t, t, cond)
        if self.prediction == "velocity":
            target = u_t
        elif self.prediction == "x1":
            target = x1
        else:
            target = x0
        return torch.nn.functional.mse_loss(out, target)
