"""Hugging Face diffusers' ``FlowMatchEulerDiscreteScheduler`` (SD3, Flux) in our convention.

diffusers counts a noise level sigma = 1 - t: sigma = 1 is noise, sigma = 0 data, and
x_sigma = (1 - sigma) x_data + sigma noise, our linear path x_t = t x1 + (1 - t) x0 read
backwards. Its models are called ``model(x, timestep)`` with timestep = sigma *
num_train_timesteps and predict v_diffusers = noise - x_data = dx/dsigma, so our velocity
dx/dt is v = -v_diffusers. Its sampler steps x <- x + (sigma_next - sigma) v_diffusers, which
is our Euler step on the grid t = 1 - sigma.

* :func:`sigmas_from_diffusers` / :func:`time_grid_from_diffusers`: the sigmas
  ``set_timesteps`` sets (shift, dynamic shifting with mu, shift_terminal, custom sigmas),
  computed without diffusers, and our ascending time grid t = 1 - sigma for
  ``fm.sample(..., times=grid, method="euler")``.
* :func:`shifted_time_sampler`: the training times of the same shift, a
  :class:`~flowmatch.time.Shifted`.
* :func:`from_diffusers_velocity` / :func:`to_diffusers_velocity`: a velocity model of one
  convention as a net of the other.

diffusers itself is imported only to read a scheduler object that is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from flowmatch.interop._common import batch_time, output_tensor, store_model
from flowmatch.time import Discrete, Shifted, TimeSampler

__all__ = [
    "DiffusersVelocity",
    "FromDiffusersVelocity",
    "calculate_shift",
    "from_diffusers_velocity",
    "scheduler_shift",
    "shifted_time_sampler",
    "sigmas_from_diffusers",
    "time_grid_from_diffusers",
    "to_diffusers_velocity",
]

_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "invert_sigmas": False,
    "shift_terminal": None,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "time_shift_type": "exponential",
    "stochastic_sampling": False,
}
_UNSUPPORTED = (
    "invert_sigmas",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "stochastic_sampling",
)


def _config(scheduler_or_config: Any) -> dict[str, Any]:
    """The scheduler's settings with diffusers' defaults filled in; the shift a scheduler
    object carries (``set_shift``) wins over its config's."""
    is_scheduler = hasattr(scheduler_or_config, "set_timesteps")
    raw = scheduler_or_config.config if is_scheduler else scheduler_or_config
    if not isinstance(raw, Mapping):
        raise ValueError(
            "expected a FlowMatchEulerDiscreteScheduler or its config (a mapping), got "
            f"{type(scheduler_or_config).__name__}"
        )
    cfg = {**_DEFAULTS, **{k: v for k, v in raw.items() if k in _DEFAULTS}}
    if is_scheduler and hasattr(scheduler_or_config, "shift"):
        cfg["shift"] = float(scheduler_or_config.shift)
    bad = [k for k in _UNSUPPORTED if cfg[k]]
    if bad:
        raise ValueError(f"scheduler settings {bad} are not supported (not an ODE grid of t)")
    if cfg["time_shift_type"] not in ("exponential", "linear"):
        raise ValueError(f"unknown time_shift_type {cfg['time_shift_type']!r}")
    return cfg


