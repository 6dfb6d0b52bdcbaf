"""flowmatch.data.fashion on small IDX files made here (the real set is not needed)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from flowmatch.data.fashion import FASHION_CLASSES, fashion_mnist_dir, load_fashion_mnist
from flowmatch.errors import DataError


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def fake_set(root, labels_max=9):
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (("train", 12), ("t10k", 5)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % (labels_max + 1))
    return root


def test_loads_both_splits_as_uint8_or_unit_range(tmp_path):
    root = fake_set(tmp_path / "fm")
    raw = load_fashion_mnist(root, uint8=True)
    assert raw.train.shape == (12, 1, 28, 28) and raw.train.dtype == torch.uint8
    assert raw.test.shape == (5, 1, 28, 28) and raw.class_names == FASHION_CLASSES
    assert raw.train_labels.tolist() == [k % 10 for k in range(12)]
    floats = load_fashion_mnist(root)
    torch.testing.assert_close(floats.train, raw.train.float() / 127.5 - 1, rtol=0, atol=0)


def test_the_environment_variable_names_the_folder(tmp_path, monkeypatch):
    root = fake_set(tmp_path / "fm")
    monkeypatch.setenv("FLOWMATCH_FASHION_MNIST", str(root))
    assert fashion_mnist_dir() == root
    assert load_fashion_mnist().test.shape[0] == 5


def test_missing_files_and_bad_labels_are_one_line(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    root = fake_set(tmp_path / "bad", labels_max=11)
    with pytest.raises(DataError, match=r"labels up to 11, expected 0\.\.9"):
        load_fashion_mnist(root)
