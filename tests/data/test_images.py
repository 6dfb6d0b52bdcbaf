"""Tests for the image loaders: class folders of PNG/JPEG files, MNIST IDX files, digits."""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowmatch.data.images import load_digits, load_image_folder, load_mnist_idx
from flowmatch.data.tabular import DataError

# Images of some 8-bit pixel values under pixel / 127.5 - 1 (exact up to float32 rounding).
UNIT = {0: -1.0, 51: -0.6, 153: 0.2, 204: 0.6, 255: 1.0}


def _is_level(x: torch.Tensor, value: float) -> bool:
    """Every element of x equals value up to float32 rounding."""
    return bool(((x - value).abs() <= 1e-6).all())


def _save(path: Path, pixels: np.ndarray, **kwargs: object) -> Path:
    """Write uint8 pixels (H, W) or (H, W, 3) (or uint16 (H, W)) as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def _gray(value: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.full((h, w), value, dtype=np.uint8)


def _error(call: Callable[..., object], *args: object, **kwargs: object) -> str:
    """Run a loader that must fail; return the DataError message after checking it is one line."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- image folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three classes created out of name order, each image a constant gray level."""
    root = tmp_path / "images"
    _save(root / "dog" / "b.png", _gray(204))
    _save(root / "dog" / "a.png", _gray(153))
    _save(root / "ant" / "only.PNG", _gray(51))
    _save(root / "cat" / "z.png", _gray(255))
    _save(root / "cat" / "x.png", _gray(0))
    _save(root / "cat" / "y.JPEG", _gray(128), quality=95)
    # Ignored: other suffixes, hidden files and folders, nested folders, files in the root.
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "._x.png").write_bytes(b"macOS resource fork, not a PNG")
    _save(root / "cat" / "nested" / "deep.png", _gray(1))
    _save(root / ".hidden" / "h.png", _gray(2))
    _save(root / "stray.png", _gray(3))
    return root


