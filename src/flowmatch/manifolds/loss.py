"""The Riemannian flow matching loss (Chen & Lipman 2024, eq. 9 with the geodesic path)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch.loss import check_label_dropout, drop_labels
from flowmatch.manifolds.base import check_points
from flowmatch.manifolds.path import GeodesicPath
from flowmatch.time import TimeSampler, Uniform

__all__ = ["RiemannianFlowMatchingLoss"]


class RiemannianFlowMatchingLoss:
    """E_{t, x0, x1} |v(x_t, t) - u_t|^2_{x_t}, the squared Riemannian norm of the error.

    x0 is drawn from the manifold's base (uniform on a compact manifold) unless given, t from
    the time sampler, x_t and u_t from the :class:`~flowmatch.manifolds.GeodesicPath`. The
    model must return tangent vectors (a :class:`~flowmatch.manifolds.ManifoldFlowModel`
    projects its net's output). The norm is the manifold's own (half the Frobenius norm on
    SO(3), the angle norm on the torus), averaged over the batch and divided by the
    manifold's dimension, so losses of different manifolds read alike.

    Args:
        path: the geodesic path.
        time_sampler: draws t in [0, 1]; uniform by default.
        cond_dropout: probability of replacing a label by ``null_cond`` (classifier-free
            guidance training).
        null_cond: the "no label" class.
    """

    def __init__(
        self,
        path: GeodesicPath,
        *,
        time_sampler: TimeSampler | None = None,
        cond_dropout: float = 0.0,
        null_cond: int | None = None,
    ) -> None:
        if not isinstance(path, GeodesicPath):
            raise ValueError(f"path must be a GeodesicPath, got {type(path).__name__}")
        check_label_dropout(cond_dropout, null_cond)
        self.path = path
        self.manifold = path.manifold
        self.time_sampler = Uniform() if time_sampler is None else time_sampler
        self.cond_dropout = cond_dropout
        self.null_cond = null_cond
        self.prediction = "velocity"

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss on one batch of data x1 (B, n) on the manifold (labels ``cond`` (B,))."""
        m = self.manifold
        check_points(x1, m.ambient_dim, "x1")
        if x0 is None:
            x0 = m.random_base(x1.shape[0], generator=generator, dtype=x1.dtype)
            x0 = x0.to(x1.device)
        t = self.time_sampler(x1.shape[0], device=x1.device, dtype=x1.dtype, generator=generator)
        x_t, u_t = self.path.sample(x0, x1, t)
        if cond is not None and self.cond_dropout > 0:
            assert self.null_cond is not None  # check_label_dropout
            cond = drop_labels(cond, self.cond_dropout, self.null_cond, generator=generator)
        kwargs = {} if cond is None else {"cond": cond}
        v = model(x_t, t, **kwargs)
        err = v - u_t
        return m.inner(x_t, err, err).mean() / m.dim
