"""FD and KID between two feature sets, and what a small shipped image classifier needs.

The FID recipe (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to
a Local Nash Equilibrium") and KID (Bińkowski et al. 2018, "Demystifying MMD GANs") compare
two image sets through the penultimate activations of a classifier. The formulas here work on
any features; :mod:`flowmatch.metrics.digits` and :mod:`flowmatch.metrics.fashion` supply the
classifiers (small CNNs whose weights ship with the package), so their FD is **not** Inception
FID and is not comparable with published FID numbers (:func:`flowmatch.metrics.inception_fid`
computes that one, as an optional extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from flowmatch.metrics.kernel import check_sample_pair

__all__ = [
    "FeatureClassifier",
    "apply_batched",
    "check_images",
    "classifier_quality",
    "frechet_distance",
    "frechet_distance_gaussians",
    "kernel_inception_distance",
    "read_classifier",
]

BATCH = 1024
"""Images per forward pass of a classifier."""

M = TypeVar("M", bound=nn.Module)


class FeatureClassifier(nn.Module):
    """A classifier whose penultimate activations are the features a metric compares:
    ``body`` maps images to features (B, F), ``head`` features to class logits (B, K).
    Subclasses build the two (their state-dict keys ``body.*`` and ``head.*`` are those of
    the shipped weights)."""

    body: nn.Module
    head: nn.Module

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, F) of images x (B, 1, H, W) in [-1, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, K) of images x (B, 1, H, W) in [-1, 1]."""
        return self.head(self.body(x))


