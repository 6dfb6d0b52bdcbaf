"""Geodesic probability paths on a manifold (Chen & Lipman 2024, "Flow Matching on General
Geometries", eq. 14 with the geodesic premetric).

Time runs from t = 0 (a base point x0, e.g. uniform on the manifold) to t = 1 (data x1):

    x_t = exp_{x1}(kappa_t log_{x1}(x0)),   kappa_0 = 1, kappa_1 = 0,

the point a fraction 1 - kappa_t of the way from x0 to x1 along the shortest geodesic. Its
conditional velocity u_t = d x_t / dt = d_kappa_t * gamma'(kappa_t), with gamma the geodesic
from x1 with initial velocity log_{x1}(x0), is in closed form for every manifold of flowmatch
(:meth:`~flowmatch.manifolds.Manifold.geodesic`; a forward-mode JVP for others). kappa_t is
the sigma_t of a schedule of :mod:`flowmatch.schedules` (Linear: kappa_t = 1 - t, constant
speed along the geodesic).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch.manifolds.base import Manifold, check_points
from flowmatch.paths import PathSample, check_time
from flowmatch.schedules import Linear, Schedule

__all__ = ["GeodesicPath"]


class GeodesicPath:
    """x_t = exp_{x1}(kappa_t log_{x1}(x0)) on a manifold, with its conditional velocity.

    Args:
        manifold: the :class:`~flowmatch.manifolds.Manifold`.
        schedule: gives kappa_t as its sigma_t; it must have sigma_0 = 1 and sigma_1 = 0
            (Linear, the default; Cosine; Polynomial).

    Example:
        >>> path = GeodesicPath(Sphere(2))
        >>> x_t, u_t = path.sample(x0, x1, t)        # (B, 3), (B, 3); u_t tangent at x_t
    """

    def __init__(self, manifold: Manifold, schedule: Schedule | None = None) -> None:
        if not isinstance(manifold, Manifold):
            raise ValueError(f"manifold must be a Manifold, got {type(manifold).__name__}")
        schedule = Linear() if schedule is None else schedule
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        ends = schedule(torch.tensor([0.0, 1.0], dtype=torch.float64)).sigma_t
        if abs(float(ends[0]) - 1.0) > 1e-6 or abs(float(ends[1])) > 1e-6:
            raise ValueError(
                f"path: a geodesic path needs kappa_0 = 1 and kappa_1 = 0 (the schedule's "
                f"sigma_t); {schedule!r} has {float(ends[0]):.3g} and {float(ends[1]):.3g}"
            )
        self.manifold = manifold
        self.schedule = schedule

    def __repr__(self) -> str:
        return f"GeodesicPath({self.manifold!r}, {self.schedule!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, GeodesicPath)
            and self.manifold == other.manifold
            and self.schedule == other.schedule
        )

    def __hash__(self) -> int:
        return hash((repr(self.manifold), self.schedule))

    def kappa(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """kappa_t and d kappa_t / dt, each of the shape of t."""
        out = self.schedule(t)
        return out.sigma_t, out.d_sigma_t

    def sample(
        self, x0: Tensor, x1: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> PathSample:
        """Points x_t on the geodesics from x0 (t = 0) to x1 (t = 1) and their velocities.

        Args:
            x0: base points (B, n); x1: data points (B, n); t: times in [0, 1], shape (B,).
            generator: unused (the path is deterministic given its ends); accepted so every
                path of flowmatch is called alike.

        Returns:
            :class:`~flowmatch.paths.PathSample`: x_t (B, n) on the manifold and u_t (B, n)
            tangent at x_t.
        """
        n = self.manifold.ambient_dim
        check_points(x0, n, "x0")
        check_points(x1, n, "x1")
        check_time(t, x1)
        kappa, d_kappa = self.kappa(t.to(x1.dtype))
        w = self.manifold.log(x1, x0)
        x_t, velocity = self.manifold.geodesic(x1, w, kappa)
        return PathSample(x_t, d_kappa[:, None] * velocity)
