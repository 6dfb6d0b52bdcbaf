"""DDPM and DDIM sampling expressed on the affine paths of this library.

A diffusion model is a model trained on a Gaussian affine path x_t = alpha_t x1 + sigma_t x0
(t=0 noise, t=1 data) to predict epsilon (= x0), x1 or the velocity; DDPM (Ho et al. 2020) is
the :class:`~flowmatch.schedules.DDPM` schedule trained at its discrete timesteps
(:class:`~flowmatch.time.Discrete`) with ``prediction="epsilon"``, the VP SDE (Song et al.
2021) the continuous :class:`~flowmatch.schedules.VP` schedule. This module holds their
samplers, written for any such path, so flow models can also be sampled with DDIM and
diffusion models with our ODE solvers (the probability-flow ODE is ``fm.sample`` on the model's
velocity, :meth:`~flowmatch.paths.AffinePath.convert`).

A step goes from time t to a later time s > t (towards the data). With ``r = alpha_t /
alpha_s``, the forward process from x_s to x_t is Gaussian with variance sigma_t^2 - r^2
sigma_s^2, and the posterior q(x_s | x_t, x1) has

    mean = alpha_s (1 - r^2 sigma_s^2 / sigma_t^2) x1 + r (sigma_s^2 / sigma_t^2) x_t
    var  = sigma_s^2 (1 - r^2 sigma_s^2 / sigma_t^2)

(for DDPM, alpha^2 = abar: DDPM's posterior, Ho et al. eq. 6-7). Ancestral DDPM draws x_s from
it with x1 replaced by the model's estimate; DDIM (Song, Meng & Ermon 2021, eq. 12) takes
``x_s = alpha_s x1_hat + sqrt(sigma_s^2 - eta^2 var) eps_hat + eta sqrt(var) z``: eta = 0 is
deterministic, eta = 1 is DDPM again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from flowmatch.paths import PREDICTION_KINDS, AffinePath, PredictionKind, check_time
from flowmatch.samplers import Sampler, register_sampler, run_sampler
from flowmatch.schedules import DDPM
from flowmatch.solvers import ODESolution, time_grid

__all__ = [
    "DIFFUSION_METHODS",
    "SPACINGS",
    "DiffusionOptions",
    "check_eta",
    "ddim_step",
    "ddpm_step",
    "diffusion_times",
    "posterior_variance",
    "solve_diffusion",
]

DIFFUSION_METHODS: tuple[str, ...] = ("ddpm", "ddim")
"""The diffusion samplers: ancestral DDPM and DDIM (with its eta)."""

SPACINGS: tuple[str, ...] = ("trailing", "leading")
"""How K sampling steps pick timesteps of a T-step DDPM (the names of diffusers' option)."""


def check_eta(eta: float) -> float:
    """Return eta as a float if it is a number in [0, 1]; else raise a ValueError naming it."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number in [0, 1] (0: deterministic DDIM), got {eta!r}")
    return float(eta)


def diffusion_times(path: AffinePath, steps: int, *, spacing: str = "trailing") -> Tensor:
    """The times a diffusion sampler visits: ``steps + 1`` times from the noise end to t = 1.

    For a :class:`~flowmatch.schedules.DDPM` schedule of T timesteps the times are those of
    ``steps`` of its timesteps (t_k = 1 - (k + 1) / T) followed by t = 1 (k = -1, the data):

    - ``trailing``: k_i = round(T - i T / K) - 1, i = 0..K-1; starts at the last timestep
      k = T-1, so even one step starts from (nearly) pure noise.
    - ``leading``: k_i = (K - 1 - i) floor(T / K) (DDPM/DDIM's original choice; starts at
      k < T-1, which leaves signal unaccounted for at few steps).

    For a continuous schedule the grid is uniform in t from 0 to 1 (``spacing`` unused).

    Args:
        path: the model's path.
        steps: K, the number of sampler steps (= NFE), 1 <= K (<= T for a DDPM schedule).
        spacing: trailing | leading (DDPM schedules only).

    Returns:
        Times of shape (K + 1,), float64, increasing, ending at exactly 1.

    Raises:
        ValueError: steps is not a positive integer, exceeds the T timesteps of a DDPM
            schedule, or spacing is unknown.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    sched = path.schedule
    if not isinstance(sched, DDPM):
        return time_grid(steps, dtype=torch.float64)
    n = sched.timesteps
    if steps > n:
        raise ValueError(
            f"steps={steps} does not fit the DDPM schedule: the model was trained on {n} "
            f"timesteps, so at most {n} sampling steps"
        )
    i = torch.arange(steps, dtype=torch.float64)
    if spacing == "trailing":
        k = torch.round(n - i * (n / steps)) - 1.0
    else:
        k = (steps - 1 - i) * (n // steps)
    k = torch.cat([k, torch.tensor([-1.0], dtype=torch.float64)])
    return 1.0 - (k + 1.0) / n


def _coefficients(path: AffinePath, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    a, s = path.coefficients(t, like)[:2]
    return a, s


def posterior_variance(path: AffinePath, t: Tensor, s: Tensor, like: Tensor) -> Tensor:
    """Variance of q(x_s | x_t, x1) on the path, for s > t; shaped (B, 1, ..., 1) like ``like``.

    Zero when s = 1 (sigma_s = 0): the last step of a sampler adds no noise.
    """
    return _posterior_variance(*_coefficients(path, t, like), *_coefficients(path, s, like))


def _posterior_variance(a_t: Tensor, s_t: Tensor, a_s: Tensor, s_s: Tensor) -> Tensor:
    ratio = (a_t * s_s) / (a_s * s_t)  # r sigma_s / sigma_t
    return (s_s * s_s * (1.0 - ratio * ratio)).clamp_min(0.0)


def _check_step(x_t: Tensor, t: Tensor, s: Tensor, noise: Tensor | None) -> None:
    check_time(t, x_t)
    check_time(s, x_t, name="s")
    if noise is not None and noise.shape != x_t.shape:
        raise ValueError(
            f"noise must have the shape of x_t {tuple(x_t.shape)}, got {tuple(noise.shape)}"
        )


def ddpm_step(
    path: AffinePath,
    x_t: Tensor,
    x1_hat: Tensor,
    t: Tensor,
    s: Tensor,
    *,
    noise: Tensor | None = None,
) -> Tensor:
    """One ancestral DDPM step: a draw of q(x_s | x_t, x1 = x1_hat) (module docstring).

    Args:
        path: the model's path.
        x_t: the current state, (B, *D), at times t (B,).
        x1_hat: the model's estimate of the data, (B, *D).
        t: current times, (B,).
        s: next times, (B,), s > t (towards the data).
        noise: the standard normal draw z, (B, *D); None for the posterior mean.

    Returns:
        x_s, (B, *D).
    """
    _check_step(x_t, t, s, noise)
    a_t, s_t = _coefficients(path, t, x_t)
    a_s, s_s = _coefficients(path, s, x_t)
    r = a_t / a_s
    keep = r * (s_s * s_s) / (s_t * s_t)  # coefficient of x_t
    x_s = a_s * (1.0 - r * keep) * x1_hat + keep * x_t
    if noise is not None:
        x_s = x_s + _posterior_variance(a_t, s_t, a_s, s_s).sqrt() * noise
    return x_s


def ddim_step(
    path: AffinePath,
    x_t: Tensor,
    x1_hat: Tensor,
    eps_hat: Tensor,
    t: Tensor,
    s: Tensor,
    *,
    eta: float = 0.0,
    noise: Tensor | None = None,
) -> Tensor:
    """One DDIM step from t to s > t (Song et al. 2021, eq. 12, in our time direction).

    Args:
        path: the model's path.
        x_t: the current state, (B, *D), at times t (B,).
        x1_hat: the model's estimate of the data, (B, *D).
        eps_hat: the model's estimate of the noise x0, (B, *D).
        t: current times, (B,).
        s: next times, (B,), s > t.
        eta: 0 (deterministic) to 1 (DDPM's variance).
        noise: the standard normal draw, (B, *D); required when eta > 0.

    Returns:
        x_s, (B, *D).
    """
    eta = check_eta(eta)
    _check_step(x_t, t, s, noise)
    if eta > 0 and noise is None:
        raise ValueError(f"ddim_step: eta={eta} > 0 needs a noise draw")
    a_t, s_t = _coefficients(path, t, x_t)
    a_s, s_s = _coefficients(path, s, x_t)
    var = eta * eta * _posterior_variance(a_t, s_t, a_s, s_s)
    x_s = a_s * x1_hat + (s_s * s_s - var).clamp_min(0.0).sqrt() * eps_hat
    if eta > 0:
        assert noise is not None  # checked above
        x_s = x_s + var.sqrt() * noise
    return x_s


@dataclass(frozen=True)
class DiffusionOptions:
    """Options of the ``ddpm`` and ``ddim`` samplers.

    Attributes:
        path: the Gaussian affine path of the model.
        eta: DDIM's stochasticity in [0, 1] (0: deterministic; ddpm ignores it).
        spacing: trailing | leading, the timesteps of a DDPM schedule visited
            (:func:`diffusion_times`).
    """

    path: AffinePath
    eta: float = 0.0
    spacing: str = "trailing"

    def __post_init__(self) -> None:
        if not isinstance(self.path, AffinePath):
            raise ValueError(f"DDPM and DDIM need a Gaussian affine path, got path {self.path!r}")
        object.__setattr__(self, "eta", check_eta(self.eta))
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {self.spacing!r}")


def _diffusion_grid(steps: int, options: DiffusionOptions) -> Tensor:
    return diffusion_times(options.path, steps, spacing=options.spacing)


def _diffusion_run(method: str) -> Callable[..., ODESolution]:
    """The ``run`` of ``ddpm`` or ``ddim``: one velocity evaluation per step, its estimates of
    x1 and x0 by :meth:`~flowmatch.paths.AffinePath.convert` (exact on a Gaussian path)."""

    def run(
        velocity: Callable[[Tensor, Tensor], Tensor],
        x: Tensor,
        times: Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: Callable[[int, Tensor], None] | None = None,
        options: DiffusionOptions | None = None,
    ) -> ODESolution:
        if options is None:
            raise ValueError(f"the {method} sampler needs DiffusionOptions(path, ...)")
        path, eta = options.path, options.eta
        batch = x.shape[0]
        steps = times.shape[0] - 1
        stochastic = method == "ddpm" or eta > 0
        for i in range(steps):
            t = times[i].to(x.dtype).expand(batch).to(x.device)
            s = times[i + 1].to(x.dtype).expand(batch).to(x.device)
            v = velocity(x, t)
            x1_hat = path.convert(v, src="velocity", dst="x1", x_t=x, t=t)
            noise = None
            if stochastic and i < steps - 1:  # none on the last step, as in DDPM (var 0 there)
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if method == "ddpm":
                x = ddpm_step(path, x, x1_hat, t, s, noise=noise)
            else:
                eps_hat = path.convert(v, src="velocity", dst="x0", x_t=x, t=t)
                step_eta = eta if noise is not None else 0.0
                x = ddim_step(path, x, x1_hat, eps_hat, t, s, eta=step_eta, noise=noise)
            if callback is not None:
                callback(i + 1, x)
        return ODESolution(x=x, nfe=steps, times=times.to(x.dtype))

    return run


for _method in DIFFUSION_METHODS:
    register_sampler(
        Sampler(
            _method,
            _diffusion_run(_method),
            options=DiffusionOptions,
            needs_score=True,
            grid=_diffusion_grid,
        )
    )


def solve_diffusion(
    predict: Callable[[Tensor, Tensor], Tensor],
    x_init: Tensor,
    *,
    path: AffinePath,
    kind: str = "epsilon",
    steps: int,
    method: str = "ddim",
    eta: float = 0.0,
    spacing: str = "trailing",
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    """Sample with DDPM or DDIM from noise (t = 0) to data (t = 1), one evaluation per step.

    The prediction is turned into a velocity by :meth:`~flowmatch.paths.AffinePath.convert`
    and the registered ``ddpm``/``ddim`` sampler runs on it (as for any model).

    Args:
        predict: ``predict(x, t)`` with x (B, *D), t (B,), returning a prediction of ``kind``.
        x_init: the noise, (B, *D), at the first time of :func:`diffusion_times`.
        path: the path the prediction belongs to.
        kind: what ``predict`` returns: epsilon, x0, x1, velocity or score.
        steps: number of steps K (= NFE); at most T for a DDPM schedule.
        method: ddpm (ancestral) or ddim.
        eta: DDIM's stochasticity in [0, 1] (ddim only).
        spacing: trailing | leading, see :func:`diffusion_times`.
        generator: torch RNG of the noise draws (ddpm, ddim with eta > 0).
        return_trajectory: also return the states at every time.

    Returns:
        :class:`~flowmatch.solvers.ODESolution` with x at t = 1, nfe = K, the times (K+1,) and
        optionally the trajectory (K+1, B, *D).

    Raises:
        ValueError: unknown method or kind, eta outside [0, 1], steps that do not fit.
    """
    if method not in DIFFUSION_METHODS:
        raise ValueError(f"method must be one of {DIFFUSION_METHODS}, got {method!r}")
    if kind not in PREDICTION_KINDS:
        raise ValueError(f"kind must be one of {PREDICTION_KINDS}, got {kind!r}")
    options = DiffusionOptions(path, eta, spacing)
    times = diffusion_times(path, steps, spacing=spacing)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        pred = predict(x, t)
        if kind == "velocity":
            return pred
        return path.convert(pred, src=cast(PredictionKind, kind), dst="velocity", x_t=x, t=t)

    return run_sampler(
        method,
        velocity,
        x_init,
        times,
        options=options,
        generator=generator,
        return_trajectory=return_trajectory,
    )
