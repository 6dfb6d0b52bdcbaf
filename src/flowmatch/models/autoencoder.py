"""A small convolutional autoencoder (a VAE, or a plain AE) for latent flow matching.

Latent flow matching (Rombach et al. 2022; Esser et al. 2024, Stable Diffusion 3) trains the
flow on the latents of a fixed autoencoder instead of on pixels: fewer values per point, so
a cheaper network per step. :class:`AutoEncoder` maps (C, H, W) images in [-1, 1] to
(c, H / 2^d, W / 2^d) latents and back. After training, :meth:`AutoEncoder.fit_latent_scale`
fits the shift and the scale (1 / std, as Stable Diffusion's ``scaling_factor``) that bring
the latents of the training images to zero mean and unit variance, the scale of the N(0, I)
source the flow starts from; both are buffers, saved with the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.models.base import Pretrained
from flowmatch.models.registry import architecture, register

__all__ = ["RECONSTRUCTIONS", "AutoEncoder", "autoencoder_loss"]

RECONSTRUCTIONS = ("mse", "l1")
"""The reconstruction errors of :func:`autoencoder_loss`."""

MAX_DOWNSAMPLE = 3


class _Block(nn.Module):
    """GroupNorm -> SiLU -> Conv3x3, twice, plus a skip (1x1 when the width changes)."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(groups, in_ch),
            nn.SiLU(),
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.GroupNorm(groups, out_ch),
            nn.SiLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def _positive(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


@register("autoencoder")
class AutoEncoder(Pretrained, nn.Module):
    """A convolutional VAE: ``encode`` images to latents, ``decode`` latents to images.

    The encoder is a 3x3 convolution, then per halving a residual block and a stride-2
    convolution (the width doubling), a residual block and GroupNorm -> SiLU -> Conv3x3 to
    the mean and log-variance of each latent value; the decoder mirrors it with
    nearest-neighbour upsampling. With ``kl_weight`` 0 in :func:`autoencoder_loss` it is a
    plain autoencoder (the mean is decoded, no noise is drawn).

    Args:
        channels: image channels C (1 grey, 3 RGB).
        size: image side S; divisible by ``2 ** downsample``.
        base: width of the first level (then 2x per halving); a multiple of ``groups``.
        latent_channels: latent channels c.
        downsample: halvings d of the side, in [0, 3]: latents are (c, S / 2^d, S / 2^d).
        groups: GroupNorm groups.

    Shapes:
        ``encode``: x (B, C, S, S) in [-1, 1] -> z (B, c, S / 2^d, S / 2^d), in latent units
        ``(mean - latent_shift) * latent_scale``; ``decode``: z -> x (B, C, S, S).

    Example:
        >>> ae = AutoEncoder(1, 28, latent_channels=2, downsample=1)
        >>> ae.encode(torch.zeros(4, 1, 28, 28)).shape
        torch.Size([4, 2, 14, 14])
    """

    source = None  # a model trained by the loop: its batches need no source draws

    def __init__(
        self,
        channels: int = 1,
        size: int = 28,
        *,
        base: int = 32,
        latent_channels: int = 4,
        downsample: int = 1,
        groups: int = 8,
    ) -> None:
        super().__init__()
        channels = _positive("channels", channels)
        size = _positive("size", size, 2, 1024)
        base = _positive("base", base, 1, 256)
        latent_channels = _positive("latent_channels", latent_channels, 1, 256)
        downsample = _positive("downsample", downsample, 0, MAX_DOWNSAMPLE)
        groups = _positive("groups", groups)
        if size % 2**downsample:
            raise ValueError(f"size {size} must be divisible by 2 ** downsample = {2**downsample}")
        widths = [base * 2**i for i in range(downsample + 1)]
        if any(w % groups for w in widths):
            raise ValueError(f"groups={groups} must divide every level's width {widths}")
        self.channels, self.size = channels, size
        self.latent_channels, self.downsample = latent_channels, downsample
        self.info: dict[str, Any] = {}
        enc: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1)]
        for i in range(downsample):
            enc += [_Block(widths[i], widths[i], groups)]
            enc += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1)]
        top = widths[-1]
        enc += [_Block(top, top, groups), nn.GroupNorm(groups, top), nn.SiLU()]
        enc += [nn.Conv2d(top, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, top, 3, padding=1)]
        dec += [_Block(top, top, groups)]
        for i in reversed(range(downsample)):
            dec += [nn.Upsample(scale_factor=2.0, mode="nearest")]
            dec += [
                nn.Conv2d(widths[i + 1], widths[i], 3, padding=1),
                _Block(widths[i], widths[i], groups),
            ]
        dec += [nn.GroupNorm(groups, widths[0]), nn.SiLU()]
        dec += [nn.Conv2d(widths[0], channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.latent_shift: Tensor
        self.latent_scale: Tensor
        self.register_buffer("latent_shift", torch.zeros(()))
        self.register_buffer("latent_scale", torch.ones(()))

    # ------------------------------------------------------------------------- shapes
    @property
    def shape(self) -> tuple[int, int, int]:
        """The image shape (C, S, S)."""
        return (self.channels, self.size, self.size)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent shape (c, S / 2^d, S / 2^d)."""
        side = self.size // 2**self.downsample
        return (self.latent_channels, side, side)

    @property
    def net(self) -> AutoEncoder:
        """The trained network: the autoencoder itself (what the training loop saves)."""
        return self

    def _check(self, x: Tensor, shape: tuple[int, ...], what: str) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            dims = ", ".join(map(str, shape))
            raise ValueError(f"{what} must have shape (B, {dims}), got {tuple(x.shape)}")

    # ------------------------------------------------------------------------- coding
    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The mean and log-variance of the latent of images x (B, C, S, S) in [-1, 1], in
        the encoder's own units (unscaled); each (B, c, S / 2^d, S / 2^d)."""
        self._check(x, self.shape, "x")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(
        self, x: Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Latents of images x (B, C, S, S) in [-1, 1]: the mean (or, with ``sample``, a
        draw of the posterior), shifted and scaled, shape (B, c, S / 2^d, S / 2^d)."""
        mean, logvar = self.moments(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device)
            z = mean + noise.to(mean.dtype) * (0.5 * logvar).exp()
        return (z - self.latent_shift) * self.latent_scale

    def decode(self, z: Tensor) -> Tensor:
        """Images (B, C, S, S) of latents z (B, c, S / 2^d, S / 2^d) in latent units (what
        :meth:`encode` returns; the scale and shift are undone first)."""
        self._check(z, self.latent_shape, "z")
        return self.decoder(z / self.latent_scale + self.latent_shift)

    def forward(
        self, x: Tensor, *, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction (B, C, S, S), mean, log-variance) of images x; the reconstruction
        decodes a posterior draw (``sample``) or the mean."""
        mean, logvar = self.moments(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device)
            z = mean + noise.to(mean.dtype) * (0.5 * logvar).exp()
        return self.decoder(z), mean, logvar

    @torch.no_grad()
    def fit_latent_scale(
        self,
        images: Tensor,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[float, float]:
        """Fit :attr:`latent_shift` (the mean) and :attr:`latent_scale` (1 / std) of the
        latent means of ``images`` (N, C, S, S), in [-1, 1] or uint8; returns them.

        The statistics are over every latent value (one shift and one scale, as Stable
        Diffusion 3's), in float64; ``progress`` is called with the images done so far.
        """
        total, total_sq, count = 0.0, 0.0, 0
        for done, batch in _batches(images, batch_size, self.latent_scale.device):
            mean = self.moments(batch)[0].double()
            total += float(mean.sum())
            total_sq += float((mean * mean).sum())
            count += mean.numel()
            if progress is not None:
                progress(done)
        if count == 0:
            raise ValueError("fit_latent_scale needs at least one image")
        mu = total / count
        std = max((total_sq / count - mu * mu), 0.0) ** 0.5
        if not std > 0:
            raise ValueError("the latents of these images do not vary: no scale can be fitted")
        self.latent_shift.fill_(mu)
        self.latent_scale.fill_(1.0 / std)
        return mu, 1.0 / std

    # --------------------------------------------------------------------------- files
    def config(self) -> dict[str, Any]:
        """The ``config.json`` description: kind ``autoencoder``, the architecture, the image
        shape and the latent shape (the scale and shift are in the weights)."""
        return {
            **self.info,
            "kind": "autoencoder",
            "arch": architecture(self),
            "shape": list(self.shape),
            "latent_shape": list(self.latent_shape),
        }


def _batches(images: Tensor, batch_size: int, device: torch.device) -> Iterator[tuple[int, Tensor]]:
    """(images done, a float batch in [-1, 1] on ``device``) over ``images``."""
    from flowmatch.data.images import unit_range

    for start in range(0, images.shape[0], batch_size):
        batch = unit_range(images[start : start + batch_size]).to(device, torch.float32)
        yield min(start + batch_size, images.shape[0]), batch


def autoencoder_loss(
    model: nn.Module,
    x: Tensor,
    *,
    kl_weight: float = 1e-4,
    reconstruction: str = "mse",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The VAE objective: the mean reconstruction error per value plus ``kl_weight`` times
    the KL divergence of the posterior from N(0, I) per latent value.

    Args:
        model: an :class:`AutoEncoder` (or a wrapper calling its forward, e.g. DDP).
        x: images (B, C, S, S) in [-1, 1].
        kl_weight: the KL's weight beta, >= 0; 0 trains a plain autoencoder on the means.
        reconstruction: mse | l1.
        generator: the draws of the posterior samples.

    Returns:
        The scalar loss.
    """
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
    recon, mean, logvar = model(x, sample=kl_weight > 0, generator=generator)
    diff = recon - x
    error = diff.square().mean() if reconstruction == "mse" else diff.abs().mean()
    if kl_weight == 0:
        return error
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
    return error + kl_weight * kl
