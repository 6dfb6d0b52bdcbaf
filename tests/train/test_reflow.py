"""Couplings in training runs, and `flowmatch reflow` (reflow and one-step distillation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_trainer import TINY, cli, sets

import flowmatch as fm
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def train(out, overrides, steps=30):
    cfg = load_config(None, [*TINY, f"train.steps={steps}", *overrides])
    return Trainer(cfg, out, progress=False, final_eval=False, echo=lambda _: None).run()


@pytest.mark.parametrize(
    "coupling",
    [
        ["coupling.name=minibatch_ot"],
        ["coupling.name=minibatch_ot", "coupling.method=sinkhorn"],
        ["coupling.name=schrodinger_bridge", "coupling.sigma=0.3"],
    ],
    ids=["ot-exact", "ot-sinkhorn", "sb"],
)
def test_coupling_runs_train_and_are_reproducible(tmp_path, coupling):
    """A run with each coupling trains, and the same seed gives the same weights."""
    a = train(tmp_path / "a", coupling, steps=20)
    train(tmp_path / "b", coupling, steps=20)
    assert np.isfinite(a.final_loss)
    wa = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_coupling_on_a_toy_source(tmp_path):
    """OT between a toy source and toy data (8gaussians -> moons)."""
    result = train(
        tmp_path / "r",
        ["data.name=moons", "data.source.name=8gaussians", "coupling.name=minibatch_ot"],
    )
    assert np.isfinite(result.final_loss)


def test_model_init_warm_starts_from_a_run(tmp_path):
    """model.init loads the EMA weights of another run (checked with a learning rate ~0)."""
    train(tmp_path / "base", [])
    base = fm.load(tmp_path / "base")
    train(tmp_path / "warm", [f"model.init={tmp_path / 'base'}", "optim.lr=1e-30"], steps=1)
    warm = load_file(str(tmp_path / "warm" / "model" / "model.safetensors"))
    for k, v in base.net.state_dict().items():
        torch.testing.assert_close(warm[k], v, rtol=0, atol=1e-20)


def test_model_init_with_another_architecture_is_a_config_error(tmp_path, capsys):
    train(tmp_path / "base", [])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {steps: 2}\n")
    argv = ["train", cfg, "--out", tmp_path / "r", "--set", "model.hidden=48"]
    argv += ["--set", f"model.init={tmp_path / 'base'}", "--no-progress"]
    code, _, err = cli(argv, capsys)
    assert code == 2 and "model.init" in err and "architecture" in err
    assert not (tmp_path / "r").exists()


def test_reflow_and_distill_end_to_end(tmp_path, capsys):
    """train -> reflow (pairs + warm start) -> distill -> sample in one step; resume; eval."""
    base, r2, d = tmp_path / "base", tmp_path / "r2", tmp_path / "d"
    train(base, [], steps=40)
    tiny = sets([*TINY, "eval.steps=[1]", "eval.methods=[euler]", "eval.draws=1"])
    code, out, err = cli(
        ["reflow", base, "--out", r2, "--num", 300, "--train-steps", 20, "--no-progress", *tiny],
        capsys,
    )
    assert code == 0, err
    assert "wrote 300 pairs" in out and "straightness" in out
    pairs = fm.rectify.load_pairs(r2 / "pairs.safetensors")
    assert len(pairs) == 300
    # the pairs are the base model's own map of its noise (dopri5; the same batch, so the
    # same adaptive steps: equal to float rounding)
    again, _ = fm.rectify.reflow_pairs(fm.load(base), pairs.x0)
    torch.testing.assert_close(again.x1, pairs.x1)
    cfg = load_config(r2 / "config.yaml")
    assert cfg.data.pairs == str((r2 / "pairs.safetensors").resolve())
    assert cfg.model.init == str(base.resolve()) and cfg.train.steps == 20

    code, out, err = cli(
        [
            "reflow",
            r2,
            "--out",
            d,
            "--distill",
            "--num",
            200,
            "--train-steps",
            10,
            "--no-progress",
            *tiny,
        ],
        capsys,
    )
    assert code == 0, err
    cfg = load_config(d / "config.yaml")
    assert (cfg.time.sampler, cfg.time.value) == ("constant", 0.0)
    assert (cfg.sample.steps, cfg.sample.method) == (1, "euler")
    code, out, err = cli(
        ["sample", d, "--num", 50, "--out", tmp_path / "s.npy"], capsys
    )  # the run's own sampler: one Euler step
    assert code == 0 and "(euler, NFE 1)" in out
    assert np.load(tmp_path / "s.npy").shape == (50, 2)

    code, out, err = cli(
        ["reflow", r2, "--out", d, "--resume", "--set", "train.steps=15", "--no-progress"], capsys
    )
    assert code == 0, err
    assert "resumed from" in out and "done: 15 steps" in out

    code, out, err = cli(
        ["eval", d, "--steps", "1", "--methods", "euler", "--draws", 1, "--num", 100], capsys
    )
    assert code == 0 and "straightness" in out
    assert "straightness" in (d / "eval" / "eval.txt").read_text()


def test_reflow_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    base = tmp_path / "base"
    train(base, [], steps=5)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases = [
        (["reflow", tmp_path / "nothing", "--out", tmp_path / "o1"], "not a run directory"),
        (["reflow", base, "--out", base], "already holds a run"),
        (["reflow", base, "--out", tmp_path / "full"], "not empty"),
        (["reflow", base, "--out", tmp_path / "o2", "--set", "train.stepz=3"], "train.stepz"),
        (["reflow", base, "--out", tmp_path / "o3", "--resume"], "no run to resume"),
        (["reflow", base, "--out", tmp_path / "o4", "--num", 0], "--num"),
    ]
    for argv, needle in cases:
        code, _, err = cli([*argv, "--no-progress"], capsys)
        assert code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (argv, err)
    for name in ("o1", "o2", "o3", "o4"):
        assert not (tmp_path / name).exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_pairs_with_a_coupling_is_a_config_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {steps: 2}\n")
    argv = ["train", cfg, "--out", tmp_path / "r", "--no-progress"]
    argv += sets(["data.pairs=p.safetensors", "coupling.name=minibatch_ot"])
    code, _, err = cli(argv, capsys)
    assert code == 2 and "coupling.name" in err and "pairs" in err
    assert not (tmp_path / "r").exists()


def test_sample_interpolate_between_two_rows(tmp_path, capsys):
    """`flowmatch sample --interpolate FILE` writes --num points from row 1 to row 2 of FILE.

    The endpoints are encoded and decoded with dopri5 at tol 1e-5 in float32, on batches of 2
    and 5 points (the step sizes follow each batch's RMS error), so they come back to about
    5e-3 here; 2e-2 checks the round trip without pinning solver noise."""
    train(tmp_path / "run", [], steps=20)
    ends = np.array([[1.5, -0.5], [-2.0, 1.0], [9.0, 9.0]], dtype=np.float32)
    np.save(tmp_path / "ends.npy", ends)
    argv = ["sample", tmp_path / "run", "--interpolate", tmp_path / "ends.npy", "--num", 5]
    argv += ["--method", "dopri5", "--out", tmp_path / "path.npy"]
    code, out, err = cli(argv, capsys)
    assert code == 0, err
    assert "5 interpolants between rows 1 and 2 of ends.npy" in out
    path = np.load(tmp_path / "path.npy")
    assert path.shape == (5, 2)
    np.testing.assert_allclose(path[[0, -1]], ends[:2], atol=2e-2)

    np.save(tmp_path / "one.npy", ends[:1])
    bad = ["sample", tmp_path / "run", "--interpolate", tmp_path / "one.npy"]
    code, _, err = cli([*bad, "--out", tmp_path / "x.npy"], capsys)
    assert code == 2 and "at least 2 rows" in err and not (tmp_path / "x.npy").exists()


def test_meanflow_objective_trains_samples_and_evaluates(tmp_path, capsys):
    """objective.name=meanflow: a two-time model, sampled by average-velocity jumps everywhere
    (sample, eval); incompatible settings are named config errors."""
    run = tmp_path / "mf"
    train(run, ["objective.name=meanflow", "sample.steps=1"], steps=20)
    model = fm.load(run)
    assert model.two_times and model.spec["arch"]["two_times"] is True
    # a two-time model embeds time at low frequencies (its loss differentiates in time)
    assert model.spec["arch"]["time_frequency"] == 10.0 and model.net.time_frequency == 10.0
    code, out, err = cli(["sample", run, "--num", 20, "--out", tmp_path / "s.npy"], capsys)
    assert code == 0 and "(average velocity, NFE 1)" in out, err
    code, out, err = cli(
        ["eval", run, "--steps", "1,2", "--methods", "euler,midpoint", "--draws", 1, "--num", 100],
        capsys,
    )
    assert code == 0, err
    assert "average" in out and "euler" not in out.split("straightness")[0]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("objective: {name: meanflow}\ntrain: {steps: 2}\n")
    for override, key in (
        ("objective.prediction=x1", "objective.prediction"),
        ("coupling.name=schrodinger_bridge", "coupling.name"),
        ("path.schedule=cosine", "path.schedule"),
    ):
        argv = ["train", cfg, "--out", tmp_path / "bad", "--set", override, "--no-progress"]
        code, _, err = cli(argv, capsys)
        assert code == 2 and key in err and "meanflow" in err, err
        assert not (tmp_path / "bad").exists()


def test_meanflow_with_minibatch_ot_and_time_frequency(tmp_path):
    """objective meanflow takes the minibatch OT coupling (its loss pairs each batch), the
    model tangent and gap time pairs, and an explicit model.time_frequency, which the saved
    model is rebuilt with; a flow-matching run keeps the 1000-rad default."""
    run = tmp_path / "mf-ot"
    overrides = ["objective.name=meanflow", "coupling.name=minibatch_ot", "model.time_frequency=3"]
    overrides += ["objective.tangent=model", "objective.time_pairs=gap"]
    cfg = load_config(None, [*TINY, "train.steps=5", *overrides])
    trainer = Trainer(cfg, run, progress=False, final_eval=False, echo=lambda _: None)
    trainer.run()
    loss_fn = trainer.loss  # the config's MeanFlow options reached the loss
    assert (loss_fn.tangent, loss_fn.time_pairs) == ("model", "gap")
    assert isinstance(loss_fn.coupling, fm.couplings.MinibatchOT)
    model = fm.load(run)
    assert model.two_times and model.net.time_frequency == 3.0
    assert model.net.time_embed.freqs.max().item() == pytest.approx(3.0)
    train(tmp_path / "fm", [], steps=2)
    assert fm.load(tmp_path / "fm").spec["arch"]["time_frequency"] == 1000.0
