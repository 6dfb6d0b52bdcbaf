"""DiscreteFlowModel, its model files (config.json + safetensors), and fm.train / fm.load on
token data: learning a toy language, loading it back, bit-identical resume, bad data and
tampered configs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from discrete_toys import JOINT, LabelledToy, exact_model
from safetensors.torch import load_file
from torch import nn

import flowmatch as fm
from flowmatch import discrete as fd
from flowmatch.errors import DataError, ModelFileError
from flowmatch.schedules import Cosine
from flowmatch.train.api import default_loss

F64 = torch.float64
L, V = 4, 5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def toy_language(n: int = 512, seed: int = 0) -> torch.Tensor:
    """Sequences x^{i+1} = x^i + 1 mod V from a random first token: V valid sequences of the
    V^L = 625 (a random sequence is valid with probability 1/125)."""
    start = torch.randint(0, V, (n,), generator=gen(seed))
    return (start[:, None] + torch.arange(L)) % V


def valid_fraction(x: torch.Tensor) -> float:
    return float(((x[:, 1:] - x[:, :-1]) % V == 1).all(1).to(F64).mean())


def small_model(source="mask", schedule=None, num_classes=None) -> fd.DiscreteFlowModel:
    path = fd.MixturePath(V, source=source, schedule=schedule)
    net = fm.models.SequenceTransformer(
        L,
        vocab_size=path.num_ids,
        out_size=V,
        dim=32,
        depth=1,
        heads=2,
        num_classes=num_classes,
    )
    return fd.DiscreteFlowModel(net, path, length=L)


# ------------------------------------------------------------------------- training
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_training_learns_a_toy_language_and_loads_back(tmp_path, source):
    """200 steps (batch 64, lr 3e-3): the loss of the last 20-step window is below 0.8 x the
    first one's, and 8-step samples of the EMA model are valid sequences at least 40% of
    the time (measured 78% mask / 73% uniform; a random sequence: 0.8%). fm.load gives a
    DiscreteFlowModel whose samples with the same generator are identical."""
    torch.manual_seed(0)
    ema = fm.train(
        small_model(source),
        toy_language(),
        steps=200,
        batch_size=64,
        lr=3e-3,
        log_every=20,
        out=tmp_path / "run",
        progress=False,
        echo=lambda _: None,
    )
    assert isinstance(ema, fd.DiscreteFlowModel) and not ema.training
    with open(tmp_path / "run" / "metrics.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0], losses
    x = fd.sample(ema, 2000, steps=8, generator=gen(1))
    assert valid_fraction(x) > 0.4, valid_fraction(x)
    loaded = fm.load(tmp_path / "run")
    assert isinstance(loaded, fd.DiscreteFlowModel) and not loaded.training
    assert loaded.path == ema.path and loaded.length == L
    assert torch.equal(
        fd.sample(loaded, 500, steps=8, generator=gen(2)),
        fd.sample(ema, 500, steps=8, generator=gen(2)),
    )
    raw = fm.load(tmp_path / "run", weights="model")  # the raw weights are not the EMA's
    assert isinstance(raw, fd.DiscreteFlowModel)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(raw.net.parameters(), loaded.net.parameters(), strict=True)
    )


def _crash_at(step: int, inner):
    """A loss that raises on its ``step``-th call (a process killed mid-run)."""
    calls = {"n": 0}

    class Crash:
        path = inner.path

        def __call__(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == step:
                raise KeyboardInterrupt("killed")
            return inner(*args, **kwargs)

    return Crash()


def test_a_killed_run_resumes_bit_identical(tmp_path):
    """200 steps straight vs killed at step 130 and resumed from the step-100 checkpoint: the
    same model and EMA weights to the bit (CPU)."""

    def run(out, crash=False, resume=False):
        torch.manual_seed(0)  # the same initial weights each time
        model = small_model("mask", schedule=Cosine())
        loss = default_loss(model)
        return fm.train(
            model,
            toy_language(),
            steps=200,
            batch_size=32,
            checkpoint_every=50,
            out=out,
            progress=False,
            echo=lambda _: None,
            resume=resume,
            loss=_crash_at(130, loss) if crash else loss,
        )

    run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", crash=True)
    latest = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())[-1]
    assert latest == "step_00000100"
    run(tmp_path / "killed", resume=True)
    for name in ("model", "ema"):
        a = load_file(str(tmp_path / "straight" / "model" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "killed" / "model" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_default_loss_of_a_labelled_model_drops_labels():
    loss = default_loss(small_model(num_classes=3))
    assert isinstance(loss, fd.DiscreteFlowMatchingLoss)
    assert loss.kind == "ce" and loss.cond_dropout == 0.1 and loss.null_cond == 3
    plain = default_loss(small_model())
    assert plain.cond_dropout == 0.0 and plain.null_cond is None


def test_labelled_token_data_trains():
    model = small_model(num_classes=2)
    labels = toy_language()[:, 0] % 2
    ema = fm.train(
        model,
        toy_language(),
        labels=labels,
        steps=3,
        batch_size=16,
        progress=False,
        echo=lambda _: None,
    )
    x = fd.sample(ema, 6, steps=2, cond=torch.tensor([0, 1] * 3), guidance=2.0, generator=gen(0))
    assert x.shape == (6, L)


# ------------------------------------------------------------------------ bad data
def test_float_data_for_a_discrete_model_is_rejected():
    with pytest.raises(DataError, match="integer token ids"):
        fm.train(small_model(), toy_language().float(), steps=1, progress=False)


def test_token_ids_for_a_continuous_model_are_rejected():
    with pytest.raises(DataError, match="DiscreteFlowModel"):
        fm.train(fm.FlowModel(fm.models.MLP(dim=4)), toy_language(), steps=1, progress=False)


def test_sequences_of_another_length_are_rejected():
    with pytest.raises(DataError, match="shape"):
        fm.train(small_model(), toy_language()[:, :3], steps=1, progress=False)


def test_an_unregistered_net_fails_before_training(tmp_path):
    with pytest.raises(ModelFileError, match="cannot save"):
        fm.train(
            exact_model(JOINT),
            torch.zeros(8, 2, dtype=torch.long),
            steps=1,
            out=tmp_path / "u",
            progress=False,
        )
    assert not (tmp_path / "u").exists()


# --------------------------------------------------------------------- model files
def test_save_and_load_round_trip(tmp_path):
    """A labelled model with info and a Cosine kappa: config.json holds kind "discrete", the
    path, length, labels and info; loading gives the same model (weights, path, labels)."""
    torch.manual_seed(0)
    model = small_model("uniform", schedule=Cosine(), num_classes=3)
    model.info = {"data": "toy", "ignored": 1}
    with torch.no_grad():  # the output layer starts at zero: make the samples depend on it
        for p in model.parameters():
            p.normal_(0.0, 0.5, generator=gen(4))
    model.save_pretrained(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "config.json").read_text())
    assert spec["kind"] == "discrete" and spec["length"] == L
    assert spec["path"] == model.path.to_dict()
    assert spec["num_classes"] == 3 and spec["null_class"] == 3 and spec["vocab"] is None
    loaded = fd.DiscreteFlowModel.from_pretrained(tmp_path / "m")
    assert loaded.path == model.path and loaded.num_classes == 3 and loaded.null_class == 3
    assert loaded.info == {"data": "toy"}  # only the descriptive keys are kept
    a, b = model.net.state_dict(), loaded.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cond = torch.tensor([0, 1, 2, 0])
    assert torch.equal(
        fd.sample(model, 4, steps=3, cond=cond, generator=gen(3)),
        fd.sample(loaded, 4, steps=3, cond=cond, generator=gen(3)),
    )


def test_a_vocabulary_is_kept_in_the_model_file(tmp_path):
    from flowmatch.data.text import Vocabulary

    vocab = Vocabulary(list("abcd"))  # <pad> + 4 characters: V = 5 tokens
    model = small_model()
    model.vocab = vocab
    model.save_pretrained(tmp_path / "m")
    loaded = fm.load(tmp_path / "m")
    assert loaded.vocab is not None and loaded.vocab.tokens == vocab.tokens


def test_from_pretrained_rejects_a_continuous_model(tmp_path):
    fm.FlowModel(fm.models.MLP(dim=2), shape=(2,)).save_pretrained(tmp_path / "c")
    with pytest.raises(ValueError, match="not a DiscreteFlowModel"):
        fd.DiscreteFlowModel.from_pretrained(tmp_path / "c")


def _tamper(directory, **changes):
    cfg = directory / "config.json"
    spec = json.loads(cfg.read_text())
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        elif isinstance(value, dict):
            spec[key].update(value)
        else:
            spec[key] = value
    cfg.write_text(json.dumps(spec))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"path": {"source": "gaussian"}}, "source"),
        ({"path": {"vocab_size": 1}}, "vocab_size"),
        ({"path": {"source": [0.5, 0.5]}}, "source"),
        ({"path": {"kappa": {"schedule": "vp"}}}, "kappa"),
        ({"length": 0}, "length"),
        ({"length": "4"}, "length"),
        ({"length": None}, "missing key 'length'"),
        ({"path": None}, "missing key 'path'"),
        ({"arch": "transformer"}, "arch"),
    ],
)
def test_a_tampered_config_is_a_model_file_error_naming_config_json(tmp_path, changes, match):
    small_model().save_pretrained(tmp_path / "m")
    _tamper(tmp_path / "m", **changes)
    with pytest.raises(ModelFileError, match=match) as err:
        fm.load(tmp_path / "m")
    assert "config.json" in str(err.value)


def test_weights_of_another_architecture_are_a_model_file_error(tmp_path):
    small_model().save_pretrained(tmp_path / "m")
    _tamper(tmp_path / "m", arch={"vocab_size": V})  # the saved embedding has V + 1 rows
    with pytest.raises(ModelFileError, match="do not match"):
        fm.load(tmp_path / "m")


# ---------------------------------------------------------------- DiscreteFlowModel
def test_the_model_checks_its_arguments():
    path = fd.MixturePath(V)
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"nn\.Module"):
        fd.DiscreteFlowModel(lambda x, t: x, path, length=L)
    with pytest.raises(ValueError, match="MixturePath"):
        fd.DiscreteFlowModel(net, fm.AffinePath(), length=L)
    for length in (0, True, 2.0, None):
        with pytest.raises(ValueError, match="length"):
            fd.DiscreteFlowModel(net, path, length=length)

    class Vocab:
        size = V + 1

    with pytest.raises(ValueError, match="vocab"):
        fd.DiscreteFlowModel(net, path, length=L, vocab=Vocab())


def test_the_model_reads_labels_from_its_net():
    model = fd.DiscreteFlowModel(LabelledToy(), fd.MixturePath(4), length=3)
    assert model.num_classes == 2 and model.null_class == 2
    model = fd.DiscreteFlowModel(nn.Linear(2, 2), fd.MixturePath(4), length=3, num_classes=7)
    assert model.num_classes == 7 and model.null_class == 7  # the null class defaults to K
    assert "length=3" in repr(model) and "num_classes=7" in repr(model)
    assert model.shape == (3,) and model.source is None and not model.two_times


def test_a_net_of_the_wrong_output_shape_is_named():
    class Wrong(nn.Module):
        def forward(self, x, t):
            return torch.zeros(*x.shape, 7)

    model = fd.DiscreteFlowModel(Wrong(), fd.MixturePath(5), length=3)
    with pytest.raises(ValueError, match=r"must return logits of shape \(2, 3, 5\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2))


def test_unmasked_tokens_are_point_masses_of_the_log_posterior():
    """Mask source: wherever x_t holds a data token the posterior is that token with
    probability 1, whatever the net says; masked positions get the net's softmax."""

    class Constant(nn.Module):
        def forward(self, x, t):
            return torch.arange(5.0).expand(*x.shape, 5)

    model = fd.DiscreteFlowModel(Constant(), fd.MixturePath(5), length=3)
    x = torch.tensor([[5, 2, 5], [0, 5, 4]])
    logp = model.log_posterior(x, torch.full((2,), 0.5))
    assert logp.dtype == F64
    assert torch.equal(
        logp[0, 1], torch.tensor([-math.inf, -math.inf, 0.0, -math.inf, -math.inf], dtype=F64)
    )
    assert torch.equal(logp[1, 2].exp(), torch.tensor([0.0, 0, 0, 0, 1], dtype=F64))
    want = torch.arange(5.0, dtype=F64).log_softmax(-1)
    assert torch.allclose(logp[0, 0], want, atol=1e-12) and torch.allclose(
        logp[1, 1], want, atol=1e-12
    )
    # the uniform source has no point masses: every position is the net's softmax
    uniform = fd.DiscreteFlowModel(Constant(), fd.MixturePath(5, source="uniform"), length=3)
    assert torch.allclose(
        uniform.log_posterior(x.clamp(max=4), torch.zeros(2)), want.expand(2, 3, 5), atol=1e-12
    )
