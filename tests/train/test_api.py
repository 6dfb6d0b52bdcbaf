"""fm.train: your own network and data (tensor, Dataset, DataLoader, pairs) through the loop
the CLI uses, with resume."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import flowmatch as fm
from flowmatch.errors import DataError, ModelFileError, RunExistsError


def ring(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    angle = 2 * torch.pi * torch.rand(n, generator=g)
    return 3 * torch.stack([angle.cos(), angle.sin()], 1) + 0.1 * torch.randn(n, 2, generator=g)


class RingSet(Dataset):
    """A map-style dataset of (point, label) items: the label is the point's half-plane."""

    def __init__(self, n: int = 512) -> None:
        self.x = ring(n)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], int(self.x[i, 1] > 0)


@fm.models.register("test-labelnet")
class LabelNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mlp = fm.models.MLP(dim=2, hidden=32, depth=2)
        self.embed = nn.Embedding(3, 2)

    def forward(self, x, t, cond=None):
        return self.mlp(x + (self.embed(cond) if cond is not None else 0), t)


def small():
    return fm.FlowModel(fm.models.MLP(dim=2, hidden=32, depth=2))


def test_training_on_a_tensor_learns_the_data():
    """300 steps on a ring of radius 3: samples have a mean radius within 0.5 of 3 (the N(0,
    I) source's is 1.25)."""
    ema = fm.train(small(), ring(2000), steps=300, batch_size=128, lr=3e-3, progress=False)
    assert isinstance(ema, fm.FlowModel) and not ema.training and ema.shape == (2,)
    x = fm.sample(ema, torch.randn(1000, 2, generator=torch.Generator().manual_seed(1)), steps=8)
    assert abs(x.norm(dim=1).mean().item() - 3.0) < 0.5


def test_a_dataset_of_labelled_items_reaches_the_net_with_labels():
    seen = []

    class Recorder(LabelNet):
        def forward(self, x, t, cond=None):
            seen.append(cond)
            return super().forward(x, t, cond)

    flow = fm.FlowModel(Recorder(), num_classes=2)
    fm.train(flow, RingSet(), steps=3, batch_size=16, progress=False)
    assert all(c is not None and c.shape == (16,) for c in seen[:3])
    assert set(torch.cat(seen[:3]).tolist()) <= {0, 1, 2}  # 2: dropped to the null class


def test_a_dataloader_with_workers_trains():
    loader = DataLoader(TensorDataset(ring(256)), batch_size=32, shuffle=True, num_workers=2)
    ema = fm.train(small(), loader, steps=12, progress=False)
    assert ema.shape == (2,)


def test_fixed_pairs_train_the_pairs_map():
    x0 = torch.randn(256, 2)
    pairs = fm.rectify.Pairs(x0, x0 + 2.0)
    loss = fm.FlowMatchingLoss(time_sampler=fm.time.Constant(0.0))
    ema = fm.train(small(), pairs, steps=200, batch_size=64, lr=3e-3, loss=loss, progress=False)
    # the one-step map x0 -> x0 + 2 is learned (an Euler step at t=0)
    z = torch.randn(100, 2)
    assert (fm.sample(ema, z, steps=1, method="euler") - z - 2.0).abs().mean() < 0.2


def _crash_at(step: int, inner):
    """A loss that raises on its ``step``-th call (a process killed mid-run)."""
    calls = {"n": 0}

    class Crash:
        path, prediction = inner.path, inner.prediction

        def __call__(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == step:
                raise KeyboardInterrupt("killed")
            return inner(*args, **kwargs)

    return Crash()


@pytest.mark.parametrize(
    "make_data",
    [
        lambda: ring(300),
        lambda: RingSet(300),
        lambda: DataLoader(TensorDataset(ring(200)), batch_size=32, shuffle=True),
        lambda: DataLoader(
            TensorDataset(ring(200)),
            batch_size=32,
            shuffle=True,
            generator=torch.Generator().manual_seed(5),
        ),
    ],
    ids=["tensor", "dataset", "loader", "loader-own-generator"],
)
def test_a_killed_run_resumes_bit_identical(tmp_path, make_data):
    """40 steps straight vs killed at step 25 and resumed from the step-20 checkpoint: the
    same weights to the bit (CPU). A 200-point loader of batch 32 crosses 6 epochs."""

    def run(out, crash=None, resume=False):
        torch.manual_seed(0)  # the same initial weights each time
        data = make_data()
        labelled = isinstance(data, RingSet)
        net = LabelNet() if labelled else fm.models.MLP(dim=2, hidden=16, depth=2)
        flow = fm.FlowModel(net, num_classes=2 if labelled else None)
        loss = fm.train.api.default_loss(flow)
        return fm.train(
            flow,
            data,
            steps=40,
            batch_size=32,
            checkpoint_every=10,
            out=out,
            progress=False,
            resume=resume,
            loss=_crash_at(25, loss) if crash else loss,
        )

    run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", crash=True)
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())[-1] == (
        "step_00000020"
    )
    run(tmp_path / "killed", resume=True)
    for name in ("model", "ema"):
        a = load_file(str(tmp_path / "straight" / "model" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "killed" / "model" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_trained_run_loads_in_a_fresh_process_and_samples_from_the_cli(tmp_path, capsys):
    fm.train(small(), ring(500), steps=20, batch_size=64, out=tmp_path / "run", progress=False)
    model = fm.load(tmp_path / "run")
    assert model.shape == (2,) and model.prediction == "velocity"
    from flowmatch.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["sample", str(tmp_path / "run"), "--num", "30", "--out", str(tmp_path / "x.npy")])
    assert exit_.value.code == 0
    assert "wrote 30 samples (midpoint, NFE 32)" in capsys.readouterr().out


def test_bad_input_is_named(tmp_path):
    with pytest.raises(DataError, match="expected a tensor"):
        fm.train(small(), [1, 2, 3], steps=1, progress=False)
    with pytest.raises(DataError, match=r"shape \(3,\)"):
        fm.train(fm.FlowModel(fm.models.MLP(dim=2), shape=(2,)), torch.randn(9, 3), steps=1)
    with pytest.raises(DataError, match="labels"):
        fm.train(small(), torch.randn(8, 2), labels=torch.zeros(5, dtype=torch.long), steps=1)
    cosine = fm.FlowMatchingLoss(fm.AffinePath(fm.schedules.Cosine()))
    with pytest.raises(ValueError, match="loss: it trains on"):
        fm.train(small(), torch.randn(8, 2), loss=cosine, steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        fm.train(small(), torch.randn(8, 2), steps=0)
    with pytest.raises(ModelFileError, match="register"):
        fm.train(fm.FlowModel(nn.Linear(2, 2)), torch.randn(8, 2), steps=1, out=tmp_path / "u")
    assert not (tmp_path / "u").exists()
    fm.train(small(), torch.randn(8, 2), steps=2, batch_size=4, out=tmp_path / "r", progress=False)
    with pytest.raises(RunExistsError, match="already holds a run"):
        fm.train(small(), torch.randn(8, 2), steps=2, out=tmp_path / "r", progress=False)
    with pytest.raises(RunExistsError, match="no run to resume"):
        fm.train(small(), torch.randn(8, 2), steps=2, out=tmp_path / "n", resume=True)
