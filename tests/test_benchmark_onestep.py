"""Smoke test of benchmarks/onestep.py: a --quick run trains every method on points and digits
and reports."""

from __future__ import annotations

import json

import pytest

from conftest import benchmark_module


@pytest.mark.slow
def test_quick_run_reports_every_method(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\nkeep me\n")
    common = ["--quick", "--threads", "1", "--work", str(tmp_path / "work")]
    with benchmark_module("onestep") as module:
        module.main([*common, "--datasets", "checkerboard,digits", "--results", str(results)])
    saved = json.loads((tmp_path / "work" / "checkerboard" / "results.json").read_text())
    assert list(saved["methods"]) == ["fm", "meanflow", "meanflow-ot", "reflow+distill"]
    for facts in saved["methods"].values():
        assert sorted(facts["rows"], key=int) == ["1", "2", "32"]
        assert all(r["w2"] > 0 for r in facts["rows"].values())
        assert facts["train_s"] > 0
    assert saved["methods"]["meanflow"]["rows"]["1"]["method"] == "average"
    # reflow+distill's total includes fm's training, the pairs and both of its stages
    methods = saved["methods"]
    assert methods["reflow+distill"]["train_s"] > methods["fm"]["train_s"]
    digits = json.loads((tmp_path / "work" / "digits" / "results.json").read_text())
    assert list(digits["methods"]) == ["fm", "meanflow", "reflow+distill"]
    for facts in digits["methods"].values():
        assert all(r["fd"] > 0 and 0 <= r["accuracy"] <= 1 for r in facts["rows"].values())
    assert digits["methods"]["meanflow"]["rows"]["32"]["method"] == "average"
    assert 5 < digits["floor"]["fd"] < 8  # measured 6.57
    text = results.read_text()
    assert "keep me" in text and text.count("## One-step (CPU)") == 1
    assert "| checkerboard | meanflow |" in text and "| digits | meanflow |" in text

    # --methods retrains some methods and keeps the others' saved figures, saying which is which
    first = saved["methods"]
    with benchmark_module("onestep") as module:
        module.main(
            [
                *common,
                "--datasets",
                "checkerboard",
                "--methods",
                "meanflow",
                "--results",
                str(results),
            ]
        )
        again = json.loads((tmp_path / "work" / "checkerboard" / "results.json").read_text())
        assert list(again["methods"]) == list(first)
        assert again["methods"]["fm"] == first["fm"]
        assert again["methods"]["reflow+distill"] == first["reflow+distill"]
        assert again["methods"]["meanflow"]["train_s"] != first["meanflow"]["train_s"]
        again["methods"]["fm"]["measured"] = "2026-01-01 00:00 UTC"
        note = module.format_table(again)[-1]
        assert note.startswith("Trained and measured: fm 2026-01-01 00:00 UTC; meanflow ")
        with pytest.raises(SystemExit, match="no saved results for fm"):
            module.main(
                [
                    *common,
                    "--work",
                    str(tmp_path / "empty"),
                    "--datasets",
                    "checkerboard",
                    "--methods",
                    "meanflow",
                    "--no-render",
                ]
            )
        with pytest.raises(SystemExit):
            module.main([*common, "--methods", "fm,dmd", "--no-render"])
