"""Optimal-transport distances between point sets (through POT, the Python OT library)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

__all__ = ["w2", "w2_from_cost"]


def _as_points(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def w2(a: Tensor | np.ndarray, b: Tensor | np.ndarray, *, max_iter: int = 10_000_000) -> float:
    """The exact 2-Wasserstein distance between two empirical distributions.

    Each set is a uniform distribution on its points (sets may differ in size); the optimal
    plan under the squared Euclidean cost is found exactly by network simplex (``ot.emd2``).
    Memory is N x M float64 for the cost matrix (200 MB at 5000 x 5000).

    Args:
        a: points, shape (N, D) (or (N,) for 1-D data); images are flattened by the caller.
        b: points, shape (M, D).
        max_iter: iteration cap of the network simplex.

    Returns:
        W2 = sqrt(min over plans of E ||x - y||^2), a float.

    Note:
        Between finite samples W2 is noisy: average it over several draws.
    """
    import ot  # POT: imported lazily, only the metrics need it

    pa, pb = _as_points(a, "a"), _as_points(b, "b")
    if pa.shape[1] != pb.shape[1]:
        raise ValueError(
            f"a and b must have the same dimension, got {pa.shape[1]} and {pb.shape[1]}"
        )
    return w2_from_cost(ot.dist(pa, pb, metric="sqeuclidean"), max_iter=max_iter)


def w2_from_cost(cost: np.ndarray, *, max_iter: int = 10_000_000) -> float:
    """sqrt of the optimal transport cost between two uniform empirical distributions, given
    the (N, M) matrix of squared distances between their points (network simplex, exact).
    :func:`w2` with the squared Euclidean cost; a geodesic W2 with squared geodesic distances
    (:mod:`flowmatch.evaluation.manifolds`)."""
    import ot

    wa = np.full(cost.shape[0], 1.0 / cost.shape[0])
    wb = np.full(cost.shape[1], 1.0 / cost.shape[1])
    value = float(
        ot.emd2(wa, wb, np.ascontiguousarray(cost, dtype=np.float64), numItermax=max_iter)
    )
    return float(np.sqrt(max(value, 0.0)))
