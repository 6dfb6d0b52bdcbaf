"""The DiT in run configs: model: {name: dit} for image data only, the network it builds from
the data, a short ``flowmatch train`` run on digits read back by fm.load, and
configs/fashion_dit.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import cli

import flowmatch as fm
from flowmatch.train.config import ConfigError, DiTConfig, load_config
from flowmatch.train.data import RunData

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TINY_DIT = [
    "data.name=digits",
    "model.name=dit",
    "model.dim=32",
    "model.depth=2",
    "model.heads=4",
    "train.batch_size=32",
    "train.log_every=2",
    "train.eval_every=100000",
    "sample.steps=2",
    "sample.method=euler",
]


def test_dit_is_a_model_choice_for_images_only():
    cfg = load_config(None, ["data.name=digits", "model.name=dit", "model.patch=4"])
    assert isinstance(cfg.model, DiTConfig) and cfg.model.patch == 4
    assert cfg.model.params() == {
        "patch": 4, "dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "dropout": 0.0,
        "positions": "sincos", "time_embed_dim": 64, "time_frequency": None,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"model.name: points .* need model.name=mlp, got 'dit'"):
        load_config(None, ["model.name=dit"])
    with pytest.raises(ConfigError, match=r"text data need model\.name=transformer, got 'dit'"):
        load_config(None, ["data.text=names", "model.name=dit"])
    with pytest.raises(ConfigError, match=r"image data need model\.name=unet or dit, got"):
        load_config(None, ["data.name=digits", "model.name=mlp"])
    for bad in ("model.patch=0", "model.positions=rotary", "model.base=8"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, ["data.name=digits", "model.name=dit", bad])


def test_the_network_gets_the_image_shape_and_classes_from_the_data():
    from flowmatch.train.build import net_arch

    cfg = load_config(None, [*TINY_DIT, "objective.name=meanflow"])
    data = RunData(
        train=torch.zeros(4, 3, 16, 16),
        holdout=torch.zeros(2, 3, 16, 16),
        source=None,
        standardizer=None,
        name="rgb",
        labels=torch.zeros(4, dtype=torch.long),
        class_names=list("abcdefg"),
    )
    arch = net_arch(cfg, data)
    assert arch["name"] == "dit" and (arch["channels"], arch["size"]) == (3, 16)
    assert arch["num_classes"] == 7 and arch["two_times"] is True
    assert arch["time_frequency"] == 10.0  # MeanFlow's default


def test_a_bad_patch_is_one_line_naming_the_model(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train: {steps: 2}\n")
    argv = ["train", cfg, "--out", tmp_path / "run", "--no-eval"]
    sets = [a for o in [*TINY_DIT, "model.patch=3"] for a in ("--set", o)]
    code, _, err = cli([*argv, *sets], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "model" in lines[0] and "patch=3 must divide" in lines[0], err
    assert not (tmp_path / "run").exists()


def test_flowmatch_train_on_digits_with_a_dit(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train: {steps: 6}\nobjective: {cond_dropout: 0.2}\n")
    sets = [a for o in TINY_DIT for a in ("--set", o)]
    code, _, err = cli(["train", cfg, "--out", tmp_path / "run", "--no-eval", *sets], capsys)
    assert code == 0, err
    model = fm.load(tmp_path / "run")
    assert isinstance(model.net, fm.models.DiT) and model.net.patch == 2
    assert model.spec["arch"]["name"] == "dit" and model.shape == (1, 8, 8)
    assert model.null_class == 10
    out = tmp_path / "x.npy"
    code, _, err = cli(["sample", tmp_path / "run", "--num", "6", "--cond", "3", "--guidance",
                        "2", "--out", out], capsys)  # fmt: skip
    assert code == 0, err
    x = np.load(out)
    assert x.shape == (6, 1, 8, 8) and np.isfinite(x).all()


def test_the_fashion_dit_config_validates():
    cfg = load_config(CONFIGS / "fashion_dit.yaml")
    assert cfg.data.name == "fashion" and isinstance(cfg.model, DiTConfig)
    assert 28 % cfg.model.patch == 0 and cfg.model.dim % cfg.model.heads == 0
    assert cfg.objective.cond_dropout == 0.1
    net = fm.models.build({"name": "dit", "channels": 1, "size": 28, "num_classes": 10,
                           **cfg.model.params()})  # fmt: skip
    assert net(torch.randn(2, 1, 28, 28), torch.rand(2)).shape == (2, 1, 28, 28)
