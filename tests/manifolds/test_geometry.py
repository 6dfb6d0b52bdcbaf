"""The geometry of the manifolds of :mod:`flowmatch.manifolds`: exp and log are inverse, log
is tangent and as long as the distance, the distance is a metric and agrees with finite
differences, the closed-form geodesics agree with finite differences and with the base class's
forward-mode JVP, the tangent projection is an orthogonal projection, the numerically delicate
cases (antipodes, the torus seam, rotations by 0 and by pi), the uniform samplers and volumes,
and the JSON descriptions.

Tolerances: float32 results are compared to 1e-5 (about 100 float32 epsilons: every operation
here is a handful of well-conditioned flops), float64 ones to 1e-10 (measured errors are below
1e-14; the margin only guards against platform differences in libm). Finite-difference checks
are float64 with steps h where the truncation error (h^2 times a third derivative of order 1)
and the rounding error (eps / h) are both far below their tolerance. Seeds are fixed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from manifold_cases import DTYPES, F32, F64, MANIFOLDS, TOL, coord_diff, gen

from flowmatch.manifolds import (
    SO3,
    Euclidean,
    FlatTorus,
    Manifold,
    Product,
    Sphere,
    manifold_from_dict,
    wrap,
)
from flowmatch.manifolds.so3 import hat, so3_exp, so3_log

pytestmark = pytest.mark.usefixtures("one_thread")

COMPACT = [p for p in MANIFOLDS if p.values[0].compact]


def random_tangent(m: Manifold, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random tangent vector at each point: the projection of a Gaussian ambient vector."""
    v = torch.randn(x.shape, generator=g, dtype=F64).to(x.dtype)
    return m.proj_tangent(x, v)


def tangent_within(m: Manifold, x: torch.Tensor, g: torch.Generator, radius: float):
    """Random tangent vectors inside the injectivity radius: |u| < radius on spheres and SO(3)
    (radius < pi), every angle in (-radius, radius) on tori, anything on Euclidean factors."""
    if isinstance(m, Product):
        parts = [
            tangent_within(f, x[:, s], g, radius) for f, s in zip(m.factors, m._slices, strict=True)
        ]
        return torch.cat(parts, -1)
    if isinstance(m, FlatTorus):
        return (radius * (2 * torch.rand(x.shape, generator=g, dtype=F64) - 1)).to(x.dtype)
    v = random_tangent(m, x, g)
    if isinstance(m, Euclidean):
        return v
    r = radius * torch.rand(x.shape[0], 1, generator=g, dtype=F64).to(x.dtype)
    return v / m.norm(x, v)[:, None] * r


# ---------------------------------------------------------------------------- exp and log
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_exp_of_log_returns_the_point(m, dtype):
    """exp(x, log(x, y)) = y for independent random pairs (cut locus included: whichever
    shortest geodesic log picks, it ends at y)."""
    g = gen(1)
    x = m.random_base(500, generator=g, dtype=dtype)
    y = m.random_base(500, generator=g, dtype=dtype)
    err = m.dist(m.exp(x, m.log(x, y)), y)
    # measured: 1.0e-6 (f32), 4.0e-15 (f64)
    assert err.max().item() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_log_of_exp_returns_the_tangent_vector(m, dtype):
    """log(x, exp(x, u)) = u for |u| below the injectivity radius (0.9 pi: log's condition
    number near the cut locus is 1/sin|u|, 3 at 0.9 pi, so float32 keeps its 1e-5)."""
    g = gen(2)
    x = m.random_base(500, generator=g, dtype=dtype)
    u = tangent_within(m, x, g, 0.9 * math.pi)
    back = m.log(x, m.exp(x, u))
    # measured: 3.6e-6 (f32), 1.2e-14 (f64)
    assert m.norm(x, back - u).max().item() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_log_is_tangent_and_as_long_as_the_distance(m, dtype):
    g = gen(3)
    x = m.random_base(500, generator=g, dtype=dtype)
    y = m.random_base(500, generator=g, dtype=dtype)
    u = m.log(x, y)
    tol = TOL[dtype]
    assert (m.proj_tangent(x, u) - u).abs().max().item() < tol
    assert (m.norm(x, u) - m.dist(x, y)).abs().max().item() < tol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_dist_is_a_metric(m, dtype):
    """Symmetric, zero on the diagonal, and the triangle inequality on random triples (up to
    round-off, the tolerance)."""
    g = gen(4)
    x, y, z = (m.random_base(500, generator=g, dtype=dtype) for _ in range(3))
    tol = TOL[dtype]
    dxy, dyz, dxz = m.dist(x, y), m.dist(y, z), m.dist(x, z)
    assert (dxy - m.dist(y, x)).abs().max().item() < tol
    assert m.dist(x, x).abs().max().item() < tol
    assert (dxz <= dxy + dyz + tol).all()
    assert (dxy >= 0).all() and torch.isfinite(dxy).all()
    if isinstance(m, (Sphere, SO3)):
        assert dxy.max().item() <= math.pi + tol  # the diameter


