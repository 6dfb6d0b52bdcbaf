"""Geodesic paths, the Riemannian flow matching loss and the exp-map Runge-Kutta solvers.

The path is checked against its definition (ends, distances, finite differences of x_t in t);
the loss for what it must be (non-negative, reproducible, differentiable, the formula) and
against the closed-form AxialVMFFlow of S^2; the solvers for their exact NFE, staying on the
manifold, reversibility, equality with the plain Runge-Kutta methods on flat manifolds and
their convergence orders on S^2 against two exact flows (a rotation, and the axial vMF flow's
transport map).

Tolerances are stated at each check: float64 finite differences to 1e-6 (truncation h^2 ~
1e-10, rounding eps / h ~ 1e-11), round-off comparisons to 1e-10 (float64) or 1e-5 (float32).
Seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from manifold_cases import (
    AXIAL,
    DTYPES,
    F32,
    F64,
    MANIFOLDS,
    TOL,
    axial_transport,
    coord_diff,
    gen,
    make_model,
    sample_axial_vmf,
)
from torch import nn

import flowmatch as fm
from flowmatch.errors import SamplerError
from flowmatch.manifolds import (
    MANIFOLD_METHODS,
    Euclidean,
    FlatTorus,
    GeodesicPath,
    Manifold,
    Product,
    RiemannianFlowMatchingLoss,
    Sphere,
    solve_manifold_ode,
)
from flowmatch.manifolds.so3 import so3_exp
from flowmatch.schedules import VP, Cosine, Linear, Polynomial
from flowmatch.solvers import solve_ode

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


# --------------------------------------------------------------------------- the path
def pairs(m: Manifold, n: int, seed: int, dtype: torch.dtype = F64):
    g = gen(seed)
    return m.random_base(n, generator=g, dtype=dtype), m.random_base(n, generator=g, dtype=dtype)


@pytest.mark.parametrize("schedule", [Linear(), Cosine()], ids=["linear", "cosine"])
@pytest.mark.parametrize("m", MANIFOLDS)
def test_path_starts_at_x0_and_ends_at_x1(m, schedule):
    """x_t at t = 0 is x0 and at t = 1 is x1 (float64, 1e-10: one exp(log) round trip)."""
    x0, x1 = pairs(m, 200, 1)
    path = GeodesicPath(m, schedule)
    n = x0.shape[0]
    start = path.sample(x0, x1, torch.zeros(n, dtype=F64)).x_t
    end = path.sample(x0, x1, torch.ones(n, dtype=F64)).x_t
    assert m.dist(start, x0).max().item() < 1e-10
    assert m.dist(end, x1).max().item() < 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_path_points_are_on_the_manifold_and_velocities_tangent(m, dtype):
    x0, x1 = pairs(m, 300, 2, dtype)
    t = torch.rand(300, generator=gen(3), dtype=F64).to(dtype)
    x_t, u_t = GeodesicPath(m).sample(x0, x1, t)
    assert x_t.shape == u_t.shape == x1.shape and x_t.dtype == u_t.dtype == dtype
    tol = TOL[dtype]
    assert m.point_error(x_t).max().item() < tol
    assert (m.proj_tangent(x_t, u_t) - u_t).abs().max().item() < tol


@pytest.mark.parametrize(
    "schedule", [Linear(), Cosine(), Polynomial(2.0)], ids=["linear", "cosine", "poly2"]
)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_path_velocity_is_the_time_derivative_of_x_t(m, schedule):
    """u_t = d x_t / dt by central differences in t (float64, h = 1e-5, t in [0.05, 0.95];
    truncation h^2 |x'''| ~ 1e-9 for geodesics up to pi long, rounding eps / h ~ 2e-11;
    tolerance 1e-6)."""
    x0, x1 = pairs(m, 200, 4)
    t = 0.05 + 0.9 * torch.rand(200, generator=gen(5), dtype=F64)
    path = GeodesicPath(m, schedule)
    h = 1e-5
    fd = coord_diff(m, path.sample(x0, x1, t - h).x_t, path.sample(x0, x1, t + h).x_t) / (2 * h)
    u_t = path.sample(x0, x1, t).u_t
    assert (fd - u_t).abs().max().item() < 1e-6


@pytest.mark.parametrize("schedule", [Linear(), Cosine()], ids=["linear", "cosine"])
@pytest.mark.parametrize("m", MANIFOLDS)
def test_distance_to_x1_is_kappa_times_the_distance(m, schedule):
    """dist(x_t, x1) = kappa_t dist(x0, x1): x_t slides along the shortest geodesic (float64,
    1e-10)."""
    x0, x1 = pairs(m, 200, 6)
    t = torch.rand(200, generator=gen(7), dtype=F64)
    path = GeodesicPath(m, schedule)
    kappa, _ = path.kappa(t)
    x_t = path.sample(x0, x1, t).x_t
    assert (m.dist(x_t, x1) - kappa * m.dist(x0, x1)).abs().max().item() < 1e-10
    # the linear path moves at the constant speed dist(x0, x1)
    if isinstance(schedule, Linear):
        u_t = path.sample(x0, x1, t).u_t
        assert (m.norm(x_t, u_t) - m.dist(x0, x1)).abs().max().item() < 1e-10


def test_path_refuses_bad_schedules_and_inputs():
    with pytest.raises(ValueError, match="kappa_0 = 1 and kappa_1 = 0"):
        GeodesicPath(Sphere(2), VP())
    with pytest.raises(ValueError):
        GeodesicPath(Sphere(2), "linear")
    with pytest.raises(ValueError):
        GeodesicPath("sphere")
    path = GeodesicPath(Sphere(2))
    x = Sphere(2).random_uniform(4)
    with pytest.raises(ValueError, match="x0"):
        path.sample(torch.randn(4, 4), x, torch.rand(4))
    with pytest.raises(ValueError, match="x1"):
        path.sample(x, torch.randn(4), torch.rand(4))
    with pytest.raises(ValueError):
        path.sample(x, x, torch.rand(5))


# --------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("m", MANIFOLDS)
def test_loss_is_finite_reproducible_and_differentiable(m):
    model = make_model(m, dtype=F32).train()
    loss_fn = RiemannianFlowMatchingLoss(model.path)
    x1 = m.random_base(64, generator=gen(8))
    loss = loss_fn(model, x1, generator=gen(9))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() >= 0
    again = loss_fn(model, x1, generator=gen(9))
    assert torch.equal(loss, again)
    assert not torch.equal(loss, loss_fn(model, x1, generator=gen(10)))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(gr.abs().sum().item() for gr in grads) > 0


@pytest.mark.parametrize("m", MANIFOLDS)
def test_loss_is_the_mean_squared_riemannian_error_over_the_dimension(m):
    """With x0 given and the same generator for the times, the loss is mean |v - u_t|^2_{x_t}
    / dim (float64, 1e-12)."""
    model = make_model(m)
    path = GeodesicPath(m, Cosine())
    model.path = path
    x0, x1 = pairs(m, 50, 11)
    loss = RiemannianFlowMatchingLoss(path)(model, x1, x0=x0, generator=gen(12))
    t = fm.time.Uniform()(50, dtype=F64, generator=gen(12))
    x_t, u_t = path.sample(x0, x1, t)
    with torch.no_grad():
        err = model(x_t, t) - u_t
    expected = m.inner(x_t, err, err).mean() / m.dim
    assert abs(loss.item() - expected.item()) < 1e-12


class OracleField(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return AXIAL.velocity(x, t)


class ZeroField(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_the_true_axial_field_beats_the_zero_field():
    """On exact axial vMF data (4000 draws), the AxialVMFFlow's marginal velocity has a lower
    expected loss than the zero field, with common random numbers (the same generator, so the
    same x0 and t for both). It is not the loss's minimizer (the geodesic path's marginals are
    not the oracle's f_t) and the conditional variance dominates both losses (measured 1.39
    vs 1.48), so the paired per-sample difference is recomputed from the same draws and must
    be below -4 of its standard errors (measured -0.090, standard error 0.010)."""
    s2 = Sphere(2)
    n = 4000
    x1 = sample_axial_vmf(AXIAL, n, gen(13))
    path = GeodesicPath(s2)
    loss_fn = RiemannianFlowMatchingLoss(path)
    oracle = loss_fn(OracleField(), x1, generator=gen(14)).item()
    zero = loss_fn(ZeroField(), x1, generator=gen(14)).item()
    assert math.isfinite(oracle) and 0 < oracle < zero, (oracle, zero)
    # the loss's draws, in its order: x0 from the base, then t
    g = gen(14)
    x0 = s2.random_base(n, generator=g, dtype=F64)
    t = fm.time.Uniform()(n, dtype=F64, generator=g)
    x_t, u_t = path.sample(x0, x1, t)
    v = AXIAL.velocity(x_t, t)
    diff = (s2.inner(x_t, v - u_t, v - u_t) - s2.inner(x_t, u_t, u_t)) / s2.dim
    assert abs(diff.mean().item() - (oracle - zero)) < 1e-10
    assert diff.mean().item() < -4 * diff.std().item() / math.sqrt(n)


@pytest.mark.parametrize(
    ("dropout", "null"), [(-0.1, 0), (1.0, 0), (1.5, 0), (True, 0), ("0.1", 0), (0.1, None)]
)
def test_loss_refuses_bad_label_dropout(dropout, null):
    with pytest.raises(ValueError, match="cond_dropout"):
        RiemannianFlowMatchingLoss(GeodesicPath(Sphere(2)), cond_dropout=dropout, null_cond=null)


def test_loss_refuses_bad_paths_and_points():
    with pytest.raises(ValueError, match="GeodesicPath"):
        RiemannianFlowMatchingLoss(fm.paths.AffinePath(Linear()))
    model = make_model(Sphere(2), dtype=F32)
    loss_fn = RiemannianFlowMatchingLoss(model.path)
    with pytest.raises(ValueError, match="x1"):
        loss_fn(model, torch.randn(8, 4))


# --------------------------------------------------------------------------- the solver
@pytest.mark.parametrize("method", MANIFOLD_METHODS)
def test_nfe_is_steps_times_stages(method):
    m = Product(Sphere(2), FlatTorus(2))
    calls = []

    def field(x, t):
        calls.append(t[0].item())
        return m.proj_tangent(x, torch.ones_like(x))

    x0 = m.random_uniform(5, generator=gen(15), dtype=F64)
    res = solve_manifold_ode(m, field, x0, steps=7, method=method, return_trajectory=True)
    assert res.nfe == len(calls) == 7 * STAGES[method]
    assert res.trajectory.shape == (8, 5, m.ambient_dim)
    assert torch.allclose(res.times, torch.linspace(0, 1, 8, dtype=F64))
    assert torch.equal(res.trajectory[-1], res.x)
    assert m.dist(res.trajectory[0], x0).max().item() < 1e-12
    assert min(calls) >= 0.0 and max(calls) <= 1.0


@pytest.mark.parametrize("m", MANIFOLDS)
def test_points_stay_on_the_manifold_over_1000_steps(m):
    """1000 float32 Euler steps of a random smooth field (speed ~1): every point of the
    trajectory is on the manifold to 1e-5 (the projection after each step removes drift)."""
    model = make_model(m, dtype=F32, scale=2.0)
    x0 = m.random_base(16, generator=gen(16), dtype=F32)
    res = solve_manifold_ode(
        m, model.velocity_field(), x0, steps=1000, method="euler", return_trajectory=True
    )
    assert res.trajectory.dtype == F32
    err = m.point_error(res.trajectory.reshape(-1, m.ambient_dim))
    assert err.max().item() < 1e-5
    assert m.dist(res.x, x0).max().item() > 0.05  # it did move (0.077 on the circle)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_integrating_backwards_undoes_forwards(m):
    """rk4 with 64 steps from 0 to 1 and back from 1 to 0 returns the start (float64; the error
    is the solver's, O(h^2) on curved factors: measured <= 1.4e-8, 1e-14 on flat ones;
    tolerance 1e-6)."""
    model = make_model(m, scale=2.0)
    v = model.velocity_field()
    x0 = m.random_base(32, generator=gen(17), dtype=F64)
    with torch.no_grad():
        x1 = solve_manifold_ode(m, v, x0, steps=64, method="rk4").x
        back = solve_manifold_ode(m, v, x1, steps=64, method="rk4", t0=1.0, t1=0.0)
    assert back.times[0].item() == 1.0 and back.times[-1].item() == 0.0
    assert m.dist(x1, x0).max().item() > 0.05
    assert m.dist(back.x, x0).max().item() < 1e-6


FLAT = [FlatTorus(1), FlatTorus(3), Euclidean(2), Product(FlatTorus(2), Euclidean(1))]


@pytest.mark.parametrize("method", MANIFOLD_METHODS)
@pytest.mark.parametrize("m", FLAT, ids=repr)
def test_on_flat_manifolds_it_is_the_plain_runge_kutta_method(m, method):
    """On tori and Euclidean spaces the exp-map method is the method in coordinates:
    solve_ode then wrap (the field is periodic in the angles, so wrapping between steps changes
    nothing but round-off: float64, 1e-12)."""
    model = make_model(m, scale=3.0)
    v = model.velocity_field()
    x0 = m.random_base(32, generator=gen(18), dtype=F64)
    with torch.no_grad():
        ours = solve_manifold_ode(m, v, x0, steps=20, method=method)
        plain = solve_ode(v, x0, steps=20, method=method)
    assert ours.nfe == plain.nfe
    assert coord_diff(m, m.proj_point(plain.x), ours.x).abs().max().item() < 1e-12


W = torch.tensor([0.3, -1.1, 0.7], dtype=F64)


def rotation_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = (1 + t) w x x: its flow is the rotation about w by |w| (t + t^2 / 2)."""
    return (1 + t)[:, None] * torch.linalg.cross(W.expand_as(x), x)


def measured_order(field, x0, exact, method, steps) -> tuple[float, list[float]]:
    """The slope of log(max error) against log(steps), by least squares."""
    s2 = Sphere(2)
    errs = [
        s2.dist(solve_manifold_ode(s2, field, x0, steps=n, method=method).x, exact).max().item()
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    return float(slope), errs


ORDERS = {"euler": (0.8, 1.3), "midpoint": (1.7, 2.5), "heun": (1.7, 2.5), "rk4": (1.8, 4.5)}


@pytest.mark.parametrize("method", MANIFOLD_METHODS)
def test_convergence_order_on_the_sphere_with_a_rotation(method):
    """Global error against the closed-form rotation, 16 to 128 steps, 64 points, float64.
    Measured orders: euler 0.995, midpoint 1.98, heun 1.99, rk4 2.00 (the exp-map RK4 with
    projected stages is second order on a curved manifold, as its docstring says)."""
    x0 = Sphere(2).random_uniform(64, generator=gen(19), dtype=F64)
    exact = x0 @ so3_exp(1.5 * W).T
    order, errs = measured_order(rotation_field, x0, exact, method, [16, 32, 64, 128])
    lo, hi = ORDERS[method]
    assert lo <= order <= hi, (order, errs)


@pytest.mark.parametrize("method", MANIFOLD_METHODS)
def test_convergence_order_on_the_sphere_with_the_axial_vmf_flow(method):
    """Global error against the axial flow's exact transport map (32 to 256 steps, 64 points,
    float64; from 16 steps some draws are still pre-asymptotic). Measured orders: euler 0.95,
    midpoint 1.94, heun 1.88, rk4 2.03."""
    x0 = Sphere(2).random_uniform(64, generator=gen(0), dtype=F64)
    exact = axial_transport(AXIAL, x0)
    order, errs = measured_order(AXIAL.velocity, x0, exact, method, [32, 64, 128, 256])
    lo, hi = ORDERS[method]
    assert lo <= order <= hi, (order, errs)
    if method == "rk4":
        assert errs[-1] < 1e-5  # 256 steps: 1.4e-6


def test_fm_sample_integrates_a_manifold_model_on_its_manifold():
    m = Product(Sphere(2), FlatTorus(2))
    model = make_model(m)
    x0 = m.random_uniform(16, generator=gen(20), dtype=F64)
    ours = fm.sample(model, x0, steps=10, method="heun")
    direct = solve_manifold_ode(m, model.velocity_field(), x0, steps=10, method="heun").x
    assert torch.equal(ours, direct)
    assert fm.generate(model, x0, steps=10, method="heun").nfe == 20


@pytest.mark.parametrize("method", ["dopri5", "ddpm", "sde", "foo"])
def test_solver_and_model_refuse_other_methods(method):
    m = Sphere(2)
    x0 = m.random_uniform(4)
    with pytest.raises(ValueError, match="method"):
        solve_manifold_ode(m, lambda x, t: torch.zeros_like(x), x0, steps=4, method=method)
    model = make_model(m, dtype=F32)
    with pytest.raises(SamplerError, match="method") as info:
        model.check_sampler(method, 4)
    assert info.value.option == "method"
    if method != "dopri5":  # integrate() accepts dopri5 (adaptive, ambient coordinates)
        with pytest.raises(SamplerError):
            fm.sample(model, x0, steps=4, method=method)


def test_model_refuses_bad_steps_and_guidance():
    m = Sphere(2)
    model = make_model(m, dtype=F32)
    for steps in (0, -1, True, [4, 0], "4"):
        with pytest.raises(SamplerError, match="steps"):
            model.check_sampler("rk4", steps)
    with pytest.raises(SamplerError, match="steps"):
        fm.sample(model, m.random_uniform(4), steps=None, method="rk4")
    with pytest.raises(SamplerError, match="guidance"):
        fm.sample(model, m.random_uniform(4), steps=4, guidance=2.0)
    with pytest.raises(ValueError, match="x0"):
        solve_manifold_ode(m, model.velocity_field(), torch.randn(4, 4), steps=4)


def test_a_fractional_step_count_is_a_sampler_error():
    model = make_model(Sphere(2), dtype=F32)
    with pytest.raises(SamplerError, match="steps"):
        model.check_sampler("rk4", 2.5)
