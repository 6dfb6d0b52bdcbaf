"""Likelihoods on manifolds against exact answers.

- The AxialVMFFlow (uniform on S^2 to an axial vMF mixture, velocity and density in closed
  form): its samples follow the mixture, and the log-likelihood computed by integrating the
  Riemannian divergence of its velocity matches the exact log-density (within 1e-2
  nats), exactly and unbiasedly with tangent Hutchinson probes.
- The Riemannian divergence against closed forms (rotation fields, gradients of linear
  functions, a torus field, a left-invariant field on SO(3)) and against a finite-difference
  divergence (sum over an orthonormal tangent basis of <nabla_e v, e>, the covariant
  derivative being the tangential part of the derivative along the geodesic) for a random
  network field on every manifold.
- A random network's density integrates to 1 on S^2 and T^2 (quadrature).
- fm.log_likelihood / fm.encode / fm.sample / fm.load on manifold models, and bad input.

(Named test_manifold_likelihood.py, not test_likelihood.py: tests/ has no __init__.py files, so
two test modules with one basename stop pytest's collection.)

Tolerances and the measured errors are stated at each check; seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from manifold_cases import (
    AXIAL,
    F32,
    F64,
    MANIFOLDS,
    axial_transport,
    gen,
    make_model,
    sample_axial_vmf,
)

import flowmatch as fm
from flowmatch.manifolds import (
    SO3,
    Euclidean,
    FlatTorus,
    GeodesicPath,
    Manifold,
    ManifoldFlowModel,
    Product,
    Sphere,
    manifold_divergence,
    manifold_log_likelihood,
    solve_manifold_ode,
)
from flowmatch.manifolds.so3 import hat
from flowmatch.schedules import Cosine

pytestmark = pytest.mark.usefixtures("one_thread")

S2 = Sphere(2)


def orthonormal_basis(m: Manifold, x: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (w.r.t. ``m.inner``) of the tangent space at one point x (1, n):
    Gram-Schmidt on the projected coordinate vectors, shape (dim, n)."""
    basis: list[torch.Tensor] = []
    for j in range(m.ambient_dim):
        e = torch.zeros_like(x)
        e[0, j] = 1.0
        v = m.proj_tangent(x, e)
        for b in basis:
            v = v - m.inner(x, v, b)[:, None] * b
        norm = m.norm(x, v)
        if norm.item() > 1e-6:
            basis.append(v / norm[:, None])
    assert len(basis) == m.dim
    return torch.cat(basis, 0)


def fd_divergence(m: Manifold, velocity, x: torch.Tensor, t: torch.Tensor, h: float = 1e-4):
    """The Riemannian divergence by central differences: sum_i <P_x (v(exp(x, h e_i)) -
    v(exp(x, -h e_i))) / 2h, e_i>_x over an orthonormal tangent basis e_i at x, point by
    point (float64: truncation ~h^2 = 1e-8, rounding ~eps / h = 2e-12)."""
    out = []
    for i in range(x.shape[0]):
        xi, ti = x[i : i + 1], t[i : i + 1]
        total = torch.zeros((), dtype=x.dtype)
        for e in orthonormal_basis(m, xi):
            e = e[None]
            dv = velocity(m.exp(xi, h * e), ti) - velocity(m.exp(xi, -h * e), ti)
            total = total + m.inner(xi, m.proj_tangent(xi, dv / (2 * h)), e)[0]
        out.append(total)
    return torch.stack(out)


