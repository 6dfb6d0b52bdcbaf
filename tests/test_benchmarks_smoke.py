"""Smoke test of benchmarks/train_overhead.py: it runs, measures, and edits only its section."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_overhead.py"


@pytest.fixture(scope="module")
def bench():
    name = "_flowmatch_bench_train_overhead"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture
def one_thread():
    # A smoke test, not a measurement: with 2 threads on a 2-core machine that also runs other
    # tests (pytest-xdist), OpenMP barriers wait on descheduled threads and each step slows
    # down 100x. One thread keeps the run short whatever else is running.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


OTHER = "# Benchmark results\n\nIntro line.\n\n## Quality\n\nW2 table here.\n"
LATER = "## Later section\n\nkept too\n"


def test_quick_run_measures_and_replaces_only_its_section(bench, tmp_path, one_thread):
    out = tmp_path / "RESULTS.md"
    out.write_text(OTHER + "\n## Overhead (CPU)\n\nstale numbers 9.99\n\n" + LATER)

    results = bench.main(["--quick", "--out", str(out)])

    names = [r.name for r in results]
    assert names[0].startswith("train step")
    assert sum("euler" in n for n in names) == 1 and sum("midpoint" in n for n in names) == 1
    for r in results:
        for value in (r.ratio, r.ms_a, r.ms_b, *r.timing.iqr):
            assert math.isfinite(value) and value > 0, (r.name, value)
        assert len(r.timing.a) == len(r.timing.b) == 3
        lo, hi = r.timing.iqr
        assert lo <= hi

    text = out.read_text()
    assert text.startswith(OTHER)
    assert text.endswith("\n" + LATER)
    assert "stale numbers" not in text
    assert text.count("## Overhead (CPU)") == 1
    section = text[text.index("## Overhead (CPU)") : text.index("## Later section")]
    assert "python benchmarks/train_overhead.py --quick" in section
    assert "torch" in section and "| train step, B=256 |" in section


def test_replace_section_new_file_append_and_idempotent(bench, tmp_path):
    new = bench.replace_section("", "## Overhead (CPU)\n\nA\n")
    assert new == "# Benchmark results\n\n## Overhead (CPU)\n\nA\n"

    appended = bench.replace_section(OTHER, "## Overhead (CPU)\n\nA\n")
    assert appended == OTHER + "\n## Overhead (CPU)\n\nA\n"

    # Replacing the last section keeps what precedes it; a "###" subheading is part of it.
    doc = OTHER + "\n## Overhead (CPU)\n\nold\n### detail\nold too\n"
    once = bench.replace_section(doc, "## Overhead (CPU)\n\nB\n")
    assert once == OTHER + "\n## Overhead (CPU)\n\nB\n"
    assert bench.replace_section(once, "## Overhead (CPU)\n\nB\n") == once

    out = tmp_path / "sub" / "RESULTS.md"
    bench.write_section(out, "## Overhead (CPU)\n\nC\n")
    bench.write_section(out, "## Overhead (CPU)\n\nD\n")
    assert out.read_text() == "# Benchmark results\n\n## Overhead (CPU)\n\nD\n"
    assert [p.name for p in out.parent.iterdir()] == ["RESULTS.md"]  # no temp file left
