"""Couplings: how source points x0 are paired with data points x1 before the path is sampled.

A coupling is called as ``coupling(x0, x1, cond=None, generator=None)`` and returns the
re-paired ``(x0, x1, cond)``; labels travel with their data points (every coupling re-orders
``x1`` and ``cond`` together and keeps ``x0`` in place). Costs are squared Euclidean distances
between the flattened points, so any data shape ``(B, *D)`` works.

References: Tong et al. 2024, "Improving and generalizing flow-based generative models with
minibatch optimal transport" (OT-CFM, SB-CFM); Pooladian et al. 2023, "Multisample flow
matching"; Liu et al. 2023, "Flow straight and fast" (reflow pairs).
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor

from flowmatch.paths import PathSample

__all__ = [
    "COUPLINGS",
    "Coupling",
    "Independent",
    "MinibatchOT",
    "Pairs",
    "SchrodingerBridge",
    "optimal_assignment",
    "sinkhorn_plan",
]

Triple = tuple[Tensor, Tensor, "Tensor | None"]

# Below this flattened dimension POT's network simplex is the faster exact solver of a 256-point
# batch on CPU; above it scipy's shortest-augmenting-path assignment on inner products is
# (median of 20 batches on a 2-core CPU: 2-D checkerboard 4.0 ms vs 6.2 ms, 64-D Gaussians
# 4.9 ms vs 1.7 ms; benchmarks/train_overhead.py times the whole training step).
_EMD_MAX_DIM = 16


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
        _check_batches(x0, x1, cond)
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
            x0, x1: source and data points, shape (B, *D) (already checked).
            generator: torch RNG for sampled plans.

        Returns:
            int64 indices of shape (B,), or None to keep the pairs as given.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def _check_batches(x0: Tensor, x1: Tensor, cond: Tensor | None) -> None:
    if x0.ndim < 2 or x1.ndim < 2:
        raise ValueError(
            f"x0 and x1 must have shape (B, *D), got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(
            f"x0 and x1 must have the same batch size to be paired, got x0 with "
            f"{x0.shape[0]} and x1 with {x1.shape[0]} points"
        )
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"x0 and x1 must have the same point shape, got {tuple(x0.shape[1:])} and "
            f"{tuple(x1.shape[1:])}"
        )
    if cond is not None and cond.shape[0] != x1.shape[0]:
        raise ValueError(
            f"cond must have one entry per data point ({x1.shape[0]}), got {tuple(cond.shape)}"
        )


def _check_reg(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _sq_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """Squared Euclidean distances between flattened points, float64, shape (B, B)."""
    a = x0.detach().reshape(x0.shape[0], -1).double()
    b = x1.detach().reshape(x1.shape[0], -1).double()
    return ((a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0)


def optimal_assignment(x0: Tensor, x1: Tensor) -> Tensor:
    """The permutation ``perm`` minimising sum_i ||x0_i - x1_perm[i]||^2 (exact).

    Args:
        x0, x1: point sets of shape (B, *D) (flattened for the cost).

    Returns:
        A permutation of ``range(B)``, int64 tensor of shape (B,) on the CPU. Deterministic:
        no random draw is involved.
    """
    import ot  # POT and scipy: imported when a coupling first needs them
    from scipy.optimize import linear_sum_assignment

    _check_batches(x0, x1, None)
    n = x0.shape[0]
    dim = x0[0].numel()
    if dim <= _EMD_MAX_DIM:
        cost = _sq_cost(x0, x1).cpu().numpy()
        ones = np.ones(n)
        # Integer marginals: the network simplex returns a vertex, a 0/1 permutation matrix.
        plan, log = ot.emd(ones, ones, cost, log=True)
        perm = plan.argmax(axis=1)
        if log.get("warning") is None and np.array_equal(np.sort(perm), np.arange(n)):
            return torch.from_numpy(perm).long()
    # The cross term alone decides the assignment (the squared norms are row/column constants).
    a = x0.detach().reshape(n, -1).double().cpu()
    b = x1.detach().reshape(n, -1).double().cpu()
    _, cols = linear_sum_assignment((-(a @ b.T)).numpy())
    return torch.from_numpy(cols).long()


def sinkhorn_plan(x0: Tensor, x1: Tensor, reg: float, *, relative: bool = False) -> Tensor:
    """The entropic OT plan between two uniform batches under squared Euclidean cost.

    Sinkhorn iterations (POT); when they do not converge cleanly (a numerical warning, or
    marginals off by more than 1e-5 after 1000 iterations) the log-domain iterations run
    instead (up to 5000). The result is then rounded onto the set of couplings, so its
    marginals are exact whatever happened; a RuntimeWarning says when the iterations were
    still far from converged (marginal error > 1e-3), i.e. reg is too small for the cost.

    Args:
        x0, x1: point sets of shape (B, *D).
        reg: entropic regularisation epsilon, in units of the cost (squared distance), or of
            the batch's mean cost when ``relative``.
        relative: divide the cost by its mean first (a scale-free ``reg``).

    Returns:
        The plan, shape (B, B), float64 on the CPU; its rows and columns sum to 1/B (to
        float64 rounding).
    """
    _check_batches(x0, x1, None)
    n = x0.shape[0]
    cost = _sq_cost(x0, x1).cpu()
    if relative:
        cost = cost / cost.mean().clamp_min(1e-12)
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    plan, err = _sinkhorn(w, cost, reg, "sinkhorn", 1000)
    if err > _SINKHORN_TOL:  # under/overflow or slow: the log-domain iterations, given more time
        plan, err = _sinkhorn(w, cost, reg, "sinkhorn_log", 5000)
    if err > 1e-3:
        warnings.warn(
            f"Sinkhorn did not converge at reg={reg:g} (mean cost {float(cost.mean()):.3g}, "
            f"marginal error {err:.2g}); the plan was rounded to a coupling. A larger reg "
            "(sigma) or the exact OT coupling fits this data better.",
            RuntimeWarning,
            stacklevel=3,
        )
    return _round_to_coupling(plan, w)


_SINKHORN_TOL = 1e-5  # POT's stopping threshold: L2 norm of the column-marginal error


def _sinkhorn(
    w: Tensor, cost: Tensor, reg: float, method: str, max_iter: int
) -> tuple[Tensor, float]:
    """POT's Sinkhorn plan and its marginal error (inf after a numerical warning)."""
    import ot

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = ot.sinkhorn(
            w, w, cost, reg, method=method, numItermax=max_iter, stopThr=_SINKHORN_TOL
        )
    if not torch.isfinite(plan).all() or plan.sum() <= 0:
        return torch.outer(w, w), float("inf")
    err = max(
        float(torch.linalg.vector_norm(plan.sum(0) - w)),
        float(torch.linalg.vector_norm(plan.sum(1) - w)),
    )
    numerical = any("numerical" in str(c.message).lower() for c in caught)
    return plan, float("inf") if numerical else err