# ------------------------------------------------------------- derivatives and geodesics
def unit_tangent(m: Manifold, n: int, seed: int):
    g = gen(seed)
    x = m.random_base(n, generator=g, dtype=F64)
    u = random_tangent(m, x, g)
    u = u / m.norm(x, u)[:, None]
    s = 0.2 + 0.3 * torch.rand(n, generator=g, dtype=F64)  # |s u| <= 0.5 < every radius
    return x, u, s


@pytest.mark.parametrize("m", MANIFOLDS)
def test_distance_grows_at_unit_speed_along_a_unit_geodesic(m):
    """d/ds dist(x, exp(x, s u)) = |u| = 1 for a unit tangent u and 0 < s |u| < the radius,
    by central differences (h = 1e-5, float64: truncation 0, as the distance is linear in s
    there; rounding eps / h ~ 1e-11; tolerance 1e-6)."""
    x, u, s = unit_tangent(m, 64, 5)
    h = 1e-5

    def d(s_):
        return m.dist(x, m.exp(x, s_[:, None] * u))

    slope = (d(s + h) - d(s - h)) / (2 * h)
    assert (slope - 1).abs().max().item() < 1e-6
    assert (d(s) - s).abs().max().item() < 1e-10


@pytest.mark.parametrize("m", MANIFOLDS)
def test_geodesic_velocity_matches_finite_differences(m):
    """The closed-form d gamma / ds of ``geodesic`` against central differences of its points
    (h = 1e-4, float64: truncation h^2 |gamma'''| / 6 ~ 2e-9 for unit speed, rounding
    eps / h ~ 1e-12; tolerance 1e-6; measured 1.7e-9)."""
    x, u, s = unit_tangent(m, 64, 6)
    y, v = m.geodesic(x, u, s)
    h = 1e-4
    fd = coord_diff(m, m.geodesic(x, u, s - h)[0], m.geodesic(x, u, s + h)[0]) / (2 * h)
    assert (fd - v).abs().max().item() < 1e-6
    assert (y - m.exp(x, s[:, None] * u)).abs().max().item() < 1e-12
    assert (m.proj_tangent(y, v) - v).abs().max().item() < 1e-12  # tangent at gamma(s)
    assert (m.norm(y, v) - 1).abs().max().item() < 1e-12  # constant (unit) speed


@pytest.mark.parametrize("m", MANIFOLDS)
def test_closed_form_geodesic_matches_the_default_jvp(m):
    """Every manifold overrides ``geodesic``; the base class's forward-mode JVP of ``exp``
    (called unbound) gives the same points and velocities to round-off (float64, 1e-12;
    measured 3e-16)."""
    assert type(m).geodesic is not Manifold.geodesic
    x, u, s = unit_tangent(m, 64, 7)
    u = 2.5 * u  # longer than one radian, still inside the radius on every factor
    y, v = m.geodesic(x, u, s)
    y_jvp, v_jvp = Manifold.geodesic(m, x, u, s)
    assert (y - y_jvp).abs().max().item() < 1e-12
    assert (v - v_jvp).abs().max().item() < 1e-12


