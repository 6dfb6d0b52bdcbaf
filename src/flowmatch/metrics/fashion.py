"""Image quality for Fashion-MNIST in the feature space of a small shipped CNN classifier.

FD and KID (:mod:`flowmatch.metrics.features`) compare two image sets through the
penultimate activations of :class:`FashionClassifier`, a 98k-parameter CNN trained on the
train split of :func:`flowmatch.data.fashion.load_fashion_mnist` by
``scripts/train_fashion_classifier.py`` (seed 0, 4000 steps of 128 images, about 8.5 epochs,
3 min 15 s of CPU time on one thread); its weights (395 kB) ship with the package as
``fashion_classifier.safetensors``. It classifies 91.98% of the 10,000 test images correctly
(94.68% of the first 10,000 training images).

This is an FD in a small Fashion-MNIST classifier's features, **not** Inception FID: the
numbers are not comparable with published FID figures (which use Inception-v3 features of
images upscaled to 299 x 299). :func:`flowmatch.metrics.inception_fid` computes that one where
the optional extra ``flowmatch[fid]`` and its weights are installed.

FD is biased upwards by finite sets (about tr(cov) / N per set): compare sets of equal size.
The floor of a metric is its value for real images, a fixed subset of the train split of the
same size as the generated set, against the test split.

Example:
    >>> data = load_fashion_mnist()                      # doctest: +SKIP
    >>> scores = fashion_quality(samples, data.test, labels=wanted_labels)  # doctest: +SKIP
    >>> scores["fd"], scores["kid"], scores["accuracy"]  # doctest: +SKIP
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
    read_classifier,
)

__all__ = [
    "FASHION_CLASSIFIER_FILE",
    "FashionClassifier",
    "fashion_classify",
    "fashion_features",
    "fashion_quality",
    "load_fashion_classifier",
]

FASHION_CLASSIFIER_FILE = "fashion_classifier.safetensors"
"""Name of the shipped weights file, package data of ``flowmatch.metrics``."""

SHAPE = (1, 28, 28)
"""The shape of one image."""


class FashionClassifier(FeatureClassifier):
    """A small CNN for 28 x 28 gray Fashion-MNIST images (98k parameters).

    conv3x3(1->16) - SiLU - maxpool2 (14 x 14) - conv3x3(16->32) - SiLU - maxpool2 (7 x 7) -
    conv3x3(32->64) - SiLU - maxpool2 (3 x 3) - flatten (576) - linear(576->F) - SiLU
    [features] - linear(F->10).

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
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, feature_dim),
            nn.SiLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)


def _weights_file() -> Any:
    """The shipped weights file as an ``importlib.resources`` Traversable."""
    from importlib.resources import files

    return files("flowmatch.metrics") / FASHION_CLASSIFIER_FILE


def _build(state: dict[str, Tensor]) -> FashionClassifier:
    weight, head = state.get("body.10.weight"), state.get("head.weight")
    return FashionClassifier(
        feature_dim=weight.shape[0] if weight is not None else 128,
        num_classes=head.shape[0] if head is not None else 10,
    )


def _read(path: str | Path | None) -> FashionClassifier:
    source = _weights_file() if path is None else Path(path)
    return read_classifier(
        source,
        _build,
        what="Fashion-MNIST classifier",
        script="scripts/train_fashion_classifier.py",
    )


@functools.lru_cache(maxsize=1)
def _shipped() -> FashionClassifier:
    return _read(None)


def load_fashion_classifier(path: str | Path | None = None) -> FashionClassifier:
    """The trained Fashion-MNIST classifier, in eval mode with gradients off.

    Weights are read with safetensors (never pickle). The shipped model is loaded once and
    cached: the same module comes back on every call, so do not modify it.

    Args:
        path: a weights file to read instead of the shipped ``fashion_classifier.safetensors``
            (not cached).

    Raises:
        flowmatch.models.files.ModelFileError: the file is missing, corrupted or does not fit
            the architecture; the message names the file.
    """
    return _shipped() if path is None else _read(path)


def fashion_features(images: Tensor) -> Tensor:
    """Classifier features of Fashion-MNIST images (clamped to [-1, 1] first).

    Args:
        images: shape (N, 1, 28, 28), float nominally in [-1, 1], or uint8 0..255.

    Returns:
        Features, shape (N, F), float32.
    """
    images = check_images(images, "images", SHAPE)
    return apply_batched(load_fashion_classifier().features, images)


def fashion_classify(images: Tensor) -> Tensor:
    """The classifier's label for each image (clamped to [-1, 1] first).

    Args:
        images: shape (N, 1, 28, 28), float nominally in [-1, 1], or uint8 0..255.

    Returns:
        Labels, shape (N,), int64 in 0..9 (:data:`flowmatch.data.fashion.FASHION_CLASSES`).
    """
    images = check_images(images, "images", SHAPE)
    return apply_batched(load_fashion_classifier(), images).argmax(dim=1)


def fashion_quality(
    samples: Tensor,
    reference: Tensor | None,
    labels: Tensor | None = None,
    *,
    reference_features: Tensor | None = None,
) -> dict[str, float]:
    """FD, KID and (optionally) class accuracy of images against real Fashion-MNIST images.

    Both sets are clamped to [-1, 1] (a generator's raw samples may overshoot; uint8 images
    are mapped to [-1, 1] first) and embedded with the shipped classifier's features
    (F = 128). KID uses 10 subsets of up to 200 images drawn with a generator seeded 0, so the
    scores are deterministic. FD in these features is not Inception FID (module docstring),
    and it depends on the set sizes: compare like with like.

    Args:
        samples: images to score, shape (N, 1, 28, 28), N >= 2.
        reference: real images, e.g. ``load_fashion_mnist().test``, shape (M, 1, 28, 28),
            M >= 2 (None with ``reference_features``).
        labels: the class each image should show (class-conditional samples), shape (N,).
        reference_features: ``fashion_features(reference)``, computed once by a caller that
            scores many sets against one reference (``reference`` is then not embedded).

    Returns:
        ``{"fd", "kid", "kid_std"}`` and, when labels are given, ``"accuracy"``: the fraction
        of images the classifier assigns to their label.
    """
    samples = check_images(samples, "samples", SHAPE)
    model = load_fashion_classifier()
    if reference_features is None:
        if reference is None:
            raise ValueError("fashion_quality needs reference images or reference_features")
        reference_features = apply_batched(
            model.features, check_images(reference, "reference", SHAPE)
        )
    feats = apply_batched(model.features, samples)
    return classifier_quality(model, feats, reference_features, labels)
