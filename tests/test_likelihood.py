"""Log-likelihoods: exact and Hutchinson divergences against closed-form densities."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.likelihood import bits_per_dim, log_likelihood, standard_normal_log_prob

pytestmark = pytest.mark.usefixtures("one_thread")


def mixture(dim: int, seed: int = 0) -> fm.oracle.GaussianMixture:
    """Three components with random means (scale 2) and std 0.5."""
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(3, dim, generator=g, dtype=torch.float64)
    return fm.oracle.GaussianMixture(means, 0.5)


def normal_log_prob(x: torch.Tensor, mu: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; mu, std^2 I) summed over all but the first dimension, via torch.distributions."""
    return torch.distributions.Normal(mu, std).log_prob(x).flatten(1).sum(1)


@pytest.mark.parametrize("dim", [2, 16])
def test_exact_matches_the_mixture_density(dim):
    """Exact divergence with the oracle velocity recovers log q(x1), on and off the data."""
    gm = mixture(dim)
    g = torch.Generator().manual_seed(1)
    on = gm.sample(200, generator=g).double()
    far = gm.means[:1] + 4.0 * torch.randn(5, dim, generator=g, dtype=torch.float64)
    assert (gm.log_prob(far) < gm.log_prob(on).min()).all()  # really far from the mixture
    for x in (on, far):
        res = log_likelihood(
            gm.velocity(), x, method="exact", atol=1e-6, rtol=1e-6, return_result=True
        )
        # The bar is 1e-2 nats; measured ~5e-6 (2-D) and ~4e-5 (16-D) on the data,
        # ~5e-5 and ~7e-4 on the far points (dopri5 tolerance 1e-6, float64).
        assert (res.log_prob - gm.log_prob(x)).abs().mean().item() <= 1e-2
        assert res.nfe > 0 and torch.equal(res.std_err, torch.zeros_like(res.log_prob))


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_mean_is_within_three_standard_errors(probe):
    """The Hutchinson estimate is unbiased: its mean over points is near the true mean."""
    gm = mixture(16)
    n = 100
    x = gm.sample(n, generator=torch.Generator().manual_seed(2)).double()
    res = log_likelihood(
        gm.velocity(),
        x,
        method="hutchinson",
        num_probes=8,
        probe=probe,
        generator=torch.Generator().manual_seed(3),
        return_result=True,
    )
    assert res.log_prob.shape == res.std_err.shape == (n,)
    assert (res.std_err > 0).all() and torch.isfinite(res.std_err).all()
    # Points are independent, so the standard error of the mean is sqrt(sum se_i^2) / N (the
    # dopri5 error, ~1e-4 nats, is negligible next to it).
    se = res.std_err.pow(2).sum().sqrt().item() / n
    diff = (res.log_prob.mean() - gm.log_prob(x).mean()).abs().item()
    assert diff <= 3 * se, (diff, se)


def test_hutchinson_with_a_seeded_generator_is_reproducible():
    gm = mixture(16)
    x = gm.sample(20, generator=torch.Generator().manual_seed(2)).double()

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return log_likelihood(
            gm.velocity(), x, method="hutchinson", generator=gen, return_result=True
        )

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a.log_prob, b.log_prob) and torch.equal(a.std_err, b.std_err)
    assert a.nfe == b.nfe
    assert not torch.equal(a.log_prob, c.log_prob)  # the probes do depend on the seed


def test_std_err_of_one_probe_is_nan_and_of_exact_is_zero():
    gm = mixture(2)
    x = gm.sample(10).double()
    one = log_likelihood(gm.velocity(), x, method="hutchinson", num_probes=1, return_result=True)
    assert torch.isnan(one.std_err).all() and torch.isfinite(one.log_prob).all()
    exact = log_likelihood(gm.velocity(), x, return_result=True)
    assert torch.equal(exact.std_err, torch.zeros(10, dtype=torch.float64)) and exact.nfe > 0
    plain = log_likelihood(gm.velocity(), x)
    assert isinstance(plain, torch.Tensor) and torch.equal(plain, exact.log_prob)


