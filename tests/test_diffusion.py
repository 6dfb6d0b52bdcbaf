"""DDPM / DDIM on our paths: the discrete schedule, its timesteps, the sampler steps, and
sampling the Gaussian-mixture oracle with them."""

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.diffusion import (
    ddim_step,
    ddpm_step,
    diffusion_times,
    posterior_variance,
    solve_diffusion,
)
from flowmatch.schedules import DDPM

DDPM_PATHS = [
    fm.AffinePath(DDPM()),
    fm.AffinePath(DDPM(betas="cosine")),
]
GAUSSIAN_PATHS = [*DDPM_PATHS, fm.AffinePath(fm.schedules.VP()), fm.AffinePath()]
PATH_IDS = ["ddpm-linear", "ddpm-cosine", "vp", "linear"]


def eight_gaussians() -> fm.oracle.GaussianMixture:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return fm.oracle.GaussianMixture(4.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.5)


def assert_reaches_mixture(gm: fm.oracle.GaussianMixture, x: torch.Tensor, seed: int) -> None:
    """Mean log-density within 3 standard errors of true samples', mode counts within 3 sd."""
    n = x.shape[0]
    assert torch.isfinite(x).all()
    true = gm.log_prob(gm.sample(n, generator=torch.Generator().manual_seed(seed)).double())
    gen = gm.log_prob(x.double())
    se = math.sqrt(gen.var().item() / n + true.var().item() / n)
    assert abs(gen.mean().item() - true.mean().item()) <= 3 * se, (gen.mean(), true.mean(), se)
    counts = torch.bincount(gm.assign(x.double()), minlength=gm.num_components).double()
    sd = torch.sqrt(n * gm.weights * (1 - gm.weights))
    assert ((counts - n * gm.weights).abs() <= 3 * sd).all(), counts


# ------------------------------------------------------------------------------ the schedule


