"""A diffusion transformer (DiT, Peebles & Xie 2023) velocity network for images: patches as
tokens, adaLN-Zero conditioning on time and class."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch.models.embeddings import (
    SinusoidalTimeEmbedding,
    add_class_embedding,
    check_image_input,
    time_features,
)
from flowmatch.models.embeddings import time_frequency as _frequency
from flowmatch.models.registry import register
from flowmatch.models.transformer import _Block, _modulate, _positive_int

__all__ = ["DIT_POSITIONS", "DiT", "sincos_positions"]

DIT_POSITIONS = ("sincos", "learned")
"""The kinds of patch positions: fixed 2-D sine-cosine features, or a learned embedding."""


def sincos_positions(side: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine features of the positions of a ``side x side`` grid of patches.

    The first half of the ``dim`` features encodes the row, the second the column, each as
    ``[sin(p w_i), cos(p w_i)]`` at ``dim / 4`` frequencies ``w_i = 10000 ** (-i / (dim / 4))``
    (MAE's and DiT's encoding).

    Args:
        side: patches per row (and per column).
        dim: number of features, divisible by 4.

    Shapes:
        ``-> (side * side, dim)``, row-major (the order of the tokens).
    """
    if dim % 4:
        raise ValueError(f"2-D sine-cosine positions need dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 10000.0 ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for axis in (rows, cols):
        angles = axis.reshape(-1, 1) * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


@register("dit")
class DiT(nn.Module):
    """A diffusion transformer taking (x_t, t) to a prediction of the shape of the image x_t.

    The image is cut into ``patch x patch`` squares, each turned into a ``dim``-vector token by a
    strided convolution (a linear map of the patch's pixels), plus its position (fixed 2-D
    sine-cosine features or a learned embedding). ``depth`` transformer blocks (multi-head
    self-attention over all tokens and an MLP, pre-LayerNorm) follow, then a final LayerNorm
    and a linear map of each token back to its patch's pixels. The time t in [0, 1] (t=0 noise,
    t=1 data) goes through a sinusoidal embedding and an MLP to a ``dim`` vector (plus a learned
    class vector when class-conditional) that sets the shift, scale and gate of every LayerNorm
    and residual branch (adaLN-Zero). The modulation layers and the output projection start at
    zero, so every block starts as the identity and an untrained model predicts exactly 0.

    Args:
        channels: image channels C (1 grey, 3 RGB), >= 1.
        size: image side S in [8, 64].
        patch: side P of the square patches; must divide S (S/P patches per row, (S/P)^2
            tokens: 8x8 images take 1, 2, 4 or 8; 28x28 ones 1, 2, 4, 7, 14 or 28).
        dim: width of the tokens, divisible by ``heads`` (and by 4 for ``"sincos"``).
        depth: number of transformer blocks.
        heads: attention heads.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``; > 0.
        dropout: dropout probability in attention and MLPs, in [0, 1).
        positions: ``"sincos"`` (fixed 2-D sine-cosine features, :func:`sincos_positions`) or
            ``"learned"`` (a learned embedding of the (S/P)^2 positions).
        time_embed_dim: size of the sinusoidal time embedding (even).
        time_frequency: highest angular frequency of that embedding (rad per unit time);
            None: 1000, or 10 for a two-time model (as for :class:`~flowmatch.models.UNet`).
        num_classes: number K of classes for class conditioning; None for an unconditional
            model. Labels are 0..K-1 and K (``self.null_class``) is a learned "no label" class
            for classifier-free guidance.
        two_times: also embed the length ``t_end - t`` of an averaging interval (MeanFlow:
            ``model(x, t, t_end=e)`` is the average velocity from time t to time e;
            ``t_end=None`` means e = t, the instantaneous velocity).

    Shapes:
        ``x (B, C, S, S), t (B,) [, cond (B,) int64] [, t_end (B,)] -> (B, C, S, S)``.

    Example:
        >>> model = DiT(1, 8, patch=2, dim=32, depth=2, heads=4, num_classes=10)
        >>> x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
        >>> model(x, t, cond=torch.tensor([0, 3, 9, model.null_class])).shape
        torch.Size([4, 1, 8, 8])
    """

    pos_buffer: Tensor  # the fixed positions (a buffer, not saved), with "sincos"

    def __init__(
        self,
        channels: int = 1,
        size: int = 8,
        *,
        patch: int = 2,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        positions: str = "sincos",
        time_embed_dim: int = 128,
        time_frequency: float | None = None,
        num_classes: int | None = None,
        two_times: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("channels", channels),
            ("patch", patch),
            ("dim", dim),
            ("depth", depth),
            ("heads", heads),
        ):
            _positive_int(name, value)
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 64:
            raise ValueError(f"size must be an integer in [8, 64], got {size!r}")
        if size % patch:
            sides = [p for p in range(1, size + 1) if size % p == 0]
            raise ValueError(
                f"patch={patch} must divide the image side size={size} (one of {sides})"
            )
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if positions not in DIT_POSITIONS:
            raise ValueError(f"positions must be one of {DIT_POSITIONS}, got {positions!r}")
        if positions == "sincos" and dim % 4:
            raise ValueError(f"positions='sincos' needs dim divisible by 4, got dim={dim}")
        if (
            isinstance(mlp_ratio, bool)
            or not isinstance(mlp_ratio, (int, float))
            or not (math.isfinite(mlp_ratio) and mlp_ratio > 0)
        ):
            raise ValueError(f"mlp_ratio must be a finite number > 0, got {mlp_ratio!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if (
            isinstance(time_embed_dim, bool)
            or not isinstance(time_embed_dim, int)
            or time_embed_dim < 2
            or time_embed_dim % 2
        ):
            raise ValueError(f"time_embed_dim must be an even integer >= 2, got {time_embed_dim!r}")
        if num_classes is not None:
            _positive_int("num_classes", num_classes)
        if not isinstance(two_times, bool):
            raise ValueError(f"two_times must be a bool, got {two_times!r}")

        self.channels, self.size, self.patch = channels, size, patch
        self.grid = size // patch  # patches per row
        self.num_classes = num_classes
        self.null_class = num_classes
        self.two_times = two_times
        self.time_frequency = _frequency(time_frequency, two_times=two_times)
        tokens = self.grid**2

        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        if positions == "learned":
            self.pos_embed: nn.Parameter | None = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        else:
            self.pos_embed = None
            self.register_buffer("pos_buffer", sincos_positions(self.grid, dim), persistent=False)
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim, max_frequency=self.time_frequency)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim * (2 if two_times else 1), dim),
            nn.SiLU(),
            nn.Linear(dim, dim),
        )
        self.class_embed = nn.Embedding(num_classes + 1, dim) if num_classes is not None else None
        hidden = max(1, round(dim * mlp_ratio))
        self.blocks = nn.ModuleList(_Block(dim, heads, hidden, dropout) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, patch * patch * channels)
        for layer in (self.ada_out, self.out):  # adaLN-Zero: the blocks' ada start at 0 too
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _patchify(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) -> tokens (B, N, dim), N = (S/P)^2, row-major, with positions."""
        h = self.patch_embed(x).flatten(2).transpose(1, 2)
        pos = self.pos_embed if self.pos_embed is not None else self.pos_buffer
        return h + pos.to(h.dtype)

    def _unpatchify(self, out: Tensor) -> Tensor:
        """Per-token pixels (B, N, P*P*C) -> images (B, C, S, S)."""
        b, g, p, c = out.shape[0], self.grid, self.patch, self.channels
        out = out.reshape(b, g, g, p, p, c)  # (B, row, col, y in patch, x in patch, C)
        return out.permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        cond: Tensor | None = None,
        t_end: Tensor | None = None,
    ) -> Tensor:
        """The prediction at (x_t, t).

        Args:
            x: images x_t, shape (B, C, S, S).
            t: times in [0, 1], shape (B,); t=0 is noise, t=1 data.
            cond: class labels in [0, num_classes], shape (B,), integer; ``num_classes`` (the
                null class) or ``cond=None`` means unconditional. Class-conditional models only.
            t_end: end times of the averaging interval, shape (B,); two_times models only.

        Returns:
            The prediction, shape (B, C, S, S).
        """
        check_image_input(x, t, (self.channels, self.size, self.size))
        features = time_features(self.time_embed, t, t_end, two_times=self.two_times, owner="DiT")
        c = self.time_mlp(features.to(x.dtype))
        c = F.silu(add_class_embedding(c, cond, self.class_embed, self.num_classes, "DiT"))
        h = self._patchify(x)
        c = c.to(h.dtype)
        for block in self.blocks:
            h = block(h, c, None, False, None)
        shift, scale = self.ada_out(c)[:, None].chunk(2, dim=2)
        return self._unpatchify(self.out(_modulate(self.norm_out(h), shift, scale)))
