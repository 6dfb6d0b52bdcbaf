"""Tabular data files (``.csv``, ``.npy``) and per-column standardization.

A table is a 2-D array of finite numbers, one row per sample: ``Table.data`` of shape (N, D)
float32, used as the data side (t=1) of a flow. Loading checks everything up front and raises
:class:`DataError` with a one-line message naming the file and, where there is one, the 1-based
row and column of the offending cell, so that bad input is refused before a run starts.

Example:
    >>> table = load_table("data.csv")          # doctest: +SKIP
    >>> scaler = Standardizer.fit(table.data)   # doctest: +SKIP
    >>> x1 = scaler.transform(table.data)       # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch.data.npy import read_npy
from flowmatch.errors import DataError

__all__ = ["TABLE_SUFFIXES", "DataError", "Standardizer", "Table", "load_table", "save_table"]

TABLE_SUFFIXES = (".csv", ".npy")

_MAX_SHOWN = 40  # longest cell text quoted in an error message


@dataclass(frozen=True)
class Table:
    """Numeric table loaded from a file.

    Attributes:
        data: values, shape (N, D), float32, all finite, N >= 1 and D >= 1.
        columns: D column names: the CSV header when there is one, else ``x1`` ... ``xD``.
    """

    data: Tensor
    columns: list[str]


def save_table(path: str | Path, data: Tensor, columns: list[str] | None = None) -> Path:
    """Write points (N, D) to a ``.csv`` (with a header row) or ``.npy`` file, atomically.

    The file reads back with :func:`load_table` to the same values (float32).

    Args:
        path: the output file; its suffix picks the format.
        data: values, shape (N, D).
        columns: D column names for the CSV header; ``x1`` ... ``xD`` when None.

    Raises:
        DataError: an unknown suffix or a wrong shape, naming the file.
    """
    from flowmatch.atomic import atomic_path

    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: expected a file name ending in .csv or .npy")
    if data.ndim != 2:
        raise DataError(f"{path}: expected data of shape (N, D), got {tuple(data.shape)}")
    arr = data.detach().cpu().float().numpy()
    names = columns if columns is not None else [f"x{j + 1}" for j in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise DataError(f"{path}: {len(names)} column names for {arr.shape[1]} columns")
    with atomic_path(path) as tmp:
        if path.suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
        else:
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(names)
                writer.writerows([[f"{float(v):.9g}" for v in row] for row in arr])
    return path


def load_table(path: str | Path) -> Table:
    """Load a numeric table from a ``.csv`` or ``.npy`` file.

    CSV: comma-separated, UTF-8 (a byte-order mark is ignored), quoting as in Python's ``csv``
    module, cells stripped of surrounding spaces, empty lines skipped. The first row is a
    header when none of its cells is a number; otherwise it is data and the columns are named
    ``x1`` ... ``xD``. Every other cell must be a finite number.

    NPY: a 2-D array of integers, booleans or floats, loaded with ``allow_pickle=False`` (object
    arrays are refused), all values finite. Columns are named ``x1`` ... ``xD``.

    Args:
        path: file to read; the extension (case-insensitive) selects the format.

    Returns:
        Table with data of shape (N, D), float32.

    Raises:
        DataError: missing file, unknown extension, empty file, ragged rows, a missing,
            non-numeric or non-finite cell (with its 1-based row and column), a value that
            overflows float32, an array that is not 2-D or not numeric.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy"):
        shown = repr(path.suffix) if path.suffix else "no extension"
        raise DataError(f"{path}: unknown file type ({shown}); expected .csv or .npy")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        if suffix == ".csv":
            values, columns, row_numbers = _read_csv(path)
        else:
            values, columns, row_numbers = read_npy(path), None, None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if columns is None:
        columns = [f"x{j + 1}" for j in range(values.shape[1])]
    with np.errstate(over="ignore"):
        data = values.astype(np.float32)
    overflow = np.argwhere(~np.isfinite(data))
    if overflow.size:
        i, j = (int(v) for v in overflow[0])
        where = _where(path, i, j, columns, row_numbers)
        raise DataError(f"{where}: {float(values[i, j])!r} is too large for float32")
    return Table(data=torch.from_numpy(np.ascontiguousarray(data)), columns=columns)


def _where(path: Path, i: int, j: int, columns: list[str], row_numbers: list[int] | None) -> str:
    """``'file: row R, column C'`` for the 0-based cell (i, j) of the loaded array."""
    row = row_numbers[i] if row_numbers is not None else i + 1
    return f"{path}: row {row}, column {_column_label(j, columns)}"


def _column_label(j: int, header: list[str] | None) -> str:
    if header is not None and header[j]:
        return repr(header[j])
    return str(j + 1)


def _shorten(cell: str) -> str:
    if len(cell) > _MAX_SHOWN:
        cell = cell[: _MAX_SHOWN - 3] + "..."
    return repr(cell)


def _to_float(cell: str) -> float:
    """A cell as a number; Python's float() also reads ``1_000``, a CSV never means that."""
    if "_" in cell:
        raise ValueError(cell)
    return float(cell)