# ------------------------------------------------------------ the axial vMF oracle on S^2
def test_flow_samples_follow_the_vmf_mixture():
    """3000 uniform points through the axial flow (rk4, 100 steps, float64):
    - each lands on the exact transport map's image to 1e-4 (measured 9.2e-6: the solver's
      second-order error);
    - z = <a, x> passes a KS test against z_cdf (p > 1e-3, fixed seed);
    - the mean of log p_1 over them matches the mean over exact draws of the mixture (inverse
      CDF, another way) within 4 standard errors of the difference."""
    n = 3000
    x0 = S2.random_uniform(n, generator=gen(1), dtype=F64)
    x1 = solve_manifold_ode(S2, AXIAL.velocity, x0, steps=100, method="rk4").x
    assert S2.point_error(x1).max().item() < 1e-12
    assert S2.dist(x1, axial_transport(AXIAL, x0)).max().item() < 1e-4
    z = (x1 @ AXIAL.axis).numpy()
    assert scipy.stats.kstest(z, lambda q: AXIAL.z_cdf(torch.as_tensor(q)).numpy()).pvalue > 1e-3
    exact = sample_axial_vmf(AXIAL, n, gen(2))
    lp_flow, lp_exact = AXIAL.log_prob(x1), AXIAL.log_prob(exact)
    se = math.sqrt((lp_flow.var() + lp_exact.var()).item() / n)
    assert abs((lp_flow.mean() - lp_exact.mean()).item()) < 4 * se
    # and the exact draws themselves pass the same KS test (the sampler is right)
    z_exact = (exact @ AXIAL.axis).numpy()
    cdf = lambda q: AXIAL.z_cdf(torch.as_tensor(q)).numpy()  # noqa: E731
    assert scipy.stats.kstest(z_exact, cdf).pvalue > 1e-3


def likelihood_points() -> torch.Tensor:
    """64 draws of the mixture (where its density is high) and 64 uniform points."""
    return torch.cat(
        [sample_axial_vmf(AXIAL, 64, gen(3)), S2.random_uniform(64, generator=gen(4), dtype=F64)]
    )


@pytest.mark.parametrize(
    ("kwargs", "measured"),
    [
        (dict(solver="dopri5", atol=1e-7, rtol=1e-7), 1e-6),
        (dict(solver="rk4", steps=100), 3e-5),
    ],
    ids=["dopri5", "rk4-100"],
)
def test_exact_likelihood_of_the_axial_flow_matches_its_density(kwargs, measured):
    """log p_1(x1) by integrating the exact Riemannian divergence of the closed-form velocity
    back to the uniform base, against the closed-form log-density: within 1e-2
    nats (max over 128 points); measured max errors 9.6e-7 (dopri5, tolerances 1e-7, 97
    evaluations) and 2.9e-5 (rk4, 100 steps, second order on S^2); also asserted below 20x
    those."""
    x1 = likelihood_points()
    res = manifold_log_likelihood(S2, AXIAL.velocity, x1, **kwargs)
    err = (res.log_prob - AXIAL.log_prob(x1)).abs()
    assert err.max().item() < 1e-2
    assert err.max().item() < 20 * measured
    assert torch.equal(res.std_err, torch.zeros_like(res.log_prob))
    if kwargs["solver"] == "rk4":
        assert res.nfe == 400
    else:
        assert res.nfe > 0


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_likelihood_of_the_axial_flow_is_unbiased(probe):
    """Tangent Hutchinson probes (32 per point, rk4 50 steps: bias ~1e-4, far below the noise):
    the mean over 64 points equals the exact mean log-density within 4 standard errors
    (SE = sqrt(sum se_i^2) / N, the points being independent; measured -0.024 = 1.6 SE
    with Rademacher probes, -0.027 = 1.1 SE with Gaussian ones)."""
    x1 = sample_axial_vmf(AXIAL, 64, gen(5))
    res = manifold_log_likelihood(
        S2,
        AXIAL.velocity,
        x1,
        method="hutchinson",
        num_probes=32,
        probe=probe,
        solver="rk4",
        steps=50,
        generator=gen(6),
    )
    assert (res.std_err > 0).all() and torch.isfinite(res.std_err).all()
    se = res.std_err.pow(2).sum().sqrt().item() / len(x1)
    diff = (res.log_prob - AXIAL.log_prob(x1)).mean().item()
    assert abs(diff) < 4 * se, (diff, se)


def test_hutchinson_is_reproducible_and_one_probe_has_no_standard_error():
    x1 = sample_axial_vmf(AXIAL, 8, gen(7))

    def run(seed, k=4):
        return manifold_log_likelihood(
            S2,
            AXIAL.velocity,
            x1,
            method="hutchinson",
            num_probes=k,
            solver="euler",
            steps=5,
            generator=gen(seed),
        )

    assert torch.equal(run(1).log_prob, run(1).log_prob)
    assert not torch.equal(run(1).log_prob, run(2).log_prob)
    assert torch.isnan(run(1, k=1).std_err).all()


# --------------------------------------------------------------------------- divergence
def divergences(m, velocity, x, t, probes=None):
    _, exact = manifold_divergence(m, velocity, x, t)
    return exact[:, 0], fd_divergence(m, velocity, x, t)


