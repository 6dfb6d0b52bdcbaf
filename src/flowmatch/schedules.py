"""Schedules of affine probability paths: alpha(t), sigma(t) and their time derivatives.

An affine path is ``x_t = alpha(t) * x1 + sigma(t) * x0`` with t=0 the source (noise, ``x0``)
and t=1 the data (``x1``). A schedule is a small stateless object: called on a tensor of
times it returns the four coefficients. Every schedule satisfies alpha(0)=0, alpha(1)=1,
sigma(0)=1, sigma(1)=0, exactly or, for the diffusion schedules VP and VE, up to a small
documented amount.

Example:
    >>> import torch, flowmatch as fm
    >>> c = fm.schedules.Cosine()(torch.tensor([0.0, 1.0]))
    >>> c.alpha_t
    tensor([0., 1.])
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "DDPM",
    "VE",
    "VP",
    "Cosine",
    "Linear",
    "Polynomial",
    "Schedule",
    "ScheduleOutput",
]


class ScheduleOutput(NamedTuple):
    """The coefficients of an affine path at times t, each of the shape of t."""

    alpha_t: Tensor
    sigma_t: Tensor
    d_alpha_t: Tensor
    d_sigma_t: Tensor


class Schedule(ABC):
    """Base class: maps times t (any shape, usually (B,)) to alpha, sigma and derivatives."""

    @abstractmethod
    def __call__(self, t: Tensor) -> ScheduleOutput:
        """Evaluate the schedule.

        Args:
            t: times in [0, 1], any shape; t=0 is the source, t=1 the data.

        Returns:
            ScheduleOutput of tensors of the shape of t.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, *sorted(vars(self).items())))


class Linear(Schedule):
    """The linear (rectified flow, OT-CFM) schedule: alpha = t, sigma = 1 - t.

    Reference: Lipman et al. 2023 (Flow Matching, eq. 20); Liu et al. 2023 (Rectified Flow).
    """

    def __call__(self, t: Tensor) -> ScheduleOutput:
        one = torch.ones_like(t)
        return ScheduleOutput(t, 1.0 - t, one, -one)


class Cosine(Schedule):
    """The cosine schedule: alpha = sin(pi t / 2), sigma = cos(pi t / 2); alpha^2 + sigma^2 = 1.

    Reference: Nichol & Dhariwal 2021 in our time direction; Albergo & Vanden-Eijnden 2023.
    """

    def __call__(self, t: Tensor) -> ScheduleOutput:
        half_pi = 0.5 * math.pi
        s, c = torch.sin(half_pi * t), torch.cos(half_pi * t)
        return ScheduleOutput(s, c, half_pi * c, -half_pi * s)


class Polynomial(Schedule):
    """Polynomial schedule: alpha = t^n, sigma = 1 - t^n (n=1 is :class:`Linear`).

    Args:
        n: exponent, > 0. n > 1 spends more of the path near the source.
    """

    def __init__(self, n: float = 2.0) -> None:
        if not (isinstance(n, (int, float)) and math.isfinite(n) and n > 0):
            raise ValueError(f"Polynomial: n must be a finite number > 0, got {n!r}")
        self.n = float(n)

    def __call__(self, t: Tensor) -> ScheduleOutput:
        alpha = t**self.n
        # n * t^(n-1), written so that t = 0 gives 0 (n > 1), n (n = 1) or a large finite value.
        d_alpha = self.n * t.clamp_min(torch.finfo(t.dtype).tiny) ** (self.n - 1.0)
        return ScheduleOutput(alpha, 1.0 - alpha, d_alpha, -d_alpha)


