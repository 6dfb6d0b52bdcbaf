"""Reading a table from a ``.npy`` file safely: no pickles, and a header that claims more
data than the file holds is refused before anything is allocated."""

from __future__ import annotations

import math
import tokenize
from pathlib import Path

import numpy as np

from flowmatch.errors import DataError

__all__ = ["read_npy"]


def _check_npy_header(path: Path) -> None:
    """Refuse a .npy header that cannot be read, or that claims more data than the file holds
    (before anything that large is allocated)."""
    fmt = np.lib.format
    try:
        with path.open("rb") as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError, OverflowError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: not a valid .npy file (unreadable header: {reason})") from None
    count = math.prod(shape)
    need = count * dtype.itemsize
    have = path.stat().st_size - offset
    if need > have:
        raise DataError(
            f"{path}: not a valid .npy file: its header claims shape {tuple(shape)} "
            f"({need} bytes of {dtype}) but the file holds {have} bytes of data"
        )


def read_npy(path: Path) -> np.ndarray:
    """Load a 2-D numeric, finite array from a .npy file as float64."""
    with path.open("rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise DataError(f"{path}: an .npz archive, expected a single .npy array")
    if magic != b"\x93NUMPY":
        raise DataError(f"{path}: not a valid .npy file (no NumPy header)")
    _check_npy_header(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError, OverflowError) as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: holds Python objects (object arrays are refused); save a numeric array"
            ) from exc
        raise DataError(f"{path}: not a valid .npy file: {' '.join(str(exc).split())}") from exc
    if not isinstance(loaded, np.ndarray):  # defensive: np.load only returns arrays here
        raise DataError(f"{path}: expected a single .npy array")
    array = loaded
    if array.dtype.fields is not None or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.bool_)
    ):
        raise DataError(f"{path}: expected an array of real numbers, got dtype {array.dtype.name}")
    if array.ndim != 2:
        raise DataError(
            f"{path}: expected a 2-D array (rows, columns), got {array.ndim}-D shape "
            f"{tuple(array.shape)}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{path}: empty array of shape {tuple(array.shape)}")
    values = array.astype(np.float64)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise DataError(
            f"{path}: row {i + 1}, column {j + 1}: expected a finite number, got "
            f"{float(values[i, j])!r} ({len(bad)} non-finite values in all)"
        )
    return values
