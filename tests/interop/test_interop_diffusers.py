"""fm.interop against diffusers' FlowMatchEulerDiscreteScheduler itself (in the dev extra):
the same sigmas as set_timesteps, bit for bit; the same samples as its own Euler loop
(scheduler.step) from a diffusers-convention velocity; the same training shift."""

import math

import numpy as np
import pytest
import torch
from gaussian_fields import data_log_prob, velocity_diffusers, velocity_ours

import flowmatch as fm
from flowmatch import interop

diffusers = pytest.importorskip("diffusers", reason="diffusers (the dev extra) is not installed")
Scheduler = diffusers.FlowMatchEulerDiscreteScheduler

# mu for 1024 latent tokens, as diffusers' Flux pipeline computes it (calculate_shift with its
# defaults 256 / 4096 tokens, shifts 0.5 / 1.15); the pipeline module needs transformers.
FLUX_MU_1024 = (1024 - 256) * (1.15 - 0.5) / (4096 - 256) + 0.5

# (scheduler config, set_timesteps keywords, our keywords)
CASES = {
    "shift1": ({}, {}, {}),
    "shift3": ({"shift": 3.0}, {}, {}),
    "shift0.5-T50": ({"shift": 0.5, "num_train_timesteps": 50}, {}, {}),
    "dynamic-mu": ({"use_dynamic_shifting": True}, {"mu": 0.8}, {"mu": 0.8}),
    "dynamic-linear": (
        {"use_dynamic_shifting": True, "time_shift_type": "linear"},
        {"mu": 2.5},
        {"mu": 2.5},
    ),
    "dynamic-seq-len": (
        {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15},
        {"mu": FLUX_MU_1024},
        {"image_seq_len": 1024},
    ),
    "shift-terminal": ({"shift": 3.0, "shift_terminal": 0.02}, {}, {}),
}
STEPS = [1, 2, 8, 28]


def scheduler(case: str, steps: int):
    config, theirs, ours = CASES[case]
    if case == "shift-terminal" and steps == 1:
        pytest.skip("diffusers' shift_terminal divides 0 by 0 with one step (NaN sigmas)")
    sched = Scheduler(**config)
    sched.set_timesteps(steps, **theirs)
    return sched, ours


@pytest.mark.parametrize("steps", [*STEPS, 1000])
@pytest.mark.parametrize("case", CASES)
def test_sigmas_are_set_timesteps_bit_for_bit(case, steps):
    sched, ours = scheduler(case, steps)
    for source in (sched, dict(sched.config)):
        sigmas = interop.sigmas_from_diffusers(source, steps, **ours)
        assert sigmas.dtype == torch.float32 and torch.equal(sigmas, sched.sigmas)
        grid = interop.time_grid_from_diffusers(source, steps, **ours)
        assert grid.dtype == torch.float64 and grid[-1] == 1.0
        assert torch.equal((1 - grid).float(), sched.sigmas)  # t = 1 - sigma, exactly
        assert bool((grid[1:] > grid[:-1]).all())


@pytest.mark.parametrize("steps", [1, 4, 28])
@pytest.mark.parametrize("case", ["shift1", "shift3", "dynamic-mu"])
def test_custom_sigmas_as_the_flux_pipelines_pass_them(case, steps):
    config, theirs, ours = CASES[case]
    given = np.linspace(1.0, 1 / steps, steps)
    sched = Scheduler(**config)
    sched.set_timesteps(sigmas=given, **theirs)
    assert torch.equal(interop.sigmas_from_diffusers(sched, sigmas=given, **ours), sched.sigmas)


def test_unsupported_and_inconsistent_settings_are_refused():
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        interop.time_grid_from_diffusers(Scheduler(use_karras_sigmas=True), 4)
    with pytest.raises(ValueError, match="exactly one of mu"):
        interop.time_grid_from_diffusers(Scheduler(use_dynamic_shifting=True), 4)
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
        interop.time_grid_from_diffusers(Scheduler(), 4, mu=1.0)


def diffusers_euler(sched, model, noise: torch.Tensor) -> torch.Tensor:
    """diffusers' own sampling loop, as its pipelines run it."""
    x = noise.clone()
    for timestep in sched.timesteps:
        v = model(x, timestep.expand(x.shape[0]))
        x = sched.step(v, timestep, x).prev_sample
    return x