def _is_number(cell: str) -> bool:
    try:
        _to_float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> tuple[np.ndarray, list[str] | None, list[int]]:
    """Parse a CSV file into float64 values, its header (or None) and each row's line number."""
    header: list[str] | None = None
    width = 0
    first_line = 0
    rows: list[list[float]] = []
    row_numbers: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            for raw in reader:
                if not raw:
                    continue  # an empty line
                line = reader.line_num
                cells = [cell.strip() for cell in raw]
                if not width:
                    width, first_line = len(cells), line
                    if not any(_is_number(cell) for cell in cells):
                        header = cells
                        continue
                elif len(cells) != width:
                    what = "the header" if header is not None else "the first row"
                    count = f"{len(cells)} cell" + ("s" if len(cells) != 1 else "")
                    raise DataError(
                        f"{path}: row {line} has {count}, expected {width} like "
                        f"{what} (row {first_line})"
                    )
                rows.append(_parse_row(path, line, cells, header, first=line == first_line))
                row_numbers.append(line)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV near row {reader.line_num}: {exc}") from exc
    if not width:
        raise DataError(f"{path}: file is empty")
    if not rows:
        raise DataError(f"{path}: no data rows after the header (row {first_line})")
    return np.array(rows, dtype=np.float64), header, row_numbers


def _parse_row(
    path: Path, line: int, cells: list[str], header: list[str] | None, *, first: bool
) -> list[float]:
    values = []
    for j, cell in enumerate(cells):
        where = f"{path}: row {line}, column {_column_label(j, header)}"
        if not cell:
            raise DataError(f"{where}: missing value")
        try:
            value = _to_float(cell)
        except ValueError:
            hint = " (a header row must contain no numbers)" if first else ""
            raise DataError(f"{where}: expected a number, got {_shorten(cell)}{hint}") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: expected a finite number, got {_shorten(cell)}")
        values.append(value)
    return values


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-column affine standardization ``z = (x - mean) / std`` and its inverse.

    ``fit`` uses the population standard deviation (divisor N), so fitted data transforms to
    zero mean and unit variance exactly up to rounding. A constant column (all values equal,
    including any column of a single-row table) gets ``std = 1``: it is only centered, never
    divided by zero. Near-constant columns keep their small std. Statistics are kept in
    float64 and cast to the input's dtype and device when applied.

    Attributes:
        mean: per-column mean, shape (D,).
        std: per-column standard deviation, shape (D,), all positive and finite.
    """

    mean: Tensor
    std: Tensor

    def __post_init__(self) -> None:
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std: expected equal shapes (D,), got {tuple(self.mean.shape)} "
                f"and {tuple(self.std.shape)}"
            )
        if not bool(torch.isfinite(self.mean).all()):
            raise ValueError("mean: expected finite values")
        if not bool((torch.isfinite(self.std) & (self.std > 0)).all()):
            raise ValueError("std: expected positive finite values")

    @property
    def dim(self) -> int:
        """Number of columns D."""
        return self.mean.shape[0]

    @classmethod
    def fit(cls, x: Tensor) -> Standardizer:
        """Fit column means and standard deviations.

        Args:
            x: data, shape (N, D) with N >= 1, finite values.

        Returns:
            Standardizer with float64 mean and std of shape (D,) on ``x``'s device.
        """
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x: expected shape (N, D) with N, D >= 1, got {tuple(x.shape)}")
        x64 = x.to(torch.float64)
        if not bool(torch.isfinite(x64).all()):
            raise ValueError("x: expected finite values")
        mean = x64.mean(dim=0)
        std = x64.std(dim=0, correction=0)
        constant = x64.amax(dim=0) == x64.amin(dim=0)
        std = torch.where(constant, torch.ones_like(std), std)
        return cls(mean=mean, std=std)

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected shape (..., {self.dim}), got {tuple(x.shape)}")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return (
            self.mean.to(device=x.device, dtype=dtype),
            self.std.to(device=x.device, dtype=dtype),
        )

    def transform(self, x: Tensor) -> Tensor:
        """Standardize data.

        Args:
            x: data, shape (N, D) (any leading shape works).

        Returns:
            ``(x - mean) / std``, same shape, dtype of ``x`` (float32 for integer input).
        """
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, z: Tensor) -> Tensor:
        """Map standardized values back to data units.

        Args:
            z: standardized values, shape (N, D) (any leading shape works).

        Returns:
            ``z * std + mean``, same shape, dtype of ``z`` (float32 for integer input).
        """
        mean, std = self._stats(z)
        return z * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form: ``{"mean": [...], "std": [...]}`` with plain Python floats."""
        return {
            "mean": [float(v) for v in self.mean.tolist()],
            "std": [float(v) for v in self.std.tolist()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict` output (e.g. after a JSON round trip).

        Args:
            d: mapping with exactly the keys ``mean`` and ``std``, each a list of D numbers.

        Returns:
            Standardizer with float64 CPU tensors.

        Raises:
            ValueError: missing or unknown keys, non-numeric entries, unequal lengths, or a
                std that is not positive and finite.
        """
        if set(d) != {"mean", "std"}:
            raise ValueError(f"d: expected keys ['mean', 'std'], got {sorted(map(str, d))}")
        stats = {}
        for key in ("mean", "std"):
            value = d[key]
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"d[{key!r}]: expected a non-empty list of numbers")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ValueError(f"d[{key!r}]: expected a non-empty list of numbers")
            stats[key] = torch.tensor(value, dtype=torch.float64)
        return cls(mean=stats["mean"], std=stats["std"])