class VP(Schedule):
    """The variance-preserving diffusion schedule of Song et al. 2021, in our time direction.

    With s the diffusion time (s=0 data, s=1 noise) and the linear noise rate beta(s) =
    beta_min + s (beta_max - beta_min), let B(s) = integral_0^s beta = beta_min s +
    (beta_max - beta_min) s^2 / 2. Then alpha_t = exp(-B(s) / 2) and sigma_t = sqrt(1 -
    alpha_t^2), so alpha^2 + sigma^2 = 1 at every t, with s = eps + (1 - eps)(1 - t).

    Boundaries: as in Song et al., the diffusion time is kept away from 0 by ``eps``, so at
    t = 1, sigma = sqrt(1 - exp(-B(eps))) (1.0e-3 for the defaults) instead of 0 and
    alpha = 1 - 5e-7. Without it sigma'(t) would diverge at t = 1 (sigma ~ sqrt(beta_min
    (1 - t))) and the conditional velocity with it; with it every coefficient is finite and
    smooth on [0, 1]. At t = 0, alpha(0) = exp(-B(1)/2) (6.6e-3 for the defaults) rather than
    0, so the marginal at t = 0 is N(0, I) only up to that amount,
    as in every VP diffusion model.

    Args:
        beta_min: noise rate at the data end, > 0.
        beta_max: noise rate at the noise end, > beta_min.
        eps: the smallest diffusion time, in (0, 1).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-5) -> None:
        if not (math.isfinite(beta_min) and beta_min > 0):
            raise ValueError(f"VP: beta_min must be a finite number > 0, got {beta_min!r}")
        if not (math.isfinite(beta_max) and beta_max > beta_min):
            raise ValueError(
                f"VP: beta_max must be a finite number > beta_min={beta_min}, got {beta_max!r}"
            )
        if not (0 < eps < 1):
            raise ValueError(f"VP: eps must be in (0, 1), got {eps!r}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.eps = float(eps)

    def __call__(self, t: Tensor) -> ScheduleOutput:
        ds_dt = -(1.0 - self.eps)  # diffusion time s = eps + (1 - eps)(1 - t)
        s = self.eps - ds_dt * (1.0 - t)
        slope = self.beta_max - self.beta_min
        big_b = self.beta_min * s + 0.5 * slope * s * s
        beta = self.beta_min + slope * s
        alpha = torch.exp(-0.5 * big_b)
        var = -torch.expm1(-big_b)  # 1 - alpha^2 without cancellation near t = 1
        sigma = torch.sqrt(var)
        d_alpha = -0.5 * beta * ds_dt * alpha  # dB/dt = beta(s) ds/dt
        d_sigma = 0.5 * beta * ds_dt * alpha * alpha / sigma
        return ScheduleOutput(alpha, sigma, d_alpha, d_sigma)


class VE(Schedule):
    """The variance-exploding schedule of Song et al. 2021 (SMLD), scale-normalized.

    The VE process x = x1 + s(t) * x0 has noise level s(t) = sigma_min (sigma_max /
    sigma_min)^(1 - t) and an exploding variance. To keep the library's N(0, I) source we use
    it in scale-normalized coordinates x / sqrt(1 + s^2): alpha_t = 1 / sqrt(1 + s^2) and
    sigma_t = s / sqrt(1 + s^2). The noise-to-signal ratio sigma_t / alpha_t = s(t) is exactly
    the VE one, so models, ODE trajectories and samples are those of VE up to the known scale
    factor sqrt(1 + s^2).

    Boundaries (approximate, by design of VE): alpha(0) = 1/sqrt(1 + sigma_max^2) (0.02 for
    the defaults) and sigma(1) = sigma_min / sqrt(1 + sigma_min^2) (0.01).

    Args:
        sigma_min: noise level at the data end (t=1), > 0.
        sigma_max: noise level at the source end (t=0), > sigma_min.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        if not (math.isfinite(sigma_min) and sigma_min > 0):
            raise ValueError(f"VE: sigma_min must be a finite number > 0, got {sigma_min!r}")
        if not (math.isfinite(sigma_max) and sigma_max > sigma_min):
            raise ValueError(
                f"VE: sigma_max must be a finite number > sigma_min={sigma_min}, got {sigma_max!r}"
            )
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def __call__(self, t: Tensor) -> ScheduleOutput:
        log_ratio = math.log(self.sigma_max / self.sigma_min)
        s = self.sigma_min * torch.exp(log_ratio * (1.0 - t))
        inv_norm = torch.rsqrt(1.0 + s * s)
        alpha = inv_norm
        sigma = s * inv_norm
        # ds/dt = -s log_ratio; d/ds (1+s^2)^(-1/2) = -s (1+s^2)^(-3/2); d/ds s (1+s^2)^(-1/2) =
        # (1+s^2)^(-3/2).
        cube = inv_norm**3
        d_alpha = s * s * log_ratio * cube
        d_sigma = -s * log_ratio * cube
        return ScheduleOutput(alpha, sigma, d_alpha, d_sigma)


BETA_SCHEDULES: tuple[str, ...] = ("linear", "cosine")
"""The beta schedules of :class:`DDPM`."""


@functools.lru_cache(maxsize=16)
def _ddpm_grid(
    timesteps: int, betas: str, beta_start: float, beta_end: float
) -> tuple[Tensor, Tensor]:
    """alpha and sigma of a DDPM at the points k = -1, 0, ..., T-1 (float64, CPU, (T+1,))."""
    if betas == "linear":
        beta = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    else:  # cosine, Nichol & Dhariwal 2021 eq. 17, betas capped at 0.999 as there
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        abar = torch.cos((steps + 0.008) / 1.008 * (0.5 * math.pi)) ** 2
        beta = (1.0 - abar[1:] / abar[:-1]).clamp(max=0.999)
    alphas_cumprod = torch.cumprod(1.0 - beta, dim=0)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod])  # k = -1 is data
    return abar.sqrt(), (1.0 - abar).sqrt()


