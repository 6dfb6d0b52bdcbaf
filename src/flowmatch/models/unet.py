"""A convolutional U-Net velocity network for images (Ho et al. 2020; Dhariwal & Nichol 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

__all__ = ["UNet"]


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv3x3; GroupNorm modulated by the embedding -> SiLU -> Dropout ->
    Conv3x3; plus a skip (a 1x1 convolution when the channel count changes).

    The embedding enters through a Linear projection to a per-channel scale and shift applied
    after the second GroupNorm (ADM's adaptive GroupNorm, Dhariwal & Nichol 2021, sec. 3). A
    shift added *before* that GroupNorm, as in DDPM, is erased by it whenever a group holds one
    channel (``groups`` equal to the level's width) and the block would then ignore t.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over the H*W positions, with a residual connection."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        # (B, 3C, H, W) -> three (B, 1, H*W, C): one head, positions as the sequence.
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class _Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _int_tuple(name: str, value: Any, *, allow_empty: bool) -> tuple[int, ...]:
    ok = isinstance(value, Sequence) and not isinstance(value, str)
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok or (not allow_empty and len(value) == 0):
        kind = "a tuple of integers" if allow_empty else "a non-empty tuple of integers"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return tuple(value)


@register("unet")
class UNet(nn.Module):
    """A U-Net taking (x_t, t) to a prediction of the shape of the image x_t.

    The DDPM/ADM layout: a 3x3 input convolution; per level ``num_res_blocks`` residual blocks
    with ``base * multipliers[i]`` channels, then a stride-2 convolution to the next level; a
    middle block (residual, optional attention, residual); the mirrored upsampling path, each
    block taking the concatenation of the features and a skip from the downsampling path; and
    GroupNorm -> SiLU -> Conv3x3 back to ``channels``. That last convolution starts at zero, so
    an untrained model predicts 0 everywhere. The time t in [0, 1] (t=0 noise, t=1 data) goes
    through a sinusoidal embedding and an MLP to a ``4 * base`` vector (plus a learned class
    vector when class-conditional) that every residual block turns, through its own Linear, into
    a per-channel scale and shift of its features.

    Args:
        channels: image channels C (1 grey, 3 RGB), >= 1.
        size: image side S in [8, 64], divisible by ``2 ** (len(multipliers) - 1)``.
        base: channels of the first level.
        multipliers: channel multiplier of each level (one level per resolution S, S/2, ...).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: feature-map sides at which self-attention follows each residual
            block, e.g. ``(8,)``; the middle block attends when the lowest side is listed.
        groups: GroupNorm groups; must divide ``base * m`` for every multiplier m.
        time_embed_dim: size of the sinusoidal time embedding (even).
        time_frequency: highest angular frequency of that embedding (rad per unit time);
            None: 1000, or 10 for a two-time model (MeanFlow's loss differentiates the
            network in time, which high frequencies blow up).
        num_classes: number K of classes for class conditioning; None for an unconditional
            model. Labels are 0..K-1 and K (``self.null_class``) is a learned "no label" class
            for classifier-free guidance.
        dropout: dropout probability inside the residual blocks, in [0, 1).
        two_times: also embed the length ``t_end - t`` of an averaging interval (MeanFlow,
            Geng et al. 2025: ``model(x, t, t_end=e)`` is the average velocity from time t,
            where x is, to time e; ``t_end=None`` means e = t, the instantaneous velocity).

    Shapes:
        ``x (B, C, S, S), t (B,) [, cond (B,) int64] [, t_end (B,)] -> (B, C, S, S)``.

    Example:
        >>> model = UNet(1, 8, base=16, num_classes=10)
        >>> x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
        >>> model(x, t, cond=torch.tensor([0, 3, 9, model.null_class])).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        channels: int = 1,
        size: int = 8,
        *,
        base: int = 32,
        multipliers: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (),
        groups: int = 8,
        time_embed_dim: int = 128,
        time_frequency: float | None = None,
        num_classes: int | None = None,
        dropout: float = 0.0,
        two_times: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("channels", channels),
            ("base", base),
            ("num_res_blocks", num_res_blocks),
            ("groups", groups),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 64:
            raise ValueError(f"size must be an integer in [8, 64], got {size!r}")
        multipliers = _int_tuple("multipliers", multipliers, allow_empty=False)
        if min(multipliers) < 1:
            raise ValueError(f"multipliers must all be >= 1, got {multipliers!r}")
        factor = 2 ** (len(multipliers) - 1)
        if size % factor:
            raise ValueError(
                f"size {size} must be divisible by 2 ** (len(multipliers) - 1) = {factor} "
                f"(one halving between each of the {len(multipliers)} levels)"
            )
        sides = tuple(size // 2**i for i in range(len(multipliers)))
        attention_resolutions = _int_tuple(
            "attention_resolutions", attention_resolutions, allow_empty=True
        )
        for res in attention_resolutions:
            if res not in sides:
                raise ValueError(
                    f"attention_resolutions: {res} is not a feature-map side of this network "
                    f"(its sides are {sides})"
                )
        widths = tuple(base * m for m in multipliers)
        if any(w % groups for w in widths):
            raise ValueError(
                f"groups={groups} must divide the channels of every level "
                f"(base * multipliers = {widths})"
            )
        if (
            isinstance(time_embed_dim, bool)
            or not isinstance(time_embed_dim, int)
            or time_embed_dim < 2
            or time_embed_dim % 2
        ):
            raise ValueError(f"time_embed_dim must be an even integer >= 2, got {time_embed_dim!r}")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"num_classes must be None or an integer >= 1, got {num_classes!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if not isinstance(two_times, bool):
            raise ValueError(f"two_times must be a bool, got {two_times!r}")

        self.channels, self.size = channels, size
        self.num_classes = num_classes
        self.null_class = num_classes
        self.two_times = two_times
        self.time_frequency = _frequency(time_frequency, two_times=two_times)
        emb_dim = 4 * base
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim, max_frequency=self.time_frequency)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim * (2 if two_times else 1), emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        self.class_embed = (
            nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None
        )

        def attention(ch: int, side: int) -> nn.Module:
            return _Attention(ch, groups) if side in attention_resolutions else nn.Identity()

        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        skip_widths, ch = [widths[0]], widths[0]
        self.down_res, self.down_attn = nn.ModuleList(), nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, (width, side) in enumerate(zip(widths, sides, strict=True)):
            for _ in range(num_res_blocks):
                self.down_res.append(_ResBlock(ch, width, emb_dim, groups, dropout))
                self.down_attn.append(attention(width, side))
                ch = width
                skip_widths.append(ch)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)
        self.mid_res1 = _ResBlock(ch, ch, emb_dim, groups, dropout)
        self.mid_attn = attention(ch, sides[-1])
        self.mid_res2 = _ResBlock(ch, ch, emb_dim, groups, dropout)
        self.up_res, self.up_attn = nn.ModuleList(), nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                in_ch = ch + skip_widths.pop()
                self.up_res.append(_ResBlock(in_ch, widths[level], emb_dim, groups, dropout))
                self.up_attn.append(attention(widths[level], sides[level]))
                ch = widths[level]
            if level > 0:
                self.upsample.append(_Upsample(ch))
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        assert self.conv_out.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.conv_out.bias)
        self._blocks_per_level = num_res_blocks

    def _embedding(self, x: Tensor, t: Tensor, cond: Tensor | None, t_end: Tensor | None) -> Tensor:
        features = time_features(self.time_embed, t, t_end, two_times=self.two_times, owner="UNet")
        emb = self.time_mlp(features.to(x.dtype))
        return add_class_embedding(emb, cond, self.class_embed, self.num_classes, "UNet")

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
        emb = F.silu(self._embedding(x, t, cond, t_end))

        h = self.conv_in(x)
        skips = [h]
        n = self._blocks_per_level
        for i, (res, attn) in enumerate(zip(self.down_res, self.down_attn, strict=True)):
            h = attn(res(h, emb))
            skips.append(h)
            level = i // n
            if i % n == n - 1 and level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)
        for i, (res, attn) in enumerate(zip(self.up_res, self.up_attn, strict=True)):
            h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))
            level = i // (n + 1)
            if i % (n + 1) == n and level < len(self.upsample):
                h = self.upsample[level](h)
        return self.conv_out(F.silu(self.norm_out(h)))
