"""Smoke test of benchmarks/grid_shift.py: every (NFE, shift) row is scored on the shifted
grid, and only its own section of RESULTS.md is written."""

from __future__ import annotations

import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("grid_shift") as module:
        yield module


def _rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| untrained")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_quick_run_writes_a_row_per_nfe_and_shift(bench, tmp_path, one_thread):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    table = bench.main(["--quick", "--shifts", "1,3", "--nfe", "2,4", "--out", str(out)])
    rows = _rows(table)
    assert [(r[2], r[3]) for r in rows] == [("2", "1"), ("2", "3"), ("4", "1"), ("4", "3")]
    fds = [float(r[4].split()[0]) for r in rows]
    assert all(fd > 0 for fd in fds)
    # one step's grid is [0, 1] whatever the shift; with two steps the inner time moves, so
    # the same noise gives other samples and other scores
    assert fds[0] == fds[1] and fds[2] != fds[3]
    assert sum("(best)" in r[4] for r in rows) == 2  # one per NFE
    assert "| floor: 20 training images | - |" in table  # real images scored the same way
    text = out.read_text()
    assert "## Other\n\nkept" in text and text.count(bench.SECTION_HEADER) == 1
    assert "python benchmarks/grid_shift.py --quick" in text and "mean nothing" in text


def test_bad_arguments_are_one_line_errors(bench, tmp_path):
    with pytest.raises(SystemExit, match="--shifts"):
        bench.main(["--quick", "--shifts", "1,x", "--out", str(tmp_path / "R.md")])
    with pytest.raises(SystemExit, match="--shifts"):
        bench.main(["--quick", "--shifts", "0", "--out", str(tmp_path / "R.md")])
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--nfe", "3", "--out", str(tmp_path / "R.md")])
    with pytest.raises(SystemExit):
        bench.main(["--runs", f"a={tmp_path / 'missing'}", "--out", str(tmp_path / "R.md")])
    assert not (tmp_path / "R.md").exists()


def test_training_times_reads_the_run_config(bench, tmp_path):
    (tmp_path / "config.yaml").write_text("time:\n  sampler: shifted\n  shift: 3.0\n")
    assert bench.training_times(tmp_path) == "shifted s=3.0"
    (tmp_path / "config.yaml").write_text("time:\n  sampler: uniform\n")
    assert bench.training_times(tmp_path) == "uniform"
    assert bench.training_times(tmp_path / "none") == "unknown"
