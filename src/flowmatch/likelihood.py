"""Log-likelihood of data under a flow: the instantaneous change of variables.

Time runs from t=0 (source, e.g. N(0, I)) to t=1 (data). Along the ODE dx/dt = v(x, t) the
log-density changes as d/dt log p_t(x_t) = -div v(x_t, t), so for a data point x1

    log p_1(x1) = log p_0(x0) - integral_0^1 div v(x_t, t) dt,

where x0 is x1 integrated back to t=0. The state [x, l] with dl/dt = div v is integrated from
t=1 (x = x1, l = 0) to t=0 in one solve, so l(0) = -integral_0^1 div v dt and
log p_1(x1) = log p_0(x0) + l(0). References: Chen et al. 2018 (Neural ODEs), Grathwohl et
al. 2019 (FFJORD, the Hutchinson estimator).

The divergence is either **exact** (one backward pass per data dimension: the trace of the
Jacobian, for low dimension) or the **Hutchinson** estimate eps^T (dv/dx) eps with Rademacher
or Gaussian probes eps, drawn once per solve (so the ODE stays smooth) and independently for
each of ``num_probes`` accumulators: their mean is the estimate, their spread its standard
error. The solvers are those of :func:`~flowmatch.solvers.solve_ode` (dopri5 by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from flowmatch.flow import FlowModel, as_flow
from flowmatch.manifolds.model import ManifoldFlowModel
from flowmatch.paths import AffinePath
from flowmatch.solvers import solve_ode
from flowmatch.sources import standard_normal_log_prob

__all__ = [
    "LikelihoodResult",
    "bits_per_dim",
    "log_likelihood",
    "standard_normal_log_prob",
]

Velocity = Callable[[Tensor, Tensor], Tensor]


class LikelihoodResult(NamedTuple):
    """Log-likelihood per point with its standard error and the solver's cost.

    Attributes:
        log_prob: log p(x1) in nats, shape (B,) (the mean over probes for Hutchinson).
        std_err: standard error of each log_prob from the probes, shape (B,); zeros for the
            exact divergence, NaN for Hutchinson with a single probe.
        nfe: velocity evaluations of the solve (each also costs one backward pass per data
            dimension (exact) or per probe (Hutchinson)).
    """

    log_prob: Tensor
    std_err: Tensor
    nfe: int


def bits_per_dim(
    log_prob: Tensor, dim: int, *, data_range: float = 2.0, levels: int = 256
) -> Tensor:
    """Bits per dimension of discrete data from the log-density of its dequantized version.

    The usual convention for images: pixel values k in {0, ..., levels-1} are dequantized as
    x = data_range * (k + u) / levels + low with u ~ U[0, 1)^D (``data_range=2`` for data in
    [-1, 1]). A density p over x is a density over the cells of side data_range / levels, so
    -log2 P(k) <= -(log p(x) + D log(data_range / levels)) / ln 2 (Jensen, with the expectation
    over u), and bits/dim = that over D. Pass log p of dequantized data (not of the bare
    lattice points) for the bound to hold.

    Args:
        log_prob: log p(x) in nats, shape (B,).
        dim: number of data dimensions D (e.g. C * H * W).
        data_range: width of the interval the data was scaled to.
        levels: number of discrete values per dimension (256 for 8-bit images).

    Returns:
        Bits per dimension, shape (B,).
    """
    if dim < 1 or levels < 1 or not data_range > 0:
        raise ValueError(
            f"dim and levels must be >= 1 and data_range > 0, got {dim}, {levels}, {data_range}"
        )
    return -(log_prob + dim * math.log(data_range / levels)) / (dim * math.log(2.0))


def check_options(method: str, probe: str, num_probes: int) -> None:
    """Check a likelihood's divergence options (ValueError naming the bad one)."""
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}")


def draw_probes(k: int, like: Tensor, probe: str, generator: torch.Generator | None) -> Tensor:
    """k Hutchinson probes of the shape of ``like`` (B, D): (k, B, D), Rademacher (+-1) or
    standard normal, drawn once per solve so the ODE stays smooth."""
    shape = (k, *like.shape)
    if probe == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
        return (2 * bits - 1).to(like.dtype)
    return torch.randn(shape, generator=generator, device=like.device).to(like.dtype)


def combine_estimates(log_p0: Tensor, delta: Tensor, method: str) -> tuple[Tensor, Tensor]:
    """log p = log p0 + delta per probe (delta (B, K)): the mean over probes and its standard
    error (0 for the exact divergence, NaN for one Hutchinson probe)."""
    estimates = log_p0[:, None] + delta
    log_prob = estimates.mean(1)
    k = delta.shape[1]
    if method == "exact":
        std_err = torch.zeros_like(log_prob)
    elif k == 1:
        std_err = torch.full_like(log_prob, math.nan)
    else:
        std_err = estimates.std(1) / math.sqrt(k)
    return log_prob, std_err