# -------------------------------------------------------------------- inner and projection
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", MANIFOLDS)
def test_projection_is_idempotent_and_orthogonal(m, dtype):
    """P P v = P v, and the removed part v - P v is orthogonal to every tangent w, in the
    Riemannian inner product and in the ambient dot product (the metric of the embedded ones is
    the ambient one, halved on SO(3)); P is symmetric (<P v, w'> = <v, P w'>, ambient)."""
    g = gen(8)
    x = m.random_base(200, generator=g, dtype=dtype)
    v = torch.randn(x.shape, generator=g, dtype=F64).to(dtype)
    v2 = torch.randn(x.shape, generator=g, dtype=F64).to(dtype)
    w = random_tangent(m, x, g)
    pv = m.proj_tangent(x, v)
    tol = TOL[dtype]
    assert (m.proj_tangent(x, pv) - pv).abs().max().item() < tol
    assert m.inner(x, v - pv, w).abs().max().item() < tol
    assert ((v - pv) * w).sum(-1).abs().max().item() < tol
    lhs = (pv * v2).sum(-1)
    rhs = (v * m.proj_tangent(x, v2)).sum(-1)
    assert (lhs - rhs).abs().max().item() < tol


@pytest.mark.parametrize("m", MANIFOLDS)
def test_inner_is_symmetric_bilinear_and_positive(m):
    g = gen(9)
    x = m.random_base(100, generator=g, dtype=F64)
    u, v, w = (random_tangent(m, x, g) for _ in range(3))
    assert (m.inner(x, u, v) - m.inner(x, v, u)).abs().max().item() < 1e-12
    lin = m.inner(x, 2.0 * u - 3.0 * w, v) - (2.0 * m.inner(x, u, v) - 3.0 * m.inner(x, w, v))
    assert lin.abs().max().item() < 1e-12
    assert (m.inner(x, u, u) > 0).all()
    assert (m.norm(x, u) ** 2 - m.inner(x, u, u)).abs().max().item() < 1e-12


def test_so3_metric_measures_the_rotation_angle():
    """|R hat(w)|_R = |w| and dist(R, R Exp(w)) = |w| for |w| < pi (half-Frobenius metric)."""
    m = SO3()
    g = gen(10)
    r = m.random_uniform(100, generator=g, dtype=F64)
    w = torch.randn(100, 3, generator=g, dtype=F64)
    w = w / w.norm(dim=-1, keepdim=True) * 3.0 * torch.rand(100, 1, generator=g, dtype=F64)
    rm = r.reshape(-1, 3, 3)
    u = (rm @ hat(w)).reshape(-1, 9)
    assert (m.norm(r, u) - w.norm(dim=-1)).abs().max().item() < 1e-12
    y = (rm @ so3_exp(w)).reshape(-1, 9)
    assert (m.dist(r, y) - w.norm(dim=-1)).abs().max().item() < 1e-12
    assert (m.exp(r, u) - y).abs().max().item() < 1e-12


# --------------------------------------------------------------------- numerical care cases
ANTIPODAL = [
    pytest.param(F32, 0.0, id="f32-exact"),
    pytest.param(F32, 1e-9, id="f32-1e-9"),
    pytest.param(
        F32,
        1e-5,
        id="f32-1e-5",
    ),
    pytest.param(F64, 0.0, id="f64-exact"),
    pytest.param(F64, 1e-9, id="f64-1e-9"),
    pytest.param(F64, 1e-5, id="f64-1e-5"),
]


