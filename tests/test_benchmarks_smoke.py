"""Smoke test of benchmarks/train_overhead.py: it runs, measures, and edits only its section."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("train_overhead") as module:
        yield module


OTHER = "# Benchmark results\n\nIntro line.\n\n## Quality\n\nW2 table here.\n"
LATER = "## Later section\n\nkept too\n"


def test_quick_run_measures_and_replaces_only_its_section(bench, tmp_path, one_thread):
    out = tmp_path / "RESULTS.md"
    out.write_text(OTHER + "\n## Overhead (CPU)\n\nstale numbers 9.99\n\n" + LATER)

    results = bench.main(["--quick", "--out", str(out)])

    names = [r.name for r in results]
    assert names[0] == "train step, B=256"
    assert sum("euler" in n for n in names) == 1 and sum("midpoint" in n for n in names) == 1
    # The coupling rows follow the independent step, all at batch 256 with their targets.
    train = [r for r in results if r.name.startswith("train step")]
    assert [r.name for r in train] == [c.name(256) for c in bench.TRAIN_CASES]
    assert len(train) == 5 and all(r.name.endswith(", B=256") for r in train)
    by_kind = {
        "exact 2-D": [r for r in train if "exact OT, checkerboard 2-D" in r.name],
        "sinkhorn": [r for r in train if "sinkhorn OT" in r.name and "checkerboard" in r.name],
        "SB": [r for r in train if "SB (sigma 0.5), checkerboard" in r.name],
        "exact 64-D": [r for r in train if "exact OT" in r.name and "64-D" in r.name],
    }
    assert all(len(rows) == 1 for rows in by_kind.values()), by_kind
    assert train[0].target == pytest.approx(1.03)
    assert by_kind["exact 2-D"][0].target == by_kind["exact 64-D"][0].target == 1.3
    assert by_kind["sinkhorn"][0].target is None and by_kind["SB"][0].target is None
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
    for r in results:
        assert f"| {r.name} |" in section
    rows = {line.split(" | ")[0][2:]: line for line in section.splitlines() if "/step" in line}
    assert len(rows) == 5
    for r in train:
        cell = rows[r.name].rstrip(" |").rsplit("| ", 1)[1]
        assert cell == "-" if r.target is None else cell.startswith(f"<= {r.target:.2f} ")
    assert "TorchCFM's exact OT (POT emd, pairs resampled with replacement) measured 3.8x" in (
        section
    )
    assert "(issue 4)" in section
    assert section.index("| sample midpoint") < section.index("TorchCFM")


def test_train_case_data_and_steps(bench, one_thread):
    gen = torch.Generator().manual_seed(0)
    board = bench.make_data("checkerboard", 256, 2, gen)
    assert board.shape == (256, 2) and board.abs().max() <= 4
    shifted = bench.make_data("shifted", 256, 64, gen)
    assert shifted.shape == (256, 64) and 1.5 < shifted.mean() < 2.5
    with pytest.raises(ValueError):
        bench.make_data("checkerboard", 8, 64, gen)
    with pytest.raises(ValueError):
        bench.make_data("nope", 8, 2, gen)
    # The 64-D row runs the assignment solver above the POT one; both steps train a 64-D MLP.
    case = bench.TRAIN_CASES[-1]
    assert case.dim == 64 and case.data == "shifted" and case.coupling.method == "exact"
    fm_step, bare_step = bench.make_train_steps(
        16, coupling=case.coupling, data=case.data, dim=case.dim
    )
    fm_step()
    bare_step()


def test_format_table_target_column(bench):
    timing = bench.Timing((2.0, 2.2, 2.1), (1.0, 1.0, 1.0))
    rows = bench.format_table(
        [
            bench.Result("with bar", "step", 1, timing, 1.3),
            bench.Result("no bar", "step", 1, timing, None),
            bench.Result("ok bar", "step", 1, bench.Timing((1.0,), (1.0,)), 1.03),
        ]
    ).splitlines()[2:]
    assert rows[0].endswith("| <= 1.30 ABOVE |")
    assert rows[1].endswith("| - |")
    assert rows[2].endswith("| <= 1.03 ok |")


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
