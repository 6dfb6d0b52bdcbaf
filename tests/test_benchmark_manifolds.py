"""Smoke test of benchmarks/manifolds.py: a --quick run trains a flow on every manifold set,
fits the baselines, compares with Meta's flow_matching, and writes only its section of a
temporary RESULTS.md."""

from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest

from conftest import benchmark_module

pytest.importorskip("airportsdata")
pytest.importorskip("ot")

OTHER = "# Benchmark results\n\n## Other\n\nkeep me\n"
LATER = "## Later section\n\nkept too\n"
SETS = ("airports", "quakes", "backbone", "residues")


def _numbers(row: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+", row)]


def test_quick_run_reports_every_table(tmp_path, one_thread):
    from flowmatch.data.manifold_sets import load_manifold_set

    try:
        for name in SETS:
            load_manifold_set(name)
    except Exception as err:  # a data package or Biopython's structures are missing
        pytest.skip(f"manifold data sets unavailable: {err}")
    results = tmp_path / "RESULTS.md"
    results.write_text(OTHER + "\n## Manifolds\n\nstale 9.99\n\n" + LATER)
    work = tmp_path / "work"
    with benchmark_module("manifolds") as module:
        res = module.main(["--quick", "--out", str(results), "--work", str(work)])

    have_meta = importlib.util.find_spec("flow_matching") is not None
    assert list(res["sets"]) == list(SETS)
    for name, r in res["sets"].items():
        assert r["train"]["steps"] >= 1 and r["train"]["ms_per_step"] > 0
        assert {"flow", "uniform"} <= set(r["nll"]), name
        assert ("vmf" in r["nll"]) == (name in ("airports", "quakes"))
        assert ("vm" in r["nll"]) == (name in ("backbone", "residues"))
        for model in r["nll"].values():
            assert model["nll"].shape == (r["n_test"],)
            assert bool(model["nll"].isfinite().all())
        assert ("quality" in r) == (name in ("airports", "backbone"))
        assert ("meta_train" in r) == (have_meta and name in ("airports", "backbone"))
    for name in ("airports", "backbone"):
        r = res["sets"][name]
        assert r["n_test"] == 40 and r["quality"]["num"] == 20
        rows = r["quality"]["rows"]
        assert list(rows) == ["euler 4", "midpoint 4", "rk4 4"]
        samplers = ["ours", "meta", "ours_meta_solver"] if have_meta else ["ours"]
        for cell in rows.values():
            assert list(cell) == samplers
            for scores in cell.values():
                assert all(math.isfinite(v) for v in scores["w2"] + scores["mmd"])
                assert scores["w2"][0] > 0
        if have_meta:
            assert r["meta_train"]["steps"] == r["train"]["steps"]
        for o in r["overhead"]:
            assert o["nfe"] == 100 and o["method"] == {"airports": "rk4", "backbone": "euler"}[name]
            for key in ("wall_ratio", "cpu_ratio"):
                assert all(v > 0 and math.isfinite(v) for v in o[key].values())
                assert ("meta" in o[key]) == have_meta

    saved = json.loads((work / "results.json").read_text())
    assert list(saved["sets"]) == list(SETS)
    text = results.read_text()
    assert text.startswith(OTHER) and text.endswith("\n" + LATER)
    assert "stale 9.99" not in text and text.count("## Manifolds") == 1
    section = res["section"]
    assert "python benchmarks/manifolds.py --quick" in section
    lines = section.splitlines()
    for name in SETS:
        row = next(line for line in lines if line.startswith(f"| {name} ("))
        assert len(_numbers(row)) >= 6 and all(math.isfinite(v) for v in _numbers(row))
        assert row.rstrip().endswith(("yes (vs vmf) |", "no (vs vmf) |", "yes (vs vm) |",
                                      "no (vs vm) |"))  # fmt: skip
    assert sum(line.startswith("| floor (held-out vs held-out) |") for line in lines) == 2
    assert sum(line.startswith("| rk4 | 4 |") for line in lines) == 2
    overhead = [line for line in lines if "(NFE 100) | 200 |" in line]
    assert len(overhead) == 2
    assert ("| W2 Meta |" in section) == have_meta


def test_bad_sets_are_refused():
    with benchmark_module("manifolds") as module, pytest.raises(SystemExit):
        module.parse_args(["--sets", "airports,mars"])
