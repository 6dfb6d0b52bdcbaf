"""The unit sphere S^d, embedded in R^(d+1)."""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch.manifolds.base import Manifold, sphere_log_volume

__all__ = ["Sphere"]


def _tiny(x: Tensor) -> float:
    """A length below which a difference of unit vectors is round-off: 4 machine epsilons."""
    return 4.0 * torch.finfo(x.dtype).eps


class Sphere(Manifold):
    """The unit sphere S^d = {x in R^(d+1): |x| = 1} with the metric of R^(d+1).

    Points are unit vectors (B, d+1); the tangent space at x is {u: <x, u> = 0}. Geodesics are
    great circles: exp(x, u) = cos|u| x + sin|u| u/|u|.

    Numerical care:
        - Angles are computed as atan2(|y - <x,y> x|, <x,y>), accurate near 0 and near pi (an
          arccos of <x, y> loses half the digits there).
        - **Antipodal points** (y = -x) are joined by infinitely many geodesics of length pi.
          When |y - <x,y> x| is below 4 machine epsilons and <x, y> < 0, :meth:`log` returns
          pi times a fixed unit tangent vector at x (the projection of the coordinate axis least
          aligned with x), so exp(x, log(x, y)) = y still holds. Close to (but not at) the
          antipode the direction is taken from the projected difference and renormalized, so
          it is tangent to machine precision.
        - :meth:`exp` renormalizes its result, so points do not drift off the sphere over many
          steps.

    Args:
        dim: the intrinsic dimension d >= 1 (S^2 is ``Sphere(2)``, points in R^3).
    """

    name = "sphere"

    def __init__(self, dim: int = 2) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"sphere dimension must be an integer >= 1, got {dim!r}")
        self.dim = dim
        self.ambient_dim = dim + 1
        self.feature_dim = dim + 1

    def proj_point(self, x: Tensor) -> Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)

    def proj_tangent(self, x: Tensor, v: Tensor) -> Tensor:
        return v - (x * v).sum(-1, keepdim=True) * x

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        r = u.norm(dim=-1, keepdim=True)
        # sin(r)/r through torch.sinc (sin(pi z)/(pi z)), exact at r = 0
        return self.proj_point(torch.cos(r) * x + torch.sinc(r / torch.pi) * u)

    def geodesic(self, x: Tensor, u: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        s = s[:, None].to(x.dtype)
        r = u.norm(dim=-1, keepdim=True)
        a = s * r
        y = self.proj_point(torch.cos(a) * x + s * torch.sinc(a / torch.pi) * u)
        return y, -r * torch.sin(a) * x + torch.cos(a) * u

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        c = (x * y).sum(-1, keepdim=True)
        w = y - c * x
        s = w.norm(dim=-1, keepdim=True)
        theta = torch.atan2(s, c)
        direction = self.proj_tangent(x, w)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(
            torch.finfo(x.dtype).tiny
        )
        antipodal = (s < _tiny(x)) & (c < 0)
        if antipodal.any():
            direction = torch.where(antipodal, self._fixed_tangent(x), direction)
        # at s == 0 with c > 0 (y = x) theta is 0 and so is the log
        return theta * direction

    def _fixed_tangent(self, x: Tensor) -> Tensor:
        axis = torch.nn.functional.one_hot(x.abs().argmin(-1), x.shape[-1]).to(x.dtype)
        e = self.proj_tangent(x, axis)
        return e / e.norm(dim=-1, keepdim=True)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        c = (x * y).sum(-1, keepdim=True)
        return torch.atan2((y - c * x).norm(dim=-1, keepdim=True), c).squeeze(-1)

    @property
    def log_volume(self) -> float:
        return sphere_log_volume(self.dim)

    def random_uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        g = torch.randn(n, self.ambient_dim, generator=generator, dtype=torch.float64)
        return self.proj_point(g).to(dtype)

    def point_error(self, x: Tensor) -> Tensor:
        return (x.norm(dim=-1) - 1).abs()
