"""Inception FID, the published metric, as an optional extra (``pip install 'flowmatch[fid]'``).

:func:`inception_fid` is the FID of Heusel et al. (2017) as torchmetrics computes it: the
Fréchet distance between Inception-v3 pool features (2048) of the two sets, images resized to
299 x 299 by torch-fidelity's feature extractor. That network was trained on ImageNet photos,
not on 28 x 28 gray clothes, and its weights (about 100 MB) are not part of flowmatch:
torch-fidelity downloads them once into torch's hub cache, so the first call needs the network
or weights already there. flowmatch's own image metrics
(:mod:`flowmatch.metrics.digits`, :mod:`flowmatch.metrics.fashion`) use small shipped
classifiers instead; their FD is not this one and not comparable with published FID numbers.
"""

from __future__ import annotations

from torch import Tensor

from flowmatch._extras import require

__all__ = ["inception_fid"]

_NEEDED_BY = "Inception FID (flowmatch.metrics.inception_fid)"


def _to_rgb01(images: Tensor, name: str) -> Tensor:
    """Images (N, C, H, W), uint8 or float in [-1, 1], as float (N, 3, H, W) in [0, 1]."""
    from flowmatch.data.images import unit_range

    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, 1 or 3, H, W), got {got}")
    if images.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 images, got {images.shape[0]}")
    x = unit_range(images).detach().float().cpu()
    if not x.isfinite().all():
        raise ValueError(f"{name} contains NaN or infinite values")
    x = (x.clamp(-1.0, 1.0) + 1.0) / 2.0
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def inception_fid(samples: Tensor, reference: Tensor, *, batch_size: int = 100) -> float:
    """FID in Inception-v3 features (torchmetrics' ``FrechetInceptionDistance``).

    Gray images are repeated to three channels. Like every FD, the value is biased by the set
    sizes (published figures use 50,000 samples); it is slow on a CPU (Inception on 299 x 299
    images).

    Args:
        samples: generated images, (N, 1 or 3, H, W), float in [-1, 1] or uint8 0..255.
        reference: real images, (M, 1 or 3, H', W'), the same value range.
        batch_size: images per forward pass.

    Returns:
        The FID, a float.

    Raises:
        flowmatch._extras.MissingExtraError: torchmetrics or torch-fidelity is not installed
            (one line: ``pip install 'flowmatch[fid]'``).
        ValueError: images of the wrong shape or with NaN values.
    """
    require("torch_fidelity", "fid", _NEEDED_BY)
    fid_module = require("torchmetrics.image.fid", "fid", _NEEDED_BY)
    fake, real = _to_rgb01(samples, "samples"), _to_rgb01(reference, "reference")
    metric = fid_module.FrechetInceptionDistance(feature=2048, normalize=True)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, images.shape[0], batch_size):
            metric.update(images[i : i + batch_size], real=is_real)
    return float(metric.compute())