@pytest.mark.parametrize(("dtype", "eps"), ANTIPODAL)
def test_sphere_log_at_and_near_the_antipode(dtype, eps):
    """y = -x (+ eps times a Gaussian vector, renormalized): log(x, y) is tangent, its length is
    pi - dist(-x, y) (pi at the antipode) and exp(x, log(x, y)) = y, to 1e-5 / 1e-10."""
    m = Sphere(2)
    g = gen(11)
    x = m.random_uniform(1000, generator=g, dtype=dtype)
    p = torch.randn(1000, 3, generator=g, dtype=F64)
    y = m.proj_point(-x.double() + eps * p).to(dtype)
    u = m.log(x, y)
    tol = TOL[dtype]
    assert torch.isfinite(u).all()
    assert (x * u).sum(-1).abs().max().item() < tol
    gap = m.dist(-x, y)  # 0 at the antipode
    assert (m.norm(x, u) - (math.pi - gap)).abs().max().item() < tol
    assert m.dist(m.exp(x, u), y).max().item() < tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrap_maps_into_minus_pi_to_pi(dtype):
    """wrap(a) lies in [-pi, pi) (the bounds as rounded to the dtype), pi itself goes to -pi,
    and wrap(a) = a modulo 2 pi: cos and sin agree to 1e-6 plus the spacing of the dtype's
    numbers at |a| (1e6 is only known to 0.0625 in float32: a + pi rounds there)."""
    pi = torch.tensor(math.pi, dtype=dtype)
    values = [
        math.pi,
        -math.pi,
        2 * math.pi - 1e-7,
        2 * math.pi,
        1e6,
        -1e6,
        3 * math.pi,
        -3 * math.pi,
        7.0,
        0.0,
        math.nextafter(math.pi, 0.0),
        -math.nextafter(math.pi, 0.0),
    ]
    a = torch.tensor(values, dtype=dtype)
    out = wrap(a)
    assert (out < pi).all() and (out >= -pi).all(), out
    assert out[0].item() == -pi.item() and out[1].item() == -pi.item()
    ulp = torch.finfo(dtype).eps * a.abs().clamp_min(1.0)
    tol = 1e-6 + 2 * ulp
    ad = a.double()
    assert ((torch.cos(out.double()) - torch.cos(ad)).abs() <= tol).all()
    assert ((torch.sin(out.double()) - torch.sin(ad)).abs() <= tol).all()
    # many values, random and on the seam
    g = gen(12)
    big = (torch.rand(10_000, generator=g, dtype=F64) - 0.5) * 40 * math.pi
    seam = torch.arange(-5, 6, dtype=F64) * math.pi
    out = wrap(torch.cat([big, seam]).to(dtype))
    assert (out < pi).all() and (out >= -pi).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_torus_log_takes_the_short_way_round(dtype):
    t = FlatTorus(1)
    x = torch.tensor([[3.0], [-3.0], [-math.pi / 2], [0.5]], dtype=dtype)
    y = torch.tensor([[-3.0], [3.0], [math.pi / 2], [-0.5]], dtype=dtype)
    u = t.log(x, y)
    short = 2 * math.pi - 6.0  # across the seam, not the 6 radians back
    expected = torch.tensor([[short], [-short], [-math.pi], [-1.0]], dtype=F64)
    # -pi/2 -> pi/2 are exactly pi apart: two geodesics; the documented choice is -pi
    assert (u.double() - expected).abs().max().item() < TOL[dtype]
    assert (t.exp(x, u) - y).abs().max().item() < TOL[dtype]
    g = gen(13)
    a = t.random_uniform(2000, generator=g, dtype=dtype)
    b = t.random_uniform(2000, generator=g, dtype=dtype)
    u = t.log(a, b)
    assert (u.abs() <= math.pi).all()
    assert (u >= -torch.tensor(math.pi, dtype=dtype)).all() and (u < math.pi).all()


