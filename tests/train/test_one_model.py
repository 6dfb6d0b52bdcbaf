"""One model from training to sampling: what the trainer evaluates is what ``fm.load`` gives,
the sampler rules are the model's wherever it is sampled, and a user's own network goes
through the CLI. (Each of these failed before FlowModel: the trainer evaluated the bare
network as a linear velocity model, ``flowmatch sample`` let the SDE sample a Schrödinger
bridge, and only mlp/unet could be named in a config.)"""

import textwrap

import numpy as np
import pytest

import flowmatch as fm
from flowmatch.cli import main

TINY = [
    "model.hidden=32",
    "model.depth=2",
    "train.steps=150",
    "train.batch_size=64",
    "train.log_every=50",
    "train.checkpoint_every=150",
    "data.num_train=2000",
    "data.num_holdout=1000",
    "eval.steps=[4]",
    "eval.draws=1",
    "eval.num_samples=400",
]


def cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "path.schedule=ddpm",
            "path.timesteps=100",
            "time.sampler=discrete",
            "objective.prediction=epsilon",
            "eval.methods=[ddim,midpoint]",
        ],
        ["path.schedule=vp", "objective.prediction=epsilon", "eval.methods=[ddim,midpoint]"],
        ["path.schedule=cosine", "objective.prediction=x1", "eval.methods=[ddim,midpoint]"],
    ],
    ids=["ddpm-epsilon", "vp-epsilon", "cosine-x1"],
)
def test_the_trainers_eval_is_flowmatch_eval(tmp_path, capsys, overrides):
    run = tmp_path / "run"
    (tmp_path / "empty.yaml").write_text("")
    argv = ["train", tmp_path / "empty.yaml", "--out", run, "--no-progress"]
    code, _, err = cli([*argv, *sets([*TINY, *overrides])], capsys)
    assert code == 0, err
    by_trainer = (run / "eval.txt").read_text()
    argv = ["eval", run, "--steps", "4", "--methods", "ddim,midpoint", "--draws", 1, "--num", 400]
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    # written to its own folder: the same table, and the trainer's report untouched
    assert (run / "eval" / "eval.txt").read_text() == by_trainer
    assert (run / "eval.txt").read_text() == by_trainer
    assert (run / "eval" / "eval.csv").read_text().splitlines()[0].endswith(",points,draws")


def test_sde_is_refused_on_a_bridge_run(tmp_path, capsys):
    (tmp_path / "sb.yaml").write_text("coupling: {name: schrodinger_bridge, sigma: 0.5}\n")
    run = tmp_path / "sb"
    argv = ["train", tmp_path / "sb.yaml", "--out", run, "--no-progress"]
    code, _, err = cli([*argv, *sets([*TINY, "train.steps=5", "eval.methods=[euler]"])], capsys)
    assert code == 0, err
    assert fm.load(run).path == fm.BrownianBridgePath(0.5)
    for method in ("sde", "ddim", "ddpm"):
        out = tmp_path / f"{method}.npy"
        code, _, err = cli(["sample", run, "--method", method, "--out", out], capsys)
        assert code == 2 and not out.exists()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --method:") and method in lines[0]
        assert "Gaussian affine path" in lines[0]
    code, out, err = cli(
        ["sample", run, "--method", "euler", "--steps", 4, "--out", tmp_path / "ok.npy"], capsys
    )
    assert code == 0, err


PLUGIN = """
import torch
from torch import nn

import flowmatch as fm


@fm.models.register("cli-ringnet")
class RingNet(nn.Module):
    def __init__(self, dim: int = 2, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, dim),
        )

    def forward(self, x, t, cond=None):
        return self.body(torch.cat([x, t[:, None]], 1))
"""


def test_a_registered_network_goes_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clinets.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "cfg.yaml").write_text("model: {name: cli-ringnet, width: 48}\n")
    argv = ["train", "cfg.yaml", "--out", "run", "--no-progress", "--plugin", "clinets"]
    code, _, err = cli([*argv, *sets(TINY[2:])], capsys)
    assert code == 0, err
    model = fm.load("run")
    assert type(model.net).__name__ == "RingNet" and model.net.body[0].out_features == 48
    code, out, err = cli(["sample", "run", "--num", 50, "--out", "x.npy"], capsys)
    assert code == 0 and np.load("x.npy").shape == (50, 2), err
    code, out, err = cli(["eval", "run", "--steps", 2, "--draws", 1, "--num", 200], capsys)
    assert code == 0 and "midpoint" in out, err
    # an unknown name is one line, exit 2, naming the key and how to register
    (tmp_path / "bad.yaml").write_text("model: {name: nonet}\n")
    code, _, err = cli(["train", "bad.yaml", "--out", "bad", "--no-progress"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "model.name" in lines[0] and "--plugin" in lines[0]
    code, _, err = cli(["train", "cfg.yaml", "--out", "bad", "--plugin", "nowhere_mod"], capsys)
    assert code == 2 and "--plugin: cannot import 'nowhere_mod'" in err
    # bad constructor arguments are named too
    (tmp_path / "args.yaml").write_text("model: {name: cli-ringnet, depth: 3}\n")
    code, _, err = cli(["train", "args.yaml", "--out", "bad", "--plugin", "clinets"], capsys)
    assert code == 2 and "model" in err and "depth" in err and "width" in err, err
    assert not (tmp_path / "bad").exists()
