"""Couplings: how source points x0 are paired with data points x1 before the path is sampled.

A coupling is called as ``coupling(x0, x1, cond=None, generator=None)`` and returns the
re-paired ``(x0, x1, cond)``; labels travel with their data points (every coupling re-orders
``x1`` and ``cond`` together and keeps ``x0`` in place). Costs are squared Euclidean distances
between the flattened points, so any data shape ``(B, *D)`` works.

References: Tong et al. 2024, "Improving and generalizing flow-based generative models with
minibatch optimal transport" (OT-CFM, SB-CFM); Pooladian et al. 2023, "Multisample flow
matching". The assignment numerics live in :mod:`flowmatch.ot`; fixed (x0, x1) pairs (reflow)
are :class:`flowmatch.rectify.Pairs` (also reachable here as ``couplings.Pairs``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from flowmatch.ot import check_batches, optimal_assignment, sample_rows, sinkhorn_plan
from flowmatch.paths import BrownianBridgePath, PathSample

__all__ = [
    "COUPLINGS",
    "Coupling",
    "Independent",
    "MinibatchOT",
    "SchrodingerBridge",
    "optimal_assignment",
    "sinkhorn_plan",
]

Triple = tuple[Tensor, Tensor, "Tensor | None"]


class Coupling(ABC):
    """Base class of the couplings: subclasses say which data point each source point gets."""

    def __call__(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Triple:
        """Pair source and data points.

        Args:
            x0: source points, shape (B, *D).
            x1: data points, shape (B, *D).
            cond: optional labels of x1, shape (B, ...); they move with their x1.
            generator: torch RNG for couplings that draw (sampled plans); global RNG when None.

        Returns:
            (x0, x1, cond) re-paired, of the same shapes: x0 in place, x1 and cond re-ordered
            together.

        Raises:
            ValueError: x0 and x1 (or cond) of different batch sizes or point shapes.
        """
        check_batches(x0, x1, cond)
        index = self.partner_index(x0, x1, generator=generator)
        if index is None:
            return x0, x1, cond
        index = index.to(x1.device)
        return x0, x1[index], (cond[index.to(cond.device)] if cond is not None else None)

    @abstractmethod
    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        """For each source point x0[i], the index j of its partner x1[j].

        Args:
            x0: source points, shape (B, *D) (already checked).
            x1: data points, shape (B, *D) (already checked).
            generator: torch RNG for sampled plans.

        Returns:
            int64 indices of shape (B,), or None to keep the pairs as given.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def _check_reg(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class Independent(Coupling):
    """The independent coupling pi(x0, x1) = p(x0) q(x1): pairs are returned as drawn."""

    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        return None


class MinibatchOT(Coupling):
    """Optimal-transport pairing of each batch (squared Euclidean cost on flattened points).

    ``method="exact"``: the optimal assignment; every x0 and every x1 appears exactly once (a
    true permutation, no duplicated or dropped points) and no random number is drawn, so the
    pairing is reproducible from the batch alone. ``method="sinkhorn"``: the entropic plan with
    regularisation ``reg`` relative to the batch's mean squared distance (scale-free); each x0
    keeps its place and draws its partner from its row of the plan, x1 ~ pi(. | x0), so data
    points may repeat.

    Args:
        method: "exact" or "sinkhorn".
        reg: entropic regularisation of the sinkhorn plan relative to the mean cost, > 0.

    Raises:
        ValueError: an unknown method, a non-positive reg, or (when called) batches of
            different sizes.
    """

    def __init__(self, method: str = "exact", *, reg: float = 0.05) -> None:
        if method not in ("exact", "sinkhorn"):
            raise ValueError(f"method must be 'exact' or 'sinkhorn', got {method!r}")
        reg = _check_reg("reg", reg)
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg!r}")
        self.method = method
        self.reg = reg

    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        if self.method == "exact":
            return optimal_assignment(x0, x1)
        return sample_rows(sinkhorn_plan(x0, x1, self.reg, relative=True), generator)


class SchrodingerBridge(Coupling):
    """The Schrödinger bridge pairing with a Brownian reference of scale sigma (SB-CFM).

    Pairs come from the entropic OT plan with regularisation ``2 * sigma**2`` (each x0 draws its
    partner from its row of the plan; the exact OT assignment when ``sigma == 0``). Between a
    pair, the bridge's path is :class:`~flowmatch.paths.BrownianBridgePath` of the same sigma
    (:attr:`path`): :class:`~flowmatch.loss.FlowMatchingLoss` given this coupling trains on it
    (velocity prediction only).

    Args:
        sigma: noise scale of the bridge, >= 0.
        eps: time clamp of the bridge velocity's singular factor.

    Raises:
        ValueError: a negative or non-finite sigma.
    """

    def __init__(self, sigma: float = 0.5, *, eps: float = 1e-4) -> None:
        sigma = _check_reg("sigma", sigma)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        self.sigma = sigma
        self.eps = eps

    @property
    def path(self) -> BrownianBridgePath:
        """The bridge between a pair: ``BrownianBridgePath(sigma)``."""
        return BrownianBridgePath(self.sigma, eps=self.eps)

    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        if self.sigma == 0:
            return optimal_assignment(x0, x1)
        return sample_rows(sinkhorn_plan(x0, x1, 2.0 * self.sigma**2), generator)

    def marginal_std(self, t: Tensor) -> Tensor:
        """Standard deviation of x_t given the pair: sigma sqrt(t (1 - t)), shape of t."""
        return self.path.marginal_std(t)

    def sample_path(
        self, x0: Tensor, x1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> PathSample:
        """x_t and u_t on the bridge: :meth:`BrownianBridgePath.sample` of :attr:`path`."""
        return self.path.sample(x0, x1, t, generator=generator)


COUPLINGS: dict[str, type[Coupling]] = {
    "independent": Independent,
    "minibatch_ot": MinibatchOT,
    "schrodinger_bridge": SchrodingerBridge,
}
"""Couplings selectable by name in a run config (``coupling.name``)."""


def __getattr__(name: str) -> Any:
    # Pairs moved to flowmatch.rectify (it is reflow's data, not a pairing rule); the old name
    # keeps working. Imported lazily: rectify imports this module.
    if name == "Pairs":
        from flowmatch.rectify import Pairs

        return Pairs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
