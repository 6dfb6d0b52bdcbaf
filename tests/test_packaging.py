"""Packaging: one version, a declared license, extras for every optional package, and a core
install (what ``import flowmatch`` and training on tensors need) free of plots and sklearn."""

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowmatch

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("matplotlib", "sklearn", "PIL")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_version_has_one_source():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert _pyproject()["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "flowmatch.__version__"
    }
    assert importlib.metadata.version("flowmatch") == flowmatch.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", flowmatch.__version__)


def test_the_license_file_exists_and_is_declared():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the flowmatch authors" in text
    pyproject = _pyproject()
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    # PEP 639 (an SPDX string and license-files) needs setuptools >= 77.
    assert "setuptools>=77" in pyproject["build-system"]["requires"]


def test_the_optional_packages_are_extras_not_core_dependencies():
    project = _pyproject()["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("matplotlib", "scikit-learn", "pillow", "tensorboard", "wandb"):
        assert name not in core
    extras = project["optional-dependencies"]
    wanted = {"plots", "digits", "images", "data", "tensorboard", "wandb", "hub", "docs"}
    assert wanted | {"bench", "dev"} <= set(extras)
    assert any(d.startswith("matplotlib") for d in extras["plots"])
    assert any(d.startswith("scikit-learn") for d in extras["digits"])
    assert any(d.startswith("pillow") for d in extras["images"])
    # `make install` (so `make test` and `make demo`) installs the extras the tests use.
    makefile = (ROOT / "Makefile").read_text()
    installed = set(re.search(r"^EXTRAS := (.*)$", makefile, flags=re.M).group(1).split(","))
    assert {"dev", "plots", "digits", "images", "data"} <= installed <= set(extras)


def test_import_flowmatch_loads_no_optional_package():
    out = _run(
        f"import sys, flowmatch; print([m for m in sys.modules if m.startswith({OPTIONAL!r})])"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_without_the_optional_packages_training_works_and_plots_name_their_extra():
    """With matplotlib, scikit-learn and Pillow made unimportable: train on tensors, sample,
    save and load; plots, the digits and image folders fail in one line naming the extra."""
    out = _run(
        f"""
        import sys

        sys.modules.update(dict.fromkeys({OPTIONAL!r}))  # None: an import raises, as if absent
        import tempfile
        import torch
        import flowmatch as fm
        from flowmatch.errors import FlowmatchError

        torch.manual_seed(0)
        out = tempfile.mkdtemp()
        net = fm.models.MLP(dim=2, hidden=16, depth=2)
        model = fm.train(net, torch.randn(256, 2), steps=5, batch_size=32, out=out,
                         progress=False, echo=lambda s: None)
        assert fm.sample(fm.load(out), torch.randn(8, 2), steps=2).shape == (8, 2)
        from flowmatch.data.images import load_digits, read_image
        for call in (lambda: __import__("flowmatch.viz"), load_digits,
                     lambda: read_image(None, "L", 8)):
            try:
                call()
            except ImportError as err:
                assert isinstance(err, FlowmatchError)
                print(err)
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [
        "plots (flowmatch.viz): needs matplotlib, which is not installed; "
        "pip install 'flowmatch[plots]'",
        "the digits data set: needs scikit-learn, which is not installed; "
        "pip install 'flowmatch[digits]'",
        "image folders: needs Pillow, which is not installed; pip install 'flowmatch[images]'",
    ]


def test_changelog_follows_keep_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "## [Unreleased]" in text
    urls = _pyproject()["project"]["urls"]
    assert {"Homepage", "Documentation", "Changelog"} <= set(urls)


def test_a_run_completes_without_matplotlib_and_says_the_plots_were_skipped(tmp_path):
    """A core install: `flowmatch train` evaluates and writes eval.txt and eval.csv; the plots
    are skipped with a warning naming the extra, and the command succeeds."""
    out = _run(
        f"""
        import sys

        sys.modules.update(dict.fromkeys({OPTIONAL!r}))
        from flowmatch.cli import main

        main(["train", "--out", {str(tmp_path / "run")!r}, "--no-progress",
              "--set", "train.steps=5", "--set", "model.hidden=16",
              "--set", "eval.steps=[1]", "--set", "eval.methods=[euler]",
              "--set", "eval.num_samples=50", "--set", "eval.draws=1",
              "--set", "data.num_holdout=100", "--set", "data.num_train=200",
              {str(ROOT / "configs" / "checkerboard.yaml")!r}])
        """
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "run" / "eval.txt").is_file() and (tmp_path / "run" / "eval.csv").is_file()
    assert not (tmp_path / "run" / "quality_vs_nfe.png").exists()
    assert "warning: quality_vs_nfe.png not written: plots (flowmatch.viz): needs matplotlib" in (
        out.stdout + out.stderr
    )