def test_folder_classes_labels_order_and_exact_png_values(folder: Path) -> None:
    images, labels, names = load_image_folder(folder, size=8)
    assert names == ["ant", "cat", "dog"]
    assert images.shape == (6, 1, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert labels.tolist() == [0, 1, 1, 1, 2, 2]
    # Files within a class come sorted by name: ant/only, cat/x, cat/y, cat/z, dog/a, dog/b.
    png = [0, 1, 3, 4, 5]
    expected = [UNIT[51], UNIT[0], UNIT[255], UNIT[153], UNIT[204]]
    for i, value in zip(png, expected, strict=True):
        assert _is_level(images[i], value), i
    # The JPEG (gray 128, lossy) stays close to 128 / 127.5 - 1 = 0.0039.
    assert images[2].sub(0.0039).abs().max() < 3 / 127.5
    assert images.min() == -1.0 and images.max() == 1.0


def test_folder_accepts_path_as_str_and_jpg(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "one.jpg", _gray(255), quality=100)
    _save(tmp_path / "b" / "two.jpeg", _gray(0), quality=100)
    images, labels, names = load_image_folder(str(tmp_path), size=8)
    assert names == ["a", "b"] and labels.tolist() == [0, 1]
    assert images[0].min() > 0.98 and images[1].max() < -0.98


def test_folder_resize_keeps_layout(tmp_path: Path) -> None:
    # 16 x 32 (H x W): top half black, bottom half white; left quarter of columns mid-gray.
    pixels = np.zeros((16, 32), dtype=np.uint8)
    pixels[8:] = 255
    _save(tmp_path / "c" / "im.png", pixels)
    _save(tmp_path / "c" / "flat.png", _gray(204, 5, 7))
    images, _, _ = load_image_folder(tmp_path, size=4)
    assert images.shape == (2, 1, 4, 4)
    # A constant image resizes to the same constant; the aspect ratio is not kept.
    assert _is_level(images[0], UNIT[204])
    grad = images[1, 0]
    assert torch.allclose(grad[0], torch.full((4,), -1.0), atol=0.05)  # top row black
    assert torch.allclose(grad[-1], torch.full((4,), 1.0), atol=0.05)  # bottom row white
    assert bool((grad[:, :1] == grad).all())  # every row constant across the width
    assert images.min() >= -1.0 and images.max() <= 1.0


def test_folder_rgb_channels_order(tmp_path: Path) -> None:
    red = np.zeros((6, 6, 3), dtype=np.uint8)
    red[..., 0] = 255
    red[0, :, 2] = 204  # top row also blue-ish
    _save(tmp_path / "rgb" / "red.png", red)
    _save(tmp_path / "rgb" / "zgray.png", _gray(51, 6, 6))  # gray is replicated to 3 channels
    images, _, _ = load_image_folder(tmp_path, size=6, channels=3)
    assert images.shape == (2, 3, 6, 6)
    assert torch.equal(images[0, 0], torch.ones(6, 6))
    assert torch.equal(images[0, 1], -torch.ones(6, 6))
    assert _is_level(images[0, 2, 0], UNIT[204])
    assert torch.equal(images[0, 2, 1:], -torch.ones(5, 6))
    assert _is_level(images[1], UNIT[51])


def test_folder_gray_from_rgb_and_16_bit(tmp_path: Path) -> None:
    _save(tmp_path / "k" / "a_gray_rgb.png", np.full((4, 4, 3), 153, dtype=np.uint8))
    _save(tmp_path / "k" / "b_red.png", np.tile(np.array([255, 0, 0], np.uint8), (4, 4, 1)))
    _save(tmp_path / "k" / "c_16bit.png", np.full((4, 4), 51 * 257, dtype=np.uint16))
    images, _, _ = load_image_folder(tmp_path, size=4, channels=1)
    assert images.shape == (3, 1, 4, 4)
    assert _is_level(images[0], UNIT[153])  # R = G = B keeps the gray level
    # Pillow's luma (ITU-R 601-2: 0.299 R + ...) of pure red is 76, darker than mid-gray.
    assert _is_level(images[1], 76 / 127.5 - 1.0)
    # 16-bit gray is rounded to 8 bits, not clipped to white.
    assert _is_level(images[2], UNIT[51])


@pytest.mark.parametrize("size", [0, -3, 4097, 2.5, True, "8", None])
def test_folder_bad_size(folder: Path, size: object) -> None:
    message = _error(load_image_folder, folder, size=size)
    assert message.startswith("size: ") and repr(size) in message


@pytest.mark.parametrize("channels", [0, 2, 4, 1.0, True])
def test_folder_bad_channels(folder: Path, channels: object) -> None:
    message = _error(load_image_folder, folder, size=8, channels=channels)
    assert message.startswith("channels: ") and repr(channels) in message


def test_folder_size_limits_accepted(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "x.png", _gray(255, 3, 3))
    images, _, _ = load_image_folder(tmp_path, size=np.int64(1))
    assert images.shape == (1, 1, 1, 1) and images.item() == 1.0


def test_folder_root_missing_or_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert _error(load_image_folder, missing, size=8) == f"{missing}: no such folder"
    a_file = _save(tmp_path / "file.png", _gray(0))
    message = _error(load_image_folder, a_file, size=8)
    assert message.startswith(f"{a_file}: not a folder")


def test_folder_without_class_folders(tmp_path: Path) -> None:
    _save(tmp_path / "loose.png", _gray(0))  # images in the root itself are not a class
    (tmp_path / ".git").mkdir()
    message = _error(load_image_folder, tmp_path, size=8)
    assert message.startswith(f"{tmp_path}: no class sub-folders")


def test_folder_empty_class(folder: Path) -> None:
    empty = folder / "bee"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    _save(empty / "sub" / "deeper.png", _gray(0))
    message = _error(load_image_folder, folder, size=8)
    assert message.startswith(f"{empty}: class folder holds no")


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    """The bytes of an image file of the given format ("PNG", "JPEG")."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.png", b"this is not an image at all"),
        ("empty.jpg", b""),
        ("half.png", None),  # truncated in the middle of the pixel data
        ("half.jpeg", None),
    ],
)
def test_folder_corrupt_image_names_file(folder: Path, name: str, content: bytes | None) -> None:
    if content is None:
        noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
        whole = _encoded(noise, "PNG" if name.endswith(".png") else "JPEG")
        content = whole[: len(whole) // 2]
    bad = folder / "dog" / name
    bad.write_bytes(content)
    message = _error(load_image_folder, folder, size=8)
    assert message.startswith(f"{bad}: ")


# --------------------------------------------------------------------------- IDX files


def _idx(
    values: np.ndarray,
    *,
    magic: bytes = b"\x00\x00",
    code: int = 0x08,
    dims: tuple[int, ...] | None = None,
    tail: bytes = b"",
    cut: int = 0,
) -> bytes:
    """IDX bytes for uint8 values; the keyword options build broken files."""
    dims = values.shape if dims is None else dims
    header = magic + bytes([code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    data = header + values.astype(np.uint8).tobytes() + tail
    return data[: len(data) - cut] if cut else data


@pytest.fixture
def idx_pixels() -> np.ndarray:
    # 3 images of 2 x 4 pixels: values 0..23 in C order, with known values in known places.
    pixels = np.arange(24, dtype=np.uint8).reshape(3, 2, 4)
    pixels[0, 0, 0], pixels[1, 1, 2], pixels[2, 0, 3], pixels[2, 1, 3] = 0, 51, 204, 255
    return pixels


@pytest.fixture
def idx_files(tmp_path: Path, idx_pixels: np.ndarray) -> tuple[Path, Path]:
    images = tmp_path / "train-images-idx3-ubyte"
    labels = tmp_path / "train-labels-idx1-ubyte"
    images.write_bytes(_idx(idx_pixels))
    labels.write_bytes(_idx(np.array([7, 0, 9])))
    return images, labels


def _check_idx_values(images: torch.Tensor, labels: torch.Tensor | None) -> None:
    assert images.shape == (3, 1, 2, 4) and images.dtype == torch.float32
    assert images[0, 0, 0, 0] == UNIT[0]
    assert images[1, 0, 1, 2] == pytest.approx(UNIT[51], abs=1e-7)
    assert images[2, 0, 0, 3] == pytest.approx(UNIT[204], abs=1e-7)
    assert images[2, 0, 1, 3] == UNIT[255]
    # Elsewhere the values 1..22 kept their C-order layout: strictly increasing.
    rest = images.flatten()[1:-4]
    rest = torch.cat([rest[:13], rest[14:]])  # drop the planted 51
    assert bool((rest[1:] > rest[:-1]).all())
    if labels is not None:
        assert labels.dtype == torch.int64 and labels.tolist() == [7, 0, 9]


def test_idx_round_trip_plain(idx_files: tuple[Path, Path]) -> None:
    images, labels = load_mnist_idx(*idx_files)
    _check_idx_values(images, labels)
    alone, none = load_mnist_idx(str(idx_files[0]))
    assert none is None and torch.equal(alone, images)


@pytest.mark.parametrize("suffix", [".gz", "", ".bin"])
def test_idx_gzip_detected_by_magic(
    tmp_path: Path, idx_files: tuple[Path, Path], suffix: str
) -> None:
    zipped = []
    for path in idx_files:
        target = tmp_path / f"zipped-{path.name}{suffix}"
        target.write_bytes(gzip.compress(path.read_bytes()))
        zipped.append(target)
    images, labels = load_mnist_idx(*zipped)
    _check_idx_values(images, labels)
    plain_images, plain_labels = load_mnist_idx(*idx_files)
    assert torch.equal(images, plain_images) and torch.equal(labels, plain_labels)


def test_idx_plain_file_named_gz(tmp_path: Path, idx_files: tuple[Path, Path]) -> None:
    named = tmp_path / "images.gz"
    named.write_bytes(idx_files[0].read_bytes())
    images, _ = load_mnist_idx(named)
    _check_idx_values(images, None)


def test_idx_missing_files(tmp_path: Path, idx_files: tuple[Path, Path]) -> None:
    missing = tmp_path / "absent-idx3-ubyte"
    assert _error(load_mnist_idx, missing) == f"{missing}: no such file"
    assert _error(load_mnist_idx, idx_files[0], missing) == f"{missing}: no such file"
    assert _error(load_mnist_idx, tmp_path) == f"{tmp_path}: not a regular file"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "too short"),
        (b"\x00\x00\x08", "too short"),
        (_idx(np.zeros((1, 2, 2)), magic=b"\x00\x01"), "expected 00 00"),
        (_idx(np.zeros((1, 2, 2)), magic=b"P5"), "expected 00 00"),
        (_idx(np.zeros((1, 2, 2)), code=0x0D), "unsupported IDX data type 0x0d"),
        (_idx(np.zeros((1, 2, 2)), code=0x09), "unsupported IDX data type 0x09"),
        (_idx(np.zeros(4)), "1-D IDX data, expected 3-D"),
        (_idx(np.zeros((1, 1, 2, 2))), "4-D IDX data, expected 3-D"),
        (_idx(np.zeros((1, 2, 2)))[:10], "truncated header"),
        (_idx(np.zeros((2, 3, 3)), cut=1), "found 17"),
        (_idx(np.zeros((2, 3, 3)), dims=(3, 3, 3)), "truncated"),
        (_idx(np.zeros((2, 3, 3)), tail=b"\x00\x01"), "2 bytes of trailing data"),
        (_idx(np.zeros((0, 3, 3))), "empty IDX data"),
        (b"\x1f\x8b" + b"definitely not deflate data", "corrupt gzip"),
        (gzip.compress(_idx(np.zeros((2, 3, 3))), mtime=0)[:-9], "corrupt gzip"),  # cut stream
    ],
)
def test_idx_bad_images_file(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad-images"
    path.write_bytes(content)
    message = _error(load_mnist_idx, path)
    assert message.startswith(f"{path}: ") and words in message


def test_idx_gzip_with_bad_crc(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(_idx(np.zeros((2, 3, 3)))))
    data[-8] ^= 0xFF  # CRC32 of the uncompressed data
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(data))
    assert _error(load_mnist_idx, path).startswith(f"{path}: corrupt gzip stream")


def test_idx_bad_labels_file(tmp_path: Path, idx_files: tuple[Path, Path]) -> None:
    images, _ = idx_files
    labels = tmp_path / "labels"
    labels.write_bytes(_idx(np.zeros((3, 1, 1))))
    assert _error(load_mnist_idx, images, labels) == (
        f"{labels}: 3-D IDX data, expected 1-D labels (N,)"
    )
    labels.write_bytes(_idx(np.zeros(3), tail=b"\xff"))
    assert _error(load_mnist_idx, images, labels).startswith(f"{labels}: 1 bytes of trailing")


@pytest.mark.parametrize("count", [2, 4])
def test_idx_label_count_mismatch_names_both(
    tmp_path: Path, idx_files: tuple[Path, Path], count: int
) -> None:
    images, _ = idx_files
    labels = tmp_path / "labels-idx1-ubyte"
    labels.write_bytes(_idx(np.arange(count)))
    message = _error(load_mnist_idx, images, labels)
    assert message == f"{labels}: {count} labels for the 3 images in {images}"


# --------------------------------------------------------------------------- digits


def test_load_digits_fixed_stratified_split() -> None:
    data = load_digits()
    assert data.train.shape == (1437, 1, 8, 8) and data.test.shape == (360, 1, 8, 8)
    assert data.train.dtype == torch.float32 and data.train_labels.dtype == torch.int64
    assert data.shape == (1, 8, 8) and data.num_classes == 10
    assert data.class_names == [str(d) for d in range(10)]
    for split in (data.train, data.test):
        assert split.min() == -1.0 and split.max() == 1.0
    test_counts = torch.bincount(data.test_labels, minlength=10)
    assert bool(((test_counts >= 35) & (test_counts <= 37)).all()), test_counts
    # Every class keeps its share: sklearn's class sizes, 20% of each (+-1) held out.
    totals = torch.tensor([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert torch.equal(test_counts + torch.bincount(data.train_labels, minlength=10), totals)
    assert bool(((test_counts - 0.2 * totals).abs() <= 1).all())
    again = load_digits()
    assert torch.equal(again.train, data.train) and torch.equal(again.test, data.test)
    assert torch.equal(again.train_labels, data.train_labels)
    assert torch.equal(again.test_labels, data.test_labels)