class DDPM(Schedule):
    """The discrete-time DDPM noise schedule (Ho et al. 2020) as a path of this library.

    DDPM noises data in T steps k = 0, ..., T-1 with rates beta_k; with abar_k = prod_{i<=k}
    (1 - beta_i), x_k = sqrt(abar_k) x1 + sqrt(1 - abar_k) x0. In our time direction timestep k
    sits at ``t_k = 1 - (k + 1) / T``: k = T-1 (nearly pure noise) is t = 0 and the data,
    k = -1 with abar = 1, is t = 1. At those grid times alpha and sigma are exactly DDPM's
    sqrt(abar_k) and sqrt(1 - abar_k); between them they are linear in t, so the path is
    defined (and has finite derivatives) on all of [0, 1] and the model may also be trained
    on continuous times.

    Boundaries: alpha(0) = sqrt(abar_{T-1}) (6.4e-3 for the linear defaults, as in every DDPM),
    sigma(1) = 0 and alpha(1) = 1 exactly.

    Args:
        timesteps: T, the number of diffusion steps the model is trained on (1000 in DDPM).
        betas: "linear" (beta from beta_start to beta_end, as in DDPM) or "cosine" (Nichol &
            Dhariwal 2021; beta_start and beta_end are then unused).
        beta_start: beta_0 of the linear schedule, > 0.
        beta_end: beta_{T-1} of the linear schedule, in (beta_start, 1).

    Example:
        >>> sched = DDPM(timesteps=1000, betas="cosine")
        >>> sched.timestep_times(torch.tensor([999, 0]))
        tensor([0.0000, 0.9990])
    """

    def __init__(
        self,
        timesteps: int = 1000,
        betas: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 2:
            raise ValueError(f"DDPM: timesteps must be an integer >= 2, got {timesteps!r}")
        if betas not in BETA_SCHEDULES:
            raise ValueError(f"DDPM: betas must be one of {BETA_SCHEDULES}, got {betas!r}")
        if not (math.isfinite(beta_start) and beta_start > 0):
            raise ValueError(f"DDPM: beta_start must be a finite number > 0, got {beta_start!r}")
        if not (math.isfinite(beta_end) and beta_start < beta_end < 1):
            raise ValueError(
                f"DDPM: beta_end must be a number in (beta_start={beta_start}, 1), got {beta_end!r}"
            )
        self.timesteps = int(timesteps)
        self.betas = betas
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)

    def grid(self) -> tuple[Tensor, Tensor]:
        """alpha and sigma at k = -1, 0, ..., T-1 (index k + 1), float64 tensors (T+1,)."""
        return _ddpm_grid(self.timesteps, self.betas, self.beta_start, self.beta_end)

    def alphas_cumprod(self) -> Tensor:
        """DDPM's abar_k for k = 0, ..., T-1, float64 (T,) (``alphas_cumprod`` in diffusers)."""
        return self.grid()[0][1:] ** 2

    def timestep_times(self, k: Tensor) -> Tensor:
        """Our time t_k = 1 - (k + 1) / T of DDPM timesteps k (-1 <= k <= T-1), float32."""
        return (1.0 - (k.to(torch.float64) + 1.0) / self.timesteps).to(torch.float32)

    def __call__(self, t: Tensor) -> ScheduleOutput:
        alpha_grid, sigma_grid = (g.to(t.device) for g in self.grid())
        n = self.timesteps
        pos = ((1.0 - t.to(torch.float64)) * n).clamp(0.0, float(n))  # grid index k + 1
        # Times given in float32 miss the grid by up to T * 6e-8 (half an ulp of 1.0): snap
        # them onto it, so that the coefficients at a DDPM timestep are exactly DDPM's.
        near = pos.round()
        pos = torch.where((pos - near).abs() < n * 2.5e-7, near, pos)
        left = pos.floor().clamp(max=n - 1).long()
        w = pos - left
        d_alpha = alpha_grid[left + 1] - alpha_grid[left]
        d_sigma = sigma_grid[left + 1] - sigma_grid[left]
        alpha = alpha_grid[left] + w * d_alpha
        sigma = sigma_grid[left] + w * d_sigma
        # d pos / dt = -T
        out = (alpha, sigma, -n * d_alpha, -n * d_sigma)
        return ScheduleOutput(*(c.to(t.dtype) for c in out))


SCHEDULES: dict[str, type[Schedule]] = {
    "linear": Linear,
    "cosine": Cosine,
    "polynomial": Polynomial,
    "vp": VP,
    "ve": VE,
    "ddpm": DDPM,
}
"""Schedules by their config name (``path: {schedule: NAME}``)."""
