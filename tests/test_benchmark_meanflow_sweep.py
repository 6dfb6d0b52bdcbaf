"""Smoke test of benchmarks/meanflow_sweep.py: settings train, report W2 and keep earlier runs."""

from __future__ import annotations

import json

from conftest import benchmark_module


def test_sweep_runs_chosen_settings_and_merges_results(tmp_path, one_thread):
    out, results = tmp_path / "sweep.json", tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\nkeep me\n")
    common = ["--steps", "20", "--num", "100", "--jobs", "1", "--out", str(out)]
    with benchmark_module("meanflow_sweep") as module:
        module.main([*common, "--only", "1", "--results", str(results)])
        module.main([*common, "--only", "15", "--results", str(results)])
        first = module.run_one({"steps": 20}, 100)
        assert module.run_one({"steps": 20}, 100)["w2"] == first["w2"]  # deterministic
    saved = json.loads(out.read_text())
    assert sorted(saved["runs"], key=int) == ["1", "15"]
    assert sorted(saved["runs"]["1"]["w2"], key=int) == ["1", "2", "8"]
    assert sorted(saved["runs"]["15"]["w2"], key=int) == ["1", "2", "32"]
    assert saved["runs"]["1"]["w2"] == first["w2"]
    text = results.read_text()
    assert "keep me" in text and text.count("## MeanFlow settings (CPU)") == 1
    assert "| 1 | defaults" in text and "| 15 | plain flow matching" in text
    # rows run on different machines are named with their machine
    runs = {"1": {"machine": "A"}, "2": {"machine": "A"}, "3": {}, "5": {"machine": "A"}}
    with benchmark_module("meanflow_sweep") as module:
        text = module._machines({"machine": "B", "runs": runs}, "C")
        assert text == "rows 1-2, 5: A; row 3: B"
        assert module._machines({"runs": {"1": {}}}, "C") == "C"


def test_cost_benchmark_times_both_objectives(one_thread, capsys):
    """benchmarks/meanflow_cost.py: a row per (model, objective, round) and the ratio table."""
    with benchmark_module("meanflow_cost") as module:
        rows = module.main(["--device", "cpu", "--steps", "1", "--rounds", "1", "--warmup", "1"])
    assert [(r["model"], r["meanflow"]) for r in rows] == [
        ("mlp", False),
        ("mlp", True),
        ("unet", False),
        ("unet", True),
    ]
    assert all(r["ms"] > 0 for r in rows)
    assert "| unet |" in capsys.readouterr().out
