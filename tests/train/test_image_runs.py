"""Image runs end to end: digits (class-conditional U-Net, guidance, FD/KID/accuracy), image
folders and MNIST IDX files from the config, and the CLI's image options and errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from test_trainer import cli

import flowmatch as fm
from flowmatch.train.config import ConfigError, load_config
from flowmatch.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_UNET = [
    "model.name=unet",
    "model.channels=8",
    "model.multipliers=[1,2]",
    "model.groups=4",
    "model.time_embed_dim=16",
    "train.batch_size=32",
    "train.log_every=10",
    "train.eval_every=100000",
    "eval.steps=[2]",
    "eval.methods=[euler]",
    "eval.draws=1",
    "sample.steps=2",
    "sample.method=euler",
]


def train(out, overrides, steps=20, final_eval=True):
    cfg = load_config(None, [*TINY_UNET, f"train.steps={steps}", *overrides])
    Trainer(cfg, out, progress=False, final_eval=final_eval, echo=lambda _: None).run()
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return train(
        tmp_path_factory.mktemp("digits") / "run",
        ["data.name=digits", "sample.guidance=2.0", "objective.cond_dropout=0.2"],
    )


def test_digits_run_writes_fd_table_grid_and_path(digits_run):
    text = (digits_run / "eval.txt").read_text()
    assert text.startswith("1437 points per set, ")  # the sizes the floor depends on
    lines = text.splitlines()[1:]
    assert lines[0].split()[:5] == ["method", "steps", "NFE", "guid", "FD"]
    floor = lines[2].split()
    assert floor[0] == "train/test" and 5.0 < float(floor[4]) < 8.0  # measured 6.57
    row = lines[3].split()
    assert row[:4] == ["euler", "2", "2", "2"] and float(row[4]) > 0 and 0 <= float(row[-1]) <= 1
    header = (digits_run / "eval.csv").read_text().splitlines()[0]
    assert header == "step,method,steps,nfe,fd_mean,fd_std,kid_mean,kid_std,accuracy,points,draws"
    for name in ("samples.png", "path.png", "quality_vs_nfe.png"):
        assert (digits_run / name).read_bytes().startswith(b"\x89PNG")
    model = fm.load(digits_run)
    assert isinstance(model.net, fm.models.UNet) and model.null_class == 10
    assert model.spec["shape"] == [1, 8, 8] and model.spec["class_names"][3] == "3"


def test_labels_reach_the_loss_with_dropout(tmp_path):
    cfg = load_config(None, [*TINY_UNET, "data.name=digits", "train.steps=1"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False, echo=lambda _: None)
    x0, x1, cond = trainer.batches.next(64, torch.Generator().manual_seed(0))
    assert x0 is None and x1.shape == (64, 1, 8, 8) and cond.shape == (64,)
    assert trainer.loss.cond_dropout == 0.1 and trainer.loss.null_cond == 10
    # each drawn label is its image's label
    pool = trainer.data.train
    for img, label in zip(x1[:5], cond[:5], strict=True):
        matches = (pool == img).flatten(1).all(1)
        assert (trainer.data.labels[matches] == label).all()


@pytest.mark.parametrize(
    ("flags", "shape"),
    [
        (["--num", "20", "--out", "{d}/x.npy"], (20, 1, 8, 8)),
        (["--num", "12", "--cond", "3", "--guidance", "4", "--out", "{d}/x.npy"], (12, 1, 8, 8)),
        (["--num", "30", "--method", "ddim", "--steps", "3", "--out", "{d}/x.npy"], (30, 1, 8, 8)),
    ],
)
def test_sample_cli_writes_images(digits_run, tmp_path, flags, shape, capsys):
    argv = [f.format(d=tmp_path) for f in flags]
    code, out, err = cli(["sample", digits_run, *argv], capsys)
    assert code == 0, err
    x = np.load(tmp_path / "x.npy")
    assert x.shape == shape and np.isfinite(x).all()
    if "--guidance" in flags:
        assert "guidance 4" in out


def test_sample_cli_png_grid_and_guidance_changes_samples(digits_run, tmp_path, capsys):
    code, _, err = cli(["sample", digits_run, "--num", "20", "--out", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    cli(["sample", digits_run, "--num", "8", "--cond", "1", "--guidance", "0", "--out", a], capsys)
    cli(["sample", digits_run, "--num", "8", "--cond", "1", "--guidance", "3", "--out", b], capsys)
    assert not np.allclose(np.load(a), np.load(b))


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--cond", "10"], "--cond: expected a class in [0, 9]"),
        (["--cond", "-1"], "--cond"),
        (["--out", "{d}/x.csv"], "images are written as .npy"),
        (["--interpolate", "{d}/two.csv"], "--interpolate"),
    ],
)
def test_sample_cli_image_errors(digits_run, tmp_path, flags, needle, capsys):
    (tmp_path / "two.csv").write_text("a,b\n0,0\n1,1\n")
    argv = [f.format(d=tmp_path) for f in flags]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.npy")]
    code, _, err = cli(["sample", digits_run, *argv], capsys)
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "x.csv").exists()


def test_eval_cli_reports_fd_for_digits(digits_run, capsys):
    code, out, err = cli(
        ["eval", digits_run, "--methods", "midpoint", "--steps", "1", "--draws", "2"], capsys
    )
    assert code == 0, err
    assert "train/test" in out and "midpoint       1     2" in out


def test_guidance_on_a_points_run_is_an_error(tmp_path, capsys):
    cfg = load_config(
        None,
        [
            "model.hidden=16",
            "model.depth=1",
            "train.steps=2",
            "eval.steps=[1]",
            "eval.methods=[euler]",
            "eval.num_samples=50",
            "eval.draws=1",
        ],
    )
    Trainer(cfg, tmp_path / "pts", progress=False, final_eval=False, echo=lambda _: None).run()
    code, _, err = cli(
        ["sample", tmp_path / "pts", "--guidance", "2", "--out", tmp_path / "x.npy"], capsys
    )
    assert code == 2 and err.startswith(
        "error: --guidance: guidance needs a model trained with labels"
    )


def write_folder(root, n_per_class=10, size=6):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(["bars", "dots"]):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 60, (size, size)).astype(np.uint8) + 150 * k
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")


def write_idx(path, array, code=0x08):
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_image_folder_run_resizes_and_evaluates_in_pixel_space(tmp_path):
    write_folder(tmp_path / "imgs")
    run = train(
        tmp_path / "run",
        [
            f"data.images={tmp_path / 'imgs'}",
            "data.image_size=8",
            "data.name=null",
            "eval.num_samples=2",
        ],
        steps=5,
    )
    model = fm.load(run)
    assert model.spec["shape"] == [1, 8, 8] and model.spec["class_names"] == ["bars", "dots"]
    assert "W2 mean" in (run / "eval.txt").read_text()  # not digits: W2 on the pixels
    assert (run / "samples.png").is_file() and (run / "path.png").is_file()


def test_mnist_idx_run(tmp_path):
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "img.gz", rng.integers(0, 256, (30, 8, 8)))
    write_idx(tmp_path / "lab.gz", rng.integers(0, 3, (30,)))
    run = train(
        tmp_path / "run",
        [
            f"data.images={tmp_path / 'img.gz'}",
            f"data.labels={tmp_path / 'lab.gz'}",
            "data.name=null",
            "eval.num_samples=2",
        ],
        steps=3,
    )
    assert fm.load(run).spec["class_names"] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["data.name=digits", "model.name=mlp"], "model.name"),
        (["model.name=unet"], "model.name"),
        (["sample.guidance=2"], "sample.guidance"),
        (["data.name=digits", "data.source={name: moons}"], "data.source"),
        (["data.images=x", "data.name=digits"], "data.images"),
        (["data.labels=y.gz"], "data.labels"),
        (["data.name=digits", "model.name=unet", "model.dropout=1.0"], "model.dropout"),
    ],
)
def test_image_config_errors_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        cfg = load_config(None, ["train.steps=2", *overrides])
        Trainer(cfg, tmp_path / "run", progress=False, echo=lambda _: None).run()
    assert err.value.key == key, str(err.value)
    assert not (tmp_path / "run").exists()


def test_bad_image_folder_is_a_data_error(tmp_path, capsys):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.png").write_bytes(b"not a png")
    (tmp_path / "cfg.yaml").write_text(
        f"data: {{images: {tmp_path / 'imgs'}, image_size: 8}}\nmodel: {{name: unet}}\n"
    )
    code, _, err = cli(["train", tmp_path / "cfg.yaml", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "x.png" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unet_forward_matches_between_load_and_trainer(digits_run):
    model = fm.load(digits_run)
    x = torch.randn(3, 1, 8, 8)
    t = torch.rand(3)
    out = model(x, t, cond=torch.tensor([0, 5, 10]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_digits_demo_cli_writes_grid_path_and_table(tmp_path, monkeypatch, capsys):
    """`flowmatch demo --dataset digits` wiring, with a tiny U-Net and evaluation in place of
    the demo's (its real figures are measured by benchmarks/digits.py)."""
    import flowmatch.app.demo as demo

    tiny = [o for o in demo.DIGITS_OVERRIDES if not o.startswith(("model.", "eval."))]
    tiny += [
        "model.name=unet",
        "model.channels=8",
        "model.groups=4",
        "eval.steps=[2]",
        "eval.methods=[euler]",
        "eval.draws=1",
    ]
    monkeypatch.setattr(demo, "DIGITS_OVERRIDES", tuple(tiny))
    code, out, err = cli(
        ["demo", "--dataset", "digits", "--steps", "3", "--out", tmp_path / "d", "--no-progress"],
        capsys,
    )
    assert code == 0, err
    assert "digits demo: 3 steps" in out and "train/test" in out
    for name in ("samples.png", "path.png", "eval.txt"):
        assert (tmp_path / "d" / name).is_file()
    code, _, err = cli(["demo", "--dataset", "mnist"], capsys)
    assert code == 2 and "--dataset: expected checkerboard, digits, fashion, names, airports" in err


