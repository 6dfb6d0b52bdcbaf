"""Embeddings of the time t in [0, 1] (t=0 noise, t=1 data)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SinusoidalTimeEmbedding"]


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
