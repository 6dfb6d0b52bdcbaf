"""Smoke test of benchmarks/fm_vs_diffusion.py: a quick run trains, evaluates every row of
its models on the same draws, merges later runs into the table, and renders its section."""

from __future__ import annotations

import json

import pytest

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("fm_vs_diffusion") as module:
        yield module


def test_quick_run_merges_rows_and_renders(bench, tmp_path, one_thread):
    work, results, plot = tmp_path / "work", tmp_path / "RESULTS.md", tmp_path / "p.png"
    results.write_text("# Benchmark results\n\n## Other\n\nkept\n")
    common = [
        "--quick",
        "--datasets",
        "8gaussians",
        "--work",
        str(work),
        "--results",
        str(results),
        "--plot",
        str(plot),
        "--threads",
        "1",
    ]
    bench.main([*common, "--models", "ddpm", "--no-render"])
    bench.main([*common, "--models", "fm"])  # added to the same results.json, then rendered
    saved = json.loads((work / "8gaussians" / "results.json").read_text())
    assert list(saved["rows"]) == ["FM + Euler", "FM + midpoint", "DDPM ancestral", "DDIM (eta 0)"]
    assert set(saved["models"]) == {"fm", "ddpm"}
    for label, row in saved["rows"].items():
        nfes = [c["nfe"] for c in row["cells"]]
        assert nfes == ([2, 4] if "midpoint" in label else [1, 2, 4]), label
        assert all(c["w2"] > 0 and c["std"] >= 0 for c in row["cells"])
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Other\n\nkept\n")
    section = text[text.index(bench.SECTION_HEADER) :]
    for label in saved["rows"]:
        assert f"| {label} |" in section
    assert "| FM + midpoint | 100 | - |" in section  # midpoint has no NFE-1 figure
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_nfe_summaries(bench):
    cells = [
        {"nfe": 1, "w2": 3.0},
        {"nfe": 4, "w2": 0.5},
        {"nfe": 16, "w2": 0.3},
        {"nfe": 100, "w2": 0.29},
    ]
    assert bench.min_nfe(cells, floor=0.25) == "16"  # 0.3 <= 1.2 x 0.25
    assert bench.min_nfe(cells, floor=0.2) == "> 100"
    assert bench.converged_nfe(cells) == "16"  # 0.3 <= 1.1 x 0.29


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--nfes", "1,2000"], "--nfes"),
        (["--nfes", "a"], "--nfes"),
        (["--models", "gan"], "--models"),
        (["--models", "fm-reflow"], "fm-reflow reflows fm"),
        (["--datasets", "mnist"], "--datasets"),
    ],
)
def test_bad_arguments(bench, argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err
