"""Image datasets: images as tensors (N, C, H, W) in [-1, 1] with integer class labels.

``digits`` is scikit-learn's bundled set of 1797 handwritten digits (8 x 8, 17 gray levels,
10 classes), the real image data that ships with an installed package; it is split once into
fixed train and test parts (stratified, seed 0) so that every run, metric and benchmark uses
the same held-out images.

Two loaders read images from files into the same layout: :func:`load_image_folder` (one
sub-folder of PNG/JPEG files per class, as in torchvision's ``ImageFolder``) and
:func:`load_mnist_idx` (the IDX files MNIST and Fashion-MNIST ship as, optionally gzipped).
Both check their input up front and raise :class:`~flowmatch.data.tabular.DataError` with a
one-line message naming the offending file or folder.

Example:
    >>> data = load_digits()
    >>> data.train.shape, data.test.shape, data.num_classes
    (torch.Size([1437, 1, 8, 8]), torch.Size([360, 1, 8, 8]), 10)
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch.data.tabular import DataError

__all__ = [
    "DIGITS_TEST_FRACTION",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_SIZE",
    "ImageSplit",
    "check_image",
    "list_image_folder",
    "load_digits",
    "load_image_folder",
    "load_mnist_idx",
    "read_image",
    "unit_range",
]

DIGITS_TEST_FRACTION = 0.2
"""Share of each digit class held out as the fixed ``digits`` test split."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File suffixes (compared case-insensitively) that :func:`load_image_folder` reads."""

MAX_IMAGE_SIZE = 4096
"""Largest side length :func:`load_image_folder` resizes to."""

_IDX_UBYTE = 0x08  # the IDX data type code of unsigned bytes, the only one supported
_GZIP_MAGIC = b"\x1f\x8b"


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
    from flowmatch._extras import require

    require("sklearn", "digits", "the digits data set")
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


def _one_line(exc: BaseException) -> str:
    """An exception's message with all whitespace runs (newlines included) made single spaces."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _to_unit_range(pixels: np.ndarray) -> Tensor:
    """uint8 pixels 0..255 to float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    return unit_range(torch.from_numpy(pixels))


def unit_range(images: Tensor) -> Tensor:
    """Images as float32 in [-1, 1]: uint8 pixels 0..255 are mapped by ``p / 127.5 - 1``;
    floating-point images are returned as they are (assumed in [-1, 1] already)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 127.5 - 1.0
    return images


def load_image_folder(
    root: str | Path, *, size: int, channels: int = 1
) -> tuple[Tensor, Tensor, list[str]]:
    """Load a folder of class sub-folders of images, as torchvision's ``ImageFolder`` lays out.

    Each immediate sub-folder of ``root`` is a class; classes are sorted by folder name and
    numbered from 0 in that order. A class folder's images are the files directly in it whose
    suffix is ``.png``, ``.jpg`` or ``.jpeg`` (any case), sorted by file name; other files,
    deeper folders, and names starting with ``.`` (hidden files and folders) are ignored.

    Each image is read with Pillow, converted to gray (``"L"``, channels=1) or ``"RGB"``
    (channels=3; an alpha channel is dropped), 16-bit gray rounded to 8 bits, and resized to
    ``size x size`` with Pillow's bicubic filter (the aspect ratio is not kept; an image
    already of that size is not resampled). Pixels 0..255 map to ``pixel / 127.5 - 1``.

    Args:
        root: the folder holding one sub-folder per class.
        size: side length of the returned images, an int in [1, 4096].
        channels: 1 (gray) or 3 (RGB).

    Returns:
        ``(images, labels, class_names)``: images (N, C, size, size) float32 in [-1, 1],
        labels (N,) int64 in [0, len(class_names)), and the class folder names (index = label).

    Raises:
        DataError: a bad ``size`` or ``channels``; ``root`` missing or not a folder; no class
            sub-folders; a class folder without images; an image Pillow cannot read.

    Example:
        >>> x, y, names = load_image_folder("flowers", size=64, channels=3)  # doctest: +SKIP
        >>> x.shape                                                       # doctest: +SKIP
        torch.Size([N, 3, 64, 64])
    """
    files, labels, names = list_image_folder(root, size=size, channels=channels)
    mode = "L" if channels == 1 else "RGB"
    pixels = np.stack([read_image(path, mode, int(size)) for path in files])  # uint8
    if channels == 1:
        pixels = pixels[:, None]
    else:
        pixels = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    return _to_unit_range(pixels), labels, names


def list_image_folder(
    root: str | Path, *, size: int, channels: int = 1
) -> tuple[list[Path], Tensor, list[str]]:
    """The image files of a folder of class sub-folders, without reading them (see
    :func:`load_image_folder` for the layout and the checks; :func:`read_image` reads one).

    Returns:
        ``(files, labels, class_names)``: the files in class then name order, their labels
        (N,) int64 and the class folder names (index = label).

    Raises:
        DataError: as :func:`load_image_folder`, except for unreadable images.
    """
    integer = (int, np.integer)
    if isinstance(size, bool) or not isinstance(size, integer) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise DataError(f"size: expected an int in [1, {MAX_IMAGE_SIZE}], got {size!r}")
    if isinstance(channels, bool) or not isinstance(channels, integer) or channels not in (1, 3):
        raise DataError(f"channels: expected 1 (gray) or 3 (RGB), got {channels!r}")
    size = int(size)
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected a folder of class sub-folders")
    try:
        class_dirs = sorted(
            (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
        files_per_class = [_image_files(d) for d in class_dirs]
    except OSError as exc:
        raise DataError(f"{root}: cannot list folder: {exc.strerror or _one_line(exc)}") from exc
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders; expected one folder of images per class")
    for class_dir, files in zip(class_dirs, files_per_class, strict=True):
        if not files:
            raise DataError(f"{class_dir}: class folder holds no .png, .jpg or .jpeg images")

    files = [path for files in files_per_class for path in files]
    labels = [label for label, files in enumerate(files_per_class) for _ in files]
    return files, torch.tensor(labels, dtype=torch.int64), [d.name for d in class_dirs]


def _image_files(class_dir: Path) -> list[Path]:
    """The image files directly in a class folder, sorted by name."""
    return sorted(
        (
            p
            for p in class_dir.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )


def check_image(path: Path) -> None:
    """Check that Pillow can identify ``path`` as an image and that its data are intact (its
    checksums, for PNG), without decoding the pixels.

    Raises:
        DataError: naming the file; one line.
    """
    with _pillow(path) as Image:
        with Image.open(path) as image:
            image.verify()


def read_image(path: Path, mode: str, size: int) -> np.ndarray:
    """One image file as uint8 pixels (size, size) for mode "L", (size, size, 3) for "RGB"."""
    with _pillow(path) as Image:
        with Image.open(path) as opened:
            image = opened
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit gray PNG
                wide = np.asarray(image).astype(np.int64)
                image = Image.fromarray(np.clip((wide + 128) // 257, 0, 255).astype(np.uint8))
            image = image.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)


@contextlib.contextmanager
def _pillow(path: Path) -> Iterator[Any]:
    """Pillow's ``Image`` module (or the one-line error naming the ``images`` extra), with
    Pillow's errors on ``path`` turned into a one-line :class:`DataError` naming it."""
    from flowmatch._extras import require

    require("PIL", "images", "image folders")
    from PIL import Image, UnidentifiedImageError

    try:
        yield Image
    except UnidentifiedImageError as exc:
        raise DataError(
            f"{path}: not an image Pillow can identify (corrupt or wrong format)"
        ) from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image: {_one_line(exc)}") from exc