def calculate_shift(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """mu of dynamic shifting for an image of ``image_seq_len`` latent tokens: linear from
    ``base_shift`` at ``base_seq_len`` to ``max_shift`` at ``max_seq_len`` (the formula of
    diffusers' Flux and SD3 pipelines)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def _mu(cfg: dict[str, Any], mu: float | None, image_seq_len: int | None) -> float | None:
    if not cfg["use_dynamic_shifting"]:
        if mu is not None or image_seq_len is not None:
            raise ValueError("mu / image_seq_len apply only with use_dynamic_shifting=True")
        return None
    if (mu is None) == (image_seq_len is None):
        raise ValueError("use_dynamic_shifting: give exactly one of mu and image_seq_len")
    if mu is None:
        assert image_seq_len is not None
        mu = calculate_shift(
            image_seq_len,
            cfg["base_image_seq_len"],
            cfg["max_image_seq_len"],
            cfg["base_shift"],
            cfg["max_shift"],
        )
    if not math.isfinite(mu):
        raise ValueError(f"mu must be finite, got {mu!r}")
    return float(mu)


def scheduler_shift(
    scheduler_or_config: Any, *, mu: float | None = None, image_seq_len: int | None = None
) -> float:
    """The SD3 shift factor s of a scheduler: sigma -> s sigma / (1 + (s - 1) sigma).

    The config's ``shift``; with dynamic shifting, exp(mu) (``time_shift_type`` exponential)
    or mu (linear), mu given or computed from ``image_seq_len`` by :func:`calculate_shift`.
    """
    cfg = _config(scheduler_or_config)
    m = _mu(cfg, mu, image_seq_len)
    if m is None:
        return float(cfg["shift"])
    return math.exp(m) if cfg["time_shift_type"] == "exponential" else m


def _shift(cfg: dict[str, Any], sigmas: np.ndarray, mu: float | None) -> np.ndarray:
    """Step 2 of ``set_timesteps``: the static or dynamic (mu) shift, in diffusers' order of
    operations (so that the float32 result is bit for bit theirs)."""
    if mu is None:
        s = cfg["shift"]
        return s * sigmas / (1 + (s - 1) * sigmas)
    if cfg["time_shift_type"] == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** 1.0)
    return mu / (mu + (1 / sigmas - 1) ** 1.0)


def sigmas_from_diffusers(
    scheduler_or_config: Any,
    num_inference_steps: int | None = None,
    *,
    mu: float | None = None,
    image_seq_len: int | None = None,
    sigmas: Sequence[float] | None = None,
) -> Tensor:
    """The sigmas ``scheduler.set_timesteps(num_inference_steps, mu=mu, sigmas=sigmas)``
    sets, without diffusers: float32, shape (N+1,), descending, the last one 0.

    Args:
        scheduler_or_config: a ``FlowMatchEulerDiscreteScheduler`` or its config mapping
            (``num_train_timesteps``, ``shift``, ``use_dynamic_shifting``, ``base_shift``,
            ``max_shift``, ``base_image_seq_len``, ``max_image_seq_len``, ``shift_terminal``,
            ``time_shift_type``; diffusers' defaults for missing keys).
        num_inference_steps: N; may be None when ``sigmas`` is given.
        mu: the dynamic shift (``use_dynamic_shifting`` only).
        image_seq_len: latent tokens of the image, giving mu by :func:`calculate_shift`
            (instead of ``mu``).
        sigmas: custom sigmas before shifting (as the Flux pipelines pass), length N.

    Raises:
        ValueError: karras / exponential / beta sigmas, inverted sigmas or stochastic
            sampling (not supported), a missing or superfluous mu, a bad N, sigmas that are
            not finite.
    """
    cfg = _config(scheduler_or_config)
    m = _mu(cfg, mu, image_seq_len)
    if sigmas is not None:
        if num_inference_steps is not None and len(sigmas) != num_inference_steps:
            raise ValueError("sigmas must have num_inference_steps entries")
        base = np.array(sigmas).astype(np.float32)
    else:
        n = num_inference_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {n!r}")
        # __init__: the training sigmas (shifted unless dynamic), of which set_timesteps
        # spans [sigma_min, sigma_max]: the largest and smallest.
        big_n = cfg["num_train_timesteps"]
        train = torch.tensor([float(big_n), 1.0], dtype=torch.float32) / big_n
        if not cfg["use_dynamic_shifting"]:
            train = cfg["shift"] * train / (1 + (cfg["shift"] - 1) * train)
        sigma_max, sigma_min = train[0].item(), train[1].item()
        base = np.linspace(sigma_max * big_n, sigma_min * big_n, n) / big_n
    shifted = _shift(cfg, base, m)
    if cfg["shift_terminal"]:
        one_minus_z = 1 - shifted
        scale_factor = one_minus_z[-1] / (1 - cfg["shift_terminal"])
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 with one step: caught below
            shifted = 1 - (one_minus_z / scale_factor)
    out = torch.from_numpy(np.asarray(shifted)).to(torch.float32)
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the scheduler's sigmas are not finite (shift_terminal with one step?)")
    return torch.cat([out, torch.zeros(1)])


def time_grid_from_diffusers(
    scheduler_or_config: Any,
    num_inference_steps: int | None = None,
    *,
    mu: float | None = None,
    image_seq_len: int | None = None,
    sigmas: Sequence[float] | None = None,
) -> Tensor:
    """Our time grid t = 1 - sigma of the sigmas diffusers' ``set_timesteps`` sets.

    ``fm.sample(net, x0, times=grid, method="euler")`` then takes the steps diffusers' Euler
    loop takes. Arguments as in :func:`sigmas_from_diffusers`.

    Returns:
        float64 times, shape (N+1,), ascending, from 1 - sigma_max (0 for the default
        schedules) to exactly 1 (sigma 0, the data); each is 1 - sigma of a float32 sigma,
        exact in float64.
    """
    s = sigmas_from_diffusers(
        scheduler_or_config,
        num_inference_steps,
        mu=mu,
        image_seq_len=image_seq_len,
        sigmas=sigmas,
    )
    return 1.0 - s.to(torch.float64)


def shifted_time_sampler(
    scheduler_or_config: Any,
    *,
    mu: float | None = None,
    image_seq_len: int | None = None,
    base: TimeSampler | None = None,
    discrete: bool = False,
) -> Shifted:
    """Our training-time sampler with the scheduler's shift: :class:`~flowmatch.time.Shifted`.

    diffusers trains on the scheduler's training sigmas: shift(sigma) for sigma in
    {1/T, ..., 1}, T = ``num_train_timesteps``, as does ``Shifted(s, Discrete(T))``
    (``discrete=True``); the default ``Shifted(s, Uniform())`` is its continuous version.
    With dynamic shifting the shift is that of mu (see :func:`scheduler_shift`), which must
    then be given (or ``image_seq_len``).

    Args:
        scheduler_or_config: the scheduler or its config.
        mu: the dynamic shift's mu.
        image_seq_len: the image sequence length mu is computed from, when mu is not given.
        base: the sampler of the unshifted times (e.g. ``fm.time.LogitNormal()`` for SD3's
            logit-normal weighting); Uniform by default.
        discrete: shift the T training timesteps (``fm.time.Discrete(T)``) instead.

    Returns:
        A :class:`~flowmatch.time.Shifted` time sampler (times t = 1 - sigma in [0, 1]).
    """
    shift = scheduler_shift(scheduler_or_config, mu=mu, image_seq_len=image_seq_len)
    if discrete:
        if base is not None:
            raise ValueError("give base or discrete=True, not both")
        base = Discrete(int(_config(scheduler_or_config)["num_train_timesteps"]))
    return Shifted(shift, base=base)


class FromDiffusersVelocity(nn.Module):
    """A diffusers-convention velocity model as our net ``net(x, t)``; see
    :func:`from_diffusers_velocity`."""

    model: Callable[..., Any]  # set by store_model

    def __init__(
        self, model: Callable[..., Any], num_train_timesteps: int = 1000, cond_name: str = "cond"
    ) -> None:
        super().__init__()
        store_model(self, model)
        self.num_train_timesteps = int(num_train_timesteps)
        self.cond_name = cond_name

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """Our velocity dx/dt at x (B, *D), times t (B,) (t=0 noise, t=1 data): -model(x,
        (1 - t) * num_train_timesteps) (B, *D); ``cond`` goes to the model as ``cond_name``."""
        timestep = (1.0 - batch_time(t, x)) * self.num_train_timesteps
        kwargs = {} if cond is None else {self.cond_name: cond}
        return -output_tensor(self.model(x, timestep, **kwargs))


class DiffusersVelocity(nn.Module):
    """Our velocity net as a diffusers-convention model; see :func:`to_diffusers_velocity`."""

    model: Callable[..., Any]  # set by store_model

    def __init__(self, net: Callable[..., Any], num_train_timesteps: int = 1000) -> None:
        super().__init__()
        store_model(self, net)
        self.num_train_timesteps = int(num_train_timesteps)

    def forward(self, x: Tensor, timestep: Tensor | float, **kwargs: Any) -> Tensor:
        """v_diffusers = -net(x, 1 - timestep / num_train_timesteps) at x (B, *D); timestep a
        number, a 0-dim or a (B,) tensor (sigma * num_train_timesteps, the scheduler's
        ``timesteps``). Keyword arguments go to the net (e.g. ``cond=labels``)."""
        t = 1.0 - batch_time(timestep, x) / self.num_train_timesteps
        return -self.model(x, t, **kwargs)


def from_diffusers_velocity(
    model: Callable[..., Any], *, num_train_timesteps: int = 1000, cond_name: str = "cond"
) -> FromDiffusersVelocity:
    """Wrap a diffusers-convention velocity model as a net in our convention.

    Args:
        model: ``model(x, timestep)`` with x (B, *D) and timestep (B,) = sigma *
            ``num_train_timesteps`` (sigma = 1 noise), returning v_diffusers = noise - data,
            (B, *D) (a tensor, or an output with ``.sample``, or a tuple whose first entry is
            it, as diffusers' transformers return).
        num_train_timesteps: the scheduler's ``num_train_timesteps``.
        cond_name: the keyword under which our ``cond`` reaches the model (e.g.
            ``encoder_hidden_states``).

    Returns:
        An ``nn.Module`` ``net(x, t)`` (t (B,), t=0 noise, t=1 data) returning our velocity
        dx/dt = -v_diffusers; ``fm.FlowModel(net)``, ``fm.sample`` and
        ``fm.log_likelihood`` take it as a velocity net on the linear path.
    """
    return FromDiffusersVelocity(model, num_train_timesteps, cond_name)


def to_diffusers_velocity(
    net: Callable[..., Any], *, num_train_timesteps: int = 1000
) -> DiffusersVelocity:
    """Wrap our velocity net ``net(x, t)`` (linear path, t=0 noise) as ``model(x, timestep)``
    in diffusers' convention (timestep = (1 - t) * ``num_train_timesteps``, output
    v_diffusers = -v), for ``FlowMatchEulerDiscreteScheduler.step``. The inverse of
    :func:`from_diffusers_velocity`."""
    return DiffusersVelocity(net, num_train_timesteps)
