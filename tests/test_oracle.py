import math

import numpy as np
import pytest
import torch
from scipy import stats

import flowmatch as fm

PATHS = [
    fm.AffinePath(),
    fm.AffinePath(fm.schedules.Cosine()),
    fm.AffinePath(fm.schedules.VP()),
]


def eight_gaussians() -> fm.oracle.GaussianMixture:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 4.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    return fm.oracle.GaussianMixture(means, 0.5)


def mixture_16d() -> fm.oracle.GaussianMixture:
    g = torch.Generator().manual_seed(7)
    means = 3.0 * torch.randn(5, 16, generator=g, dtype=torch.float64)
    return fm.oracle.GaussianMixture(means, [0.3, 0.5, 0.8, 0.4, 0.6], [0.1, 0.3, 0.2, 0.25, 0.15])


def test_log_prob_matches_scipy():
    gm = mixture_16d()
    x = gm.sample(50, generator=torch.Generator().manual_seed(0)).double()
    expected = np.log(
        sum(
            float(w)
            * stats.multivariate_normal(m.numpy(), float(s) ** 2 * np.eye(16)).pdf(x.numpy())
            for m, s, w in zip(gm.means, gm.stds, gm.weights, strict=False)
        )
    )
    np.testing.assert_allclose(gm.log_prob(x).numpy(), expected, rtol=1e-10)


def test_sample_component_shares():
    gm = mixture_16d()
    n = 20_000
    x, labels = gm.sample_with_labels(n, generator=torch.Generator().manual_seed(1))
    assert x.shape == (n, 16) and x.dtype == torch.float32
    counts = torch.bincount(labels, minlength=5).double()
    sd = torch.sqrt(n * gm.weights * (1 - gm.weights))
    assert ((counts - n * gm.weights).abs() <= 3 * sd).all()
    # Well separated components: the most probable component is the true one.
    assert (gm.assign(x) == labels).float().mean() > 0.999


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("t_value", [0.3, 0.6, 0.9])
def test_velocity_matches_monte_carlo_conditional_expectation(path, t_value):
    """E[u_t | x_t = x] by self-normalized importance sampling over x1 ~ q."""
    gm = eight_gaussians()
    g = torch.Generator().manual_seed(2)
    x1 = gm.sample(400_000, generator=g).double()
    a, s, da, ds = (c.item() for c in path.schedule(torch.tensor([t_value], dtype=torch.float64)))
    # Query points drawn from p_t itself, so that they sit where the density is.
    x = a * gm.sample(6, generator=g).double() + s * torch.randn(
        6, 2, generator=g, dtype=torch.float64
    )
    v = gm.velocity(path)(x, torch.full((6,), t_value, dtype=torch.float64))
    for i in range(6):
        logw = -((x[i] - a * x1) ** 2).sum(1) / (2 * s * s)  # p(x_t = x | x1) up to a constant
        w = torch.softmax(logw, 0)
        u = da * x1 + ds * (x[i] - a * x1) / s  # conditional velocity of the pair (x0, x1)
        est = (w[:, None] * u).sum(0)
        ess = 1.0 / (w**2).sum()
        se = torch.sqrt((w[:, None] * (u - est) ** 2).sum(0) / ess)
        assert ess > 100
        assert ((v[i] - est).abs() <= 4 * se + 1e-3).all(), (v[i], est, se)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_velocity_and_density_satisfy_the_continuity_equation(path):
    # d/dt log p_t(x) + div v(x, t) + v . grad log p_t(x) = 0, checked with autograd in float64.
    gm = mixture_16d()
    g = torch.Generator().manual_seed(4)
    n = 16
    x = 2.0 * torch.randn(n, 16, generator=g, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    t.requires_grad_(True)
    logp = gm.log_prob_t(path, x, t)
    dlogp_dx, dlogp_dt = torch.autograd.grad(logp.sum(), (x, t), create_graph=False)
    v = gm.velocity(path)(x, t)
    div = sum(torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(16))
    residual = dlogp_dt + div + (v * dlogp_dx).sum(1)
    assert residual.abs().max().item() < 1e-8


def test_velocity_never_overflows():
    gm = eight_gaussians()
    x = torch.tensor([[1e4, -1e4], [0.0, 0.0], [50.0, 50.0]], dtype=torch.float32)
    for tv in (0.0, 0.5, 0.999, 1.0):
        v = gm.velocity()(x, torch.full((3,), tv))
        assert torch.isfinite(v).all()


@pytest.mark.parametrize(
    ("gm_factory", "n"), [(eight_gaussians, 4000), (mixture_16d, 3000)], ids=["2d", "16d"]
)
def test_dopri5_with_the_oracle_reaches_the_mixture(gm_factory, n):
    gm = gm_factory()
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(n, gm.dim, generator=g, dtype=torch.float64)
    res = fm.solve_ode(gm.velocity(), x0, method="dopri5", atol=1e-5, rtol=1e-5)
    gen, true = gm.log_prob(res.x), gm.log_prob(gm.sample(n, generator=g).double())
    se = math.sqrt(gen.var().item() / n + true.var().item() / n)
    assert abs(gen.mean().item() - true.mean().item()) <= 3 * se
    counts = torch.bincount(gm.assign(res.x), minlength=gm.num_components).double()
    sd = torch.sqrt(n * gm.weights * (1 - gm.weights))
    assert ((counts - n * gm.weights).abs() <= 3 * sd).all(), counts


def test_bad_parameters():
    with pytest.raises(ValueError, match="means"):
        fm.oracle.GaussianMixture([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="stds"):
        fm.oracle.GaussianMixture([[0.0], [1.0]], [1.0, 0.0])
    with pytest.raises(ValueError, match="stds"):
        fm.oracle.GaussianMixture([[0.0], [1.0]], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="weights"):
        fm.oracle.GaussianMixture([[0.0], [1.0]], 1.0, [-1.0, 2.0])
    gm = eight_gaussians()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        gm.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="t must have shape"):
        gm.velocity()(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="n must be"):
        gm.sample(0)
