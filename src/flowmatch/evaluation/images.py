"""Quality of generated images: Fréchet distance, KID and class accuracy against held-out images.

The features are those of a small CNN classifier that ships with the package: digits
(:mod:`flowmatch.metrics.digits`) or Fashion-MNIST (:mod:`flowmatch.metrics.fashion`). FD in
these features is not Inception FID and is not comparable with published FID numbers.

FD is biased by the set sizes, so a generated set and its **floor** (real images scored the
same way against the test split) always have the same size:

- digits (:class:`DigitsMetric`): generated sets have as many images as the training split,
  with the training split's labels as their classes; the floor is the training split itself
  against the test split (train vs test).
- Fashion-MNIST (:class:`FashionMetric`): 60,000 generated images per draw would take far too
  long on a CPU, so a set has the evaluation's ``num`` images (``eval.num_samples``, at most
  :data:`FASHION_MAX_IMAGES`), the classes in equal shares
  (:func:`~flowmatch.sampling.labels_in_turn`); the floor is a fixed subset of the training
  split (seeded, :data:`FLOOR_SEED`) of the same size and class counts, against the 10,000
  test images.

Every figure is a mean (and standard deviation) over independent draws of the noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.evaluation.image_rows import (
    CSV_HEADER,
    ImageEvalRow,
    format_image_row,
    format_image_table,
)
from flowmatch.evaluation.loop import evaluate_model, mean_std

__all__ = [
    "CLASSIFIERS",
    "CSV_HEADER",
    "FASHION_MAX_IMAGES",
    "ClassifierMetric",
    "DigitsMetric",
    "FashionMetric",
    "ImageEvalRow",
    "balanced_subset",
    "evaluate_images",
    "format_image_row",
    "format_image_table",
    "image_floor",
]

CLASSIFIERS = ("digits", "fashion")
"""The shipped classifiers a :class:`ClassifierMetric` can score with."""

FASHION_MAX_IMAGES = 10_000
"""The most images of a Fashion-MNIST set (generated, and the floor's), whatever ``num``."""

FLOOR_SEED = 0
"""Seed of the fixed subset of the training split a Fashion-MNIST floor scores."""


def _classifier(name: str) -> tuple[Any, tuple[int, int, int]]:
    """The shipped classifier ``name`` and the shape of one of its images."""
    if name == "digits":
        from flowmatch.metrics.digits import load_classifier

        return load_classifier(), (1, 8, 8)
    if name == "fashion":
        from flowmatch.metrics.fashion import SHAPE, load_fashion_classifier

        return load_fashion_classifier(), SHAPE
    raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {name!r}")


def _embed(classifier: str, images: Tensor, name: str) -> Tensor:
    """Features (N, F) of images (N, C, H, W), uint8 or float (clamped to [-1, 1])."""
    from flowmatch.metrics.features import apply_batched, check_images

    model, shape = _classifier(classifier)
    return apply_batched(model.features, check_images(images, name, shape))


def _quality(
    classifier: str, feats: Tensor, ref_feats: Tensor, labels: Tensor | None
) -> dict[str, float]:
    from flowmatch.metrics.features import classifier_quality

    return classifier_quality(_classifier(classifier)[0], feats, ref_feats, labels)


def image_floor(
    train: Tensor,
    test: Tensor,
    train_labels: Tensor | None = None,
    *,
    classifier: str = "digits",
) -> ImageEvalRow:
    """The floor: real images ``train`` scored against the test split (one deterministic draw).

    Args:
        train: real images not in the test split, (N, C, H, W), as many as a generated set.
        test: the test split, (M, C, H, W).
        train_labels: their labels, (N,), for the accuracy, or None.
        classifier: the shipped classifier whose features are used (:data:`CLASSIFIERS`).
    """
    q = _quality(
        classifier,
        _embed(classifier, train, "train"),
        _embed(classifier, test, "test"),
        train_labels,
    )
    return ImageEvalRow(
        "floor", 0, 0, None, q["fd"], 0.0, q["kid"], q["kid_std"], q.get("accuracy", math.nan)
    )


def balanced_subset(labels: Tensor, wanted: Tensor, *, seed: int = FLOOR_SEED) -> Tensor:
    """Indices of a seeded random subset of ``labels`` with the class counts of ``wanted``.

    Args:
        labels: the labels of the pool, (N,).
        wanted: the labels the subset must have, (n,)
            (e.g. :func:`~flowmatch.sampling.labels_in_turn`).
        seed: the seed of the choice within each class.

    Returns:
        int64 indices into the pool, (n,), such that ``labels[idx]`` equals ``wanted``.

    Raises:
        ValueError: a class has fewer images in the pool than wanted.
    """
    g = torch.Generator().manual_seed(seed)
    idx = torch.empty(wanted.shape[0], dtype=torch.int64)
    for c in wanted.unique().tolist():
        slots = torch.nonzero(wanted == c).flatten()
        pool = torch.nonzero(labels == c).flatten()
        if pool.numel() < slots.numel():
            raise ValueError(
                f"class {c}: {slots.numel()} images wanted, the pool has {pool.numel()}"
            )
        idx[slots] = pool[torch.randperm(pool.numel(), generator=g)[: slots.numel()]]
    return idx


class ClassifierMetric:
    """FD, KID and class accuracy of images in a shipped classifier's features.

    The generated sets are as large as ``train`` (all of it with its labels ``labels`` is the
    floor); :class:`FashionMetric` bounds them instead. The test split's features are computed
    once.

    Args:
        classifier: ``"digits"`` or ``"fashion"`` (:data:`CLASSIFIERS`).
        test: the held-out images the samples are compared with, (M, C, H, W).
        labels: the class each generated image is asked for, (N,), or None (unconditional).
        train: the training images, scored against ``test`` for the floor; None: no floor.
    """

    def __init__(
        self,
        classifier: str,
        test: Tensor,
        labels: Tensor | None = None,
        train: Tensor | None = None,
    ) -> None:
        if classifier not in CLASSIFIERS:
            raise ValueError(
                f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}"
            )
        self.classifier, self.test, self.labels, self.train = classifier, test, labels, train
        self._test_features: Tensor | None = None

    @property
    def label(self) -> str:
        """The metric's name on the plot."""
        return f"FD ({self.classifier} classifier features)"

    def plan(self, num: int) -> tuple[int, Tensor | None]:
        """The images per generated set of an evaluation asking for ``num``, and their labels
        (the training split's size and labels; ``num`` when there is no training split)."""
        return (self.train.shape[0] if self.train is not None else num), self.labels

    def labels_for(self, n: int) -> Tensor | None:
        """The labels of a generated set of ``n`` images (None: unconditional)."""
        return self.labels

    def test_features(self) -> Tensor:
        """The classifier's features of the test split, (M, F), computed once."""
        if self._test_features is None:
            self._test_features = _embed(self.classifier, self.test, "test")
        return self._test_features

    def begin(self, num: int, draws: int, generator: torch.Generator) -> None:
        return None  # the test split is the same for every draw

    def score(self, samples: Tensor, state: Any, draw: int) -> dict[str, float]:
        """FD, KID and accuracy of one draw of samples (n, C, H, W) against the test split."""
        feats = _embed(self.classifier, samples, "images")
        labels = self.labels_for(samples.shape[0])
        q = _quality(self.classifier, feats, self.test_features(), labels)
        return {"fd": q["fd"], "kid": q["kid"], "accuracy": q.get("accuracy", math.nan)}

    def row(
        self, method: str, steps: int, nfe: int, guidance: float | None, scores: list[dict]
    ) -> ImageEvalRow:
        accs = [s["accuracy"] for s in scores]
        return ImageEvalRow(
            method,
            steps,
            nfe,
            guidance,
            *mean_std([s["fd"] for s in scores]),
            *mean_std([s["kid"] for s in scores]),
            sum(accs) / len(accs),
        )

    def floor(self, num: int, draws: int, seed: int) -> ImageEvalRow:
        """The train/test floor (deterministic: ``num``, ``draws`` and ``seed`` unused)."""
        if self.train is None:
            raise ValueError(f"the {self.classifier} floor needs the training split (train=...)")
        return image_floor(self.train, self.test, self.labels, classifier=self.classifier)

    def format_row(self, row: ImageEvalRow) -> str:
        """One progress line for a row."""
        return format_image_row(row)

    def format_table(self, rows: Sequence[ImageEvalRow], floor: ImageEvalRow | None = None) -> str:
        """The plain-text table of ``eval.txt``."""
        return format_image_table(rows, floor)

    def curve(self, row: ImageEvalRow) -> tuple[int, float, float]:
        """(NFE, mean, std) of a row for the quality-vs-NFE plot."""
        return row.nfe, row.fd_mean, row.fd_std

    def floor_band(self, floor: ImageEvalRow) -> tuple[float, float]:
        """(mean, std) of the floor for the plot."""
        return floor.fd_mean, 0.0


