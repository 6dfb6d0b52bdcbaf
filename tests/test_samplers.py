"""The sampler registry: one signature, exact NFE, the one time grid, trajectories."""

import pytest
import torch

import flowmatch as fm
from flowmatch.diffusion import DiffusionOptions
from flowmatch.samplers import SAMPLERS, Sampler, get_sampler, register_sampler, run_sampler
from flowmatch.sde import SDEOptions
from flowmatch.solvers import AdaptiveOptions, time_grid


def _options(name, path):
    return get_sampler(name).make_options(path=path, eta=0.5, noise=1.0, atol=1e-6, rtol=1e-6)


def test_every_builtin_sampler_is_registered_in_order():
    assert list(SAMPLERS)[:5] == ["euler", "midpoint", "heun", "rk4", "dopri5"]
    assert {"sde", "ddpm", "ddim", "average"} <= set(SAMPLERS)
    assert {n for n, s in SAMPLERS.items() if s.needs_score} == {"sde", "ddpm", "ddim"}
    assert [n for n, s in SAMPLERS.items() if s.field == "average"] == ["average"]
    assert isinstance(get_sampler("dopri5").make_options(atol=1e-3), AdaptiveOptions)
    path = fm.AffinePath()
    assert isinstance(_options("sde", path), SDEOptions)
    assert isinstance(_options("ddim", path), DiffusionOptions)
    assert get_sampler("euler").make_options(path=path) is None


@pytest.mark.parametrize("name", ["euler", "midpoint", "heun", "rk4", "sde", "ddpm", "ddim"])
def test_one_signature_exact_nfe_and_a_callback_per_step(name):
    """Every fixed-step sampler calls the field exactly stages x steps times on the grid of
    time_grid (from 0 to 1) and reports that NFE; the callback sees every step's state."""
    sampler, path = get_sampler(name), fm.AffinePath(fm.schedules.VP())
    calls, seen = [], []

    def velocity(x, t):
        calls.append(t[0].item())
        return -x

    options = _options(name, path)
    times = sampler.times(5, options)
    torch.testing.assert_close(times, time_grid(5, dtype=torch.float64))
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    res = sampler.run(
        velocity,
        x0,
        times,
        generator=torch.Generator().manual_seed(1),
        callback=lambda k, x: seen.append((k, x)),
        options=options,
    )
    assert res.nfe == len(calls) == sampler.stages * 5
    assert [k for k, _ in seen] == [1, 2, 3, 4, 5] and torch.equal(seen[-1][1], res.x)
    assert min(calls) >= 0.0 and max(calls) <= 1.0


def test_run_sampler_returns_the_trajectory_and_matches_solve_ode():
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = time_grid(8, dtype=torch.float64)
    res = run_sampler("rk4", lambda x, t: -x, x0, times, return_trajectory=True)
    assert res.trajectory.shape == (9, 6, 2) and torch.equal(res.trajectory[0], x0)
    ref = fm.solve_ode(lambda x, t: -x, x0, steps=8, method="rk4")
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=0)
    # rk4 on dx/dt = -x: exp(-1) to its 4th-order error (h = 1/8: ~1e-6)
    torch.testing.assert_close(res.x, x0 * torch.exp(torch.tensor(-1.0)), rtol=1e-5, atol=1e-6)


def test_ddpm_grid_is_its_timesteps_and_continuous_ones_time_grid():
    ddpm = fm.AffinePath(fm.schedules.DDPM(timesteps=100))
    times = get_sampler("ddim").times(4, DiffusionOptions(ddpm))
    assert times[-1] == 1.0 and times[0] == 0.0 and times.shape == (5,)
    k = torch.round((1 - times[:-1]) * 100 - 1)
    assert k.tolist() == [99.0, 74.0, 49.0, 24.0]  # trailing spacing
    cont = get_sampler("ddim").times(4, DiffusionOptions(fm.AffinePath()))
    torch.testing.assert_close(cont, time_grid(4, dtype=torch.float64))


def test_meanflow_jumps_use_the_time_grid():
    seen = []

    def average(x, r, t):
        seen.append((r[0].item(), t[0].item()))
        return torch.ones_like(x)

    res = run_sampler("average", average, torch.zeros(2, 1), time_grid(4, dtype=torch.float64))
    assert res.nfe == 4 and seen == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    torch.testing.assert_close(res.x, torch.ones(2, 1))


def test_a_user_sampler_plugs_into_generate():
    """A registered sampler is usable by name in fm.generate, like the built-in ones."""

    def two_euler_halves(velocity, x, times, *, generator=None, callback=None, options=None):
        grid = times.to(x.dtype)
        nfe = 0
        for k in range(grid.shape[0] - 1):
            h = float(grid[k + 1] - grid[k])
            t = grid[k].expand(x.shape[0])
            x = x + h * velocity(x, t)
            nfe += 1
            if callback is not None:
                callback(k + 1, x)
        return fm.ODESolution(x=x, nfe=nfe, times=grid)

    register_sampler(Sampler("test-euler-copy", two_euler_halves))
    net = fm.models.MLP(dim=2, hidden=8, depth=1)
    x0 = torch.randn(5, 2)
    mine = fm.generate(net, x0, steps=4, method="test-euler-copy")
    euler = fm.generate(net, x0, steps=4, method="euler")
    assert mine.nfe == euler.nfe == 4
    torch.testing.assert_close(mine.x, euler.x)
    del SAMPLERS["test-euler-copy"]


def test_unknown_sampler_names_are_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        get_sampler("leapfrog")
    with pytest.raises(ValueError, match="already registered"):
        register_sampler(Sampler("euler", lambda *a, **k: None))