W = torch.tensor([0.3, -1.1, 0.7], dtype=F64)
A = torch.tensor([0.5, 1.0, -2.0, 0.7], dtype=F64)


def test_divergence_of_a_rotation_field_on_the_sphere_is_zero():
    """v = w x x is a Killing field: div = 0 (exact: round-off, 1e-12; finite differences:
    1e-6)."""
    x = S2.random_uniform(16, generator=gen(8), dtype=F64)
    t = torch.rand(16, generator=gen(9), dtype=F64)

    def v(x, t):
        return torch.linalg.cross(W.expand_as(x), x)

    exact, fd = divergences(S2, v, x, t)
    assert exact.abs().max().item() < 1e-12
    assert fd.abs().max().item() < 1e-6


@pytest.mark.parametrize("d", [2, 3])
def test_divergence_of_a_gradient_field_on_the_sphere(d):
    """v = P_x(a) = a - <a, x> x, the gradient of <a, x> on S^d: div = -d <a, x> (the
    Laplacian of a degree-1 spherical harmonic is -d times it). Exact to 1e-12, finite
    differences to 1e-6."""
    m = Sphere(d)
    a = A[: d + 1]
    x = m.random_uniform(16, generator=gen(10), dtype=F64)
    t = torch.rand(16, dtype=F64)

    def v(x, t):
        return m.proj_tangent(x, a.expand_as(x))

    exact, fd = divergences(m, v, x, t)
    expected = -d * (x @ a)
    assert (exact - expected).abs().max().item() < 1e-12
    assert (fd - expected).abs().max().item() < 1e-6


def test_divergence_of_a_torus_field():
    """v = (sin x1, cos x2) on T^2: div = cos x1 - sin x2 (exact 1e-12, FD 1e-6)."""
    m = FlatTorus(2)
    x = m.random_uniform(16, generator=gen(11), dtype=F64)
    t = torch.rand(16, dtype=F64)

    def v(x, t):
        return torch.stack([torch.sin(x[:, 0]), torch.cos(x[:, 1])], -1)

    exact, fd = divergences(m, v, x, t)
    expected = torch.cos(x[:, 0]) - torch.sin(x[:, 1])
    assert (exact - expected).abs().max().item() < 1e-12
    assert (fd - expected).abs().max().item() < 1e-6


def test_divergence_of_a_left_invariant_field_on_so3_is_zero():
    """v(R) = R hat(w) for a fixed w generates right multiplication by Exp(t w), an isometry
    of the bi-invariant metric: div = 0 (exact 1e-12, FD 1e-6)."""
    m = SO3()
    x = m.random_uniform(16, generator=gen(12), dtype=F64)
    t = torch.rand(16, dtype=F64)

    def v(x, t):
        return (x.reshape(-1, 3, 3) @ hat(W)).reshape(-1, 9)

    exact, fd = divergences(m, v, x, t)
    assert exact.abs().max().item() < 1e-12
    assert fd.abs().max().item() < 1e-6


@pytest.mark.parametrize("m", MANIFOLDS)
def test_exact_divergence_of_a_network_field_matches_finite_differences(m):
    """A random network field (ManifoldFlowModel, float64): the exact divergence (traces of
    the ambient Jacobian times the projection) equals the finite-difference covariant
    divergence to 1e-6 (measured <= 9e-9), and the mean of 400 tangent Rademacher probes
    is within 5 standard errors of it (measured <= 2.6)."""
    model = make_model(m, scale=2.0)
    v = model.velocity_field()
    x = m.random_base(8, generator=gen(13), dtype=F64)
    t = torch.rand(8, generator=gen(14), dtype=F64)
    exact, fd = divergences(m, v, x, t)
    assert (exact - fd).abs().max().item() < 1e-6
    assert exact.abs().max().item() > 1e-3  # not trivially zero
    k = 400
    probes = (2 * torch.randint(0, 2, (k, *x.shape), generator=gen(15)) - 1).to(F64)
    vel, hutch = manifold_divergence(m, v, x, t, probes)
    assert hutch.shape == (8, k)
    assert torch.allclose(vel, v(x, t).detach())
    se = hutch.std(1) / math.sqrt(k)
    assert ((hutch.mean(1) - exact).abs() <= 5 * se + 1e-12).all()


