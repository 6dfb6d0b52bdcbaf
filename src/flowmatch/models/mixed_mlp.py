"""An MLP for tables of continuous and categorical columns (a mixed flow's default net)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.embeddings import time_frequency as _frequency
from flowmatch.models.mlp import ACTIVATIONS
from flowmatch.models.registry import register

__all__ = ["MixedMLP"]


@register("mixed_mlp")
class MixedMLP(nn.Module):
    """An MLP taking a noisy mixed row and t to a velocity and per-column logits.

    The input row x (B, Dc + Dk) holds the Dc continuous values x_t then the Dk categorical
    codes as floats, code V_j meaning "masked" for column j (the layout of
    :class:`~flowmatch.discrete.MixedFlowModel`). The net sees [x_cont, one-hot(code_j) over
    V_j + 1 ids for each column, sinusoidal embedding of t], ``depth`` hidden layers of
    width ``hidden``, and a linear output of Dc + sum(V_j): the velocity of the continuous
    part, then the logits of each column's categories, concatenated in column order.

    Args:
        num_continuous: Dc >= 0.
        vocab_sizes: V_j >= 1 for each categorical column (Dk of them).
        hidden: width of the hidden layers.
        depth: number of hidden layers, >= 1.
        activation: silu, gelu, relu or tanh.
        time_embed_dim: size of the time embedding (even).
        time_frequency: highest angular frequency of the time embedding; None: 1000.

    Shapes:
        x (B, Dc + Dk), t (B,) -> (B, Dc + sum(V_j)).
    """

    offsets: Tensor  # a buffer

    def __init__(
        self,
        num_continuous: int,
        vocab_sizes: Sequence[int],
        hidden: int = 256,
        depth: int = 3,
        *,
        activation: str = "silu",
        time_embed_dim: int = 64,
        time_frequency: float | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_continuous, bool) or not isinstance(num_continuous, int):
            raise ValueError(f"num_continuous must be an integer >= 0, got {num_continuous!r}")
        if num_continuous < 0:
            raise ValueError(f"num_continuous must be an integer >= 0, got {num_continuous!r}")
        vocab = list(vocab_sizes) if isinstance(vocab_sizes, (list, tuple)) else None
        if vocab is None or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vocab
        ):
            raise ValueError(f"vocab_sizes must be a list of integers >= 1, got {vocab_sizes!r}")
        if num_continuous + len(vocab) < 1:
            raise ValueError("num_continuous and vocab_sizes: the table needs at least one column")
        for name, value in (("hidden", hidden), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.num_continuous = num_continuous
        self.vocab_sizes = vocab
        self.time_frequency = _frequency(time_frequency, two_times=False)
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim, max_frequency=self.time_frequency)
        # Offsets of each column's V_j + 1 one-hot ids in the concatenated one-hot input.
        sizes = torch.tensor([0, *vocab], dtype=torch.long)[:-1] + 1
        offsets = (sizes.cumsum(0) - 1) if vocab else sizes[:0]
        self.register_buffer("offsets", offsets, persistent=False)
        self.num_onehot = sum(vocab) + len(vocab)
        layers: list[nn.Module] = []
        width = num_continuous + self.num_onehot + time_embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, num_continuous + sum(vocab)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        dc, dk = self.num_continuous, len(self.vocab_sizes)
        if x.ndim != 2 or x.shape[1] != dc + dk:
            raise ValueError(f"x must have shape (B, {dc + dk}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        parts = [x[:, :dc]]
        if dk:
            ids = x[:, dc:].round().long() + self.offsets
            onehot = torch.zeros(x.shape[0], self.num_onehot, dtype=x.dtype, device=x.device)
            parts.append(onehot.scatter_(1, ids, 1.0))
        parts.append(self.time_embed(t).to(x.dtype))
        return self.net(torch.cat(parts, dim=1))