def _round_to_coupling(plan: Tensor, w: Tensor) -> Tensor:
    """Project an approximate plan onto the couplings of (w, w), exactly (Altschuler, Weed and
    Rigollet 2017, "Near-linear time approximation algorithms for optimal transport", alg. 2):
    scale rows and columns down to their marginals, then add the missing mass as a rank-one
    product. The change in L1 is at most twice the marginal error."""
    plan = plan * (w / plan.sum(1).clamp_min(1e-300)).clamp(max=1.0)[:, None]
    plan = plan * (w / plan.sum(0).clamp_min(1e-300)).clamp(max=1.0)[None, :]
    err_r, err_c = (w - plan.sum(1)).clamp_min(0), (w - plan.sum(0)).clamp_min(0)
    missing = err_r.abs().sum()
    if missing > 0:
        plan = plan + torch.outer(err_r, err_c) / missing
    return plan


def _sample_rows(plan: Tensor, generator: torch.Generator | None) -> Tensor:
    """For each row i of a plan, one column j ~ plan[i, :] / sum_j plan[i, j]."""
    probs = plan.clamp_min(0)
    probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-300)
    gen = generator if generator is not None and generator.device.type == "cpu" else None
    if generator is not None and gen is None:
        # a CUDA generator cannot drive a CPU draw; derive a CPU seed from it
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        gen = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs.float(), 1, generator=gen).squeeze(1)


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
        return _sample_rows(sinkhorn_plan(x0, x1, self.reg, relative=True), generator)