# float32 states on both sides. diffusers steps by sigma_next - sigma (float32); we step by
# t_next - t_n of the float32-rounded t = 1 - sigma and evaluate the model at timestep
# (1 - t) * T: each step may differ by a few float32 ulps of t (6e-8) in the step and the
# time, which the velocity (of order 1-10) turns into ~1e-6 per step. Measured: at most
# 4.8e-7 on these cases (9.5e-7 at 100 steps); 1e-5 leaves room across platforms.
SAMPLE_TOL = {"rtol": 0.0, "atol": 1e-5}


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("case", ["shift1", "shift3", "dynamic-mu", "dynamic-seq-len"])
def test_our_euler_on_the_converted_grid_is_diffusers_euler(case, steps):
    sched, ours = scheduler(case, steps)
    noise = torch.randn(64, 3, generator=torch.Generator().manual_seed(steps))
    theirs = diffusers_euler(sched, velocity_diffusers, noise)
    grid = interop.time_grid_from_diffusers(sched, steps, **ours)
    model = fm.FlowModel(interop.from_diffusers_velocity(velocity_diffusers))
    mine = fm.sample(model, noise, times=grid, method="euler")
    torch.testing.assert_close(mine, theirs, **SAMPLE_TOL)
    if steps == 28 and case == "shift1":  # and it is a sampler of the right distribution
        assert (mine.mean(0) - torch.tensor([1.5, -0.5, 0.25])).abs().max() < 0.15


@pytest.mark.parametrize("steps", [1, 8, 28])
def test_our_net_in_diffusers_loop_is_our_euler(steps):
    """to_diffusers_velocity: our velocity in their loop; the sign and time flips undone."""
    sched = Scheduler(shift=3.0)
    sched.set_timesteps(steps)
    noise = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    theirs = diffusers_euler(sched, interop.to_diffusers_velocity(velocity_ours), noise)
    mine = fm.sample(
        fm.FlowModel(interop.from_diffusers_velocity(interop.to_diffusers_velocity(velocity_ours))),
        noise,
        times=interop.time_grid_from_diffusers(sched, steps),
        method="euler",
    )
    torch.testing.assert_close(mine, theirs, **SAMPLE_TOL)


def test_the_conversions_are_inverse_and_flip_sign_and_time():
    x = torch.randn(16, 3)
    t = torch.rand(16)
    back = interop.from_diffusers_velocity(interop.to_diffusers_velocity(velocity_ours))
    torch.testing.assert_close(back(x, t), velocity_ours(x, t), rtol=1e-6, atol=1e-6)
    ours = interop.from_diffusers_velocity(velocity_diffusers)
    torch.testing.assert_close(ours(x, t), velocity_ours(x, t), rtol=1e-5, atol=1e-5)
    out = interop.to_diffusers_velocity(velocity_ours)(x, 250.0)  # a plain number
    torch.testing.assert_close(out, velocity_diffusers(x, torch.full((16,), 250.0)))


def test_likelihood_of_a_diffusers_velocity_is_the_data_density():
    """fm.log_likelihood (exact divergence, dopri5) of the wrapped diffusers-convention field
    recovers the closed-form Gaussian density; dopri5's tolerance 1e-6 keeps it within 1e-4."""
    x1 = torch.tensor([1.5, -0.5, 0.25]) + 0.4 * torch.randn(32, 3, dtype=torch.float64)
    model = fm.FlowModel(interop.from_diffusers_velocity(velocity_diffusers))
    got = fm.log_likelihood(model, x1, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got, data_log_prob(x1), rtol=0.0, atol=1e-4)


@pytest.mark.parametrize(
    ("case", "mu"),
    [("shift1", None), ("shift3", None), ("dynamic-mu", 0.8), ("dynamic-linear", 2.5)],
)
def test_training_times_are_the_scheduler_shift(case, mu):
    """The shift of Shifted is diffusers' (static shift, or time_shift of mu) on any noise
    level, and with discrete=True its times are the scheduler's training sigmas."""
    config = CASES[case][0]
    sched = Scheduler(**config)
    noise = torch.linspace(0.01, 1.0, 100, dtype=torch.float64)
    for n in noise.tolist():
        sampler = interop.shifted_time_sampler(sched, mu=mu, base=fm.time.Constant(1.0 - n))
        got = 1.0 - sampler(1, dtype=torch.float64).item()
        if mu is None:
            want = sched.shift * n / (1 + (sched.shift - 1) * n)
        else:
            want = float(sched.time_shift(mu, 1.0, torch.tensor(n, dtype=torch.float64)))
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
    if mu is None:
        small = Scheduler(**config, num_train_timesteps=20)
        sampler = interop.shifted_time_sampler(small, discrete=True)
        drawn = 1.0 - sampler(4000, generator=torch.Generator().manual_seed(0))
        levels = torch.unique(drawn)
        torch.testing.assert_close(levels.flip(0), small.sigmas, rtol=0.0, atol=1e-6)