# ------------------------------------------------------------------- normalization
def sphere_grid(nz: int, nphi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes in z x a uniform azimuth grid, with area weights (sum 4 pi)."""
    z, w = np.polynomial.legendre.leggauss(nz)
    phi = (np.arange(nphi) + 0.5) * 2 * np.pi / nphi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz**2)
    pts = np.stack([r * np.cos(pp), r * np.sin(pp), zz], -1).reshape(-1, 3)
    weights = (w[:, None] * np.full(nphi, 2 * np.pi / nphi)[None, :]).reshape(-1)
    return torch.tensor(pts), torch.tensor(weights)


def torus_grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The uniform n x n periodic grid with weights (2 pi / n)^2 (spectrally accurate)."""
    a = -np.pi + 2 * np.pi * np.arange(n) / n
    aa, bb = np.meshgrid(a, a, indexing="ij")
    pts = torch.tensor(np.stack([aa, bb], -1).reshape(-1, 2))
    return pts, torch.full((n * n,), (2 * np.pi / n) ** 2, dtype=F64)


@pytest.mark.parametrize(
    ("m", "scale", "grid"),
    [
        (Sphere(2), 3.0, lambda: sphere_grid(24, 48)),
        (FlatTorus(2), 20.0, lambda: torus_grid(48)),
    ],
    ids=["S2", "T2"],
)
def test_model_density_integrates_to_one(m, scale, grid):
    """exp(log-likelihood) of a random network flow (output layer scaled so that the density
    is clearly not uniform: max/min > 2; measured 12 on S^2, 3.0 on T^2) integrates to 1
    within 1% by quadrature (rk4, 16 steps, exact divergence). Measured: 1 + 4e-5 on S^2
    (the solver's second-order error; the quadrature is converged: 16x32 nodes give the same
    digits), 1 + 1e-7 on T^2."""
    model = make_model(m, scale=scale)
    pts, weights = grid()
    p = fm.log_likelihood(model, pts, solver="rk4", steps=16).exp()
    assert (p.max() / p.min()).item() > 2
    total = (p * weights).sum().item()
    assert abs(total - 1) < 1e-2, total
    assert abs(total - 1) < 1e-3  # 25x the measured error


# ---------------------------------------------------------------- the fm.* entry points
def test_fm_log_likelihood_is_manifold_log_likelihood():
    m = Product(Sphere(2), FlatTorus(2))
    model = make_model(m)
    x = m.random_uniform(16, generator=gen(16), dtype=F64)
    ours = fm.log_likelihood(model, x, solver="heun", steps=8, return_result=True)
    direct = manifold_log_likelihood(m, model.velocity_field(), x, solver="heun", steps=8)
    assert torch.equal(ours.log_prob, direct.log_prob) and ours.nfe == direct.nfe == 16
    hutch = fm.log_likelihood(
        model, x, method="hutchinson", solver="dopri5", generator=gen(17), return_result=True
    )
    hutch_direct = manifold_log_likelihood(
        m, model.velocity_field(), x, method="hutchinson", generator=gen(17)
    )
    assert torch.equal(hutch.log_prob, hutch_direct.log_prob)
    assert torch.equal(hutch.std_err, hutch_direct.std_err)
    plain = fm.log_likelihood(model, x, solver="heun", steps=8)
    assert torch.equal(plain, direct.log_prob)


@pytest.mark.parametrize("m", MANIFOLDS)
def test_encode_then_sample_returns_the_data(m):
    """fm.encode (dopri5, tolerances 1e-7) then fm.sample (rk4, 200 steps) is the identity
    within 1e-3 in geodesic distance (float64; measured <= 8e-7: the rk4 error)."""
    model = make_model(m, scale=2.0)
    x1 = m.random_base(32, generator=gen(18), dtype=F64)
    x0 = fm.encode(model, x1, atol=1e-7, rtol=1e-7)
    assert x0.shape == x1.shape and m.point_error(x0).max().item() < 1e-10
    assert m.dist(x0, x1).max().item() > 0.05  # the encoding moved the points
    back = fm.sample(model, x0, steps=200, method="rk4")
    assert m.dist(back, x1).max().item() < 1e-3


def test_save_and_load_a_product_model(tmp_path):
    """save_pretrained + fm.load: the same manifold, path schedule, info and velocities (bit
    for bit, float32 weights)."""
    m = Product(Sphere(2), FlatTorus(2), SO3())
    model = make_model(m, seed=3, dtype=F32, path=GeodesicPath(m, Cosine()))
    model.info = {"data": "toy", "units": "radians"}
    model.save_pretrained(tmp_path / "model")
    loaded = fm.load(tmp_path / "model")
    assert isinstance(loaded, ManifoldFlowModel)
    assert loaded.manifold == m and isinstance(loaded.path.schedule, Cosine)
    assert loaded.info == model.info
    x = m.random_uniform(16, generator=gen(19))
    t = torch.rand(16, generator=gen(20))
    with torch.no_grad():
        assert torch.equal(loaded(x, t), model(x, t))
    again = ManifoldFlowModel.from_pretrained(tmp_path / "model")
    with torch.no_grad():
        assert torch.equal(again(x, t), model(x, t))


# ------------------------------------------------------------------------- bad input
def bad_calls():
    m = Sphere(2)
    good = m.random_uniform(4, generator=gen(21))
    nan = good.clone()
    nan[1, 0] = float("nan")
    inf = good.clone()
    inf[2, 2] = float("inf")
    return (
        m,
        good,
        [
            ({"x1": torch.randn(4, 4)}, "shape"),
            ({"x1": torch.randn(4)}, "shape"),
            ({"x1": torch.randn(2, 4, 3)}, "shape"),
            ({"x1": torch.ones(4, 3, dtype=torch.long)}, "floating"),
            ({"x1": nan}, "NaN"),
            ({"x1": inf}, "NaN or infinite"),
            ({"method": "trace"}, "method"),
            ({"probe": "uniform", "method": "hutchinson"}, "probe"),
            ({"num_probes": 0, "method": "hutchinson"}, "num_probes"),
            ({"num_probes": True, "method": "hutchinson"}, "num_probes"),
            ({"num_probes": 2.5, "method": "hutchinson"}, "num_probes"),
            ({"solver": "rk4"}, "steps"),
        ],
    )


@pytest.mark.parametrize("case", range(12))
def test_bad_input_raises_value_error(case):
    m, good, calls = bad_calls()
    kwargs, match = calls[case]
    kwargs = dict(kwargs)
    x1 = kwargs.pop("x1", good)
    model = make_model(m, dtype=F32)
    with pytest.raises(ValueError, match=match):
        manifold_log_likelihood(m, model.velocity_field(), x1, **kwargs)
    with pytest.raises(ValueError, match=match):
        fm.log_likelihood(model, x1, **kwargs)


def test_unknown_solver_raises_value_error():
    m = Sphere(2)
    model = make_model(m, dtype=F32)
    with pytest.raises(ValueError, match="method"):
        manifold_log_likelihood(
            m, model.velocity_field(), m.random_uniform(4), solver="ddpm", steps=4
        )


def test_euclidean_likelihood_is_the_change_of_variables_of_a_shear():
    """On R^2 the field v = (a + x2, b) is divergence-free with the flow x2 -> x2 + b t,
    x1 -> x1 + (a + x2) t + b t^2 / 2, so log p_1(x) = log N(x0) with x0 its inverse image;
    rk4 integrates these polynomials in t exactly (round-off, 1e-12)."""
    m = Euclidean(2)
    a, b = 0.7, -1.2
    x = torch.randn(16, 2, generator=gen(22), dtype=F64)

    def v(x, t):
        return torch.stack([a + x[:, 1], torch.full_like(x[:, 0], b)], -1)

    res = manifold_log_likelihood(m, v, x, solver="rk4", steps=3)
    x2 = x[:, 1] - b
    x1 = x[:, 0] - a - x2 - b / 2
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(torch.stack([x1, x2], -1)).sum(-1)
    assert (res.log_prob - expected).abs().max().item() < 1e-12


def test_a_constant_field_has_divergence_zero():
    m = Euclidean(2)
    c = torch.tensor([0.7, -1.2], dtype=F64)
    x = torch.randn(16, 2, generator=gen(23), dtype=F64)
    _, div = manifold_divergence(m, lambda x, t: c.expand_as(x), x, torch.rand(16, dtype=F64))
    assert div.abs().max().item() == 0.0