def test_ddpm_linear_schedule_is_ddpms():
    """abar_k = prod (1 - beta_i) with DDPM's linear betas; at t_k = 1 - (k+1)/T the path's
    alpha, sigma are sqrt(abar_k), sqrt(1 - abar_k) (1e-6: float32 times, float64 grid)."""
    sched = DDPM(timesteps=1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(sched.alphas_cumprod(), abar, rtol=1e-12, atol=0)
    k = torch.tensor([999, 500, 10, 0, -1])
    out = sched(sched.timestep_times(k))
    expect = torch.cat([abar, torch.ones(1, dtype=torch.float64)])[k]
    torch.testing.assert_close(out.alpha_t.double(), expect.sqrt(), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.sigma_t.double(), (1 - expect).sqrt(), rtol=0, atol=1e-6)
    assert out.alpha_t[-1] == 1 and out.sigma_t[-1] == 0


def test_ddpm_cosine_schedule_is_nichol_dhariwal():
    """abar_k = f(k+1)/f(0), f(u) = cos^2((u/T + s)/(1 + s) pi/2), s = 0.008, when no beta hits
    the 0.999 cap (all but the last few timesteps)."""
    sched = DDPM(timesteps=200, betas="cosine")
    u = torch.arange(201, dtype=torch.float64) / 200
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(
        sched.alphas_cumprod()[:190], (f[1:] / f[0])[:190], rtol=1e-10, atol=0
    )
    assert (sched.alphas_cumprod().diff() < 0).all()


def test_ddpm_schedule_is_piecewise_linear_between_timesteps():
    """Between two timesteps alpha and sigma are linear in t with the derivative the schedule
    reports (finite difference exact up to float64 rounding, 1e-8)."""
    sched = DDPM(timesteps=10)
    t = torch.tensor([0.0, 0.03, 0.55, 0.91, 0.97, 1.0], dtype=torch.float64)
    h = 1e-4  # inside one segment (width 0.1) for each of these times
    lo, hi, mid = sched(t - h * (t > 0)), sched(t + h * (t < 1)), sched(t)
    width = (h * (t > 0) + h * (t < 1)).double()
    torch.testing.assert_close((hi.alpha_t - lo.alpha_t) / width, mid.d_alpha_t, rtol=0, atol=1e-8)
    torch.testing.assert_close((hi.sigma_t - lo.sigma_t) / width, mid.d_sigma_t, rtol=0, atol=1e-8)
    assert all(torch.isfinite(c).all() for c in mid)


def test_ddpm_schedule_parameters():
    assert DDPM() == DDPM(1000, "linear", 1e-4, 0.02)
    assert DDPM() != DDPM(betas="cosine") and hash(DDPM()) == hash(DDPM())
    for bad, match in [
        (dict(timesteps=1), "timesteps"),
        (dict(timesteps=10.0), "timesteps"),
        (dict(betas="quadratic"), "betas"),
        (dict(beta_start=0.0), "beta_start"),
        (dict(beta_end=1e-5), "beta_end"),
        (dict(beta_end=1.0), "beta_end"),
    ]:
        with pytest.raises(ValueError, match=match):
            DDPM(**bad)
    assert fm.schedules.SCHEDULES["ddpm"] is DDPM


def test_discrete_time_sampler_draws_ddpm_timesteps():
    sampler = fm.time.Discrete(10)
    t = sampler(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = torch.round((1 - t) * 10 - 1).long()
    torch.testing.assert_close(t, 1 - (k + 1).double() / 10, rtol=0, atol=1e-12)
    assert set(k.tolist()) == set(range(10))
    again = sampler(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(t, again)
    with pytest.raises(ValueError, match="timesteps"):
        fm.time.Discrete(1)


# ---------------------------------------------------------------------------- the timesteps


def test_trailing_and_leading_timesteps():
    path = fm.AffinePath(DDPM(timesteps=1000))

    def ks(times):
        return torch.round((1 - times) * 1000 - 1).long().tolist()

    assert ks(diffusion_times(path, 1)) == [999, -1]
    assert ks(diffusion_times(path, 4)) == [999, 749, 499, 249, -1]
    assert ks(diffusion_times(path, 4, spacing="leading")) == [750, 500, 250, 0, -1]
    assert ks(diffusion_times(path, 1000)) == [*range(999, -1, -1), -1]
    assert diffusion_times(path, 7)[-1] == 1.0
    torch.testing.assert_close(
        diffusion_times(fm.AffinePath(fm.schedules.VP()), 4),
        torch.tensor([0, 0.25, 0.5, 0.75, 1], dtype=torch.float64),
    )


def test_steps_must_fit_the_training_schedule():
    path = fm.AffinePath(DDPM(timesteps=100))
    with pytest.raises(ValueError, match=r"steps=101 .*100 timesteps"):
        diffusion_times(path, 101)
    with pytest.raises(ValueError, match="steps"):
        diffusion_times(path, 0)
    with pytest.raises(ValueError, match="spacing"):
        diffusion_times(path, 4, spacing="linspace")


# --------------------------------------------------------------------------------- the steps


@pytest.mark.parametrize("path", GAUSSIAN_PATHS[:3], ids=PATH_IDS[:3])
def test_ddpm_step_equals_ddim_with_eta_one(path):
    """Ancestral DDPM and DDIM(eta=1) are the same step (Song et al. 2021, sec. 4.1), written
    differently here: equal to float32 rounding (1e-5) given the same estimates and noise."""
    g = torch.Generator().manual_seed(0)
    x_t, x1_hat, z = (torch.randn(64, 3, generator=g) for _ in range(3))
    t = torch.full((64,), 0.3)
    s = torch.full((64,), 0.45)
    eps_hat = path.convert(x1_hat, src="x1", dst="x0", x_t=x_t, t=t)
    a = ddpm_step(path, x_t, x1_hat, t, s, noise=z)
    b = ddim_step(path, x_t, x1_hat, eps_hat, t, s, eta=1.0, noise=z)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", GAUSSIAN_PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("method", ["ddpm", "ddim-0", "ddim-0.5"])
def test_steps_keep_the_path_marginal_of_a_point_mass(path, method):
    """For data at one point c the estimates are exact, and x_t ~ N(alpha_t c, sigma_t^2) must
    step to x_s ~ N(alpha_s c, sigma_s^2) (the posterior's defining property). Monte Carlo
    with n = 200k: mean within 4e-3 + 1e-3 |alpha_s c| and variance within 2% (> 5 SE)."""
    g = torch.Generator().manual_seed(1)
    n, c = 200_000, torch.tensor([1.5, -2.0], dtype=torch.float64)
    t = torch.full((n,), 0.35, dtype=torch.float64)
    s = torch.full((n,), 0.6, dtype=torch.float64)
    a_t, s_t = path.schedule(t[:1])[:2]
    a_s, s_s = path.schedule(s[:1])[:2]
    x_t = a_t * c + s_t * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1_hat = c.expand(n, 2)
    eps_hat = (x_t - a_t * c) / s_t
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    if method == "ddpm":
        x_s = ddpm_step(path, x_t, x1_hat, t, s, noise=z)
    else:
        eta = float(method.split("-")[1])
        x_s = ddim_step(path, x_t, x1_hat, eps_hat, t, s, eta=eta, noise=z)
    torch.testing.assert_close(
        x_s.mean(0), a_s * c, rtol=0, atol=4e-3 + 1e-3 * (a_s * c).abs().max().item()
    )
    torch.testing.assert_close(x_s.var(0), (s_s**2).expand(2), rtol=0.02, atol=0)


def test_posterior_variance_is_ddpms_and_vanishes_at_the_data():
    """On a DDPM path between timesteps k and k' < k it is (1 - abar_k')/(1 - abar_k) (1 -
    abar_k / abar_k') (Ho et al. eq. 7 for k' = k - 1; DDIM eq. 16 in general)."""
    sched = DDPM(timesteps=1000)
    path, abar = fm.AffinePath(sched), sched.alphas_cumprod()
    like = torch.zeros(1, 2, dtype=torch.float64)
    for k, kp in [(999, 899), (500, 499), (10, 0)]:
        t = sched.timestep_times(torch.tensor([k])).double()
        s = sched.timestep_times(torch.tensor([kp])).double()
        var = posterior_variance(path, t, s, like).item()
        expect = (1 - abar[kp]) / (1 - abar[k]) * (1 - abar[k] / abar[kp])
        assert var == pytest.approx(expect.item(), rel=1e-4)
    t1 = torch.ones(1, dtype=torch.float64)
    assert posterior_variance(path, torch.tensor([0.5], dtype=torch.float64), t1, like).item() == 0


def test_step_bad_input():
    path = fm.AffinePath(DDPM())
    x, t, s = torch.randn(4, 2), torch.full((4,), 0.2), torch.full((4,), 0.4)
    for eta in (-0.1, 1.5, float("nan"), True, "0"):
        with pytest.raises(ValueError, match="eta"):
            ddim_step(path, x, x, x, t, s, eta=eta, noise=x)
    with pytest.raises(ValueError, match="noise draw"):
        ddim_step(path, x, x, x, t, s, eta=0.5)
    with pytest.raises(ValueError, match="noise must have the shape"):
        ddpm_step(path, x, x, t, s, noise=torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"s must have shape \(4,\)"):
        ddpm_step(path, x, x, t, s[:2])


# ------------------------------------------------------------------------- sampling the oracle


@pytest.mark.parametrize("path", [DDPM_PATHS[0], GAUSSIAN_PATHS[2]], ids=["ddpm-linear", "vp"])
@pytest.mark.parametrize(
    ("method", "steps", "eta"), [("ddim", 100, 0.0), ("ddim", 250, 0.5), ("ddpm", 1000, 0.0)]
)
def test_diffusion_samplers_with_the_oracle_reach_the_mixture(path, method, steps, eta):
    """The exact posterior mean E[x1 | x_t] of the 8-Gaussian mixture, sampled by DDIM/DDPM,
    gives the mixture: mean log-density and mode counts within 3 standard errors (n = 4000)."""
    gm = eight_gaussians()
    n = 4000
    g = torch.Generator().manual_seed(3)

    def predict(x, t):
        return gm.posterior_mean(path, x, t)[0]

    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    res = solve_diffusion(
        predict, x0, path=path, kind="x1", steps=steps, method=method, eta=eta, generator=g
    )
    assert res.nfe == steps
    assert_reaches_mixture(gm, res.x, seed=4)


def test_diffusion_sampler_nfe_trajectory_and_determinism():
    path = fm.AffinePath(DDPM(timesteps=100))
    calls = []

    def predict(x, t):
        calls.append(t[0].item())
        return torch.zeros_like(x)  # epsilon = 0: x1_hat = x_t / alpha_t

    x0 = torch.randn(5, 2)
    res = solve_diffusion(predict, x0, path=path, steps=10, method="ddim", return_trajectory=True)
    assert res.nfe == 10 and len(calls) == 10 and res.trajectory.shape == (11, 5, 2)
    assert torch.equal(res.trajectory[0], x0) and torch.equal(res.trajectory[-1], res.x)
    torch.testing.assert_close(torch.tensor(calls), res.times[:-1], rtol=0, atol=1e-7)
    runs = [
        solve_diffusion(
            predict,
            x0,
            path=path,
            steps=10,
            method="ddpm",
            generator=torch.Generator().manual_seed(9),
        ).x
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="method"):
        solve_diffusion(predict, x0, path=path, steps=10, method="euler")
    with pytest.raises(ValueError, match="kind"):
        solve_diffusion(predict, x0, path=path, steps=10, kind="noise")


# -------------------------------------------------------------------- through fm.sample / models


class Oracle(nn.Module):
    """A net predicting the oracle's exact epsilon on a path (a perfect DDPM)."""

    def __init__(self, gm, path):
        super().__init__()
        self.gm, self.oracle_path = gm, path
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        return self.gm.posterior_mean(self.oracle_path, x.double(), t.double())[1].to(x.dtype)


def oracle_model(gm, path):
    return fm.FlowModel(Oracle(gm, path), path=path, prediction="epsilon")


def test_sample_dispatches_to_the_diffusion_samplers():
    gm, path = eight_gaussians(), fm.AffinePath(DDPM())
    model = oracle_model(gm, path)
    x0 = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0))
    res = fm.generate(model, x0, steps=50, method="ddim")
    assert res.nfe == 50 and model.net.calls == 50
    assert_reaches_mixture(gm, res.x, seed=1)
    same = solve_diffusion(model, x0, path=path, kind="epsilon", steps=50, method="ddim")
    assert torch.equal(res.x, same.x)
    g1, g2 = (torch.Generator().manual_seed(2) for _ in range(2))
    a = fm.sample(model, x0[:10], steps=20, method="ddim", eta=0.7, generator=g1)
    b = fm.sample(model, x0[:10], steps=20, method="ddim", eta=0.7, generator=g2)
    assert torch.equal(a, b)
    # the probability-flow ODE of the same epsilon model, through path.convert
    ode = fm.sample(model, x0, steps=50, method="midpoint")
    assert_reaches_mixture(gm, ode, seed=5)


def test_sample_bad_diffusion_input():
    model = oracle_model(eight_gaussians(), fm.AffinePath(DDPM(timesteps=100)))
    x0 = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"steps=200 .*100 timesteps"):
        fm.sample(model, x0, steps=200, method="ddpm")
    with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\].*1.5"):
        fm.sample(model, x0, steps=10, method="ddim", eta=1.5)
    with pytest.raises(ValueError, match="method must be one of"):
        fm.sample(model, x0, steps=10, method="ddim2")
    with pytest.raises(ValueError, match="takes a number of steps"):
        fm.sample(model, x0, steps=None, method="ddpm")