class DigitsMetric(ClassifierMetric):
    """FD, KID and class accuracy of 8x8 digits in the shipped digits classifier's features.

    Args:
        test: the held-out digits the samples are compared with, (M, 1, 8, 8).
        labels: the class each generated image is asked for, (N,), or None (unconditional).
        train: the training digits, scored against ``test`` for the floor; None: no floor.
    """

    label = "FD (digits classifier features)"

    def __init__(
        self, test: Tensor, labels: Tensor | None = None, train: Tensor | None = None
    ) -> None:
        super().__init__("digits", test, labels, train)


class FashionMetric(ClassifierMetric):
    """FD, KID and class accuracy of Fashion-MNIST images in the shipped classifier's features
    (not Inception FID), on sets of bounded size.

    A generated set has ``min(num, max_images)`` images with the classes in equal shares
    (:func:`~flowmatch.sampling.labels_in_turn`; unconditional without ``train_labels``); the
    floor is a fixed seeded subset of ``train`` with the same size and class counts, scored
    against the whole test split.

    Args:
        test: the test split, (M, 1, 28, 28), float in [-1, 1] or uint8.
        train: the training split (uint8 or float), for the floor; None: no floor.
        train_labels: its labels (N,); None: unconditional sets, a plain seeded subset.
        num_classes: the number of classes of the labels.
        max_images: the most images per set.
    """

    label = "FD (Fashion-MNIST classifier features, not Inception FID)"

    def __init__(
        self,
        test: Tensor,
        train: Tensor | None = None,
        train_labels: Tensor | None = None,
        *,
        num_classes: int = 10,
        max_images: int = FASHION_MAX_IMAGES,
    ) -> None:
        super().__init__("fashion", test, None, train)
        self.train_labels, self.num_classes, self.max_images = train_labels, num_classes, max_images

    def plan(self, num: int) -> tuple[int, Tensor | None]:
        """``min(num, max_images)`` images (at least 2), and their labels."""
        n = max(2, min(num, self.max_images))
        return n, self.labels_for(n)

    def labels_for(self, n: int) -> Tensor | None:
        """The classes in turn (:func:`~flowmatch.sampling.labels_in_turn`), or None."""
        from flowmatch.sampling import labels_in_turn

        return labels_in_turn(n, self.num_classes) if self.train_labels is not None else None

    def floor(self, num: int, draws: int, seed: int) -> ImageEvalRow:
        """A fixed subset of the training split (seeded :data:`FLOOR_SEED`, the size and class
        counts of a generated set of ``num``) against the test split (``draws``, ``seed``
        unused: one deterministic draw)."""
        if self.train is None:
            raise ValueError("the fashion floor needs the training split (train=...)")
        n, labels = self.plan(num)
        if labels is not None:
            assert self.train_labels is not None
            idx = balanced_subset(self.train_labels, labels)
        else:
            idx = torch.randperm(
                self.train.shape[0], generator=torch.Generator().manual_seed(FLOOR_SEED)
            )[:n]
        q = _quality(
            "fashion", _embed("fashion", self.train[idx], "train"), self.test_features(), labels
        )
        return ImageEvalRow(
            "floor", 0, 0, None, q["fd"], 0.0, q["kid"], q["kid_std"], q.get("accuracy", math.nan)
        )


