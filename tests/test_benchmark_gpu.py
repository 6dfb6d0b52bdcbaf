"""Smoke test of benchmarks/gpu.py on CPU: the --quick run measures every row, writes only
its section and only where --out says; a failing torch.compile and a missing CUDA device are
reported, not crashed on."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import benchmark_module

OTHER = "# Benchmark results\n\n## Overhead (CPU)\n\nkeep me\n"
LATER = "## Later section\n\nkept too\n"


@pytest.fixture
def bench():
    with benchmark_module("gpu") as module:
        yield module


def _table_rows(text: str, columns: int) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]
    assert all(len(c) == columns for c in cells), cells
    return cells


def test_quick_cpu_run_measures_every_row_and_writes_only_its_section(
    bench, tmp_path, one_thread, capsys
):
    out = tmp_path / "RESULTS.md"
    out.write_text(OTHER + "\n## GPU throughput\n\nstale 9.99\n\n" + LATER)

    rows = bench.main(["--device", "cpu", "--quick", "--out", str(out)])

    try:
        from flowmatch.models.dit import DiT  # noqa: F401
    except ImportError:
        dit_ok = False
    else:
        dit_ok = True
    unet = [r for r in rows if r.model.startswith("U-Net")]
    assert [r.measurement for r in unet] == [
        "train: TrainLoop, B=4, fp32",
        "train: loss + AdamW only, B=4, fp32",
        "sample: euler NFE 8, B=2, fp32",
        "sample: euler NFE 32, B=2, fp32",
    ]
    assert all(r.mode == "eager" for r in unet)  # CPU: no compile unless asked
    measured = unet + ([r for r in rows if r.model.startswith("DiT")] if dit_ok else [])
    assert len(rows) == (8 if dit_ok else 5)
    for r in measured:
        variants = [r.ours, r.bare] + ([r.cfm] if r.measurement.startswith("train") else [])
        for m in variants:
            assert m.note is None and m.peak is None  # no CUDA: no peak memory
            assert len(m.times) == 2 and math.isfinite(m.per_second) and m.per_second > 0
        assert r.ratio > 0 and (r.cfm is None or r.ratio_cfm > 0)
    assert unet[0].target == 0.95 and unet[1].target is None
    if not dit_ok:
        assert rows[-1].model == "DiT" and rows[-1].note.startswith("skipped: ")

    text = out.read_text()
    assert text.startswith(OTHER) and text.endswith("\n" + LATER)
    assert "stale" not in text and text.count("## GPU throughput") == 1
    section = text[text.index("## GPU throughput") : text.index("## Later section")]
    assert "python benchmarks/gpu.py --device cpu --quick --out" in section
    assert f"torch {torch.__version__}" in section and "CPU: " in section
    cells = _table_rows(section, len(bench.COLUMNS))
    assert cells[0] == list(bench.COLUMNS) and len(cells) == 1 + len(rows)
    first = cells[1]
    assert first[1] == "train: TrainLoop, B=4, fp32" and first[2] == "eager"
    assert float(first[3].replace(",", "")) > 0
    assert first[5].split(" (>= 0.95 ")[1] in ("ok)", "BELOW)")
    assert first[8] == "- / - / -"  # peak memory: CPU
    sample = cells[3]
    assert sample[6] == sample[7] == "-" and sample[8] == "- / -"  # no TorchCFM sampler row
    printed = capsys.readouterr().out
    assert _table_rows(printed, len(bench.COLUMNS)) == cells


def test_failing_compile_is_a_row_note_and_cpu_writes_no_results(
    bench, tmp_path, one_thread, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(bench, "DEFAULT_OUT", tmp_path / "RESULTS.md")
    argv = ["--device", "cpu", "--quick", "--compile", "--models", "unet", "--nfe", "8"]
    rows = bench.main(argv)

    assert not (tmp_path / "RESULTS.md").exists()  # CPU without --out: nothing written
    assert [(r.measurement.split(",")[0], r.mode) for r in rows] == [
        ("train: TrainLoop", "compile"),
        ("train: loss + AdamW only", "compile"),
        ("sample: euler NFE 8", "eager"),
        ("sample: euler NFE 8", "compile"),
    ]
    note = "compile failed: RuntimeError: no C++ compiler"
    for r in (rows[0], rows[1], rows[3]):
        assert r.ratio is None and bench._notes(r) == note
    assert rows[2].ratio > 0 and bench._notes(rows[2]) == ""
    cells = _table_rows(bench.format_table(rows), len(bench.COLUMNS))[1:]
    assert cells[0][3:6] == ["-", "-", "-"] and cells[0][9] == note
    assert cells[2][9] == "" and cells[3][9] == note


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_without_cuda_exits_2_with_one_line(bench, capsys):
    with pytest.raises(SystemExit) as err:
        bench.main(["--device", "cuda", "--quick"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]


def test_bad_arguments_exit_2(bench):
    for argv in (["--models", "vit"], ["--nfe", "8,x"], ["--rounds", "0"], ["--device", "tpu"]):
        with pytest.raises(SystemExit) as err:
            bench.parse_args(argv)
        assert err.value.code == 2