SO3_ANGLES = [0.0, 1e-8, 1e-3, math.pi / 2, math.pi - 1e-6]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("angle", SO3_ANGLES, ids=lambda a: f"{a:.3g}")
def test_so3_log_inverts_exp(angle, dtype):
    """so3_log(so3_exp(w)) = w for |w| in [0, pi) about random axes (float32 tolerance 1e-5,
    measured 5e-7 at pi - 1e-6; float64 1e-10, measured 8e-16)."""
    g = gen(14)
    axis = torch.randn(200, 3, generator=g, dtype=F64)
    w = (angle * axis / axis.norm(dim=-1, keepdim=True)).to(dtype)
    r = so3_exp(w)
    back = so3_log(r)
    assert (back - w).norm(dim=-1).max().item() < TOL[dtype]
    assert (so3_exp(back) - r).abs().max().item() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_log_at_exactly_pi_returns_the_same_rotation(dtype):
    """At angle pi the sign of the axis is ambiguous (w and -w are one rotation): the rotation
    vector has length pi and gives back the rotation."""
    g = gen(15)
    axis = torch.randn(200, 3, generator=g, dtype=F64)
    w = (math.pi * axis / axis.norm(dim=-1, keepdim=True)).to(dtype)
    r = so3_exp(w)
    back = so3_log(r)
    assert (back.norm(dim=-1) - math.pi).abs().max().item() < TOL[dtype]
    assert (so3_exp(back) - r).abs().max().item() < TOL[dtype]
    cross = torch.linalg.cross(back.double(), w.double()).norm(dim=-1)
    assert cross.max().item() < 10 * TOL[dtype]  # the same axis, either sign


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_rotations_are_orthonormal_with_determinant_one(dtype):
    m = SO3()
    r = m.random_uniform(2000, generator=gen(16), dtype=dtype).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=dtype)
    assert (r.transpose(-1, -2) @ r - eye).abs().max().item() < 1e-6
    assert (torch.det(r) - 1).abs().max().item() < 1e-6


def test_haar_rotation_angles_follow_one_minus_cos_over_pi():
    """The angle of a Haar-uniform rotation has density (1 - cos theta) / pi on [0, pi], CDF
    (theta - sin theta) / pi: a KS test on 5000 draws (p > 1e-3, fixed seed); and E[R] = 0
    (each entry has variance 1/3: |mean| < 5 standard errors)."""
    m = SO3()
    n = 5000
    r = m.random_uniform(n, generator=gen(17), dtype=F64)
    theta = so3_log(r.reshape(-1, 3, 3)).norm(dim=-1).numpy()
    pvalue = scipy.stats.kstest(theta, lambda t: (t - np.sin(t)) / math.pi).pvalue
    assert pvalue > 1e-3
    assert r.mean(0).abs().max().item() < 5 * math.sqrt(1 / 3 / n)


# ----------------------------------------------------------------- uniform draws, volumes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", COMPACT)
def test_random_uniform_draws_points_on_the_manifold(m, dtype):
    x = m.random_uniform(1000, generator=gen(18), dtype=dtype)
    assert x.shape == (1000, m.ambient_dim) and x.dtype == dtype
    assert m.point_error(x).max().item() < 1e-6
    # a seeded generator reproduces the draw
    assert torch.equal(x, m.random_uniform(1000, generator=gen(18), dtype=dtype))


@pytest.mark.parametrize("d", [2, 3])
def test_uniform_sphere_points_have_mean_zero(d):
    """Each coordinate of a uniform point on S^d has mean 0 and variance 1/(d+1): the sample
    mean of 4000 draws is within 5 standard errors of 0."""
    n = 4000
    x = Sphere(d).random_uniform(n, generator=gen(19), dtype=F64)
    assert x.mean(0).abs().max().item() < 5 * math.sqrt(1 / (d + 1) / n)
    assert (x.pow(2).mean(0) - 1 / (d + 1)).abs().max().item() < 0.05


VOLUMES = [
    (Sphere(2), 4 * math.pi),
    (Sphere(3), 2 * math.pi**2),
    (FlatTorus(1), 2 * math.pi),
    (FlatTorus(3), (2 * math.pi) ** 3),
    (SO3(), 8 * math.pi**2),
    (Product(Sphere(2), FlatTorus(2)), 4 * math.pi * (2 * math.pi) ** 2),
]