@pytest.mark.parametrize(
    "schedule", [fm.schedules.Linear(), fm.schedules.Cosine()], ids=["linear", "cosine"]
)
def test_gaussian_to_gaussian_is_the_closed_form(gaussian_flow, schedule):
    """The flow N(0, I) -> N(mu, s^2 I) gives log N(x; mu, s^2 I) exactly."""
    mu = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
    flow = gaussian_flow(schedule, mu, 0.3)
    x = mu + 0.6 * torch.randn(50, 3, dtype=torch.float64)  # twice the spread: tails too
    out = log_likelihood(flow.velocity, x, atol=1e-8, rtol=1e-8)
    # dopri5 at tolerance 1e-8 in float64: measured max error ~1e-7 nats.
    torch.testing.assert_close(out, normal_log_prob(x, mu, 0.3), rtol=0, atol=1e-5)


def test_fixed_step_solver_works(gaussian_flow):
    """rk4 with 50 steps: no error control, so the closed form holds to 1e-4, not 1e-5."""
    gm = mixture(2)
    x = gm.sample(100, generator=torch.Generator().manual_seed(4)).double()
    res = log_likelihood(gm.velocity(), x, solver="rk4", steps=50, return_result=True)
    assert res.nfe == 200
    # rk4's global error is O(h^4) with h = 0.02 and no error control, so a fixed margin over
    # the measured error (mean ~2e-6 nats, max ~4e-5) stands in for dopri5's tolerance
    assert (res.log_prob - gm.log_prob(x)).abs().mean().item() <= 1e-3
    mu = torch.tensor([1.0, -1.0], dtype=torch.float64)
    flow = gaussian_flow(fm.schedules.Linear(), mu, 0.5)
    out = log_likelihood(flow.velocity, x, solver="rk4", steps=50)
    # the Gaussian flow is smooth: measured max error ~1e-6, 10x looser than the dopri5 bar
    torch.testing.assert_close(out, normal_log_prob(x, mu, 0.5), rtol=0, atol=1e-4)


def test_untrained_module():
    """A model trained for 0 steps gives a finite (B,) log-likelihood through model_velocity."""
    model = fm.models.MLP(dim=2, hidden=16, depth=2)
    x = torch.randn(8, 2)
    out = fm.log_likelihood(model, x)
    assert out.shape == (8,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    # the same as scoring the model's velocity callable (the same solve, up to float32 rounding)
    ref = fm.log_likelihood(fm.model_velocity(model), x)
    torch.testing.assert_close(out, ref)
    assert not any(p.grad is not None for p in model.parameters())  # no gradients left behind


class Scale(nn.Module):
    """A conditional velocity v(x, t) = c x: the flow scales x by e^{c t}."""

    def forward(self, x, t, cond=None):
        c = torch.zeros(x.shape[0], dtype=x.dtype) if cond is None else cond.to(x.dtype)
        return c.view(-1, *([1] * (x.ndim - 1))) * x


def test_conditioning_reaches_the_model():
    """cond is passed to the model; for v = c x, log p(x1) = log N(x1 e^{-c}) - c D."""
    x = torch.randn(6, 3, dtype=torch.float64)
    cond = torch.tensor([0.0, 0.5, -0.5, 1.0, 0.2, -1.0], dtype=torch.float64)
    out = fm.log_likelihood(Scale(), x, cond=cond, atol=1e-8, rtol=1e-8)
    expected = standard_normal_log_prob(x * torch.exp(-cond)[:, None]) - 3 * cond
    # dopri5 at tolerance 1e-8 in float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    unconditional = fm.log_likelihood(Scale(), x, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(unconditional, standard_normal_log_prob(x), rtol=0, atol=1e-6)
    assert (out - unconditional)[1:].abs().min() > 0.1  # the result changes with cond


def test_custom_source_log_prob_is_used():
    gm = mixture(2)
    x = gm.sample(10).double()
    base = log_likelihood(gm.velocity(), x)
    shifted = log_likelihood(
        gm.velocity(), x, source_log_prob=lambda z: standard_normal_log_prob(z) + 3.0
    )
    # the same solve (the source density is applied after it): exact up to rounding
    torch.testing.assert_close(shifted, base + 3.0)


def test_data_with_several_dimensions_is_flattened(gaussian_flow):
    """Points of shape (B, 2, 3): the 6-D Gaussian flow applied to reshaped data."""
    mu = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
    flow = gaussian_flow(fm.schedules.Linear(), mu, 0.4)
    calls = []

    def velocity(x, t):
        calls.append(x.shape)
        return flow.velocity(x.reshape(x.shape[0], 6), t).reshape(x.shape)

    x = (mu + 0.4 * torch.randn(20, 6, dtype=torch.float64)).reshape(20, 2, 3)
    out = log_likelihood(velocity, x, atol=1e-8, rtol=1e-8)
    assert out.shape == (20,) and set(calls) == {torch.Size([20, 2, 3])}
    # dopri5 at tolerance 1e-8 in float64, as for the flat closed form
    torch.testing.assert_close(out, normal_log_prob(x.reshape(20, 6), mu, 0.4), rtol=0, atol=1e-5)


def test_bits_per_dim_by_hand():
    """With 256 levels over a range of 2 a cell has side 2^-7: bits/dim = 7 - log p / (D ln 2)."""
    d = 10
    log_prob = torch.tensor([0.0, -d * math.log(2.0), 3 * d * math.log(2.0)], dtype=torch.float64)
    out = bits_per_dim(log_prob, d)
    # exact arithmetic up to float64 rounding
    torch.testing.assert_close(out, torch.tensor([7.0, 8.0, 4.0], dtype=torch.float64))
    # 2 levels over [0, 1): cells of side 1/2, so log p = 0 is 1 bit per dimension
    one = bits_per_dim(torch.zeros(1, dtype=torch.float64), 3, data_range=1.0, levels=2)
    torch.testing.assert_close(one, torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim": 0},
        {"dim": -1},
        {"levels": 0},
        {"data_range": 0.0},
        {"data_range": -2.0},
        {"data_range": math.nan},
    ],
    ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()),
)
def test_bits_per_dim_bad_input(kwargs):
    args = {"dim": 2, **kwargs}
    with pytest.raises(ValueError, match="dim and levels"):
        bits_per_dim(torch.zeros(3), args.pop("dim"), **args)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"method": "magic"}, "method"),
        ({"probe": "uniform"}, "probe"),
        ({"num_probes": 0}, "num_probes"),
        ({"num_probes": True}, "num_probes"),
        ({"num_probes": 1.5}, "num_probes"),
    ],
    ids=["method", "probe", "probes-0", "probes-bool", "probes-float"],
)
def test_bad_arguments_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        log_likelihood(mixture(2).velocity(), torch.randn(4, 2), **kwargs)


