"""Straightness of a flow: how far its velocity strays from the straight line of each path.

For the trajectory x_t of the ODE dx/dt = v(x, t) from x_0 to x_1 (t=0 source, t=1 data),

    S = E_{x_0} integral_0^1 || v(x_t, t) - (x_1 - x_0) ||^2 dt,

which is 0 exactly when every trajectory is a straight line travelled at constant speed (then
one Euler step is exact). Reference: Liu et al. 2023, "Flow straight and fast", def. 2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowmatch.solvers import solve_ode

__all__ = ["straightness"]


@torch.no_grad()
def straightness(
    velocity: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    steps: int = 64,
    method: str = "midpoint",
) -> float:
    """The straightness S of a velocity field along its own trajectories from ``x0``.

    The trajectories are integrated with ``method`` on ``steps`` uniform steps, x_1 is their
    end point, and the time integral is the trapezoid rule over the grid states (``steps + 1``
    extra velocity evaluations).

    Args:
        velocity: ``v(x, t)`` with ``t`` of shape (B,); e.g. ``fm.model_velocity(model)``.
        x0: source points, shape (B, *D).
        steps: solver steps (and quadrature intervals).
        method: a fixed-step solver of :func:`~flowmatch.solvers.solve_ode`.

    Returns:
        S, averaged over the batch, summed over data dimensions (units of squared distance).
    """
    if method == "dopri5":
        raise ValueError("method must be a fixed-step solver for straightness, got 'dopri5'")
    res = solve_ode(velocity, x0, steps=steps, method=method, return_trajectory=True)
    traj, times = res.trajectory, res.times
    assert traj is not None  # return_trajectory=True
    chord = traj[-1] - traj[0]
    errs = []
    for k in range(times.shape[0]):
        t = times[k].expand(x0.shape[0]).to(x0.dtype)
        errs.append((velocity(traj[k], t) - chord).flatten(1).pow(2).sum(1).double().mean())
    err = torch.stack(errs)
    dt = (times[1:] - times[:-1]).double()
    return float((0.5 * (err[1:] + err[:-1]) * dt).sum())
