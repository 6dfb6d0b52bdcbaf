"""Tests for tabular file loading and the Standardizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flowmatch.data import DataError, Standardizer, Table, load_table


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path | str) -> str:
    """Load a bad file; return the DataError message after checking it is one line."""
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# --- loading good files ---------------------------------------------------------------------


def test_csv_with_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", 'age, height,"w"\n1,2.5,-3\n4e1, 5 ,6\n')
    table = load_table(path)
    assert isinstance(table, Table)
    assert table.columns == ["age", "height", "w"]
    assert table.data.dtype == torch.float32
    expected = torch.tensor([[1.0, 2.5, -3.0], [40.0, 5.0, 6.0]])
    assert torch.equal(table.data, expected)


def test_csv_without_header_skips_blank_lines_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbf0.5,1\r\n\r\n-2,3.25\r\n7,8")
    table = load_table(str(path))
    assert table.columns == ["x1", "x2"]
    assert torch.equal(table.data, torch.tensor([[0.5, 1.0], [-2.0, 3.25], [7.0, 8.0]]))


def test_single_column_csv(tmp_path: Path) -> None:
    table = load_table(_write(tmp_path, "one.CSV", "v\n1\n2\n3\n"))
    assert table.columns == ["v"]
    assert table.data.shape == (3, 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
def test_npy(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(12).reshape(4, 3) % 5).astype(dtype)
    path = tmp_path / "data.npy"
    np.save(path, array)
    table = load_table(path)
    assert table.columns == ["x1", "x2", "x3"]
    assert table.data.dtype == torch.float32
    assert table.data.shape == (4, 3)
    np.testing.assert_array_equal(table.data.numpy(), array.astype(np.float32))


# --- CSV errors -----------------------------------------------------------------------------


def test_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    lines = ["id,age,score"] + [f"{i},{20 + i},0.{i}" for i in range(1, 6)]
    lines[5] = "5,abc,0.5"  # row 6 of the file
    path = _write(tmp_path, "data.csv", "\n".join(lines) + "\n")
    message = _error(path)
    assert message == f"{path}: row 6, column 'age': expected a number, got 'abc'"


def test_non_numeric_cell_without_header_uses_column_index(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "1,2,3\n4,5,6\n7,8,x9\n")
    assert _error(path) == f"{path}: row 3, column 3: expected a number, got 'x9'"


def test_row_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "a,b\n1,2\n\n\n3,?\n")
    assert "row 5, column 'b'" in _error(path)


def test_first_row_mixing_numbers_and_text_is_data_with_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "1,abc\n2,3\n")
    message = _error(path)
    assert "row 1, column 2: expected a number, got 'abc'" in message
    assert "header" in message


def test_missing_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "a,b,c\n1,2,3\n4,,6\n")
    assert _error(path) == f"{path}: row 3, column 'b': missing value"


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_non_finite_csv_cell(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path, "data.csv", f"a,b\n1,2\n3,4\n{cell},5\n")
    message = _error(path)
    assert f"row 4, column 'a': expected a finite number, got '{cell}'" in message


def test_value_too_large_for_float32(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "a,b\n1,2\n3,1e40\n")
    message = _error(path)
    assert "row 3, column 'b'" in message
    assert "float32" in message


def test_long_cell_is_shortened(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "a\n1\n" + "z" * 500 + "\n")
    message = _error(path)
    assert "row 3, column 'a'" in message
    assert len(message) < len(str(path)) + 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c\n1,2,3\n4,5\n", "row 3 has 2 cells, expected 3 like the header (row 1)"),
        ("1,2\n3,4\n5,6,7\n", "row 3 has 3 cells, expected 2 like the first row (row 1)"),
        ("1,2\n3,4\n5\n", "row 3 has 1 cell, expected 2 like the first row (row 1)"),
    ],
)
def test_ragged_rows(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "data.csv", text)
    assert _error(path) == f"{path}: {expected}"


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_csv(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "data.csv", text)
    assert _error(path) == f"{path}: file is empty"


def test_header_only_csv(tmp_path: Path) -> None:
    path = _write(tmp_path, "data.csv", "a,b\n")
    assert "no data rows" in _error(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,\xff\n")
    assert "UTF-8" in _error(path)


# --- file and NPY errors --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["data.txt", "data.csv.gz", "data"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, "1,2\n")
    message = _error(path)
    assert "unknown file type" in message
    assert ".csv or .npy" in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such file"
    folder = tmp_path / "folder.npy"
    folder.mkdir()
    assert "not a regular file" in _error(folder)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_npy_wrong_rank(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = tmp_path / "data.npy"
    np.save(path, np.zeros(shape))
    message = _error(path)
    assert f"expected a 2-D array (rows, columns), got {len(shape)}-D shape {shape}" in message


@pytest.mark.parametrize(("value", "shown"), [(np.nan, "nan"), (-np.inf, "-inf")])
def test_npy_non_finite_names_position(tmp_path: Path, value: float, shown: str) -> None:
    array = np.ones((4, 3))
    array[2, 1] = value
    array[3, 2] = value
    path = tmp_path / "data.npy"
    np.save(path, array)
    message = _error(path)
    assert f"row 3, column 2: expected a finite number, got {shown}" in message
    assert "2 non-finite values" in message


def test_npy_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.npy"
    np.save(path, np.array([[1, "a"], [2, None]], dtype=object), allow_pickle=True)
    assert "Python objects" in _error(path)


@pytest.mark.parametrize(
    "array",
    [np.ones((2, 2), dtype=np.complex64), np.array(["a", "b"]).reshape(1, 2)],
)
def test_npy_non_real_dtype(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "data.npy"
    np.save(path, array)
    assert "expected an array of real numbers" in _error(path)


def test_npy_empty_array(tmp_path: Path) -> None:
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((0, 3)))
    assert "empty array of shape (0, 3)" in _error(path)


def test_npz_garbage_or_truncated_npy(tmp_path: Path) -> None:
    npz = tmp_path / "archive.npy"
    with npz.open("wb") as f:
        np.savez(f, a=np.ones((2, 2)))
    assert ".npz archive" in _error(npz)
    garbage = _write(tmp_path, "garbage.npy", "1,2\n3,4\n")
    assert "not a valid .npy file" in _error(garbage)
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.ones((100, 3)))
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert "not a valid .npy file" in _error(truncated)


# --- Standardizer ---------------------------------------------------------------------------


def _data(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 100.0, 0.01, 5.0], dtype=dtype)
    shift = torch.tensor([0.0, -50.0, 3.0, 1e3], dtype=dtype)
    return torch.randn(1000, 4, generator=g, dtype=dtype) * scale + shift


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_standardizer_fit_transform_inverse(dtype: torch.dtype, tol: float) -> None:
    x = _data(dtype)
    scaler = Standardizer.fit(x)
    z = scaler.transform(x)
    assert z.dtype == dtype
    assert z.shape == x.shape
    torch.testing.assert_close(z.mean(dim=0), torch.zeros(4, dtype=dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        z.std(dim=0, correction=0), torch.ones(4, dtype=dtype), atol=1e-5, rtol=0
    )
    back = scaler.inverse(z)
    assert back.dtype == dtype
    torch.testing.assert_close(back, x, rtol=tol * 10, atol=tol * float(x.abs().max()) * 10)


def test_standardizer_json_round_trip(tmp_path: Path) -> None:
    x = _data()
    scaler = Standardizer.fit(x)
    d = scaler.to_dict()
    assert set(d) == {"mean", "std"}
    assert all(type(v) is float for v in d["mean"] + d["std"])
    assert len(d["mean"]) == len(d["std"]) == 4

    (tmp_path / "scaler.json").write_text(json.dumps(d))
    loaded = Standardizer.from_dict(json.loads((tmp_path / "scaler.json").read_text()))
    assert torch.equal(loaded.mean, scaler.mean)
    assert torch.equal(loaded.std, scaler.std)
    assert torch.equal(loaded.transform(x), scaler.transform(x))


def test_standardizer_constant_column_gets_unit_std() -> None:
    x = torch.stack([torch.arange(6.0), torch.full((6,), 0.1), torch.full((6,), -7.0)], dim=1)
    scaler = Standardizer.fit(x)
    assert scaler.std[1:].tolist() == [1.0, 1.0]
    assert scaler.std[0] > 0
    z = scaler.transform(x)
    assert bool(torch.isfinite(z).all())
    torch.testing.assert_close(z[:, 1:], torch.zeros(6, 2), atol=1e-7, rtol=0)
    torch.testing.assert_close(scaler.inverse(z), x)

    single_row = Standardizer.fit(torch.tensor([[3.0, -2.0]]))
    assert single_row.std.tolist() == [1.0, 1.0]
    assert single_row.transform(torch.tensor([[4.0, 0.0]])).tolist() == [[1.0, 2.0]]


def test_standardizer_rejects_bad_input() -> None:
    scaler = Standardizer.fit(_data())
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        scaler.transform(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="finite"):
        Standardizer.fit(torch.tensor([[1.0], [float("nan")]]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        Standardizer.fit(torch.zeros(0, 3))


@pytest.mark.parametrize(
    ("d", "match"),
    [
        ({"mean": [0.0]}, "keys"),
        ({"mean": [0.0], "std": [1.0], "scale": 2}, "keys"),
        ({"mean": [0.0, 1.0], "std": [1.0]}, "equal shapes"),
        ({"mean": [0.0], "std": [0.0]}, "positive"),
        ({"mean": [True], "std": [1.0]}, "numbers"),
        ({"mean": "0", "std": [1.0]}, "numbers"),
        ({"mean": [], "std": []}, "numbers"),
    ],
)
def test_standardizer_from_dict_validates(d: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Standardizer.from_dict(d)


def test_underscore_numbers_are_not_read(tmp_path: Path) -> None:
    # Python's float() reads "1_000" as 1000; in a CSV that is a typo or a locale to report
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1_000,2\n3,4\n")
    with pytest.raises(DataError, match=r"row 2, column 'a': expected a number, got '1_000'"):
        load_table(path)


def test_npy_header_claiming_more_than_the_file_is_refused(tmp_path: Path) -> None:
    # checked before np.load would try to allocate 160 GB
    path = tmp_path / "big.npy"
    np.save(path, np.ones((10, 2)))
    raw = path.read_bytes().replace(b"(10, 2)", b"(10000000000, 2)")
    path.write_bytes(raw)
    claim = r"header claims shape \(10000000000, 2\) \(160000000000 bytes"
    with pytest.raises(DataError, match=claim):
        load_table(path)


def test_npy_header_that_does_not_parse_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.ones((10, 2)))
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"(10, 2)", b"(10, 2"))  # tokenize.TokenError inside numpy
    with pytest.raises(DataError) as info:
        load_table(path)
    assert "not a valid .npy file" in str(info.value) and "\n" not in str(info.value)
