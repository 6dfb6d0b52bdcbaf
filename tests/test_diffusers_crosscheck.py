"""Our DDPM and DDIM steps against Hugging Face diffusers' schedulers, a library no one here
wrote: the same timesteps, and the same next state (1e-5) given the same model output and
noise. Skipped when diffusers is not installed (it is in the ``dev`` extra)."""

import pytest
import torch

import flowmatch as fm
from flowmatch.diffusion import ddim_step, ddpm_step, diffusion_times
from flowmatch.schedules import DDPM

diffusers = pytest.importorskip("diffusers")

T = 1000
BETAS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
TOL = dict(rtol=1e-5, atol=1e-5)  # float32 states; diffusers' abar is float32, ours float64


def their_scheduler(kind: str, betas: str, spacing: str, steps: int):
    cls = diffusers.DDPMScheduler if kind == "ddpm" else diffusers.DDIMScheduler
    sched = cls(
        num_train_timesteps=T,
        beta_schedule=BETAS[betas],
        clip_sample=False,
        prediction_type="epsilon",
        timestep_spacing=spacing,
    )
    sched.set_timesteps(steps)
    return sched


def our_timesteps(path, steps, spacing):
    return torch.round((1 - diffusion_times(path, steps, spacing=spacing)) * T - 1).long()


def eps_model(x: torch.Tensor, k: int) -> torch.Tensor:
    """A fixed nonlinear 'network' of (x, timestep) standing in for a trained model."""
    return torch.tanh(1.3 * x.flip(1) + 0.002 * k) * 0.9 + 0.1 * x


@pytest.mark.parametrize("betas", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("steps", [1, 10, 50, 1000])
@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_timesteps_match(kind, betas, spacing, steps):
    path = fm.AffinePath(DDPM(T, betas))
    ours = our_timesteps(path, steps, spacing)
    theirs = their_scheduler(kind, betas, spacing, steps).timesteps
    assert ours[:-1].tolist() == theirs.tolist() and ours[-1] == -1


@pytest.mark.parametrize("betas", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("steps", [1, 10, 50])
@pytest.mark.parametrize(
    ("kind", "eta"), [("ddpm", None), ("ddim", 0.0), ("ddim", 0.6), ("ddim", 1.0)]
)
def test_every_step_matches(kind, eta, betas, spacing, steps):
    """At each timestep of the schedule, from the same state, model output and noise."""
    path = fm.AffinePath(DDPM(T, betas))
    sched = their_scheduler(kind, betas, spacing, steps)
    times = diffusion_times(path, steps, spacing=spacing)
    g = torch.Generator().manual_seed(steps)
    for i, k in enumerate(sched.timesteps.tolist()):
        x = torch.randn(16, 3, generator=g)
        eps = torch.randn(16, 3, generator=g)
        t = times[i].float().expand(16)
        s = times[i + 1].float().expand(16)
        seed = 1000 + i
        noise = torch.randn(16, 3, generator=torch.Generator().manual_seed(seed))
        x1_hat = path.convert(eps, src="epsilon", dst="x1", x_t=x, t=t)
        if kind == "ddpm":
            # diffusers draws its noise itself: from a generator seeded as ours was
            theirs = sched.step(
                eps, k, x, generator=torch.Generator().manual_seed(seed)
            ).prev_sample
            ours = ddpm_step(path, x, x1_hat, t, s, noise=noise if k > 0 else None)
        else:
            theirs = sched.step(eps, k, x, eta=eta, variance_noise=noise).prev_sample
            ours = ddim_step(path, x, x1_hat, eps, t, s, eta=eta, noise=noise)
        # at k = T-1, x1_hat = (x - sigma eps) / alpha with alpha = 6e-3 (linear; 5e-5
        # cosine) amplifies float32 rounding; the next state is scaled back by alpha_s
        torch.testing.assert_close(ours, theirs, **TOL, msg=f"timestep {k}")


@pytest.mark.parametrize(
    ("kind", "steps", "eta"), [("ddpm", 1000, 0.0), ("ddim", 50, 0.0), ("ddim", 20, 0.5)]
)
def test_whole_sampling_loop_matches(kind, steps, eta):
    """Our solve_diffusion against diffusers' loop, same model and noise: both draw one (B, D)
    normal tensor per stochastic step from the same generator, none on the last step."""
    path = fm.AffinePath(DDPM(T))
    sched = their_scheduler(kind, "linear", "trailing", steps)
    x_init = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    x = x_init
    gen = torch.Generator().manual_seed(1)
    for k in sched.timesteps.tolist():
        eps = eps_model(x, k)
        if kind == "ddpm":
            x = sched.step(eps, k, x, generator=gen).prev_sample
        else:
            noise = (
                torch.randn(x.shape, generator=gen)
                if eta > 0 and k != sched.timesteps[-1]
                else None
            )
            x = sched.step(eps, k, x, eta=eta, variance_noise=noise).prev_sample

    def predict(x, t):
        k = int(torch.round((1 - t[0]) * T - 1))
        return eps_model(x, k)

    ours = fm.diffusion.solve_diffusion(
        predict,
        x_init,
        path=path,
        kind="epsilon",
        steps=steps,
        method=kind,
        eta=eta,
        generator=torch.Generator().manual_seed(1),
    )
    # each step agrees to 1e-5 (above); over a loop the float32 differences of the two
    # schedules' coefficients add up: 1e-4 after 20-50 steps, 5e-4 after 1000 (measured 1.5e-4)
    tol = 5e-4 if steps == 1000 else 1e-4
    torch.testing.assert_close(ours.x, x, rtol=tol, atol=tol)
