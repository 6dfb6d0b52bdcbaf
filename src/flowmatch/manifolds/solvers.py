"""ODE solvers on manifolds: Runge-Kutta methods whose every move is an exp-map step.

For dx/dt = v(x, t) with v(x, t) tangent at x, a step of size h from x at time t evaluates
the stages

    k_i = v(exp_x(h sum_{j<i} a_ij P_x k_j), t + c_i h),

and moves to x' = proj(exp_x(h sum_i b_i P_x k_i)), with (a, b, c) the Butcher tableau of
the method (:data:`flowmatch.solvers.METHODS`) and P_x the projection onto the tangent space
at x (stage velocities live at other points; on flat manifolds P is the identity and the step
is the plain method in the manifold's coordinates). Every point visited is on the manifold,
and the projection after each step removes round-off drift. Euler is first order, midpoint,
Heun and RK4 at least second order on curved manifolds (fourth for RK4 on flat ones; the
tests measure the orders). Time runs t0 -> t1 in either direction, with exactly
steps x stages velocity evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowmatch.manifolds.base import Manifold, check_points
from flowmatch.solvers import METHODS, ODESolution, RungeKutta, time_grid

__all__ = ["solve_manifold_ode"]


def solve_manifold_ode(
    manifold: Manifold,
    velocity: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    steps: int,
    method: str = "midpoint",
    t0: float = 0.0,
    t1: float = 1.0,
    return_trajectory: bool = False,
) -> ODESolution:
    """Integrate a tangent velocity field on a manifold with exp-map Runge-Kutta steps.

    Args:
        manifold: where the points live.
        velocity: ``v(x, t)``, x (B, n), t (B,) -> (B, n) tangent at x.
        x0: the points at t0, shape (B, n).
        steps: number of steps N >= 1 (NFE = N x stages: 1 euler, 2 midpoint/heun, 4 rk4).
        method: euler, midpoint, heun or rk4.
        t0: start time.
        t1: end time (t1 < t0 integrates backwards, e.g. data to noise).
        return_trajectory: also return the (N+1, B, n) states on the grid.

    Returns:
        :class:`~flowmatch.solvers.ODESolution` with the points at t1, the exact NFE and the
        time grid.
    """
    tableau = METHODS.get(method)
    if not isinstance(tableau, RungeKutta):
        fixed = [k for k, v in METHODS.items() if isinstance(v, RungeKutta)]
        raise ValueError(f"method must be one of {fixed} on a manifold, got {method!r}")
    check_points(x0, manifold.ambient_dim, "x0")
    times = time_grid(steps, t0=t0, t1=t1, device=x0.device, dtype=torch.float64)
    x = manifold.proj_point(x0)
    trajectory = [x] if return_trajectory else None
    b = x.shape[0]
    nfe = 0
    for k in range(steps):
        t, h = float(times[k]), float(times[k + 1] - times[k])
        stages: list[Tensor] = []
        for i in range(tableau.stages):
            if i == 0:
                xi = x
            else:
                move = sum(a * s for a, s in zip(tableau.a[i], stages, strict=False) if a != 0.0)
                xi = x if isinstance(move, int) else manifold.exp(x, h * move)
            ti = x.new_full((b,), t + tableau.c[i] * h)
            stages.append(manifold.proj_tangent(x, velocity(xi, ti)))
            nfe += 1
        step = sum(w * s for w, s in zip(tableau.b, stages, strict=True) if w != 0.0)
        assert isinstance(step, Tensor)  # the weights b are not all zero
        x = manifold.proj_point(manifold.exp(x, h * step))
        if trajectory is not None:
            trajectory.append(x)
    return ODESolution(
        x=x,
        nfe=nfe,
        times=times.to(x0.dtype),
        trajectory=None if trajectory is None else torch.stack(trajectory),
    )
