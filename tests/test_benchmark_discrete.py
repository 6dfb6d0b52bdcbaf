"""Smoke test of benchmarks/discrete.py: a --quick run trains every model on names and SMILES,
scores them, and writes only its section of RESULTS.md."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from conftest import benchmark_module

pytest.importorskip("names")
pytest.importorskip("rdkit")

OTHER = "# Benchmark results\n\n## Other\n\nkeep me\n"
LATER = "## Later section\n\nkept too\n"


def test_quick_run_reports_every_model(tmp_path, one_thread):
    results = tmp_path / "RESULTS.md"
    results.write_text(OTHER + "\n## Discrete flow matching (CPU)\n\nstale 9.99\n\n" + LATER)
    work = tmp_path / "work"
    with benchmark_module("discrete") as module:
        res = module.main(["--quick", "--work", str(work), "--results", str(results)])

    names, smiles = res["names"], res["smiles"]
    assert names["params_flow"] == names["params_lm"]
    for key in ("bigram", "lm_nll", "elbo", "lm_nll_subset"):
        value, se = names[key]
        assert math.isfinite(value) and value > 0 and se >= 0, key
    assert sorted(names["bounds"], key=int) == ["4", "14"]
    assert names["flow"]["steps"] >= 1 and names["lm"]["steps"] >= 1
    have_meta = importlib.util.find_spec("flow_matching") is not None
    models = ["flow", "ar", "meta"] if have_meta else ["flow", "ar"]
    assert list(names["samples"]) == models
    assert list(names["samples"]["ar"]) == ["14"]
    for model in models:
        for cell in names["samples"][model].values():
            for key in ("held_out", "real", "novel"):
                mean, sd = cell[key]
                assert 0 <= mean <= 1 and sd >= 0
            assert cell["real"][0] >= cell["held_out"][0]
            assert math.isfinite(cell["gen_nll"][0]) and cell["seconds"] > 0
    if have_meta:
        assert names["meta"]["steps"] == names["flow"]["steps"]
        assert names["params_meta"] == names["params_flow"]
        assert names["meta_step_ratio"]["median"] > 0
    assert list(smiles["samples"]["flow"]) == ["4"]
    for cell in [*smiles["samples"]["flow"].values(), *smiles["samples"]["ar"].values()]:
        assert all(0 <= cell[k][0] <= 1 for k in ("validity", "uniqueness", "novelty"))
    assert smiles["too_long"] > 0 and smiles["L"] == 31

    saved = json.loads((work / "results.json").read_text())
    assert saved["names"]["bounds"].keys() == names["bounds"].keys()
    text = results.read_text()
    assert text.startswith(OTHER) and text.endswith("\n" + LATER)
    assert "stale 9.99" not in text and text.count("## Discrete flow matching (CPU)") == 1
    section = res["section"]
    assert "python benchmarks/discrete.py --quick" in section
    assert "| bigram (add-0.1) |" in section and "| flow (ours) | 4 |" in section
    assert "### SMILES" in section and "were dropped" in section
    assert ("| Meta flow_matching | 4 |" in section) == have_meta


def test_bad_parts_are_refused():
    with benchmark_module("discrete") as module, pytest.raises(SystemExit):
        module.parse_args(["--parts", "names,pydoc"])
