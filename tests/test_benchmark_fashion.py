"""benchmarks/fashion.py: its report from cached results, and its arguments. (The rows train
U-Nets and a DiT for many minutes each; their figures are in benchmarks/RESULTS.md.)"""

from __future__ import annotations

import json

import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("fashion") as module:
        yield module


def cell(nfe, fd, *, accuracy=0.8, guidance=None):
    return {
        "nfe": nfe,
        "method": "euler",
        "steps": nfe,
        "guidance": guidance,
        "fd": fd,
        "kid": fd / 100,
        "accuracy": accuracy,
        "gen_s": nfe / 10,
        "images_per_s": 500 / (nfe / 10),
    }


def fake_cache():
    nfes = [1, 2, 8]
    return {
        "not_run": {"dit": "out of time"},
        "budget": {"steps": 10, "batch": 8, "num": 500, "seed": 0, "pairs": 16, "nfes": nfes},
        "floor": {"fd": 3.25, "kid": -0.5, "accuracy": 0.93},
        "rows": {
            "fm_unet": {
                "steps": 10,
                "train_s": 12.4,
                "params": 286561,
                "lines": {"FM (U-Net)": [cell(n, 80.0 / n) for n in nfes]},
                "guidance": {str(w): cell(4, 10.0 + w, guidance=w) for w in (0.0, 1.0, 2.0)},
            },
            "ddpm": {
                "steps": 10,
                "train_s": 13.0,
                "params": 286561,
                "lines": {"DDIM (eta 0, U-Net)": [cell(n, 100.0 / n) for n in nfes]},
            },
            "reflow": {
                "steps": 25,
                "train_s": 40.0,
                "own_s": 27.6,
                "pairs": 16,
                "params": 286561,
                "lines": {"reflow + distill (U-Net)": [cell(1, 30.0), cell(2, 25.0)]},
            },
        },
    }


def test_report_from_the_cache(bench, tmp_path, capsys):
    cache = tmp_path / "results.json"
    cache.write_text(json.dumps(fake_cache()))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    argv = ["--report-only", "--cache", str(cache), "--results", str(results)]
    bench.main([*argv, "--grid", str(tmp_path / "none.png")])
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Other\n\nkept\n")
    section = text[text.index(bench.SECTION_HEADER) :]
    assert "| FM (U-Net) | 80.0 (80%) | 40.0 (80%) | 10.0 (80%) | 12 | 625 |" in section
    assert "| DDIM (eta 0, U-Net) | 100.0 (80%) | 50.0 (80%) | 12.5 (80%) | 13 | 625 |" in section
    # NFE 1-2 only: the other columns and the speed at NFE 8 are dashes
    assert "| reflow + distill (U-Net) | 30.0 (80%) | 25.0 (80%) | - | 40 | - |" in section
    assert "| FM (U-Net) | 0.800 | 0.400 | 0.100 |" in section  # KID
    assert "floor (500 training images vs the test split): FD 3.25, KID -0.500" in section
    assert "| FD | 10.0 | 11.0 | 12.0 |" in section  # guidance sweep
    assert "10 steps at batch 8" in section and "shared with other jobs" in section
    assert "- `dit`: not run (out of time)." in section and "- `latent`: not run." in section
    assert "16 dopri5 pairs" in section and "28 s of its own" in section
    assert "![" not in section  # no grid file
    # rendering again replaces the section instead of adding one
    bench.main([*argv, "--grid", ""])
    assert results.read_text().count(bench.SECTION_HEADER) == 1


def test_report_without_rows_refuses(bench, tmp_path):
    with pytest.raises(SystemExit, match="no cached rows"):
        bench.main(["--report-only", "--cache", str(tmp_path / "missing.json")])


def test_rows_are_parsed(bench):
    args = bench.parse_args(["--rows", "ddpm, fm_unet", "--nfes", "8,1,2"])
    assert args.rows == ["ddpm", "fm_unet"] and args.nfes == [1, 2, 8]
    assert not args.report_only and args.steps == 1000 and args.batch == 64


def test_quick_stays_under_work(bench, tmp_path):
    args = bench.parse_args(["--rows", "fm_unet", "--quick", "--work", str(tmp_path)])
    assert args.cache.startswith(str(tmp_path)) and args.results.startswith(str(tmp_path))
    assert args.grid.startswith(str(tmp_path)) and args.steps < 10


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--rows", "fm,ddpm"], "--rows"),
        ([], "--rows"),
        (["--rows", "ddpm", "--report-only"], "exclude"),
        (["--rows", "ddpm", "--nfes", "0"], "--nfes"),
        (["--rows", "ddpm", "--nfes", "x"], "--nfes"),
        (["--rows", "ddpm", "--steps", "0"], "--steps"),
    ],
)
def test_bad_arguments(bench, argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err
