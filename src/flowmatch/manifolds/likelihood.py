"""Log-likelihood on a manifold: the Riemannian instantaneous change of variables.

Along dx/dt = v(x, t) on a manifold M, the density w.r.t. the Riemannian volume changes as
d/dt log p_t(x_t) = -div_M v(x_t, t) (Chen & Lipman 2024, sec. 3; Mathieu & Nickel 2020), so

    log p_1(x1) = log p_0(x0) - integral_0^1 div_M v(x_t, t) dt

with x0 the point x1 flows back to and p_0 the base (uniform: -log vol(M)). For M embedded in
R^n with the orthogonal projection P_x onto the tangent space, the Riemannian divergence of a
tangent field is the trace of X -> P_x (dv/dx) X on the tangent space, tr(J P_x) with J the
ambient Jacobian (the field is extended off M by the network itself; only derivatives along M
enter). **Exact**: n backward passes, div = sum_j (row j of J) . P_x e_j. **Hutchinson**:
tangent probes eps = P_x z (z Rademacher or Gaussian in R^n, drawn once per solve), for which
E[eps^T J eps] = tr(P_x J P_x) = tr(J P_x): unbiased, one backward pass per probe.

The solve runs from t = 1 to t = 0 on M x R^k (the point and k log-density accumulators):
with the exp-map Runge-Kutta steps of :func:`~flowmatch.manifolds.solve_manifold_ode` (a
fixed number of steps), or with dopri5 in the ambient coordinates (the field is tangent, so
the exact flow stays on M; the end point is projected back).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowmatch.likelihood import (
    LikelihoodResult,
    check_options,
    combine_estimates,
    draw_probes,
)
from flowmatch.manifolds.base import Manifold, check_points
from flowmatch.manifolds.flat import Euclidean
from flowmatch.manifolds.product import Product
from flowmatch.manifolds.solvers import solve_manifold_ode
from flowmatch.solvers import solve_ode

__all__ = ["manifold_divergence", "manifold_log_likelihood"]

Velocity = Callable[[Tensor, Tensor], Tensor]


def manifold_divergence(
    manifold: Manifold, velocity: Velocity, x: Tensor, t: Tensor, probes: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """v(x, t) and its Riemannian divergence at points x (B, n).

    Args:
        probes: None for the exact divergence (n backward passes), or ambient probes (K, B, n)
            for K Hutchinson estimates (projected onto the tangent space at x here).

    Returns:
        v (B, n) (detached) and the divergence, (B, 1) exact or (B, K) Hutchinson.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity(x, t)
        n = x.shape[1]
        if not v.requires_grad:  # a field that does not depend on x: divergence 0
            k = 1 if probes is None else probes.shape[0]
            return v.detach(), x.new_zeros(x.shape[0], k)
        if probes is None:
            eye = torch.eye(n, dtype=x.dtype, device=x.device)
            div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for j in range(n):
                (row,) = torch.autograd.grad(
                    v[:, j].sum(), x, retain_graph=j + 1 < n, allow_unused=True
                )
                if row is None:
                    continue
                tangent = manifold.proj_tangent(x.detach(), eye[j].expand_as(x))
                div = div + (row * tangent).sum(-1)
            return v.detach(), div[:, None]
        divs = []
        for k in range(probes.shape[0]):
            eps = manifold.proj_tangent(x.detach(), probes[k])
            (g,) = torch.autograd.grad(
                v, x, eps, retain_graph=k + 1 < probes.shape[0], allow_unused=True
            )
            divs.append(torch.zeros_like(eps[:, 0]) if g is None else (g * eps).sum(-1))
        return v.detach(), torch.stack(divs, 1)


def manifold_log_likelihood(
    manifold: Manifold,
    velocity: Velocity,
    x1: Tensor,
    *,
    base_log_prob: Callable[[Tensor], Tensor] | None = None,
    method: str = "exact",
    solver: str = "dopri5",
    steps: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    num_probes: int = 4,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """log p(x1) in nats w.r.t. the Riemannian volume, for a tangent velocity field.

    Args:
        manifold: where x1 lives.
        velocity: ``v(x, t)`` tangent at x, x (B, n), t (B,) -> (B, n).
        x1: data points (B, n) (projected onto the manifold first).
        base_log_prob: log-density of the base at t = 0; the manifold's base by default.
        method: ``exact`` or ``hutchinson``.
        solver: ``dopri5`` (adaptive, ambient coordinates; ``atol``/``rtol``) or an exp-map
            Runge-Kutta method (euler, midpoint, heun, rk4) with ``steps`` steps.
        num_probes: Hutchinson's probes per point.
        probe: their kind (rademacher, gaussian).
        generator: RNG of the probes.

    Returns:
        :class:`~flowmatch.likelihood.LikelihoodResult` (log_prob (B,), std_err (B,), nfe).
    """
    check_options(method, probe, num_probes)
    check_points(x1, manifold.ambient_dim, "x1")
    if not torch.isfinite(x1).all():
        raise ValueError("x1 contains NaN or infinite values")
    x1 = manifold.proj_point(x1.detach())
    n = manifold.ambient_dim
    k = 1 if method == "exact" else num_probes
    probes = draw_probes(k, x1, probe, generator) if method == "hutchinson" else None

    def augmented(state: Tensor, t: Tensor) -> Tensor:
        v, div = manifold_divergence(manifold, velocity, state[:, :n], t, probes)
        return torch.cat([v, div], 1)

    state = torch.cat([x1, x1.new_zeros(x1.shape[0], k)], 1)
    if solver == "dopri5":
        res = solve_ode(augmented, state, method="dopri5", t0=1.0, t1=0.0, atol=atol, rtol=rtol)
    else:
        if steps is None:
            raise ValueError(f"solver {solver!r} needs a number of steps")
        space = Product(manifold, Euclidean(k))
        res = solve_manifold_ode(
            space, augmented, state, steps=steps, method=solver, t0=1.0, t1=0.0
        )
    x0 = manifold.proj_point(res.x[:, :n])
    log_p0 = (base_log_prob or manifold.base_log_prob)(x0)
    log_prob, std_err = combine_estimates(log_p0, res.x[:, n:], method)
    return LikelihoodResult(log_prob.detach(), std_err.detach(), res.nfe)
