"""Image quality for 8 x 8 digits in the feature space of a small shipped CNN classifier.

The FID recipe (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to
a Local Nash Equilibrium") and KID (Bińkowski et al. 2018, "Demystifying MMD GANs") compare
two image sets through the penultimate activations of a classifier. Inception-v3 means nothing
on 8 x 8 images, so here the feature network is :class:`DigitsClassifier`, trained on the train
split of :func:`flowmatch.data.images.load_digits` by ``scripts/train_digits_classifier.py``;
its weights ship with the package as ``digits_classifier.safetensors``. The formulas
(:func:`frechet_distance`, :func:`kernel_inception_distance`) live in
:mod:`flowmatch.metrics.features` and are re-exported here.

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

from torch import Tensor, nn

from flowmatch.metrics.features import (
    FeatureClassifier,
    apply_batched,
    check_images,
    classifier_quality,
    frechet_distance,
    frechet_distance_gaussians,
    kernel_inception_distance,
    read_classifier,
)

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


class DigitsClassifier(FeatureClassifier):
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


def _weights_file() -> Any:
    """The shipped weights file as an ``importlib.resources`` Traversable."""
    from importlib.resources import files

    return files("flowmatch.metrics") / CLASSIFIER_FILE


def _build(state: dict[str, Tensor]) -> DigitsClassifier:
    weight = state.get("body.9.weight")
    return DigitsClassifier(feature_dim=weight.shape[0] if weight is not None else 128)


def _read(path: str | Path | None) -> DigitsClassifier:
    source = _weights_file() if path is None else Path(path)
    return read_classifier(
        source,
        _build,
        what="digits classifier",
        script="scripts/train_digits_classifier.py",
    )


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
    return check_images(images, name, (1, 8, 8))


def digits_features(images: Tensor) -> Tensor:
    """Classifier features of digit images (clamped to [-1, 1] first).

    Args:
        images: shape (N, 1, 8, 8), nominally in [-1, 1].

    Returns:
        Features, shape (N, F), float32.
    """
    images = _check_images(images, "images")
    return apply_batched(load_classifier().features, images)


def classify(images: Tensor) -> Tensor:
    """The classifier's label for each image (clamped to [-1, 1] first).

    Args:
        images: shape (N, 1, 8, 8), nominally in [-1, 1].

    Returns:
        Labels, shape (N,), int64 in 0..9.
    """
    images = _check_images(images, "images")
    return apply_batched(load_classifier(), images).argmax(dim=1)


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
    feats = apply_batched(model.features, images)
    return classifier_quality(model, feats, apply_batched(model.features, reference), labels)
