"""Mixed tables: loading CSVs of numeric and categorical columns (detected or declared),
every refusal naming file/row/column, and save -> load round trips."""

from __future__ import annotations

import pytest
import torch

from flowmatch.data.mixed import MixedTable, load_mixed_table, save_mixed_table
from flowmatch.errors import DataError

CSV = """\
x,color,y,size
1.5,red,-2,10
0.25,green,3e2,2
-1,red,0.125,1
"""


def write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_detection_keeps_order_kinds_and_sorted_categories(tmp_path):
    table = load_mixed_table(write(tmp_path, CSV))
    assert isinstance(table, MixedTable)
    assert table.columns == ["x", "color", "y", "size"]
    assert table.kinds == ["continuous", "categorical", "continuous", "continuous"]
    assert table.categories == {"color": ["green", "red"]}
    assert table.continuous.dtype == torch.float32 and table.categorical.dtype == torch.long
    assert torch.equal(
        table.continuous, torch.tensor([[1.5, -2, 10], [0.25, 300, 2], [-1, 0.125, 1]])
    )
    assert table.categorical.tolist() == [[1], [0], [1]]
    assert table.continuous_columns == ["x", "y", "size"]
    assert table.categorical_columns == ["color"] and table.vocab_sizes == [2]


def test_a_column_of_numbers_with_one_word_is_an_error_naming_the_cell(tmp_path):
    # Detected as categorical only when no cell is a number: a stray word in a column of
    # numbers is a typo to report, not a reason to learn the column as categories.
    path = write(tmp_path, "a,b\n1,2\n3,n/a\n4,5\n")
    with pytest.raises(DataError, match=r"row 3, column 'b': expected a number, got 'n/a'"):
        load_mixed_table(path)
    table = load_mixed_table(path, categorical=["b"])
    assert table.kinds == ["continuous", "categorical"]
    assert table.categories == {"b": ["2", "5", "n/a"]}
    assert table.categorical[:, 0].tolist() == [0, 2, 1]


def test_declared_columns_are_categorical_and_the_rest_must_be_numbers(tmp_path):
    path = write(tmp_path, CSV)
    table = load_mixed_table(path, categorical=["size", "color"])
    assert table.kinds == ["continuous", "categorical", "continuous", "categorical"]
    # numbers declared categorical keep their strings, sorted as strings
    assert table.categories == {"color": ["green", "red"], "size": ["1", "10", "2"]}
    assert table.categorical.tolist() == [[1, 1], [0, 2], [1, 0]]
    assert table.continuous.shape == (3, 2)
    with pytest.raises(DataError) as err:
        load_mixed_table(path, categorical=["size"])  # color is then expected numeric
    msg = str(err.value)
    assert str(path) in msg and "row 2" in msg and "'color'" in msg and "'red'" in msg
    assert "\n" not in msg


def test_a_declared_column_that_does_not_exist_is_named(tmp_path):
    path = write(tmp_path, CSV)
    with pytest.raises(DataError, match=r"t\.csv.*'colour' is not in the header"):
        load_mixed_table(path, categorical=["colour"])
    for bad in ("color", [1], 5):
        with pytest.raises(ValueError, match="categorical"):
            load_mixed_table(path, categorical=bad)


def test_an_empty_cell_names_file_row_and_column(tmp_path):
    path = write(tmp_path, "a,b\n1,x\n\n2,\n")
    with pytest.raises(DataError) as err:
        load_mixed_table(path)
    msg = str(err.value)
    assert msg == f"{path}: row 4, column 'b': missing value"


def test_one_category_is_fine_and_more_than_1000_is_an_id_column(tmp_path):
    table = load_mixed_table(write(tmp_path, "a,b\n1,only\n2,only\n"))
    assert table.categories == {"b": ["only"]} and table.categorical.tolist() == [[0], [0]]
    rows = "".join(f"{i},id{i}\n" for i in range(1001))
    with pytest.raises(DataError, match=r"column 'b' has 1001 distinct.*id column"):
        load_mixed_table(write(tmp_path, "a,b\n" + rows, "ids.csv"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "file is empty"),
        ("a,b\n", "no data rows after the header (row 1)"),
        ("a,b\n1,x\n2\n", "row 3 has 1 cells, expected 2"),
        ("a,a\n1,2\n", "column name 'a' appears twice"),
        ("a,\n1,2\n", "column 2 has no name"),
        ("a,b\n1,x\nnan,y\n", "row 3, column 'a': expected a finite number"),
        ("a,b\n1,x\n1e39,y\n", "row 3, column 'a': 1e39 is too large for float32"),
        ('a,b\n1,"x\n', "malformed CSV"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_mixed_table(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_mixed_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not a regular file"):
        load_mixed_table(tmp_path)


def test_save_then_load_gives_the_same_strings_and_numbers(tmp_path):
    text = 'x,kind,y,grade\n0.1,"a, b",1e-7,3\n-2.5,c,7,1\n3.25,"a, b",1e6,10\n'
    table = load_mixed_table(write(tmp_path, text), categorical=["kind", "grade"])
    out = save_mixed_table(
        tmp_path / "out" / "copy.csv", table.continuous, table.categorical, **table.layout
    )
    back = load_mixed_table(out, categorical=["kind", "grade"])
    assert back.columns == table.columns and back.kinds == table.kinds
    assert back.categories == table.categories
    assert torch.equal(back.continuous, table.continuous)
    assert torch.equal(back.categorical, table.categorical)
    lines = out.read_text().splitlines()
    assert lines[0] == "x,kind,y,grade" and lines[1].split(",")[-1] == "3"
    assert '"a, b"' in lines[1]
    # codes as floats (a sampler's output) are accepted
    save_mixed_table(out, table.continuous, table.categorical.float(), **table.layout)
    assert torch.equal(
        load_mixed_table(out, categorical=["kind", "grade"]).categorical, table.categorical
    )


def test_save_refuses_what_does_not_fit_the_layout_and_keeps_the_old_file(tmp_path):
    table = load_mixed_table(write(tmp_path, CSV))
    out = tmp_path / "o.csv"
    out.write_text("old\n")
    cont, codes, layout = table.continuous, table.categorical, table.layout
    cases = [
        (cont[:, :2], codes, layout, "kinds say 3 continuous"),
        (cont, codes[:2], layout, "same N"),
        (cont, codes + 5, layout, "column 'color': codes must be in [0, 2)"),
        (cont, codes.float() + 0.5, layout, "whole numbers"),
        (cont, codes, {**layout, "kinds": ["continuous"] * 4}, "kinds say 4 continuous"),
        (cont, codes, {**layout, "kinds": ["numeric"] * 4}, "kinds must give"),
        (cont, codes, {**layout, "categories": {}}, "no list for column 'color'"),
        (cont * float("inf"), codes, layout, "finite"),
    ]
    for c, k, lay, needle in cases:
        with pytest.raises(DataError) as err:
            save_mixed_table(out, c, k, **lay)
        assert needle in str(err.value) and str(out) in str(err.value), (needle, err.value)
    assert out.read_text() == "old\n"