@torch.no_grad()
def evaluate_images(
    model: nn.Module,
    test: Tensor,
    labels: Tensor | None,
    *,
    num: int,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int = 5,
    seed: int = 0,
    guidance: float | None = None,
    eta: float = 0.0,
    noise: float = 1.0,
    on_row: Callable[[ImageEvalRow], None] | None = None,
    classifier: str = "digits",
) -> list[ImageEvalRow]:
    """FD, KID and accuracy of the model's images against the test split, per sampler.

    :func:`~flowmatch.evaluation.loop.evaluate_model` with a :class:`ClassifierMetric` and
    N(0, I) noise.

    Args:
        model: a trained image model (FlowModel or net), conditional when ``labels`` is given.
        test: the held-out images, e.g. digits (M, 1, 8, 8).
        labels: the class of each generated image, (num,) (e.g. the training labels), or
            None for unconditional samples.
        num: images per generated set.
        steps: the step counts of the sampler grid (see :func:`flowmatch.sampling.generate`).
        methods: the samplers of the grid.
        draws: independent draws of the noise per figure.
        seed: seed of the draws (the same noise for every sampler).
        guidance: classifier-free guidance scale with ``labels``; None: conditional model.
        eta: DDIM's eta.
        noise: the SDE's noise scale.
        on_row: called with each row as soon as it is computed.
        classifier: whose features score the images (``"digits"`` or ``"fashion"``).

    Returns:
        One row per (method, steps).
    """
    shape = tuple(test.shape[1:])
    return evaluate_model(
        model,
        ClassifierMetric(classifier, test, labels),
        lambda n, g: torch.randn(n, *shape, generator=g),
        steps=steps,
        methods=methods,
        num=num,
        draws=draws,
        seed=seed,
        eta=eta,
        noise=noise,
        cond=labels,
        guidance=guidance,
        on_row=on_row,
    )
