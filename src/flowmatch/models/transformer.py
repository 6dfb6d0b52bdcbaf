"""A bidirectional transformer for sequences of tokens or vectors (DiT-style adaLN-Zero
conditioning on time and class; Peebles & Xie 2023)."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch.models.embeddings import SinusoidalTimeEmbedding, add_class_embedding
from flowmatch.models.embeddings import time_frequency as _frequency
from flowmatch.models.registry import register

__all__ = ["POSITIONS", "SequenceTransformer"]

POSITIONS = ("learned", "rotary")
"""The kinds of position information: a learned embedding added to the input, or rotary
embeddings (RoPE, Su et al. 2021) applied to the queries and keys of every attention."""


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x (B, H, L, d): the pairs (x_i, x_{i + d/2}) turned by the angles."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class _Block(nn.Module):
    """Pre-LN block: adaLN -> self-attention -> gated residual; adaLN -> MLP -> gated residual.
    Its modulation layer starts at zero, so the block starts as the identity (adaLN-Zero)."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )
        self.drop = nn.Dropout(dropout)
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(
        self,
        h: Tensor,
        c: Tensor,
        attn_mask: Tensor | None,
        causal: bool,
        rope: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=2)
        b, n, d = h.shape
        a = _modulate(self.norm1(h), shift1, scale1)
        # (B, L, 3D) -> three (B, H, L, D/H)
        q, k, v = self.qkv(a).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = _rotate(q, *rope), _rotate(k, *rope)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and attn_mask is None,
        )
        h = h + gate1 * self.drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))
        return h + gate2 * self.drop(self.mlp(_modulate(self.norm2(h), shift2, scale2)))


