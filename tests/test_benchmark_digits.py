"""benchmarks/digits.py: its report from saved results, and its arguments. (The run itself
trains three U-Nets for minutes; its figures are in benchmarks/RESULTS.md.)"""

from __future__ import annotations

import json

import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("digits") as module:
        yield module


def fake_results(bench):
    def cell(nfe, fd):
        return {"nfe": nfe, "fd": fd, "fd_std": 0.1, "kid": 1.0, "accuracy": 0.95}

    rows, guidance = {}, {}
    for label, owner, sampler in bench.ROWS:
        nfes = [2, 8] if sampler == "midpoint" else [1, 2, 8]
        rows[label] = {
            "model": owner,
            "sampler": sampler,
            "cells": [cell(n, 40.0 / n) for n in nfes],
        }
        guidance[label] = (
            {str(w): cell(8, 10.0 + w) for w in bench.GUIDANCE} if label in bench.SWEEP_ROWS else {}
        )
    return {
        "floor": {"fd": 6.5, "kid": -1.0, "accuracy": 0.99},
        "models": {m: {"steps": 10, "train_s": 1.0, "ms_per_step": 100.0} for m in bench.MODELS},
        "rows": rows,
        "guidance": guidance,
        "args": {
            "steps": 10,
            "draws": 2,
            "guidance": 2.0,
            "nfes": [1, 2, 8],
            "seed": 0,
            "threads": 1,
        },
    }


def test_render_writes_its_section(bench, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "results.json").write_text(json.dumps(fake_results(bench)))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    bench.main(
        [
            "--render-only",
            "--work",
            str(work),
            "--results",
            str(results),
            "--grid",
            str(tmp_path / "g.png"),
        ]
    )
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Other\n\nkept\n")
    section = text[text.index(bench.SECTION_HEADER) :]
    # FD 40/8 = 5.0 <= 2 x 6.5: bold, and the first NFE within 2x the floor is 8
    assert "| FM + Euler | 40.00 (95%) | 20.00 (95%) | **5.00 (95%)** | 8 |" in section
    assert "| FM + midpoint | - | 20.00 (95%) | **5.00 (95%)** | 8 |" in section
    assert "| DDIM (eta 0) | 10.00 (95%) | 11.00 (95%) | 12.00 (95%) | 14.00 (95%) |" in section
    assert "| DDPM ancestral |" not in section.split("Guidance scale")[1]
    assert "floor (train split vs test split): FD 6.50, accuracy 0.990" in section


@pytest.mark.parametrize(
    ("argv", "needle"), [(["--nfes", "0"], "--nfes"), (["--nfes", "x"], "--nfes")]
)
def test_bad_arguments(bench, argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err