def test_bad_data_is_named():
    v = mixture(2).velocity()
    with pytest.raises(ValueError, match="x1"):
        log_likelihood(v, torch.randn(4))
    x = torch.randn(4, 2)
    x[2, 1] = math.nan
    with pytest.raises(ValueError, match="x1"):
        log_likelihood(v, x)
    x[2, 1] = math.inf
    with pytest.raises(ValueError, match="x1"):
        log_likelihood(v, x)


def test_standard_normal_log_prob_matches_torch_distributions():
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum((1, 2))
    torch.testing.assert_close(standard_normal_log_prob(x), ref)
    assert standard_normal_log_prob(x).shape == (7,)


def test_per_sample_error_norm_bounds_the_worst_point():
    """One point between two narrow modes (the hard one) among 199 easy ones: with the batch
    RMS error, dopri5 lets the hard point's error grow (measured 6.8e-3 nats); measuring each
    point's error (``per_sample``) keeps it near the tolerance (7.9e-4) for a few more steps.
    The 2x margin below is far from both measurements."""
    torch.manual_seed(0)
    means = torch.tensor([[3.0, 0.0], [-3.0, 0.0]], dtype=torch.float64)
    gm = fm.oracle.GaussianMixture(means, 0.2)
    velocity = gm.velocity(fm.AffinePath())
    x = torch.cat([gm.sample(199).double(), torch.tensor([[0.0, 0.5]], dtype=torch.float64)])
    errors, nfes = {}, {}
    for norm in ("batch", "per_sample"):
        res = fm.log_likelihood(velocity, x, error_norm=norm, return_result=True)
        errors[norm] = float((res.log_prob - gm.log_prob(x)).abs().max())
        nfes[norm] = res.nfe
    assert errors["per_sample"] < 0.5 * errors["batch"]
    assert nfes["per_sample"] >= nfes["batch"]
    with pytest.raises(ValueError, match="error_norm"):
        fm.log_likelihood(velocity, x, error_norm="max")
