"""`flowmatch demo --dataset fashion`: its wiring with a tiny U-Net and evaluation (the real
run's figures are measured by benchmarks/fashion.py and the README), and its error when the
data are not installed."""

from __future__ import annotations

import pytest
from test_trainer import cli

from flowmatch.app.demo_fashion import _accuracy_line
from flowmatch.data.fashion import fashion_mnist_dir
from flowmatch.evaluation.image_rows import ImageEvalRow

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # about a minute: the data, the classifier's reference features, plots
@pytest.mark.skipif(fashion_mnist_dir() is None, reason="Fashion-MNIST is not installed")
def test_fashion_demo_cli_writes_grid_path_table_and_says_how_recognisable(
    tmp_path, monkeypatch, capsys
):
    import flowmatch.app.demo_fashion as demo

    tiny = [o for o in demo.FASHION_OVERRIDES if not o.startswith(("model.", "eval."))]
    tiny += [
        "model.name=unet",
        "model.channels=8",
        "model.multipliers=[1,2]",
        "model.groups=4",
        "eval.steps=[2]",
        "eval.methods=[euler]",
        "eval.draws=1",
        "eval.num_samples=100",
    ]
    monkeypatch.setattr(demo, "FASHION_OVERRIDES", tuple(tiny))
    argv = ["demo", "--dataset", "fashion", "--steps", "2", "--out", tmp_path / "f"]
    code, out, err = cli([*argv, "--no-progress"], capsys)
    assert code == 0, err
    assert "fashion demo: a small model (2 steps in" in out and "train/test" in out
    assert "the classifier recognises the asked-for class in" in out
    assert "(real training images: 9" in out  # the floor's accuracy, 90-100%
    for name in ("samples.png", "path.png", "eval.txt", "model/config.json"):
        assert (tmp_path / "f" / name).is_file()


def test_fashion_demo_without_the_data_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("FLOWMATCH_FASHION_MNIST", str(tmp_path / "none"))
    monkeypatch.setattr("flowmatch.data.fashion.FASHION_DEFAULT_DIR", tmp_path / "none")
    code, _, err = cli(["demo", "--dataset", "fashion", "--out", tmp_path / "f"], capsys)
    assert code == 2 and "apt-get install dataset-fashion-mnist" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "f").exists()


def test_accuracy_line_picks_the_best_sampler_and_names_the_real_images():
    def row(method, nfe, acc):
        return ImageEvalRow(method, nfe, nfe, 2.0, 1.0, 0.0, 0.1, 0.0, acc)

    rows = [row("euler", 2, 0.61), row("midpoint", 8, 0.83)]
    line = _accuracy_line(rows, row("floor", 0, 0.946))
    assert line == (
        "the classifier recognises the asked-for class in 83% of the samples (midpoint, NFE 8) "
        "(real training images: 95%)"
    )
    assert _accuracy_line([row("euler", 2, float("nan"))], None) is None


def test_the_demo_runs_configs_fashion_yaml():
    from pathlib import Path

    from flowmatch.app.demo_fashion import FASHION_OVERRIDES, FASHION_STEPS
    from flowmatch.train.config import config_to_dict, load_config

    shipped = Path(__file__).resolve().parents[2] / "configs" / "fashion.yaml"
    demo = load_config(None, [*FASHION_OVERRIDES, f"train.steps={FASHION_STEPS}"])
    assert config_to_dict(demo) == config_to_dict(load_config(shipped))