@register("transformer")
class SequenceTransformer(nn.Module):
    """A transformer taking a sequence x_t and the time t to per-position predictions.

    The input (token ids through an embedding, or vectors through a Linear layer) goes through
    ``depth`` pre-LN blocks of multi-head self-attention and an MLP, bidirectional unless
    ``causal``, then a final LayerNorm and a Linear layer to ``out_size`` per position. The
    time t in [0, 1] (t=0 source/noise, t=1 data) goes through a sinusoidal embedding and an
    MLP to a vector c (plus a learned class vector when class-conditional) that sets the
    shift, scale and gate of every LayerNorm and residual branch (DiT's adaLN-Zero, Peebles &
    Xie 2023). The modulation layers and the output layer start at zero, so every block starts
    as the identity and an untrained model outputs zeros (uniform logits in token mode).

    Args:
        length: the longest sequence L, >= 1; shorter ones are allowed.
        vocab_size: token mode: number V of input ids (with a mask token if the source has
            one). Exactly one of ``vocab_size`` and ``channels`` must be given.
        channels: continuous mode: size C of each position's vector.
        out_size: outputs per position; None: ``vocab_size`` (logits) or ``channels``.
        dim: width of the model, divisible by ``heads``.
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``; > 0.
        dropout: dropout probability in attention and MLPs, in [0, 1).
        positions: ``"learned"`` (an embedding of the ``length`` positions added to the
            input) or ``"rotary"`` (RoPE on queries and keys; needs an even ``dim // heads``).
        num_classes: number K of classes for class conditioning; None for an unconditional
            model. Labels are 0..K-1 and K (``self.null_class``) is a learned "no label" class
            for classifier-free guidance.
        causal: position i attends only to positions <= i (an autoregressive model).
        time_embed_dim: size of the sinusoidal time embedding (even).
        time_frequency: highest angular frequency of that embedding (rad per unit time);
            None: 1000.

    Shapes:
        token mode: ``x (B, L') int64 ids in [0, V), t (B,) or None [, cond (B,) int64]
        [, mask (B, L') bool] -> (B, L', out_size)`` logits, L' <= L.
        continuous mode: x (B, L', C) float -> (B, L', out_size), by default x's shape.
        t=0 is the source (noise or all-mask), t=1 the data; ``t=None`` means no time
        conditioning (an autoregressive model).

    Example:
        >>> model = SequenceTransformer(16, vocab_size=11, out_size=10, dim=32, depth=2)
        >>> model(torch.randint(0, 11, (4, 16)), torch.rand(4)).shape
        torch.Size([4, 16, 10])
        >>> net = SequenceTransformer(16, channels=3, dim=32, positions="rotary")
        >>> net(torch.randn(4, 12, 3), torch.rand(4)).shape
        torch.Size([4, 12, 3])
    """

    rope_cos: Tensor  # buffers, with rotary positions
    rope_sin: Tensor

    def __init__(
        self,
        length: int,
        *,
        vocab_size: int | None = None,
        channels: int | None = None,
        out_size: int | None = None,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        positions: str = "learned",
        num_classes: int | None = None,
        causal: bool = False,
        time_embed_dim: int = 128,
        time_frequency: float | None = None,
    ) -> None:
        super().__init__()
        for name, size in (("length", length), ("dim", dim), ("depth", depth), ("heads", heads)):
            _positive_int(name, size)
        if (vocab_size is None) == (channels is None):
            raise ValueError(
                "give exactly one of vocab_size (token ids) and channels (vectors), "
                f"got vocab_size={vocab_size!r}, channels={channels!r}"
            )
        for name, value in (
            ("vocab_size", vocab_size),
            ("channels", channels),
            ("out_size", out_size),
            ("num_classes", num_classes),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
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
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        head_dim = dim // heads
        if positions == "rotary" and head_dim % 2:
            raise ValueError(
                f"positions='rotary' needs an even head size dim // heads, got {dim} // {heads}"
            )
        if not isinstance(causal, bool):
            raise ValueError(f"causal must be a bool, got {causal!r}")
        if (
            isinstance(time_embed_dim, bool)
            or not isinstance(time_embed_dim, int)
            or time_embed_dim < 2
            or time_embed_dim % 2
        ):
            raise ValueError(f"time_embed_dim must be an even integer >= 2, got {time_embed_dim!r}")

        self.length, self.vocab_size, self.channels = length, vocab_size, channels
        self.out_size = out_size if out_size is not None else (vocab_size or channels)
        assert self.out_size is not None  # exactly one of vocab_size and channels is given
        self.dim, self.positions, self.causal = dim, positions, causal
        self.num_classes = num_classes
        self.null_class = num_classes
        self.time_frequency = _frequency(time_frequency, two_times=False)

        if vocab_size is not None:
            self.embed: nn.Module = nn.Embedding(vocab_size, dim)
            nn.init.normal_(self.embed.weight, std=0.02)
        else:
            self.embed = nn.Linear(channels, dim)  # type: ignore[arg-type]
        if positions == "learned":
            self.pos_embed: nn.Parameter | None = nn.Parameter(torch.randn(length, dim) * 0.02)
        else:
            self.pos_embed = None
            inv = 10000.0 ** (
                -torch.arange(0, head_dim // 2, dtype=torch.float32) / (head_dim // 2)
            )
            angles = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
            angles = torch.cat([angles, angles], dim=1)  # (L, head_dim): pairs (i, i + d/2)
            self.register_buffer("rope_cos", angles.cos(), persistent=False)
            self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim, max_frequency=self.time_frequency)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.class_embed = nn.Embedding(num_classes + 1, dim) if num_classes is not None else None
        hidden = max(1, round(dim * mlp_ratio))
        self.blocks = nn.ModuleList(_Block(dim, heads, hidden, dropout) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, self.out_size)
        for layer in (self.ada_out, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _check_x(self, x: Tensor) -> None:
        if self.vocab_size is not None:
            if x.ndim != 2:
                raise ValueError(f"x must be token ids of shape (B, L), got {tuple(x.shape)}")
            if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
                raise ValueError(f"x must hold integer token ids, got dtype {x.dtype}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
                raise ValueError(
                    f"token ids must be in [0, {self.vocab_size - 1}] (vocab_size="
                    f"{self.vocab_size}), got values in [{int(x.min())}, {int(x.max())}]"
                )
        else:
            if x.ndim != 3 or x.shape[2] != self.channels:
                raise ValueError(f"x must have shape (B, L, {self.channels}), got {tuple(x.shape)}")
            if not x.dtype.is_floating_point:
                raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if not 1 <= x.shape[1] <= self.length:
            raise ValueError(
                f"sequence length {x.shape[1]} must be in [1, {self.length}] (length={self.length})"
            )

    def _conditioning(self, x: Tensor, t: Tensor | None, cond: Tensor | None) -> Tensor:
        batch = x.shape[0]
        dtype = cast(nn.Linear, self.time_mlp[0]).weight.dtype
        if t is None:
            c = torch.zeros(batch, self.dim, dtype=dtype, device=x.device)
        else:
            if t.shape != (batch,):
                raise ValueError(f"t must have shape ({batch},) or be None, got {tuple(t.shape)}")
            c = self.time_mlp(self.time_embed(t).to(dtype))
        return add_class_embedding(
            c, cond, self.class_embed, self.num_classes, "SequenceTransformer"
        )

    def _attention_mask(self, mask: Tensor | None, batch: int, n: int) -> Tensor | None:
        """None (no padding), or a bool (B, 1, L, L) mask: True where a query may attend."""
        if mask is None:
            return None
        if mask.shape != (batch, n) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape ({batch}, {n}), got "
                f"{tuple(mask.shape)} {mask.dtype}"
            )
        # Every query also sees itself, so a row of padding only never softmaxes over nothing
        # (NaN); real queries see themselves anyway, so their outputs are unaffected.
        eye = torch.eye(n, dtype=torch.bool, device=mask.device)
        allowed = mask[:, None, None, :] | eye
        if self.causal:
            allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
        return allowed

    def forward(
        self,
        x: Tensor,
        t: Tensor | None,
        cond: Tensor | None = None,
        *,
        mask: Tensor | None = None,
    ) -> Tensor:
        """The per-position prediction at (x_t, t).

        Args:
            x: token ids (B, L') in token mode, vectors (B, L', C) in continuous mode.
            t: times in [0, 1], shape (B,); t=0 is the source, t=1 the data. None: no time
                conditioning.
            cond: class labels in [0, num_classes], shape (B,), integer; ``num_classes`` (the
                null class) or ``cond=None`` means unconditional. Class-conditional models only.
            mask: bool (B, L'), True at real positions, False at padding, which no position
                attends to. Outputs at padding positions are meaningless.

        Returns:
            Shape (B, L', out_size): logits in token mode, vectors in continuous mode.
        """
        self._check_x(x)
        batch, n = x.shape[0], x.shape[1]
        c = F.silu(self._conditioning(x, t, cond))
        h = self.embed(x)
        rope = None
        if self.pos_embed is not None:
            h = h + self.pos_embed[:n]
        else:
            rope = (self.rope_cos[:n].to(h.dtype), self.rope_sin[:n].to(h.dtype))
        attn_mask = self._attention_mask(mask, batch, n)
        c = c.to(h.dtype)
        for block in self.blocks:
            h = block(h, c, attn_mask, self.causal, rope)
        shift, scale = self.ada_out(c)[:, None].chunk(2, dim=2)
        return self.out(_modulate(self.norm_out(h), shift, scale))
