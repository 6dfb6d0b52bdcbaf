"""The :class:`Manifold` interface every Riemannian flow in flowmatch works through.

Points are stored as flat coordinate vectors: a batch of points is a tensor (B, n) where n is
:attr:`Manifold.ambient_dim` (3 for the sphere S^2 embedded in R^3, d angles for the flat torus
T^d, the 9 entries of a rotation matrix for SO(3), the concatenation of the factors' coordinates
for a :class:`~flowmatch.manifolds.Product`). Tangent vectors at x are (B, n) tensors in the same
coordinates. Every operation is batched over the leading dimension.

A network sees a point through :meth:`Manifold.features` (a continuous embedding: cos/sin of
angles on the torus) and outputs an ambient vector that :meth:`Manifold.proj_tangent` turns into
a tangent vector: one wrapper for every manifold (:class:`~flowmatch.manifolds.ManifoldFlowModel`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

__all__ = ["Manifold", "check_points"]


def check_points(x: Tensor, n: int, name: str = "x") -> None:
    """Raise ValueError unless x is a floating tensor of shape (B, n)."""
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != n:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (B, {n}), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")


class Manifold(ABC):
    """A Riemannian manifold in flat coordinates (see the module docstring).

    Attributes:
        dim: the intrinsic dimension d (2 for S^2, 3 for SO(3)).
        ambient_dim: coordinates per point n (3 for S^2, 9 for SO(3)).
        feature_dim: size of :meth:`features`, the network's input per point.
        compact: whether the uniform distribution exists (the base of a flow); a non-compact
            manifold (Euclidean space) uses N(0, I) as its base.
    """

    name: str = ""
    dim: int
    ambient_dim: int
    feature_dim: int
    compact: bool = True

    # ------------------------------------------------------------------------ geometry
    @abstractmethod
    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        """The exponential map: the point reached at time 1 along the geodesic from x with
        initial velocity u. x, u (B, n) -> (B, n)."""

    @abstractmethod
    def log(self, x: Tensor, y: Tensor) -> Tensor:
        """The logarithm map: the tangent vector u at x with exp(x, u) = y and |u| = dist(x, y)
        (the shortest geodesic; the docstring of each manifold says what is returned where it is
        not unique). x, y (B, n) -> (B, n)."""

    @abstractmethod
    def proj_point(self, x: Tensor) -> Tensor:
        """The nearest point of the manifold (removes round-off drift). (B, n) -> (B, n)."""

    @abstractmethod
    def proj_tangent(self, x: Tensor, v: Tensor) -> Tensor:
        """The orthogonal projection of an ambient vector v onto the tangent space at x."""

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """The Riemannian inner product <u, v>_x of tangent vectors, shape (B,)."""
        return (u * v).sum(-1)

    def norm(self, x: Tensor, u: Tensor) -> Tensor:
        """|u|_x, shape (B,)."""
        return self.inner(x, u, u).clamp_min(0).sqrt()

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """The geodesic distance, shape (B,)."""
        return self.norm(x, self.log(x, y))

    def geodesic(self, x: Tensor, u: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """The geodesic gamma(s) = exp(x, s u) and its velocity d gamma / ds.

        Args:
            x: start points (B, n); u: initial velocities, tangent at x, (B, n).
            s: the geodesic's parameter, shape (B,).

        Returns:
            gamma(s) and d gamma/ds, both (B, n).

        This default differentiates :meth:`exp` forward-mode (one JVP); the manifolds of
        flowmatch override it with their closed forms.
        """
        s = s[:, None].to(x.dtype)
        out = torch.func.jvp(lambda s_: self.exp(x, s_ * u), (s,), (torch.ones_like(s),))
        return out[0], out[1]  # (point, velocity); a third item only with has_aux

    # ---------------------------------------------------------------------- the base
    @property
    def log_volume(self) -> float:
        """log of the manifold's total volume (the uniform density is exp(-log_volume))."""
        raise ValueError(f"{self!r} is not compact: it has no uniform distribution")

    def random_uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """n points drawn uniformly (w.r.t. the Riemannian volume), shape (n, ambient_dim)."""
        raise ValueError(f"{self!r} is not compact: it has no uniform distribution")

    def random_base(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """n draws of the base (source) distribution of a flow: uniform on a compact manifold,
        N(0, I) on a Euclidean one; shape (n, ambient_dim)."""
        return self.random_uniform(n, generator=generator, dtype=dtype)

    def base_log_prob(self, x: Tensor) -> Tensor:
        """log-density of the base w.r.t. the Riemannian volume, shape (B,)."""
        return torch.full(x.shape[:1], -self.log_volume, dtype=x.dtype, device=x.device)

    # -------------------------------------------------------------------- networks
    def features(self, x: Tensor) -> Tensor:
        """The network's view of points, a continuous function of x: (B, n) -> (B, feature_dim).
        The coordinates themselves unless a manifold says otherwise."""
        return x

    def point_error(self, x: Tensor) -> Tensor:
        """How far x is from the manifold (0 on it), shape (B,): |x - proj_point(x)|_inf."""
        return (x - self.proj_point(x)).abs().amax(-1)

    # ------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """A JSON description, read back by :func:`flowmatch.manifolds.manifold_from_dict`."""
        return {"name": self.name, "dim": self.dim}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dim})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))


def sphere_log_volume(d: int) -> float:
    """log of the area of the unit sphere S^d: log(2 pi^((d+1)/2) / Gamma((d+1)/2))."""
    return math.log(2.0) + (d + 1) / 2 * math.log(math.pi) - math.lgamma((d + 1) / 2)
