"""SDE sampling of flows: the deterministic limit, and the Gaussian-mixture oracle reached by
both the ODE and the SDE."""

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.sde import solve_sde
from test_diffusion import assert_reaches_mixture, eight_gaussians

PATHS = [fm.AffinePath(), fm.AffinePath(fm.schedules.Cosine()), fm.AffinePath(fm.schedules.VP())]
IDS = ["linear", "cosine", "vp"]


class VelocityOracle(nn.Module):
    def __init__(self, gm, path):
        super().__init__()
        self.velocity, self.flow_path = gm.velocity(path), path

    def forward(self, x, t):
        return self.velocity(x, t)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_zero_noise_is_the_euler_ode(path):
    """g = 0 takes exactly Euler's steps (equal to float64 rounding, 1e-12)."""
    v = eight_gaussians().velocity(path)
    x0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sde = solve_sde(v, x0, path=path, steps=20, noise=0.0)
    ode = fm.solve_ode(v, x0, steps=20, method="euler")
    assert sde.nfe == ode.nfe == 20
    torch.testing.assert_close(sde.x, ode.x, rtol=0, atol=1e-12)
    zero = solve_sde(v, x0, path=path, steps=20, noise=lambda t: torch.zeros_like(t))
    torch.testing.assert_close(zero.x, ode.x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
@pytest.mark.parametrize("noise", [0.5, 1.0])
def test_sde_with_the_oracle_reaches_the_mixture(path, noise):
    """With the exact marginal velocity, the SDE (400 Euler-Maruyama steps) and the ODE reach
    the 8-Gaussian mixture: mean log-density and mode counts within 3 standard errors."""
    gm = eight_gaussians()
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    res = solve_sde(gm.velocity(path), x0, path=path, steps=400, noise=noise, generator=g)
    assert_reaches_mixture(gm, res.x, seed=12)
    ode = fm.solve_ode(gm.velocity(path), x0, steps=100, method="midpoint")
    assert_reaches_mixture(gm, ode.x, seed=13)


def test_sde_noise_corrects_a_wrong_start():
    """The SDE forgets errors of its state: started from N(0, 2^2 I) instead of N(0, I), its
    samples are closer to the mixture (mean log-density) than the ODE's from the same start."""
    gm, path = eight_gaussians(), fm.AffinePath()
    g = torch.Generator().manual_seed(0)
    x0 = 2.0 * torch.randn(3000, 2, generator=g, dtype=torch.float64)
    ode = fm.solve_ode(gm.velocity(path), x0, steps=200, method="euler").x
    sde = solve_sde(gm.velocity(path), x0, path=path, steps=200, noise=2.0, generator=g).x
    assert gm.log_prob(sde).mean() > gm.log_prob(ode).mean() + 0.1


def test_sample_sde_with_a_model_nfe_and_determinism():
    gm, path = eight_gaussians(), fm.AffinePath(fm.schedules.Cosine())
    model = VelocityOracle(gm, path)
    x0 = torch.randn(100, 2, dtype=torch.float64)
    runs = [
        fm.sample_sde(model, x0, steps=30, generator=torch.Generator().manual_seed(4))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    res = fm.generate(
        model,
        x0,
        steps=30,
        method="sde",
        generator=torch.Generator().manual_seed(4),
        return_trajectory=True,
    )
    assert torch.equal(res.x, runs[0]) and res.nfe == 30 and res.trajectory.shape == (31, 100, 2)
    same = fm.sample(model, x0, steps=30, method="sde", generator=torch.Generator().manual_seed(4))
    assert torch.equal(same, runs[0])


def test_sde_bad_noise():
    path = fm.AffinePath()
    v = eight_gaussians().velocity(path)
    x0 = torch.randn(4, 2, dtype=torch.float64)
    for bad in (-1.0, float("inf"), "1", True):
        with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
            solve_sde(v, x0, path=path, steps=3, noise=bad)
    with pytest.raises(ValueError, match="noise\\(t\\) must return"):
        solve_sde(v, x0, path=path, steps=3, noise=lambda t: 1.0)
    with pytest.raises(ValueError, match="steps"):
        solve_sde(v, x0, path=path, steps=0)
    assert math.isfinite(solve_sde(v, x0, path=path, steps=3).x.sum().item())
