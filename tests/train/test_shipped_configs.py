"""Every config in configs/ validates and its data loads."""

from pathlib import Path

import pytest

from flowmatch.data.fashion import fashion_mnist_dir
from flowmatch.train.config import load_config
from flowmatch.train.data import load_run_data

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs():
    names = {p.stem for p in CONFIGS}
    assert {"checkerboard", "checkerboard_ot", "8gaussians", "8gaussians_to_moons", "wine"} <= names
    assert {"ddpm", "digits"} <= names
    assert {"names", "smiles", "pydoc"} <= names
    assert {"airports", "quakes", "backbone", "residues"} <= names
    assert {"fashion", "fashion_full", "fashion_dit", "fashion_ae", "fashion_latent"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_its_data_loads(path):
    cfg = load_config(path)
    if cfg.data.name == "fashion" and fashion_mnist_dir() is None:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=path.parent)
    assert data.train.shape[0] > data.holdout.shape[0] > 0
    if data.is_mixed:  # samples are compared with all the held-out rows
        assert data.holdout.shape[0] >= cfg.eval.num_samples and data.mixed.vocab_sizes
    elif data.is_text:  # scored by samples of their own and the held-out ELBO
        assert data.text.vocab.size > 2 and data.train.shape[1] == data.text.length
    elif data.is_image:  # digits are scored with sets the size of the training split
        assert data.labels.shape[0] == data.train.shape[0] and data.num_classes == 10
    else:
        assert data.max_eval_points(cfg.eval.num_samples) == cfg.eval.num_samples
