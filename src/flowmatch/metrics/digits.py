"""Image quality for 8 x 8 digits in the feature space of a small shipped CNN classifier.

The FID recipe (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to
a Local Nash Equilibrium") and KID (Bińkowski et al. 2018, "Demystifying MMD GANs") compare
two image sets through the penultimate activations of a classifier. Inception-v3 means nothing
on 8 x 8 images, so here the feature network is :class:`DigitsClassifier`, trained on the train
split of :func:`flowmatch.data.images.load_digits` by ``scripts/train_digits_classifier.py``;
its weights ship with the package as ``digits_classifier.safetensors``.

The floor of a metric is its value for the held-out test split against the train split: a
generator whose samples score near it is as close to the data as fresh real digits are.

Example:
    >>> data = load_digits()
    >>> scores = digits_quality(samples, data.train, labels=wanted_labels)
    >>> scores["fd"], scores["kid"], scores["accuracy"]
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.metrics.kernel import check_sample_pair

__all__ = [
    "CLASSIFIER_FILE",
    "DigitsClassifier",
    "classify",
    "digits_features",
    "digits_quality",
    "frechet_distance",
    "frechet_distance_gaussians",
    "kernel_inception_distance",
    "load_classifier",
]

CLASSIFIER_FILE = "digits_classifier.safetensors"
"""Name of the shipped weights file, package data of ``flowmatch.metrics``."""

_BATCH = 1024


class DigitsClassifier(nn.Module):
    """A small CNN for 8 x 8 gray digits (57.5k parameters).

    conv3x3(1->16) - SiLU - conv3x3(16->32) - SiLU - maxpool2 (4 x 4) - conv3x3(32->64) - SiLU -
    maxpool2 (2 x 2) - flatten (256) - linear(256->128) - SiLU [features] - linear(128->10).

    Args:
        feature_dim: width F of the penultimate (feature) layer.
        num_classes: number of output logits.
    """

    def __init__(self, *, feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, feature_dim),
            nn.SiLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations.

        Args:
            x: images, shape (B, 1, 8, 8), values in [-1, 1].

        Returns:
            Features, shape (B, F).
        """
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, shape (B, 10), of images x of shape (B, 1, 8, 8) in [-1, 1]."""
        return self.head(self.body(x))


def _weights_file() -> Any:
    """The shipped weights file as an ``importlib.resources`` Traversable."""
    from importlib.resources import files

    return files("flowmatch.metrics") / CLASSIFIER_FILE


def _read(path: str | Path | None) -> DigitsClassifier:
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from flowmatch.models.files import ModelFileError

    source = _weights_file() if path is None else Path(path)
    try:
        data = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ModelFileError(
            f"{source}: digits classifier weights not found "
            "(write them with scripts/train_digits_classifier.py)"
        ) from None
    try:
        state = load_bytes(data)
    except (SafetensorError, ValueError, OSError) as err:
        raise ModelFileError(f"{source}: not a valid safetensors weights file ({err})") from None
    weight = state.get("body.9.weight")
    model = DigitsClassifier(feature_dim=weight.shape[0] if weight is not None else 128)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelFileError(f"{source}: weights do not fit DigitsClassifier ({err})") from None
    model.eval().requires_grad_(False)
    return model


@functools.lru_cache(maxsize=1)
def _shipped() -> DigitsClassifier:
    return _read(None)


def load_classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The trained digits classifier, in eval mode with gradients off.

    Weights are read with safetensors (never pickle). The shipped model is loaded once and
    cached: the same module comes back on every call, so do not modify it.

    Args:
        path: a weights file to read instead of the shipped ``digits_classifier.safetensors``
            (not cached).

    Returns:
        The :class:`DigitsClassifier`.

    Raises:
        flowmatch.models.files.ModelFileError: the file is missing, corrupted or does not fit
            the architecture; the message names the file.
    """
    return _shipped() if path is None else _read(path)


def _check_images(images: Tensor, name: str) -> Tensor:
    if not isinstance(images, Tensor) or tuple(images.shape[1:]) != (1, 8, 8):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, 1, 8, 8), got {shape}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return images.detach().float().cpu().clamp(-1.0, 1.0)


@torch.no_grad()
def _apply(fn: Any, images: Tensor) -> Tensor:
    return torch.cat([fn(images[i : i + _BATCH]) for i in range(0, images.shape[0], _BATCH)])


def digits_features(images: Tensor) -> Tensor:
    """Classifier features of digit images (clamped to [-1, 1] first).

    Args:
        images: shape (N, 1, 8, 8), nominally in [-1, 1].

    Returns:
        Features, shape (N, F), float32.
    """
    images = _check_images(images, "images")
    return _apply(load_classifier().features, images)


def classify(images: Tensor) -> Tensor:
    """The classifier's label for each image (clamped to [-1, 1] first).

    Args:
        images: shape (N, 1, 8, 8), nominally in [-1, 1].

    Returns:
        Labels, shape (N,), int64 in 0..9.
    """
    images = _check_images(images, "images")
    return _apply(load_classifier(), images).argmax(dim=1)


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


def digits_quality(
    images: Tensor, reference: Tensor, *, labels: Tensor | None = None
) -> dict[str, float]:
    """FD, KID and (optionally) class accuracy of digit images against reference digits.

    Both sets are clamped to [-1, 1] (a generator's raw samples may overshoot) and embedded
    with the shipped classifier's features (F = 128). KID uses 10 subsets of up to 200 images
    drawn with a generator seeded 0, so the scores are deterministic.

    Args:
        images: images to score, shape (N, 1, 8, 8), nominally in [-1, 1], N >= 2.
        reference: real digits, e.g. ``load_digits().train``, shape (M, 1, 8, 8), M >= 2.
        labels: the class each image should show (for class-conditional samples), shape (N,).

    Returns:
        ``{"fd", "kid", "kid_std"}`` and, when labels are given, ``"accuracy"``: the fraction
        of images the classifier assigns to their label.
    """
    images = _check_images(images, "images")
    reference = _check_images(reference, "reference")
    model = load_classifier()
    feats, ref_feats = _apply(model.features, images), _apply(model.features, reference)
    kid, kid_std = kernel_inception_distance(feats, ref_feats)
    scores = {"fd": frechet_distance(feats, ref_feats), "kid": kid, "kid_std": kid_std}
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        predicted = model.head(feats).argmax(dim=1)
        scores["accuracy"] = float((predicted == labels.cpu()).double().mean())
    return scores