def test_relative_image_paths_are_stored_absolute(tmp_path, monkeypatch, capsys):
    """A config naming its images relative to its own folder leaves a run that `flowmatch
    eval` can rebuild from any working directory (config.yaml holds absolute paths)."""
    rng = np.random.default_rng(2)
    data = tmp_path / "cfgdir"
    data.mkdir()
    write_idx(data / "img.gz", rng.integers(0, 256, (30, 8, 8)))
    write_idx(data / "lab.gz", rng.integers(0, 3, (30,)))
    (data / "run.yaml").write_text("data: {images: img.gz, labels: lab.gz}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(data / "run.yaml", [*TINY_UNET, "train.steps=2", "eval.num_samples=2"])
    Trainer(cfg, tmp_path / "run", base_dir=data, progress=False, echo=lambda _: None).run()
    stored = load_config(tmp_path / "run" / "config.yaml").data
    assert stored.images == str((data / "img.gz").resolve())
    assert stored.labels == str((data / "lab.gz").resolve())
    code, _, err = cli(
        [
            "eval",
            tmp_path / "run",
            "--methods",
            "euler",
            "--steps",
            "1",
            "--draws",
            "1",
            "--num",
            "2",
        ],
        capsys,
    )
    assert code == 0, err


def test_reflow_of_a_labelled_run_keeps_the_labels(digits_run, tmp_path):
    """Reflow of a class-conditional run integrates each source point with a label (the
    classes in turn, at the run's guidance) and the pairs keep them: the pair of label k is
    what the model's own sampler gives for class k; the new run trains on them."""
    from flowmatch.app.reflow import reflow_run
    from flowmatch.rectify import load_pairs

    out = tmp_path / "reflow"
    reflow_run(
        digits_run, out, num=40, train_steps=2, progress=False, final_eval=False, echo=lambda _: 0
    )
    pairs = load_pairs(out / "pairs.safetensors")
    assert pairs.cond is not None and pairs.cond.tolist() == [k // 4 for k in range(40)]
    model = fm.load(digits_run)
    direct = fm.sample(
        model, pairs.x0, method="dopri5", cond=pairs.cond, guidance=2.0, atol=1e-5, rtol=1e-5
    )
    # the same batch, solver and tolerances: the same adaptive steps, so equal to float noise
    torch.testing.assert_close(pairs.x1, direct, rtol=0, atol=1e-5)
    assert fm.load(out).spec["class_names"] == model.spec["class_names"]