def read_classifier(
    source: Any, build: Callable[[dict[str, Tensor]], M], *, what: str, script: str
) -> M:
    """A classifier from a safetensors file (never pickle), in eval mode with gradients off.

    Args:
        source: a path, or an ``importlib.resources`` Traversable of the shipped file.
        build: makes the (untrained) module from the state dict (which may fix its sizes).
        what: the classifier's name for messages (``"digits classifier"``).
        script: the script that writes the weights, named when the file is missing.

    Raises:
        flowmatch.models.files.ModelFileError: the file is missing, corrupted or does not fit
            the architecture; the message names the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from flowmatch.models.files import ModelFileError

    try:
        data = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ModelFileError(
            f"{source}: {what} weights not found (write them with {script})"
        ) from None
    try:
        state = load_bytes(data)
    except (SafetensorError, ValueError, OSError) as err:
        raise ModelFileError(f"{source}: not a valid safetensors weights file ({err})") from None
    model = build(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        name = type(model).__name__
        raise ModelFileError(f"{source}: weights do not fit {name} ({err})") from None
    model.eval().requires_grad_(False)
    return model


def check_images(images: Tensor, name: str, shape: tuple[int, int, int]) -> Tensor:
    """Images of shape (N, *shape) as float32 on the CPU, clamped to [-1, 1].

    uint8 images (0..255) are first mapped to [-1, 1] by
    :func:`flowmatch.data.images.unit_range`.

    Raises:
        ValueError: not a tensor of that shape, or NaN / infinite values (one line).
    """
    if not isinstance(images, Tensor) or tuple(images.shape[1:]) != shape:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        want = ", ".join(str(s) for s in shape)
        raise ValueError(f"{name} must be a tensor of shape (N, {want}), got {got}")
    if images.dtype == torch.uint8:
        from flowmatch.data.images import unit_range

        images = unit_range(images)
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return images.detach().float().cpu().clamp(-1.0, 1.0)


@torch.no_grad()
def apply_batched(fn: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """``fn`` applied to ``images`` (N, ...) in batches of :data:`BATCH`, results concatenated."""
    return torch.cat([fn(images[i : i + BATCH]) for i in range(0, images.shape[0], BATCH)])


def _check_features(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    check_sample_pair(a, b, dim="F")
    return a.detach().double().cpu(), b.detach().double().cpu()


def _psd_sqrt(cov: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clamped at 0)."""
    vals, vecs = torch.linalg.eigh((cov + cov.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance_gaussians(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Fréchet (squared 2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    FD = |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2)
    (Heusel et al. 2017, eq. 6; Dowson & Landau 1982). The trace term is the sum of the square
    roots of the eigenvalues of the symmetric PSD matrix cov1^1/2 cov2 cov1^1/2, computed by a
    symmetric eigen-decomposition in float64; round-off eigenvalues below 0 are set to 0.

    Args:
        mu1: mean, shape (F,).
        cov1: covariance, shape (F, F), symmetric positive semi-definite.
        mu2: mean, shape (F,).
        cov2: covariance, shape (F, F).

    Returns:
        FD >= 0 (up to round-off), a float.
    """
    mu1, mu2 = torch.as_tensor(mu1).double(), torch.as_tensor(mu2).double()
    cov1, cov2 = torch.as_tensor(cov1).double(), torch.as_tensor(cov2).double()
    f = mu1.shape[0]
    if mu1.shape != (f,) or mu2.shape != (f,) or cov1.shape != (f, f) or cov2.shape != (f, f):
        raise ValueError(
            "means must have shape (F,) and covariances (F, F), got "
            f"{tuple(mu1.shape)}, {tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)}"
        )
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    fd = diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2.0 * trace_root
    return float(fd)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    Means and unbiased covariances are taken in float64; see
    :func:`frechet_distance_gaussians`. Between finite samples the estimate is biased upwards
    (by about tr(cov) / N per set), so compare values measured on sets of equal size.

    Args:
        a: features, shape (N, F), N >= 2.
        b: features, shape (M, F), M >= 2.

    Returns:
        The FD, a float.
    """
    a, b = _check_features(a, b)
    return frechet_distance_gaussians(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def _polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 with k(x, y) = (x.y / F + 1)^3 between two sets of equal size m."""
    m, f = x.shape
    k_xx = (x @ x.T / f + 1.0) ** 3
    k_yy = (y @ y.T / f + 1.0) ** 3
    k_xy = (x @ y.T / f + 1.0) ** 3
    off_xx = k_xx.sum() - k_xx.diagonal().sum()
    off_yy = k_yy.sum() - k_yy.diagonal().sum()
    return (off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.mean()


def kernel_inception_distance(
    a: Tensor,
    b: Tensor,
    *,
    subsets: int = 10,
    subset_size: int = 200,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """KID: unbiased MMD^2 with a cubic polynomial kernel, averaged over random subsets.

    k(x, y) = (x.y / F + 1)^3 (Bińkowski et al. 2018, sec. 4 / app. D). Each subset draws
    ``min(subset_size, N, M)`` points of each set without replacement; the unbiased estimate
    is 0 in expectation for equal distributions and may be slightly negative.

    Args:
        a: features, shape (N, F), N >= 2.
        b: features, shape (M, F), M >= 2.
        subsets: number of random subsets, >= 1.
        subset_size: points drawn from each set per subset, >= 2.
        generator: source of the subset draws; None uses a fresh generator seeded 0, so that
            the metric is deterministic.

    Returns:
        (mean, std) of the subset estimates; std is their spread (population std, 0 for a
        single subset), not the standard error of the mean.
    """
    a, b = _check_features(a, b)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    m = min(subset_size, a.shape[0], b.shape[0])
    values = torch.stack(
        [
            _polynomial_mmd2(
                a[torch.randperm(a.shape[0], generator=generator)[:m]],
                b[torch.randperm(b.shape[0], generator=generator)[:m]],
            )
            for _ in range(subsets)
        ]
    )
    return float(values.mean()), float(values.std(correction=0))


def classifier_quality(
    model: Any, feats: Tensor, ref_feats: Tensor, labels: Tensor | None = None
) -> dict[str, float]:
    """FD, KID and (optionally) class accuracy from a classifier's features of two sets.

    KID uses 10 subsets of up to 200 images drawn with a generator seeded 0, so the scores
    are deterministic.

    Args:
        model: the classifier; ``model.head`` maps features to logits (for the accuracy).
        feats: features of the images scored, shape (N, F).
        ref_feats: features of the reference images, shape (M, F).
        labels: the class each scored image should show, shape (N,), or None.

    Returns:
        ``{"fd", "kid", "kid_std"}`` and, when labels are given, ``"accuracy"``: the fraction
        of images the classifier assigns to their label.
    """
    kid, kid_std = kernel_inception_distance(feats, ref_feats)
    scores = {"fd": frechet_distance(feats, ref_feats), "kid": kid, "kid_std": kid_std}
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != (feats.shape[0],):
            raise ValueError(
                f"labels must have shape ({feats.shape[0]},), got {tuple(labels.shape)}"
            )
        predicted = model.head(feats).argmax(dim=1)
        scores["accuracy"] = float((predicted == labels.cpu()).double().mean())
    return scores
