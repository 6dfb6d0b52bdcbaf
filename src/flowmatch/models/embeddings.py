"""Embeddings of the time t in [0, 1] (t=0 noise, t=1 data)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_TIME_FREQUENCY",
    "TWO_TIMES_TIME_FREQUENCY",
    "SinusoidalTimeEmbedding",
    "add_class_embedding",
    "check_image_input",
    "time_features",
    "time_frequency",
]

DEFAULT_TIME_FREQUENCY = 1000.0
"""Highest angular frequency of a one-time model's time embedding (rad per unit time)."""
TWO_TIMES_TIME_FREQUENCY = 10.0
"""That of a two-time (MeanFlow) model: its loss differentiates the network in time, and with
1000 rad training diverged (checkerboard, 20k steps: one-step W2 3.9 and two-step 44 vs 0.35
and 0.31 at 10 rad; 3 and 30 rad within 0.02 of 10; benchmarks/RESULTS.md, "MeanFlow
settings")."""


def time_frequency(value: float | None, *, two_times: bool) -> float:
    """The embedding's highest frequency: ``value``, or the default of one- or two-time
    models. Raises ValueError unless it is a finite number > 0."""
    if value is None:
        return TWO_TIMES_TIME_FREQUENCY if two_times else DEFAULT_TIME_FREQUENCY
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"time_frequency must be a finite number > 0, got {value!r}")
    return float(value)


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal features of t: [sin(f_i t), cos(f_i t)] at geometric frequencies.

    The frequencies run from 1 to ``max_frequency`` (rad per unit time) geometrically, the
    transformer positional encoding of Vaswani et al. 2017 applied to t in [0, 1].

    Args:
        dim: output size, even.
        max_frequency: the highest angular frequency.

    Shapes:
        t (B,) -> (B, dim).
    """

    freqs: Tensor  # a buffer

    def __init__(self, dim: int, *, max_frequency: float = 1000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim!r}")
        if not max_frequency > 0:
            raise ValueError(f"max_frequency must be > 0, got {max_frequency!r}")
        half = dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), half))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        angles = t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def time_features(
    embed: SinusoidalTimeEmbedding,
    t: Tensor,
    t_end: Tensor | None,
    *,
    two_times: bool,
    owner: str,
) -> Tensor:
    """The sinusoidal features of the times t (B,) in [0, 1] (t=0 noise, t=1 data): (B, E),
    and for a two-time (MeanFlow) net those of the interval's length ``t_end - t`` after them,
    (B, 2E); ``t_end=None`` there means a length of 0 (the instantaneous velocity).

    Raises:
        ValueError: ``t_end`` given to a one-time net (``owner`` names it), or of a shape
            other than t's.
    """
    parts = [embed(t)]
    if two_times:
        if t_end is not None and t_end.shape != t.shape:
            raise ValueError(f"t_end must have shape {tuple(t.shape)}, got {tuple(t_end.shape)}")
        parts.append(embed(torch.zeros_like(t) if t_end is None else t_end - t))
    elif t_end is not None:
        raise ValueError(f"t_end needs a two_times model ({owner}(..., two_times=True))")
    return torch.cat(parts, dim=1)


def add_class_embedding(
    c: Tensor, cond: Tensor | None, embed: nn.Embedding | None, num_classes: int | None, owner: str
) -> Tensor:
    """The conditioning vector ``c`` (B, E) plus the embedding of the labels ``cond`` (B,).

    ``embed`` has K + 1 entries, the last (K) the null class that ``cond=None`` means
    (classifier-free guidance); without ``embed`` (an unconditional net) ``c`` is returned.

    Raises:
        ValueError: labels given to an unconditional net (``owner`` names it), or labels of
            the wrong shape, dtype or range.
    """
    batch = c.shape[0]
    if embed is None:
        if cond is not None:
            raise ValueError(f"cond needs a class-conditional model ({owner}(..., num_classes=K))")
        return c
    assert num_classes is not None
    if cond is None:
        cond = torch.full((batch,), num_classes, dtype=torch.long, device=c.device)
    if cond.shape != (batch,):
        raise ValueError(f"cond must have shape ({batch},), got {tuple(cond.shape)}")
    if cond.dtype.is_floating_point or cond.dtype.is_complex or cond.dtype == torch.bool:
        raise ValueError(f"cond must hold integer class labels, got dtype {cond.dtype}")
    if batch and (int(cond.min()) < 0 or int(cond.max()) > num_classes):
        raise ValueError(
            f"cond labels must be in [0, {num_classes}] ({num_classes} is the "
            f"null class), got values in [{int(cond.min())}, {int(cond.max())}]"
        )
    return c + embed(cond.long())


def check_image_input(x: Tensor, t: Tensor, expected: tuple[int, int, int]) -> None:
    """Check an image network's inputs: x of shape (B, C, H, W) = (B, *expected), t (B,).

    Raises:
        ValueError: either shape is wrong; one line naming the shapes.
    """
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"x must have shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
        )
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
