"""benchmarks/onestep_seeds.py: the compute matching and statistics, and a --quick run that
trains both contenders over two seeds, saves each seed, skips saved seeds and renders."""

from __future__ import annotations

import json
import math

import pytest

from conftest import benchmark_module


def test_matched_steps_fit_the_budget():
    with benchmark_module("onestep_seeds") as module:
        assert module.matched_steps(382.0, 0.01714) == 22_200  # 22,287 rounded down
        assert module.matched_steps(100.0, 0.01, multiple=1) == 10_000
        assert module.matched_steps(0.5, 0.01) == 100  # never fewer than one multiple
        for steps, per in ((22_200, 0.01714), (10_000, 0.01)):
            assert steps * per <= 382.0
        with pytest.raises(ValueError, match="must be > 0"):
            module.matched_steps(0.0, 0.01)


def test_steady_pace_leaves_out_the_first_steps(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "step,loss,lr,grad_norm,wall_time\n100,1,0,1,2.5\n200,1,0,1,4.0\n300,1,0,1,5.5\n"
    )
    with benchmark_module("onestep_seeds") as module:
        # 3 s over steps 100-300, not 5.5 s over 300 steps
        assert module.steady_pace(tmp_path, {"train_s": 5.6, "steps": 300}) == pytest.approx(0.015)
        (tmp_path / "metrics.csv").write_text("step,loss,lr,grad_norm,wall_time\n20,1,0,1,0.5\n")
        assert module.steady_pace(tmp_path, {"train_s": 0.6, "steps": 20}) == pytest.approx(0.03)


def test_mean_se_is_the_standard_error_of_the_mean():
    with benchmark_module("onestep_seeds") as module:
        mean, se = module.mean_se([1.0, 2.0, 3.0, 6.0])
        assert mean == 3.0
        # sample variance (4 + 1 + 0 + 9) / 3, over n = 4
        assert se == pytest.approx(math.sqrt(14 / 3 / 4), rel=1e-12)
        assert module.mean_se([0.2]) == (0.2, 0.0)


@pytest.mark.slow
def test_quick_run_pairs_both_methods_per_seed(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\nkeep me\n")
    work = tmp_path / "work"
    common = ["--quick", "--threads", "1", "--work", str(work), "--results", str(results)]
    with benchmark_module("onestep_seeds") as module:
        module.main([*common, "--datasets", "checkerboard", "--seeds", "0,1"])
        saved = {
            s: json.loads((work / "checkerboard" / f"seed{s}.json").read_text()) for s in (0, 1)
        }
        for seed, res in saved.items():
            assert res["seed"] == seed and list(res["methods"]) == ["reflow+distill", "meanflow-ot"]
            rd, mf = res["methods"]["reflow+distill"], res["methods"]["meanflow-ot"]
            # meanflow-ot's steps fit reflow+distill's seconds at the probe's pace
            probe_s = res["probe_ms_per_step"] / 1e3
            assert mf["steps"] == 100 or mf["steps"] * probe_s <= rd["train_s"] * (1 + 1e-9)
            assert (mf["steps"] + 100) * probe_s > rd["train_s"]
            for facts in (rd, mf):
                assert sorted(facts["rows"], key=int) == ["1", "2"]
                assert all(r["w2"] > 0 for r in facts["rows"].values())
            assert mf["rows"]["1"]["method"] == "average"
        # different training seeds, the same evaluation draws: the models differ
        assert (
            saved[0]["methods"]["meanflow-ot"]["rows"] != saved[1]["methods"]["meanflow-ot"]["rows"]
        )
        text = results.read_text()
        assert "keep me" in text and text.count("## One-step over training seeds (CPU)") == 1
        assert "| mean of 2 |" in text and "over 2 training seeds" in text
        d1 = [
            r["methods"]["meanflow-ot"]["rows"]["1"]["w2"]
            - r["methods"]["reflow+distill"]["rows"]["1"]["w2"]
            for r in saved.values()
        ]
        assert f"{sum(d1) / 2:+.4f} +- " in text

        # a second run skips the saved seeds and trains only the new one
        before = (work / "checkerboard" / "seed0.json").read_text()
        capsys.readouterr()
        module.main([*common, "--datasets", "checkerboard", "--seeds", "0,2", "--no-render"])
        out = capsys.readouterr().out
        assert "checkerboard seed 0: saved, skipped" in out and "checkerboard seed 2:" in out
        assert (work / "checkerboard" / "seed0.json").read_text() == before
        assert (work / "checkerboard" / "seed2.json").is_file()


def test_bad_flags_are_refused():
    with benchmark_module("onestep_seeds") as module:
        for flags in (["--seeds", "0,x"], ["--seeds", ","], ["--datasets", "spirals"]):
            with pytest.raises(SystemExit) as err:
                module.main([*flags, "--no-render"])
            assert err.value.code == 2
        with pytest.raises(SystemExit, match="no results under"):
            module.main(["--render-only", "--work", "/nonexistent/flowmatch-seeds"])
