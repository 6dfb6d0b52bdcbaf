"""Time samplers for training: where on the path [0, 1] the loss is evaluated.

t=0 is the source (noise), t=1 the data. Each sampler is called as
``sampler(batch_size, device=..., dtype=..., generator=None)`` and returns times of shape (B,).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = [
    "Constant",
    "Discrete",
    "LogitNormal",
    "Shifted",
    "TimeSampler",
    "Uniform",
    "shift_times",
]


class TimeSampler(ABC):
    """Base class of the time samplers: ``sampler(B, device=, dtype=, generator=)`` -> (B,)."""

    def __call__(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw times.

        Args:
            batch_size: number of times B.
            device, dtype: of the result.
            generator: torch RNG to draw from; torch's global RNG when None.

        Returns:
            Times in [0, 1], shape (B,).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return self._draw(batch_size, device, dtype, generator)

    @abstractmethod
    def _draw(
        self,
        batch_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Draw ``batch_size`` times (arguments already checked)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class Uniform(TimeSampler):
    """t ~ U[0, 1)."""

    def _draw(
        self,
        batch_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> Tensor:
        return torch.rand(batch_size, device=device, dtype=dtype, generator=generator)


class LogitNormal(TimeSampler):
    """t = sigmoid(mean + std * z), z ~ N(0, 1): more weight on the middle of the path.

    Reference: Esser et al. 2024 (Stable Diffusion 3), sec. 3.1. In their convention t=1 is
    noise; here t=0 is, so their ``mean`` corresponds to our ``-mean``.

    Args:
        mean: location in logit space.
        std: scale in logit space, > 0.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        if not math.isfinite(mean):
            raise ValueError(f"LogitNormal: mean must be finite, got {mean!r}")
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"LogitNormal: std must be a finite number > 0, got {std!r}")
        self.mean = float(mean)
        self.std = float(std)

    def _draw(
        self,
        batch_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> Tensor:
        z = torch.randn(batch_size, device=device, dtype=dtype, generator=generator)
        return torch.sigmoid(self.mean + self.std * z)


def check_shift(shift: float) -> None:
    """Raise ValueError unless ``shift`` is a finite number > 0 (a time shift's factor)."""
    if not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a finite number > 0, got {shift!r}")


def shift_times(t: Tensor, shift: float) -> Tensor:
    """Times t in [0, 1] moved by the shift of Stable Diffusion 3 (Esser et al. 2024, 5.3.2).

    With the noise level n = 1 - t, n -> shift * n / (1 + (shift - 1) n): shift > 1 moves
    times towards the noise (t=0), shift < 1 towards the data, shift = 1 changes nothing.
    t = 0 and t = 1 stay where they are and the order of the times is kept.

    Args:
        t: times of any shape, in [0, 1].
        shift: the factor, a finite number > 0.

    Returns:
        The shifted times, the shape and dtype of ``t``.
    """
    check_shift(shift)
    noise = 1.0 - t
    return 1.0 - shift * noise / (1.0 + (shift - 1.0) * noise)


class Shifted(TimeSampler):
    """The resolution-dependent time shift of Stable Diffusion 3 applied to a base sampler.

    With the noise level n = 1 - t, the shift maps n -> shift * n / (1 + (shift - 1) n), so
    shift > 1 moves the times towards the noise (t=0), shift < 1 towards the data and shift = 1
    is the identity. Reference: Esser et al. 2024, sec. 5.3.2 (their t is our 1 - t).

    Args:
        shift: the shift factor, > 0 (SD3 uses sqrt(m/n) for resolution m vs base n).
        base: the sampler whose times are shifted; :class:`Uniform` by default.
    """

    def __init__(self, shift: float = 3.0, base: TimeSampler | None = None) -> None:
        if not (math.isfinite(shift) and shift > 0):
            raise ValueError(f"Shifted: shift must be a finite number > 0, got {shift!r}")
        self.shift = float(shift)
        self.base = base if base is not None else Uniform()

    def _draw(
        self,
        batch_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> Tensor:
        return shift_times(
            self.base(batch_size, device=device, dtype=dtype, generator=generator), self.shift
        )


class Constant(TimeSampler):
    """t = value for every sample.

    With ``value=0`` on fixed (noise, sample) pairs and the linear path, the flow matching loss
    becomes one-step distillation: ``model(x0, 0)`` regresses ``x1 - x0``, so one Euler step
    ``x0 + model(x0, 0)`` lands on ``x1`` (Liu et al. 2023, "Flow straight and fast", sec. 2.3).

    Args:
        value: the time, in [0, 1].
    """

    def __init__(self, value: float = 0.0) -> None:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise ValueError(f"Constant: value must be a number in [0, 1], got {value!r}")
        self.value = float(value)

    def _draw(
        self,
        batch_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> Tensor:
        return torch.full((batch_size,), self.value, device=device, dtype=dtype)


class Discrete(TimeSampler):
    """The times of T discrete timesteps, drawn uniformly: t = 1 - (k + 1) / T, k ~ U{0..T-1}.

    This is how DDPM is trained (Ho et al. 2020, Algorithm 1): with the path of a
    :class:`~flowmatch.schedules.DDPM` schedule of the same T, every drawn t is one of its
    timesteps, so the flow matching loss with ``prediction="epsilon"`` is DDPM's simple loss.

    Args:
        timesteps: T, an integer >= 2.
    """

    def __init__(self, timesteps: int = 1000) -> None:
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 2:
            raise ValueError(f"Discrete: timesteps must be an integer >= 2, got {timesteps!r}")
        self.timesteps = timesteps

    def _draw(
        self,
        batch_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ) -> Tensor:
        k = torch.randint(0, self.timesteps, (batch_size,), device=device, generator=generator)
        return (1.0 - (k.to(torch.float64) + 1.0) / self.timesteps).to(dtype)


TIME_SAMPLERS: dict[str, type[TimeSampler]] = {
    "uniform": Uniform,
    "logit_normal": LogitNormal,
    "shifted": Shifted,
    "constant": Constant,
    "discrete": Discrete,
}
"""Time samplers by their config name (``time: {sampler: NAME}``)."""
