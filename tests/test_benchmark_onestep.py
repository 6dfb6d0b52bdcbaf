"""Smoke test of benchmarks/onestep.py: a --quick run trains the three methods and reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "onestep.py"


@pytest.mark.slow
def test_quick_run_reports_every_method(tmp_path):
    name = "_flowmatch_bench_onestep"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    before = torch.get_num_threads()
    try:
        spec.loader.exec_module(module)
        results = tmp_path / "RESULTS.md"
        results.write_text("# Results\n\n## Other\n\nkeep me\n")
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
    finally:
        sys.modules.pop(name, None)
        torch.set_num_threads(before)
    saved = json.loads((tmp_path / "work" / "checkerboard" / "results.json").read_text())
    assert list(saved["methods"]) == ["fm", "meanflow", "reflow+distill"]
    for facts in saved["methods"].values():
        assert sorted(facts["rows"], key=int) == ["1", "2", "32"]
        assert all(r["w2"] > 0 for r in facts["rows"].values())
    assert saved["methods"]["meanflow"]["rows"]["1"]["method"] == "average"
    text = results.read_text()
    assert "keep me" in text and text.count("## One-step (CPU)") == 1
    assert "| checkerboard | meanflow |" in text
