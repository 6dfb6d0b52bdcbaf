"""Smoke test of benchmarks/loader_overhead.py: it runs all three workloads and variants and
writes only its own section of RESULTS.md."""

from __future__ import annotations

import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("loader_overhead") as module:
        yield module


def test_quick_run_writes_its_table_and_section(bench, tmp_path, one_thread):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    table = bench.main(["--quick", "--out", str(out)])
    rows = [line for line in table.splitlines() if line.startswith("| ") and "ms" not in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "2-D checkerboard",
        "64-D N(2, I)",
        "Fashion-MNIST 28x28 (random uint8 images)",
    ]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ms = [float(cells[i]) for i in (2, 3, 5)]
        assert all(m > 0 for m in ms)
        # the ratios are of the unrounded times: the times' rounding to 0.01 ms moves a/b by
        # up to 0.005 (1 + a/b) / b, the ratio's own rounding by 0.005
        for r, a, b in ((float(cells[4]), ms[1], ms[0]), (float(cells[6]), ms[2], ms[0])):
            assert r == pytest.approx(a / b, abs=0.0051 + 0.0051 * (1 + a / b) / b)
        assert cells[7].startswith("<= 1.3 ")
    text = out.read_text()
    assert "## Other\n\nkept" in text and text.count(bench.SECTION_HEADER) == 1
    assert "python benchmarks/loader_overhead.py --quick" in text