@pytest.mark.parametrize(("m", "volume"), VOLUMES, ids=[repr(v[0]) for v in VOLUMES])
def test_volumes_and_the_uniform_log_density(m, volume):
    assert m.log_volume == pytest.approx(math.log(volume), rel=1e-12)
    x = m.random_uniform(10, generator=gen(20), dtype=F64)
    assert torch.allclose(m.base_log_prob(x), torch.full((10,), -math.log(volume), dtype=F64))
    assert torch.equal(m.random_base(10, generator=gen(20), dtype=F64), x)


def test_euclidean_base_is_the_standard_normal():
    m = Euclidean(3)
    x = m.random_base(4000, generator=gen(21), dtype=F64)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    assert (m.base_log_prob(x) - normal).abs().max().item() < 1e-12
    assert x.mean(0).abs().max().item() < 5 / math.sqrt(4000)
    assert (x.var(0) - 1).abs().max().item() < 0.1
    with pytest.raises(ValueError, match="not compact"):
        m.random_uniform(3)
    with pytest.raises(ValueError, match="not compact"):
        _ = m.log_volume


def test_product_with_a_euclidean_factor_has_a_mixed_base():
    """uniform x uniform x N(0, 1): the log-density is the sum of the factors'; there is no
    uniform distribution (ValueError)."""
    m = Product(FlatTorus(2), SO3(), Euclidean(1))
    assert not m.compact
    x = m.random_base(50, generator=gen(22), dtype=F64)
    assert m.point_error(x).max().item() < 1e-12
    expected = (
        -2 * math.log(2 * math.pi)
        - math.log(8 * math.pi**2)
        + torch.distributions.Normal(0.0, 1.0).log_prob(x[:, -1])
    )
    assert (m.base_log_prob(x) - expected).abs().max().item() < 1e-12
    with pytest.raises(ValueError):
        m.random_uniform(3)


# -------------------------------------------------------------------------------- files
@pytest.mark.parametrize("m", MANIFOLDS)
def test_to_dict_round_trip(m):
    spec = json.loads(json.dumps(m.to_dict()))
    back = manifold_from_dict(spec)
    assert back == m and type(back) is type(m) and hash(back) == hash(m)
    assert (back.dim, back.ambient_dim, back.feature_dim) == (m.dim, m.ambient_dim, m.feature_dim)
    assert repr(back) == repr(m)


def test_different_manifolds_are_not_equal():
    assert Sphere(2) != Sphere(3)
    assert FlatTorus(2) != Euclidean(2)
    assert Product(Sphere(2), FlatTorus(2)) != Product(FlatTorus(2), Sphere(2))


BAD_SPECS = [
    {"name": "hyperbolic", "dim": 2},
    {"name": "sphere", "dim": 0},
    {"name": "sphere", "dim": 2.5},
    {"name": "sphere", "dim": "2"},
    {"name": "torus", "dim": -1},
    {"name": "torus", "dim": True},
    {"name": "euclidean", "dim": 0},
    {"name": "product", "factors": []},
    {"name": "product"},
    {"name": "product", "factors": [{"name": "sphere", "dim": 2}, {"name": "nope"}]},
    {"name": "sphere", "dim": 2, "radius": 3},
    {"dim": 2},
    "sphere",
    None,
]


@pytest.mark.parametrize("spec", BAD_SPECS, ids=lambda s: json.dumps(s))
def test_bad_descriptions_raise_value_error(spec):
    with pytest.raises(ValueError):
        manifold_from_dict(spec)


def test_a_euclidean_description_without_dim_raises_value_error():
    with pytest.raises(ValueError):
        manifold_from_dict({"name": "euclidean"})


def test_an_so3_description_with_a_wrong_dim_raises_value_error():
    with pytest.raises(ValueError):
        manifold_from_dict({"name": "so3", "dim": 5})


def test_bad_constructor_arguments_raise_value_error():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            Sphere(bad)
        with pytest.raises(ValueError):
            FlatTorus(bad)
        with pytest.raises(ValueError):
            Euclidean(bad)
    with pytest.raises(ValueError):
        Product()
    with pytest.raises(ValueError):
        Product(Sphere(2), "torus")
