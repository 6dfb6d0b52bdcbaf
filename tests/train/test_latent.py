"""Autoencoder runs and latent flow matching end to end: train an autoencoder on digits, a
flow on its latents, sample decoded images; and the one-line errors of bad latent configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_trainer import cli

import flowmatch as fm
from flowmatch.models.autoencoder import AutoEncoder
from flowmatch.models.latent import LatentCodec
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

AE = [
    "data.name=digits",
    "model.name=autoencoder",
    "model.base=8",
    "model.latent_channels=2",
    "model.downsample=0",
    "objective.name=autoencoder",
    "objective.kl_weight=0.001",
    "train.batch_size=32",
    "train.log_every=5",
    "train.checkpoint_every=5",
    "train.eval_every=5",
]
LATENT = [
    "data.name=digits",
    "model.name=unet",
    "model.channels=8",
    "model.multipliers=[1,2]",
    "model.groups=4",
    "model.time_embed_dim=16",
    "time.sampler=shifted",
    "time.shift=2.0",
    "train.batch_size=32",
    "train.log_every=5",
    "train.eval_every=100000",
    "eval.steps=[2]",
    "eval.methods=[euler]",
    "eval.draws=1",
    "sample.steps=2",
    "sample.method=euler",
]


def cli_train(tmp_path, capsys, overrides):
    """``flowmatch train`` of a config of these overrides into ``tmp_path/run``."""
    config = tmp_path / "c.yaml"
    config.write_text("train: {steps: 1}\n")
    args = [f"--set={o}" for o in overrides]
    return cli(["train", config, *args, "--out", tmp_path / "run"], capsys)


def train(out, overrides, steps=10, **kwargs):
    cfg = load_config(None, [*overrides, f"train.steps={steps}"])
    Trainer(cfg, out, progress=False, echo=lambda _: None, **kwargs).run()
    return out


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("ae") / "ae", AE)


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, ae_run):
    return train(tmp_path_factory.mktemp("latent") / "run", [*LATENT, f"data.latent={ae_run}"])


def test_an_autoencoder_run_writes_its_model_scale_and_report(ae_run):
    ae = fm.load(ae_run)
    assert isinstance(ae, AutoEncoder) and ae.latent_shape == (2, 8, 8)
    spec = json.loads((ae_run / "model" / "config.json").read_text())
    assert spec["kind"] == "autoencoder" and spec["arch"]["size"] == 8
    assert spec["objective"] == {"name": "autoencoder", "kl_weight": 0.001, "reconstruction": "mse"}
    assert float(ae.latent_scale) != 1.0  # fitted at the end, read back from the weights
    raw = fm.load(ae_run, weights="model")
    assert float(raw.latent_scale) == float(ae.latent_scale)
    text = (ae_run / "eval.txt").read_text()
    assert "latents (2, 8, 8)" in text and "held-out reconstruction MSE" in text
    cfg = load_config(ae_run / "config.yaml")
    assert cfg.model.model_extra["channels"] == 1 and cfg.model.model_extra["size"] == 8
    # the training latents of the fitted model are standardized
    from flowmatch.data.images import load_digits

    with torch.no_grad():
        z = ae.encode(load_digits().train)
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1) < 1e-2


def test_an_autoencoder_run_resumes(ae_run, tmp_path):
    run = train(tmp_path / "ae", AE, steps=5)
    train(run, AE, steps=10, resume=True)
    assert (run / "checkpoints" / "step_00000010").is_dir()
    first = fm.load(run)
    assert float(first.latent_scale) != 1.0


def test_a_latent_run_samples_decoded_images(latent_run, tmp_path, capsys):
    model = fm.load(latent_run)
    assert model.shape == (2, 8, 8) and isinstance(model.transform, LatentCodec)
    spec = json.loads((latent_run / "model" / "config.json").read_text())
    assert spec["latent"]["image_shape"] == [1, 8, 8] and spec["shape"] == [2, 8, 8]
    assert (latent_run / "model" / "autoencoder" / "ema.safetensors").is_file()
    x = model.decode(fm.sample(model, torch.randn(4, 2, 8, 8), steps=2))
    assert x.shape == (4, 1, 8, 8)
    code, out, _ = cli(["sample", latent_run, "--out", tmp_path / "s.npy", "--num", "12"], capsys)
    assert code == 0 and "wrote 12 samples" in out
    assert np.load(tmp_path / "s.npy").shape == (12, 1, 8, 8)
    text = (latent_run / "eval.txt").read_text()  # scored as decoded digits: FD
    assert "FD mean" in text and "euler" in text
    assert (latent_run / "samples.png").is_file()


def test_the_latent_run_is_self_contained(latent_run, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(latent_run / "model", moved)
    a, b = fm.load(latent_run), fm.load(moved)
    z = torch.randn(3, 2, 8, 8)
    assert torch.equal(a.decode(z), b.decode(z))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ae, pix: ae.parent / "nowhere", "no such autoencoder run"),
        (lambda ae, pix: pix, "is not an autoencoder run"),
    ],
)
def test_bad_latent_runs_are_one_line_errors(ae_run, tmp_path, capsys, make, message):
    pix = train(tmp_path / "pix", [*LATENT[1:], "data.name=digits"], steps=1)
    latent = make(ae_run, pix)
    code, _, err = cli_train(tmp_path, capsys, [*LATENT, f"data.latent={latent}"])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_autoencoder_of_other_images_is_refused(tmp_path, capsys):
    ae = AutoEncoder(1, 16, base=8, latent_channels=2, downsample=1)
    ae.save_pretrained(tmp_path / "ae16")
    code, _, err = cli_train(tmp_path, capsys, [*LATENT, f"data.latent={tmp_path / 'ae16'}"])
    assert code == 2 and "encodes images of shape (1, 16, 16)" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["objective.name=autoencoder", "model.name=unet"], "model.name: objective.name=auto"),
        (["objective.name=flow_matching", "model.name=autoencoder"], "objective.name: model"),
        (["objective.name=autoencoder", "model.name=autoencoder", "model.size=16"], "model.size"),
        (["objective.name=autoencoder", "model.name=autoencoder", "data.latent=x"], "data.latent"),
    ],
)
def test_bad_autoencoder_configs_are_one_line_errors(tmp_path, capsys, overrides, message):
    code, _, err = cli_train(tmp_path, capsys, ["data.name=digits", *overrides])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_flowmatch_eval_scores_a_latent_run_decoded(latent_run, capsys):
    args = ["eval", latent_run, "--steps", "2", "--methods", "euler", "--draws", "1"]
    code, _, err = cli(args, capsys)
    assert code == 0, err
    final = (latent_run / "eval.txt").read_text().splitlines()[-1].split()
    again = (latent_run / "eval" / "eval.txt").read_text().splitlines()[-1].split()
    assert again[:5] == final[:5]  # the same draws, decoded and scored alike: the same FD