def load_mnist_idx(
    images_path: str | Path, labels_path: str | Path | None = None, *, uint8: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Load images (and optionally labels) from IDX files, the format MNIST is distributed in.

    An IDX file is a big-endian header -- two zero bytes, a data type code byte (only 0x08,
    unsigned byte, is supported), a byte with the number of dimensions ``ndim``, then ``ndim``
    uint32 sizes -- followed by exactly ``prod(sizes)`` data bytes. An images file has 3
    dimensions (N, H, W), a labels file 1 (N,). Either file may be gzip-compressed; that is
    detected from its first bytes (1f 8b), whatever its name. Pixels 0..255 map to
    ``pixel / 127.5 - 1``.

    Args:
        images_path: the images file, e.g. ``train-images-idx3-ubyte.gz``.
        labels_path: the matching labels file, e.g. ``train-labels-idx1-ubyte.gz``, or None.
        uint8: keep the pixels as stored, uint8 0..255 (a quarter of the memory), instead of
            float32 in [-1, 1].

    Returns:
        ``(images, labels)``: images (N, 1, H, W) float32 in [-1, 1] (uint8 0..255 with
        ``uint8=True``); labels (N,) int64, or None when no ``labels_path`` is given.

    Raises:
        DataError: a missing file, a corrupt gzip stream, a bad header (non-zero magic bytes,
            an unsupported data type, the wrong number of dimensions), fewer or more data
            bytes than the header announces, or a label count unequal to the image count.

    Example:
        >>> x, y = load_mnist_idx(  # doctest: +SKIP
        ...     "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
        ... )
        >>> x.shape, y.shape        # doctest: +SKIP
        (torch.Size([60000, 1, 28, 28]), torch.Size([60000]))
    """
    images_path = Path(images_path)
    pixels = _read_idx(images_path, ndim=3, what="images (N, H, W)")
    images = torch.from_numpy(pixels[:, None]) if uint8 else _to_unit_range(pixels[:, None])
    if labels_path is None:
        return images, None
    labels_path = Path(labels_path)
    targets = _read_idx(labels_path, ndim=1, what="labels (N,)")
    if targets.shape[0] != pixels.shape[0]:
        raise DataError(
            f"{labels_path}: {targets.shape[0]} labels for the {pixels.shape[0]} images "
            f"in {images_path}"
        )
    return images, torch.from_numpy(targets.astype(np.int64))


def _read_idx(path: Path, *, ndim: int, what: str) -> np.ndarray:
    """Parse an unsigned-byte IDX file (gzipped or not) into a uint8 array of ``ndim`` dims."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or _one_line(exc)}") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip stream: {_one_line(exc)}") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header (4+ bytes)")
    if raw[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: starts with bytes {raw[:2].hex(' ')}, expected 00 00"
        )
    if raw[2] != _IDX_UBYTE:
        raise DataError(
            f"{path}: unsupported IDX data type 0x{raw[2]:02x}; only 0x08 (unsigned byte) is "
            f"supported"
        )
    if raw[3] != ndim:
        raise DataError(f"{path}: {raw[3]}-D IDX data, expected {ndim}-D {what}")
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(
            f"{path}: truncated header: {len(raw)} bytes, expected {offset} for {ndim} sizes"
        )
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if 0 in shape:
        raise DataError(f"{path}: empty IDX data of shape {shape}")
    expected = math.prod(shape)
    found = len(raw) - offset
    if found < expected:
        raise DataError(
            f"{path}: truncated: header announces shape {shape} ({expected} data bytes), "
            f"found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} bytes of trailing data after the {expected} data "
            f"bytes of shape {shape}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy()
