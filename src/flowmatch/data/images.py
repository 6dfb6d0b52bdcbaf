"""Image datasets: images as tensors (N, C, H, W) in [-1, 1] with integer class labels.

``digits`` is scikit-learn's bundled set of 1797 handwritten digits (8 x 8, 17 gray levels,
10 classes), the real image data that ships with an installed package; it is split once into
fixed train and test parts (stratified, seed 0) so that every run, metric and benchmark uses
the same held-out images.

Example:
    >>> data = load_digits()
    >>> data.train.shape, data.test.shape, data.num_classes
    (torch.Size([1437, 1, 8, 8]), torch.Size([360, 1, 8, 8]), 10)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DIGITS_TEST_FRACTION", "ImageSplit", "load_digits"]

DIGITS_TEST_FRACTION = 0.2
"""Share of each digit class held out as the fixed ``digits`` test split."""


@dataclass(frozen=True)
class ImageSplit:
    """Images and labels of a train and a test split.

    Attributes:
        train: training images, (N, C, H, W) float32 in [-1, 1].
        train_labels: their classes, (N,) int64 in [0, num_classes).
        test: held-out images, (M, C, H, W).
        test_labels: their classes, (M,).
        class_names: the name of each class (index = label).
    """

    train: Tensor
    train_labels: Tensor
    test: Tensor
    test_labels: Tensor
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train.shape[1:])  # type: ignore[return-value]


def load_digits() -> ImageSplit:
    """scikit-learn's 8 x 8 digits, scaled from gray levels 0..16 to [-1, 1], fixed split.

    The split holds out 20% of each class (360 images; 1437 train) with a stratified draw
    seeded 0, the same on every machine and call.

    Returns:
        :class:`ImageSplit` with images (N, 1, 8, 8) and labels 0..9.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    idx = torch.arange(labels.shape[0]).numpy()
    train_idx, test_idx = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, random_state=0, stratify=bunch.target
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return ImageSplit(
        train=images[train_idx],
        train_labels=labels[train_idx],
        test=images[test_idx],
        test_labels=labels[test_idx],
        class_names=[str(d) for d in range(10)],
    )
