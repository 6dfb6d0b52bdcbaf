"""Smoke test of benchmarks/onestep.py: a --quick run trains the three methods and reports."""

from __future__ import annotations

import json

import pytest

from conftest import benchmark_module


@pytest.mark.slow
def test_quick_run_reports_every_method(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\nkeep me\n")
    with benchmark_module("onestep") as module:
        module.main(
            [
                "--quick",
                "--datasets",
                "checkerboard",
                "--threads",
                "1",
                "--work",
                str(tmp_path / "work"),
                "--results",
                str(results),
            ]
        )
    saved = json.loads((tmp_path / "work" / "checkerboard" / "results.json").read_text())
    assert list(saved["methods"]) == ["fm", "meanflow", "reflow+distill"]
    for facts in saved["methods"].values():
        assert sorted(facts["rows"], key=int) == ["1", "2", "32"]
        assert all(r["w2"] > 0 for r in facts["rows"].values())
    assert saved["methods"]["meanflow"]["rows"]["1"]["method"] == "average"
    text = results.read_text()
    assert "keep me" in text and text.count("## One-step (CPU)") == 1
    assert "| checkerboard | meanflow |" in text