def _exact_divergence(velocity: Velocity, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """v(x, t) and the trace of dv/dx, one backward pass per data dimension; x is (B, D)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity(x, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not v.requires_grad:  # a field that does not depend on x: divergence 0
            return v.detach(), div
        for i in range(x.shape[1]):
            (g,) = torch.autograd.grad(
                v[:, i].sum(), x, retain_graph=i + 1 < x.shape[1], allow_unused=True
            )
            if g is not None:
                div = div + g[:, i]
    return v.detach(), div


def _hutchinson_divergence(
    velocity: Velocity, x: Tensor, t: Tensor, probes: Tensor
) -> tuple[Tensor, Tensor]:
    """v(x, t) and eps_k^T (dv/dx) eps_k for each probe; probes (K, B, D) -> div (B, K)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity(x, t)
        if not v.requires_grad:  # a field that does not depend on x: divergence 0
            return v.detach(), x.new_zeros(x.shape[0], probes.shape[0])
        divs = []
        for k in range(probes.shape[0]):
            (g,) = torch.autograd.grad(
                v, x, probes[k], retain_graph=k + 1 < probes.shape[0], allow_unused=True
            )
            divs.append(x.new_zeros(x.shape[0]) if g is None else (g * probes[k]).sum(1))
    return v.detach(), torch.stack(divs, dim=1)


def log_likelihood(
    model: nn.Module | Velocity,
    x1: Tensor,
    *,
    path: AffinePath | None = None,
    method: str = "exact",
    solver: str = "dopri5",
    steps: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    num_probes: int = 4,
    probe: str = "rademacher",
    cond: Tensor | None = None,
    source_log_prob: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    return_result: bool = False,
    error_norm: str = "batch",
) -> Tensor | LikelihoodResult:
    """log p(x1) under the flow of a model (or of a velocity field), in nats.

    Args:
        model: a trained model (a :class:`~flowmatch.flow.FlowModel`: its path, prediction
            and source are honoured; a plain net is a velocity on the linear path) or a
            velocity callable ``v(x, t)``. A :class:`~flowmatch.manifolds.ManifoldFlowModel`
            is scored on its manifold, w.r.t. the Riemannian volume (Riemannian divergence,
            tangent probes; see :func:`~flowmatch.manifolds.manifold_log_likelihood`).
        x1: data, shape (B, *D); flattened for the divergence.
        path: the model's path when it does not carry one.
        method: ``exact`` (trace of the Jacobian: D backward passes per evaluation) or
            ``hutchinson`` (``num_probes`` backward passes per evaluation, unbiased).
        solver: a method of :func:`~flowmatch.solvers.solve_ode`; dopri5 by default.
        steps: steps of a fixed-step solver.
        atol: dopri5's absolute tolerance (on the state and the log-density alike).
        rtol: dopri5's relative tolerance (likewise).
        num_probes: Hutchinson probes per point (>= 2 for a standard error).
        probe: ``rademacher`` (+-1, lower variance) or ``gaussian``.
        cond: conditioning of a conditional model, shape (B, ...).
        source_log_prob: log-density of the source at t=0, ``f(x0) -> (B,)``; by default the
            FlowModel's source's, else the standard normal.
        generator: torch RNG of the probes.
        return_result: return a :class:`LikelihoodResult` (with standard errors and NFE)
            instead of the log-likelihood tensor.
        error_norm: dopri5's error measure (see :func:`~flowmatch.solvers.solve_ode`):
            ``per_sample`` makes every point meet the tolerances whatever else is in its
            batch (more steps); ``batch`` (default) controls the batch's RMS error only.

    Returns:
        log p(x1), shape (B,), or a :class:`LikelihoodResult`.

    Raises:
        ValueError: a bad method, probe kind or number of probes, or non-finite data.
    """
    if isinstance(model, ManifoldFlowModel):
        from flowmatch.manifolds.likelihood import manifold_log_likelihood

        result = manifold_log_likelihood(
            model.manifold,
            model.velocity_field(cond),
            x1,
            base_log_prob=source_log_prob,
            method=method,
            solver=solver,
            steps=steps,
            atol=atol,
            rtol=rtol,
            num_probes=num_probes,
            probe=probe,
            generator=generator,
        )
        return result if return_result else result.log_prob
    check_options(method, probe, num_probes)
    if x1.ndim < 2:
        raise ValueError(f"x1 must have shape (B, *D), got {tuple(x1.shape)}")
    if not torch.isfinite(x1).all():
        raise ValueError("x1 contains NaN or infinite values")
    if isinstance(model, nn.Module):
        flow = as_flow(model, path=path)
        v_model = flow.velocity_field(cond)
        if source_log_prob is None and isinstance(model, FlowModel):
            source_log_prob = flow.source_log_prob()
    else:
        v_model = model
    shape = x1.shape
    flat = x1.detach().flatten(1)
    dim = flat.shape[1]

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        return v_model(x.reshape(shape), t).flatten(1)

    k = 1 if method == "exact" else num_probes
    if method == "hutchinson":
        probes = draw_probes(k, flat, probe, generator)

    def augmented(state: Tensor, t: Tensor) -> Tensor:
        x = state[:, :dim]
        if method == "exact":
            v, div = _exact_divergence(velocity, x, t)
            div = div[:, None]
        else:
            v, div = _hutchinson_divergence(velocity, x, t, probes)
        return torch.cat([v, div], dim=1)

    state = torch.cat(
        [flat, torch.zeros(flat.shape[0], k, dtype=flat.dtype, device=flat.device)], 1
    )
    res = solve_ode(
        augmented,
        state,
        steps=steps,
        method=solver,
        t0=1.0,
        t1=0.0,
        atol=atol,
        rtol=rtol,
        error_norm=error_norm,
    )
    x0 = res.x[:, :dim].reshape(shape)
    delta = res.x[:, dim:]  # (B, K): l(0) = -integral_0^1 div v dt, per probe
    log_p0 = (source_log_prob or standard_normal_log_prob)(x0)
    log_prob, std_err = combine_estimates(log_p0, delta, method)
    if return_result:
        return LikelihoodResult(log_prob.detach(), std_err.detach(), res.nfe)
    return log_prob.detach()