class SchrodingerBridge(Coupling):
    """The Schrödinger bridge between source and data with a Brownian reference of scale sigma.

    Pairs come from the entropic OT plan with regularisation ``2 * sigma**2`` (each x0 draws its
    partner from its row of the plan; the exact OT assignment when ``sigma == 0``), and the path
    between a pair is the Brownian bridge

        x_t = t x1 + (1 - t) x0 + sigma sqrt(t (1 - t)) eps,   eps ~ N(0, I),

    whose marginal variance given the pair is sigma^2 t (1 - t), with the velocity target of
    the matching probability flow (Tong et al. 2024, SB-CFM)

        u_t = x1 - x0 + sigma (1 - 2t) / (2 sqrt(t (1 - t))) eps.

    :class:`~flowmatch.loss.FlowMatchingLoss` uses :meth:`sample_path` in place of its own path
    when given this coupling (velocity prediction only). Times are clamped to [eps, 1 - eps]
    in the velocity, where the bridge noise term is singular.

    Args:
        sigma: noise scale of the bridge, >= 0.
        eps: time clamp of the velocity's singular factor.

    Raises:
        ValueError: a negative or non-finite sigma.
    """

    def __init__(self, sigma: float = 0.5, *, eps: float = 1e-4) -> None:
        sigma = _check_reg("sigma", sigma)
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma!r}")
        self.sigma = sigma
        self.eps = eps

    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        if self.sigma == 0:
            return optimal_assignment(x0, x1)
        return _sample_rows(sinkhorn_plan(x0, x1, 2.0 * self.sigma**2), generator)

    def marginal_std(self, t: Tensor) -> Tensor:
        """Standard deviation of x_t given the pair: sigma sqrt(t (1 - t)), shape of t."""
        return self.sigma * (t * (1 - t)).clamp_min(0).sqrt()

    def sample_path(
        self, x0: Tensor, x1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> PathSample:
        """Draw x_t on the Brownian bridge between paired points and its velocity target.

        Args:
            x0, x1: paired points, shape (B, *D).
            t: times in [0, 1], shape (B,).
            generator: torch RNG of the bridge noise.

        Returns:
            ``PathSample(x_t, u_t)``, both of shape (B, *D).
        """
        shape = (-1,) + (1,) * (x1.ndim - 1)
        tt = t.reshape(shape).to(x1.dtype)
        eps = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
        x_t = tt * x1 + (1 - tt) * x0 + self.marginal_std(tt) * eps
        tc = tt.clamp(self.eps, 1 - self.eps)
        u_t = x1 - x0 + self.sigma * (1 - 2 * tc) / (2 * (tc * (1 - tc)).sqrt()) * eps
        return PathSample(x_t, u_t)


class Pairs(Coupling):
    """Fixed, precomputed (x0, x1) pairs, e.g. noise and the sample a flow maps it to (reflow).

    Draw training batches with :meth:`sample`; calling the coupling returns its arguments
    unchanged (the pairs are already coupled).

    Args:
        x0: source points, shape (N, *D).
        x1: their partners, shape (N, *D).
        cond: optional labels of the pairs, shape (N, ...).

    Raises:
        ValueError: x0, x1 (and cond) of different lengths or point shapes, or no pairs.
    """

    def __init__(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> None:
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(
                f"x0 and x1 must hold the same number of pairs, got x0 with {x0.shape[0]} "
                f"and x1 with {x1.shape[0]}"
            )
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if cond is not None and cond.shape[0] != x0.shape[0]:
            raise ValueError(
                f"cond must have one entry per pair ({x0.shape[0]}), got {tuple(cond.shape)}"
            )
        if x0.shape[0] == 0:
            raise ValueError("Pairs needs at least one pair, got 0")
        self.x0, self.x1, self.cond = x0, x1, cond

    def __len__(self) -> int:
        return self.x0.shape[0]

    def __repr__(self) -> str:
        return f"Pairs(n={len(self)}, shape={tuple(self.x0.shape[1:])})"

    def to(self, device: torch.device | str) -> Pairs:
        """The same pairs on another device."""
        cond = self.cond.to(device) if self.cond is not None else None
        return Pairs(self.x0.to(device), self.x1.to(device), cond)

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> Triple:
        """``batch_size`` pairs drawn uniformly with replacement: (x0, x1, cond)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        device = generator.device if generator is not None else self.x0.device
        idx = torch.randint(0, len(self), (batch_size,), generator=generator, device=device)
        idx = idx.to(self.x0.device)
        cond = self.cond[idx] if self.cond is not None else None
        return self.x0[idx], self.x1[idx], cond

    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        return None  # the pairs are already coupled


COUPLINGS: dict[str, type[Coupling]] = {
    "independent": Independent,
    "minibatch_ot": MinibatchOT,
    "schrodinger_bridge": SchrodingerBridge,
}
"""Couplings selectable by name in a run config (``coupling.name``)."""
