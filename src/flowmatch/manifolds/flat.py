"""Flat manifolds: Euclidean space R^d and the flat torus T^d = [-pi, pi)^d."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowmatch.manifolds.base import Manifold

__all__ = ["Euclidean", "FlatTorus", "wrap"]


def wrap(a: Tensor) -> Tensor:
    """Angles wrapped to [-pi, pi): a - 2 pi k for the integer k that puts them there.

    ``torch.remainder`` can round a value just below 2 pi up to 2 pi; such values are moved
    down by 2 pi, so the result is always < pi (pi itself maps to -pi).
    """
    out = torch.remainder(a + math.pi, 2 * math.pi) - math.pi
    return torch.where(out >= math.pi, out - 2 * math.pi, out)


def _check_dim(dim: int, what: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{what} dimension must be an integer >= 1, got {dim!r}")
    return dim


class Euclidean(Manifold):
    """R^d with its usual metric: straight lines, exp(x, u) = x + u.

    Not compact: the base of a flow is N(0, I) (:meth:`random_base`, :meth:`base_log_prob`).
    Useful as a factor of a :class:`~flowmatch.manifolds.Product` (e.g. a position in R^3 and
    an orientation in SO(3)).
    """

    name = "euclidean"
    compact = False

    def __init__(self, dim: int) -> None:
        self.dim = self.ambient_dim = self.feature_dim = _check_dim(dim, "euclidean")

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        return x + u

    def geodesic(self, x: Tensor, u: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        return x + s[:, None].to(x.dtype) * u, u

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return y - x

    def proj_point(self, x: Tensor) -> Tensor:
        return x

    def proj_tangent(self, x: Tensor, v: Tensor) -> Tensor:
        return v

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return (y - x).norm(dim=-1)

    def random_base(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        return torch.randn(n, self.dim, generator=generator, dtype=dtype)

    def base_log_prob(self, x: Tensor) -> Tensor:
        return -0.5 * (x.pow(2).sum(-1) + self.dim * math.log(2 * math.pi))


class FlatTorus(Manifold):
    """The flat torus T^d: d angles in [-pi, pi), each a circle of length 2 pi.

    Geodesics are straight lines in the angles, wrapped: exp(x, u) = wrap(x + u) and
    log(x, y) = wrap(y - x), the shortest signed difference of each angle.

    Numerical care:
        - **Wrapping**: every result is put back in [-pi, pi) by :func:`wrap` (never pi).
        - **The cut locus**: two angles exactly pi apart are joined by two geodesics of length
          pi; :meth:`log` returns -pi for that coordinate (wrap(pi) = -pi).
        - A network sees (cos x, sin x) (:meth:`features`), continuous across the seam at pi.

    Args:
        dim: the number d of angles.
    """

    name = "torus"

    def __init__(self, dim: int = 2) -> None:
        self.dim = self.ambient_dim = _check_dim(dim, "torus")
        self.feature_dim = 2 * dim

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        return wrap(x + u)

    def geodesic(self, x: Tensor, u: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        return wrap(x + s[:, None].to(x.dtype) * u), u

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return wrap(y - x)

    def proj_point(self, x: Tensor) -> Tensor:
        return wrap(x)

    def proj_tangent(self, x: Tensor, v: Tensor) -> Tensor:
        return v

    def features(self, x: Tensor) -> Tensor:
        return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)

    @property
    def log_volume(self) -> float:
        return self.dim * math.log(2 * math.pi)

    def random_uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        return wrap(2 * math.pi * u - math.pi).to(dtype)
