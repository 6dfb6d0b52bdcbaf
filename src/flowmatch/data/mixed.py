"""Tables with continuous and categorical columns (``.csv`` with a header).

:func:`load_mixed_table` reads a CSV whose columns are numbers (continuous) or labels
(categorical) into a :class:`MixedTable`: the continuous values (N, Dc) float32, the
categorical codes (N, Dk) long (code c of column j is ``categories[name][c]``, the category
strings sorted), and the column names and kinds in the file's order. :func:`save_mixed_table`
writes values and codes back in that order with the original category strings. Errors are
:class:`~flowmatch.errors.DataError`, one line naming the file, row and column.

Example:
    >>> table = load_mixed_table("wine.csv")                      # doctest: +SKIP
    >>> table.kinds                                               # doctest: +SKIP
    ['continuous', 'continuous', 'categorical']
    >>> save_mixed_table("copy.csv", table.continuous, table.categorical,
    ...                  **table.layout)                          # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch.errors import DataError

__all__ = ["KINDS", "MAX_CATEGORIES", "MixedTable", "load_mixed_table", "save_mixed_table"]

KINDS = ("continuous", "categorical")
MAX_CATEGORIES = 1000
"""A categorical column with more distinct values than this is refused (an id column)."""

_MAX_SHOWN = 40  # longest cell text quoted in an error message


def _shorten(cell: str) -> str:
    return repr(cell if len(cell) <= _MAX_SHOWN else cell[: _MAX_SHOWN - 3] + "...")


@dataclass(frozen=True)
class MixedTable:
    """A table of continuous and categorical columns.

    Attributes:
        continuous: the continuous columns' values, (N, Dc) float32, finite.
        categorical: the categorical columns' codes, (N, Dk) long; code c of the k-th
            categorical column is ``categories[name][c]``.
        columns: all D = Dc + Dk column names, in the file's order.
        kinds: ``"continuous"`` or ``"categorical"`` for each column of ``columns``.
        categories: for each categorical column, its category strings, sorted.
    """

    continuous: Tensor
    categorical: Tensor
    columns: list[str]
    kinds: list[str]
    categories: dict[str, list[str]]

    @property
    def continuous_columns(self) -> list[str]:
        """The names of the continuous columns, in order."""
        return [c for c, k in zip(self.columns, self.kinds, strict=True) if k == "continuous"]

    @property
    def categorical_columns(self) -> list[str]:
        """The names of the categorical columns, in order."""
        return [c for c, k in zip(self.columns, self.kinds, strict=True) if k == "categorical"]

    @property
    def vocab_sizes(self) -> list[int]:
        """The number of categories of each categorical column, in order."""
        return [len(self.categories[c]) for c in self.categorical_columns]

    @property
    def layout(self) -> dict[str, Any]:
        """``{"columns", "kinds", "categories"}``: what :func:`save_mixed_table` takes (and
        what a :class:`~flowmatch.discrete.MixedFlowModel` keeps in its ``info``)."""
        return {
            "columns": list(self.columns),
            "kinds": list(self.kinds),
            "categories": {k: list(v) for k, v in self.categories.items()},
        }


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the data rows (cells stripped) and each row's line number."""
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            for raw in reader:
                if not raw or (len(raw) == 1 and not raw[0].strip()):
                    continue  # an empty line
                cells = [cell.strip() for cell in raw]
                if header is None:
                    header, header_line = cells, reader.line_num
                    continue
                if len(cells) != len(header):
                    raise DataError(
                        f"{path}: row {reader.line_num} has {len(cells)} cells, expected "
                        f"{len(header)} like the header (row {header_line})"
                    )
                rows.append(cells)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV near row {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if header is None:
        raise DataError(f"{path}: file is empty")
    for j, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: row {header_line}: column {j + 1} has no name")
        if header.index(name) != j:
            raise DataError(f"{path}: row {header_line}: column name {name!r} appears twice")
    if not rows:
        raise DataError(f"{path}: no data rows after the header (row {header_line})")
    return header, rows, lines


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _declared(path: Path, header: list[str], categorical: Sequence[str]) -> set[str]:
    if isinstance(categorical, (str, bytes)) or not isinstance(categorical, Sequence):
        raise ValueError(f"categorical must be a list of column names or None, got {categorical!r}")
    names = set()
    for name in categorical:
        if not isinstance(name, str):
            raise ValueError(f"categorical: column names must be strings, got {name!r}")
        if name not in header:
            raise DataError(
                f"{path}: categorical column {name!r} is not in the header "
                f"(columns: {', '.join(header)})"
            )
        names.add(name)
    return names


def load_mixed_table(path: str | Path, *, categorical: Sequence[str] | None = None) -> MixedTable:
    """Load a CSV table with a header whose columns are numbers or categories.

    CSV: comma-separated, UTF-8 (a byte-order mark is ignored), quoting as in Python's
    ``csv`` module, cells stripped of surrounding spaces, empty lines skipped. The first row
    is the header. Every cell must be filled.

    Args:
        path: the CSV file.
        categorical: the names of the categorical columns (every other column must hold
            finite numbers); None: detect them, a column being categorical when none of its
            cells is a number (a column of numbers with a cell that is not is an error naming
            that cell). A declared column may hold numbers (class 1, 2, 3): its categories
            are then those strings.

    Returns:
        The :class:`MixedTable`; each categorical column's categories are its distinct
        strings, sorted (as strings), its codes their indices. One category is allowed.

    Raises:
        DataError: a missing file, an empty file, a ragged row, a missing cell, a
            non-numeric or non-finite cell in a continuous column, a declared column absent
            from the header, a categorical column of more than 1000 categories (an id
            column); one line naming the file, row and column.
        ValueError: ``categorical`` is not a list of strings.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    header, rows, lines = _read_rows(path)
    for cells, line in zip(rows, lines, strict=True):
        for j, cell in enumerate(cells):
            if not cell:
                raise DataError(f"{path}: row {line}, column {header[j]!r}: missing value")
    if categorical is None:
        # Categorical when no cell is a number: a column of numbers with a stray word is a
        # typo to report (below), not a column of categories to learn.
        cat = {name for j, name in enumerate(header) if not any(_is_number(r[j]) for r in rows)}
    else:
        cat = _declared(path, header, categorical)
    kinds = ["categorical" if name in cat else "continuous" for name in header]
    categories: dict[str, list[str]] = {}
    cont_values: list[list[float]] = [[] for _ in rows]
    codes: list[list[int]] = [[] for _ in rows]
    for j, name in enumerate(header):
        if kinds[j] == "categorical":
            values = sorted({r[j] for r in rows})
            if len(values) > MAX_CATEGORIES:
                raise DataError(
                    f"{path}: column {name!r} has {len(values)} distinct values (more than "
                    f"{MAX_CATEGORIES}): it looks like an id column; drop it"
                )
            categories[name] = values
            index = {v: c for c, v in enumerate(values)}
            for i, r in enumerate(rows):
                codes[i].append(index[r[j]])
            continue
        for i, (r, line) in enumerate(zip(rows, lines, strict=True)):
            where = f"{path}: row {line}, column {name!r}"
            try:
                value = float(r[j])
            except ValueError:
                raise DataError(
                    f"{where}: expected a number, got {_shorten(r[j])} (declare the column "
                    "categorical to keep its labels)"
                ) from None
            if not math.isfinite(value):
                raise DataError(f"{where}: expected a finite number, got {_shorten(r[j])}")
            cont_values[i].append(value)
    n = len(rows)
    continuous = torch.tensor(cont_values, dtype=torch.float64).reshape(n, kinds.count(KINDS[0]))
    overflow = torch.nonzero(~torch.isfinite(continuous.float()))
    if overflow.numel():
        i, k = (int(v) for v in overflow[0])
        j = [q for q, kind in enumerate(kinds) if kind == "continuous"][k]
        raise DataError(
            f"{path}: row {lines[i]}, column {header[j]!r}: {rows[i][j]} is too large for float32"
        )
    continuous = continuous.float()
    coded = torch.tensor(codes, dtype=torch.long).reshape(n, kinds.count(KINDS[1]))
    return MixedTable(continuous, coded, list(header), kinds, categories)


def _check_layout(
    path: Path,
    continuous: Tensor,
    codes: Tensor,
    columns: Sequence[str],
    kinds: Sequence[str],
    categories: dict[str, Sequence[str]],
) -> None:
    if len(columns) != len(kinds) or any(k not in KINDS for k in kinds):
        raise DataError(
            f"{path}: kinds must give {KINDS} for each of the {len(columns)} columns, "
            f"got {list(kinds)}"
        )
    if len(set(columns)) != len(columns):
        raise DataError(f"{path}: columns must be distinct names, got {list(columns)}")
    if continuous.ndim != 2 or codes.ndim != 2 or continuous.shape[0] != codes.shape[0]:
        raise DataError(
            f"{path}: continuous (N, Dc) and codes (N, Dk) must have the same N, got "
            f"{tuple(continuous.shape)} and {tuple(codes.shape)}"
        )
    dc, dk = list(kinds).count("continuous"), list(kinds).count("categorical")
    if continuous.shape[1] != dc or codes.shape[1] != dk:
        raise DataError(
            f"{path}: kinds say {dc} continuous and {dk} categorical columns, got "
            f"continuous {tuple(continuous.shape)} and codes {tuple(codes.shape)}"
        )
    if codes.is_floating_point() and not bool((codes == codes.round()).all()):
        raise DataError(f"{path}: codes must be whole numbers")
    if not bool(torch.isfinite(continuous).all()):
        raise DataError(f"{path}: continuous values must be finite")
    cat_names = [c for c, k in zip(columns, kinds, strict=True) if k == "categorical"]
    for k, name in enumerate(cat_names):
        if name not in categories or not categories[name]:
            raise DataError(f"{path}: categories has no list for column {name!r}")
        col = codes[:, k]
        if col.numel() and (int(col.min()) < 0 or int(col.max()) >= len(categories[name])):
            raise DataError(
                f"{path}: column {name!r}: codes must be in [0, {len(categories[name])})"
            )


def save_mixed_table(
    path: str | Path,
    continuous: Tensor,
    codes: Tensor,
    *,
    columns: Sequence[str],
    kinds: Sequence[str],
    categories: dict[str, Sequence[str]],
) -> Path:
    """Write continuous values and categorical codes as a CSV in the original column order,
    with the original category strings (atomically).

    The file reads back with :func:`load_mixed_table` (``categorical=`` the categorical
    columns) to the same strings and float32 values (written with 9 significant digits).

    Args:
        path: the output ``.csv`` file.
        continuous: values (N, Dc) of the continuous columns, in order.
        codes: codes (N, Dk) of the categorical columns, in order (integers; floats holding
            whole numbers, as :meth:`MixedFlowModel.split` returns, are accepted).
        columns: the table's column names (:attr:`MixedTable.layout`, or a mixed model's
            ``info``).
        kinds: the kind of each column, from the same layout.
        categories: the category strings of each categorical column, from the same layout.

    Raises:
        DataError: shapes or codes that do not fit the layout, naming the file.
    """
    from flowmatch.atomic import atomic_path

    path = Path(path)
    continuous, codes = continuous.detach().cpu(), codes.detach().cpu()
    _check_layout(path, continuous, codes, columns, kinds, categories)
    values = continuous.float().tolist()
    ids = codes.round().long().tolist()
    cat_names = [c for c, k in zip(columns, kinds, strict=True) if k == "categorical"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(columns))
            for row_values, row_ids in zip(values, ids, strict=True):
                row: list[str] = []
                ic = ik = 0
                for kind in kinds:
                    if kind == "continuous":
                        row.append(f"{row_values[ic]:.9g}")
                        ic += 1
                    else:
                        row.append(str(categories[cat_names[ik]][row_ids[ik]]))
                        ik += 1
                writer.writerow(row)
    return path
