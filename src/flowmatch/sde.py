"""Stochastic sampling of a flow: the SDE with the same marginals as the flow's ODE.

For a Gaussian affine path the score of the marginal p_t follows from the velocity
(:meth:`~flowmatch.paths.AffinePath.convert`), and for any noise scale g(t) >= 0 the SDE

    dx = [v(x, t) + g(t)^2 / 2 * score(x, t)] dt + g(t) dW,   t from 0 (noise) to 1 (data),

has the marginals p_t of the ODE dx = v dt (its Fokker-Planck equation reduces to the
continuity equation of v). g = 0 is the ODE itself. Noise injected along the way corrects
errors of earlier steps, at the price of needing more steps than the ODE. Reference: Song et
al. 2021 (score SDE, eq. 6 and the probability flow); Ma et al. 2024 (SiT, sec. 3.3), whose
default noise scale g(t) ~ sigma_t we follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch.paths import AffinePath
from flowmatch.samplers import Sampler, register_sampler, run_sampler
from flowmatch.solvers import ODESolution, time_grid

__all__ = ["SDEOptions", "solve_sde"]

NoiseScale = float | Callable[[Tensor], Tensor]


def _diffusion(path: AffinePath, noise: NoiseScale) -> Callable[[Tensor, Tensor], Tensor]:
    """g(t) shaped (B, 1, ..., 1) like x, from a number (times sigma_t) or a callable."""
    if callable(noise):

        def g(t: Tensor, like: Tensor) -> Tensor:
            out = noise(t)
            if not isinstance(out, Tensor) or out.shape != t.shape:
                raise ValueError(
                    f"noise(t) must return a tensor of the shape of t {tuple(t.shape)}, got "
                    f"{getattr(out, 'shape', type(out).__name__)}"
                )
            return out.to(like.dtype).reshape(t.shape[0], *([1] * (like.ndim - 1)))

        return g
    if (
        isinstance(noise, bool)
        or not isinstance(noise, (int, float))
        or not (math.isfinite(noise) and noise >= 0)
    ):
        raise ValueError(f"noise must be a finite number >= 0 or a callable g(t), got {noise!r}")
    scale = float(noise)

    def g_sigma(t: Tensor, like: Tensor) -> Tensor:
        return scale * path.coefficients(t, like).sigma_t

    return g_sigma


@dataclass(frozen=True)
class SDEOptions:
    """Options of the ``sde`` sampler.

    Attributes:
        path: the Gaussian affine path the velocity belongs to (for the score).
        noise: g(t) = noise * sigma_t for a number >= 0 (vanishing at the data end, where the
            score diverges), or a callable ``g(t)`` returning (B,) for t (B,).
    """

    path: AffinePath
    noise: NoiseScale = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, AffinePath):
            raise ValueError(
                f"the SDE needs the score of a Gaussian affine path, got path {self.path!r}"
            )
        _diffusion(self.path, self.noise)  # checks the noise scale


def _euler_maruyama(
    velocity: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    options: SDEOptions | None = None,
) -> ODESolution:
    """The ``run`` of the ``sde`` sampler (see :func:`solve_sde`); one evaluation per step."""
    if options is None:
        raise ValueError("the sde sampler needs SDEOptions(path, noise)")
    g_of = _diffusion(options.path, options.noise)
    batch = x.shape[0]
    steps = times.shape[0] - 1
    for k in range(steps):
        t = times[k].to(x.dtype).expand(batch).to(x.device)
        h = float(times[k + 1] - times[k])
        v = velocity(x, t)
        g = g_of(t, x)
        if bool((g != 0).any()):
            score = options.path.convert(v, src="velocity", dst="score", x_t=x, t=t)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + h * (v + 0.5 * g * g * score) + g * math.sqrt(h) * z
        else:
            x = x + h * v
        if callback is not None:
            callback(k + 1, x)
    return ODESolution(x=x, nfe=steps, times=times.to(x.dtype))


register_sampler(Sampler("sde", _euler_maruyama, options=SDEOptions, needs_score=True))


def solve_sde(
    velocity: Callable[[Tensor, Tensor], Tensor],
    x_init: Tensor,
    *,
    path: AffinePath,
    steps: int,
    noise: NoiseScale = 1.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    """Integrate the flow's marginal-preserving SDE from t = 0 to t = 1 with Euler-Maruyama.

    Each of the ``steps`` uniform steps of size h (:func:`~flowmatch.solvers.time_grid`)
    evaluates the velocity once at its left end t_k and takes
    ``x += h (v + g^2 / 2 score) + g sqrt(h) z``, z ~ N(0, I), with the score converted from v
    on ``path`` (Gaussian source). With ``noise=0`` this is exactly Euler on the ODE.

    Args:
        velocity: ``v(x, t)``, x (B, *D), t (B,).
        x_init: samples of the source at t = 0, (B, *D).
        path: the Gaussian affine path the velocity belongs to.
        steps: number of steps (= NFE), >= 1.
        noise: g(t) = noise * sigma_t for a number >= 0, or a callable ``g(t)`` (see
            :class:`SDEOptions`).
        generator: torch RNG of the Brownian increments.
        return_trajectory: also return the states at the grid times.

    Returns:
        :class:`~flowmatch.solvers.ODESolution` with x at t = 1 and nfe = steps.
    """
    options = SDEOptions(path, noise)
    times = time_grid(steps, dtype=torch.float64)
    return run_sampler(
        "sde",
        velocity,
        x_init,
        times,
        options=options,
        generator=generator,
        return_trajectory=return_trajectory,
    )
