"""Smoke test of benchmarks/straightness.py: a --quick run trains, evaluates and reports."""

from __future__ import annotations

import json

import pytest

from conftest import benchmark_module


@pytest.fixture
def bench():
    with benchmark_module("straightness") as module:
        yield module


@pytest.mark.slow
def test_quick_run_reports_every_method(bench, tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\nkeep me\n")
    methods = "independent,ot-exact,reflow-2,reflow-2+distill"
    bench.main(
        [
            "--quick",
            "--datasets",
            "checkerboard",
            "--methods",
            methods,
            "--threads",
            "1",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(results),
            "--plot",
            str(tmp_path / "traj.png"),
        ]
    )
    saved = json.loads((tmp_path / "work" / "checkerboard" / "results.json").read_text())
    assert list(saved["methods"]) == methods.split(",")
    for facts in saved["methods"].values():
        nfes = [(r["method"], r["nfe"]) for r in facts["rows"]]
        assert nfes == [("euler", n) for n in (1, 2, 4, 8, 16, 100)] + [
            ("midpoint", n) for n in (2, 4, 8, 16, 100)
        ]
        assert all(r["w2"] > 0 for r in facts["rows"]) and facts["straightness"] >= 0
    assert saved["methods"]["reflow-2"]["total_steps"] == 200 + 100
    assert saved["methods"]["reflow-2+distill"]["total_steps"] == 200 + 100 + 100
    text = results.read_text()
    assert "keep me" in text and text.count("## Straightness (CPU)") == 1
    assert "| reflow-2+distill |" in text
    assert (tmp_path / "traj.png").stat().st_size > 0


def test_bad_arguments_exit_2(bench, capsys):
    for argv in (["--datasets", "mnist"], ["--methods", "magic"]):
        with pytest.raises(SystemExit) as err:
            bench.parse_args(argv)
        assert err.value.code == 2
        assert argv[1] in capsys.readouterr().err
