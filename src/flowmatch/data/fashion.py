"""Fashion-MNIST: 70,000 grayscale 28 x 28 images of clothing in 10 classes (60k train, 10k test).

The data is not downloaded: it is read from the IDX files of the Debian package
``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``, MIT licensed), which puts
them in ``/usr/share/datasets/fashion-mnist/``, or from any folder that holds the same four
files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``, gzipped or not) given as
``root`` or in the environment variable ``FLOWMATCH_FASHION_MNIST``.

The split is the published one: train = the 60,000 training images, test = the 10,000 test
images. Images are kept as uint8 (47 MB for the training split) unless asked for as floats.

Example:
    >>> data = load_fashion_mnist(uint8=True)  # doctest: +SKIP
    >>> data.train.shape, data.train.dtype     # doctest: +SKIP
    (torch.Size([60000, 1, 28, 28]), torch.uint8)
"""

from __future__ import annotations

import os
from pathlib import Path

from flowmatch.data.images import ImageSplit, load_mnist_idx
from flowmatch.errors import DataError

__all__ = [
    "FASHION_CLASSES",
    "FASHION_DEFAULT_DIR",
    "FASHION_ENV",
    "fashion_mnist_dir",
    "load_fashion_mnist",
]

FASHION_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""

FASHION_ENV = "FLOWMATCH_FASHION_MNIST"
"""Environment variable naming another folder that holds the four IDX files."""

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
"""The class names, index = label."""

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_INSTALL = "apt-get install dataset-fashion-mnist, or set FLOWMATCH_FASHION_MNIST to a folder"


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def fashion_mnist_dir(root: str | Path | None = None) -> Path | None:
    """The folder the Fashion-MNIST files are read from, or None where they are not found.

    ``root`` if given, else ``$FLOWMATCH_FASHION_MNIST``, else the Debian package's folder.
    """
    if root is None:
        root = os.environ.get(FASHION_ENV) or FASHION_DEFAULT_DIR
    root = Path(root)
    stems = [stem for pair in _FILES.values() for stem in pair]
    return root if all(_find(root, stem) is not None for stem in stems) else None


def load_fashion_mnist(root: str | Path | None = None, *, uint8: bool = False) -> ImageSplit:
    """Fashion-MNIST's published train (60,000) and test (10,000) splits.

    Args:
        root: a folder with the four IDX files; None: ``$FLOWMATCH_FASHION_MNIST`` or
            ``/usr/share/datasets/fashion-mnist`` (see the module docstring).
        uint8: images as stored, uint8 0..255, instead of float32 in [-1, 1].

    Returns:
        :class:`~flowmatch.data.images.ImageSplit` with images (N, 1, 28, 28), labels 0..9
        and :data:`FASHION_CLASSES` as class names.

    Raises:
        DataError: the files are not found (one line saying how to install them), or one is
            damaged.
    """
    folder = fashion_mnist_dir(root)
    if folder is None:
        where = (
            Path(root) if root is not None else os.environ.get(FASHION_ENV) or FASHION_DEFAULT_DIR
        )
        raise DataError(f"{where}: Fashion-MNIST files not found ({_INSTALL})")
    parts = {}
    for split, (images, labels) in _FILES.items():
        x, y = load_mnist_idx(_find(folder, images), _find(folder, labels), uint8=uint8)  # type: ignore[arg-type]
        assert y is not None
        if y.numel() and int(y.max()) >= len(FASHION_CLASSES):
            raise DataError(f"{folder}: {split} labels up to {int(y.max())}, expected 0..9")
        parts[split] = (x, y)
    return ImageSplit(
        train=parts["train"][0],
        train_labels=parts["train"][1],
        test=parts["test"][0],
        test_labels=parts["test"][1],
        class_names=list(FASHION_CLASSES),
    )
