"""MixedFlowModel: one network for continuous and categorical columns. The sampler against an
oracle net (exact velocity and posteriors), the loss term by term, files, fm.train on a
table whose category sets a column's mean, and bad arguments."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch import discrete as fd
from flowmatch.data.mixed import load_mixed_table, save_mixed_table
from flowmatch.data.tabular import Standardizer
from flowmatch.errors import DataError, ModelFileError, SamplerError
from flowmatch.models.mixed_mlp import MixedMLP
from flowmatch.schedules import Cosine

F64 = torch.float64
MU, S = (1.5, -0.5), (0.5, 2.0)  # two independent Gaussian columns N(MU_i, S_i^2)
PMFS = ([0.2, 0.5, 0.3], [0.9, 0.1], [1.0])  # three independent categorical columns


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Oracle(nn.Module):
    """The exact net of the independent target: the linear path's velocity of N(mu, s^2)
    from N(0, 1), v = mu + (t s^2 - (1 - t)) / var_t (x - t mu) with var_t = t^2 s^2 +
    (1 - t)^2, and, for a masked column independent of the rest, its marginal pmf."""

    def __init__(self) -> None:
        super().__init__()
        self.mu, self.s = torch.tensor(MU), torch.tensor(S)
        self.logits = torch.cat([torch.tensor(p).log() for p in PMFS])
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        tc = t[:, None]
        var = tc**2 * self.s**2 + (1 - tc) ** 2
        v = self.mu + (tc * self.s**2 - (1 - tc)) / var * (x[:, :2] - tc * self.mu)
        return torch.cat([v, self.logits.expand(x.shape[0], -1)], dim=1)


def oracle_model(standardizer=None) -> fd.MixedFlowModel:
    return fd.MixedFlowModel(
        Oracle(), num_continuous=2, vocab_sizes=[3, 2, 1], standardizer=standardizer
    )


def euler_std(s: float, steps: int) -> float:
    """The std the Euler scheme reaches on the Gaussian's affine velocity (exact algebra)."""
    sd, h = 1.0, 1.0 / steps
    for k in range(steps):
        t = k * h
        sd *= 1 + h * (t * s * s - (1 - t)) / (t * t * s * s + (1 - t) ** 2)
    return sd


# ---------------------------------------------------------------------------- sampler
def test_sampler_with_the_oracle_reproduces_marginals_means_and_stds():
    """20,000 rows, 64 steps, standardized units mapped back by a Standardizer (mean m,
    std d): every category frequency within 3 standard errors of its pmf; each continuous
    mean within 4 standard errors of m + d mu (Euler is exact for the mean here); each std
    within 4 standard errors of the Euler scheme's own std and within 4% of d s (Euler's
    bias at 64 steps: -2.3%). Exactly 64 net evaluations; no column left masked."""
    n, steps = 20_000, 64
    m, d = torch.tensor([10.0, -1.0], dtype=F64), torch.tensor([3.0, 0.5], dtype=F64)
    model = oracle_model(Standardizer(mean=m, std=d))
    x = fd.sample_mixed(model, n, steps=steps, generator=gen(0))
    assert x.shape == (n, 5) and x.dtype == torch.float32
    assert model.net.calls == steps
    cont, codes = model.split(x)
    for j, pmf in enumerate(PMFS):
        freq = torch.bincount(codes[:, j], minlength=len(pmf)).to(F64) / n
        assert freq.numel() == len(pmf), "a masked or out-of-range code"
        p = torch.tensor(pmf, dtype=F64)
        se = (p * (1 - p) / n).sqrt().clamp_min(1e-12)
        assert ((freq - p).abs() <= 3 * se + 1e-12).all(), (j, freq, p)
    for i in range(2):
        want_sd = float(d[i]) * S[i]
        mean, sd = float(cont[:, i].double().mean()), float(cont[:, i].double().std())
        assert abs(mean - float(m[i] + d[i] * MU[i])) < 4 * want_sd / math.sqrt(n)
        euler = float(d[i]) * euler_std(S[i], steps)
        assert abs(sd - euler) < 4 * euler / math.sqrt(2 * n), (i, sd, euler)
        assert abs(sd / want_sd - 1) < 0.04, (i, sd, want_sd)


def test_one_step_unmasks_everything_and_the_generator_fixes_the_draw():
    model = oracle_model()
    x = fd.sample_mixed(model, 500, steps=1, generator=gen(3))
    _, codes = model.split(x)
    assert (codes < model.mask_ids).all()
    assert torch.equal(x, fd.sample_mixed(model, 500, steps=1, generator=gen(3)))
    assert not torch.equal(x, fd.sample_mixed(model, 500, steps=1, generator=gen(4)))


def test_a_low_temperature_draws_the_most_likely_category():
    """At temperature 0.02 the runner-up of pmf (0.2, 0.5, 0.3) has odds (0.3/0.5)^50 = 8e-12."""
    _, codes = oracle_model().split(
        fd.sample_mixed(oracle_model(), 2000, steps=4, temperature=0.02, generator=gen(1))
    )
    assert (codes[:, 0] == 1).all() and (codes[:, 1] == 0).all() and (codes[:, 2] == 0).all()


def test_columns_unmask_at_the_mixture_paths_rate():
    """After step k of K (linear kappa) a column is still masked with probability
    1 - (k + 1) / K; measured on 20,000 rows within 4 standard errors."""
    seen = []

    class Spy(Oracle):
        def forward(self, x, t):
            seen.append((float(t[0]), x[:, 2:].clone()))
            return super().forward(x, t)

    model = fd.MixedFlowModel(Spy(), num_continuous=2, vocab_sizes=[3, 2, 1])
    n, steps = 20_000, 4
    fd.sample_mixed(model, n, steps=steps, generator=gen(2))
    assert [t for t, _ in seen] == [k / steps for k in range(steps)]
    for k, (t, codes) in enumerate(seen):
        masked = (codes == model.mask_ids.float()).double().mean()
        p = 1 - t
        assert abs(float(masked) - p) <= 4 * math.sqrt(p * (1 - p) / (3 * n)) + 1e-12, (k, masked)


# ------------------------------------------------------------------------------- loss
class Zero(nn.Module):
    """Outputs zeros (velocity 0, uniform logits) and keeps its inputs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width, self.inputs = width, []

    def forward(self, x, t):
        self.inputs.append((x.clone(), t.clone()))
        return torch.zeros(x.shape[0], self.width)


def test_the_loss_is_mse_plus_weight_times_masked_cross_entropy():
    """With a zero net: MSE = mean((x1 - x0)^2), the CE of a masked cell is log V_j and 0
    elsewhere; x_t's continuous part is t x1 + (1 - t) x0 and unmasked codes are x1's."""
    b, vocab = 4096, [3, 5]
    net = Zero(2 + sum(vocab))
    model = fd.MixedFlowModel(net, num_continuous=2, vocab_sizes=vocab)
    g = gen(0)
    x1 = torch.cat(
        [
            torch.randn(b, 2, generator=g),
            torch.randint(0, 3, (b, 1), generator=g),
            torch.randint(0, 5, (b, 1), generator=g),
        ],
        1,
    ).float()
    x0 = torch.randn(b, 2, generator=g)
    loss_fn = fd.MixedFlowMatchingLoss(2, vocab, weight=2.5)
    loss = loss_fn(model, x1, x0=x0, generator=gen(1))
    x_t, t = net.inputs[-1]
    assert torch.allclose(x_t[:, :2], t[:, None] * x1[:, :2] + (1 - t[:, None]) * x0)
    masked = x_t[:, 2:] == torch.tensor(vocab).float()
    assert torch.equal(x_t[:, 2:][~masked], x1[:, 2:][~masked])
    mse = ((x1[:, :2] - x0) ** 2).mean()
    ce = (masked.double() * torch.tensor(vocab, dtype=F64).log()).mean()
    assert float(loss) == pytest.approx(float(mse) + 2.5 * float(ce), rel=1e-5)
    # masked with probability 1 - t: the masked share falls with t
    early, late = masked[t < 0.25].double().mean(), masked[t > 0.75].double().mean()
    assert abs(float(early) - 0.875) < 0.04 and abs(float(late) - 0.125) < 0.04
    # the same generator gives the same loss; x0 of the full row width is accepted
    assert float(loss_fn(model, x1, x0=x0, generator=gen(1))) == float(loss)
    full = torch.cat([x0, torch.zeros(b, 2)], 1)
    assert float(loss_fn(model, x1, x0=full, generator=gen(1))) == float(loss)


def test_the_oracle_has_no_categorical_gradient_to_follow():
    """At the exact posterior (the marginal, for independent columns) the CE of a masked
    cell averages the entropy of its pmf; the loss of the oracle is below a zero net's."""
    model = oracle_model()
    g = gen(5)
    codes = torch.stack(
        [torch.multinomial(torch.tensor(p), 8192, True, generator=g) for p in PMFS], 1
    )
    cont = torch.tensor(MU) + torch.tensor(S) * torch.randn(8192, 2, generator=g)
    x1 = torch.cat([cont, codes.float()], 1)
    loss_fn = fd.MixedFlowMatchingLoss.for_model(model, weight=1.0)
    zero = fd.MixedFlowModel(Zero(8), num_continuous=2, vocab_sizes=[3, 2, 1])
    assert float(loss_fn(model, x1, generator=gen(6))) < float(loss_fn(zero, x1, generator=gen(6)))


def test_bad_loss_arguments_are_named():
    model = oracle_model()
    loss = fd.MixedFlowMatchingLoss.for_model(model)
    good = torch.zeros(3, 5)
    for x1, needle in [
        (good.long(), "x1 must be float rows"),
        (torch.zeros(3, 4), r"x1 must be float rows \(B, 5\)"),
        (torch.cat([torch.zeros(3, 2), torch.full((3, 3), 2.0)], 1), r"x1: column j's codes"),
    ]:
        with pytest.raises(ValueError, match=needle):
            loss(model, x1)
    with pytest.raises(ValueError, match="cond"):
        loss(model, good, cond=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="x0 must have shape"):
        loss(model, good, x0=torch.zeros(3, 3))
    for kwargs, needle in [
        ({"weight": -1.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"schedule": "linear"}, "schedule"),
    ]:
        with pytest.raises(ValueError, match=needle):
            fd.MixedFlowMatchingLoss(2, [3], **kwargs)
    for args, needle in [
        ((-1, [3]), "num_continuous"),
        ((1, [0]), "vocab_sizes"),
        ((1, 3), "vocab_sizes"),
    ]:
        with pytest.raises(ValueError, match=needle):
            fd.MixedFlowMatchingLoss(*args)
    with pytest.raises(ValueError, match="model must be a MixedFlowModel"):
        fd.MixedFlowMatchingLoss.for_model(nn.Linear(2, 2))


# ------------------------------------------------------------------------------ model
def test_bad_model_arguments_are_named():
    net = MixedMLP(1, [3], hidden=8, depth=1)
    for kwargs, needle in [
        ({"net": "mlp"}, "net"),
        ({"num_continuous": -1}, "num_continuous"),
        ({"num_continuous": True}, "num_continuous"),
        ({"vocab_sizes": [0]}, "vocab_sizes"),
        ({"vocab_sizes": 3}, "vocab_sizes"),
        ({"num_continuous": 0, "vocab_sizes": []}, "at least one column"),
        ({"schedule": "linear"}, "schedule"),
        ({"standardizer": Standardizer.fit(torch.randn(5, 2))}, "standardizer"),
    ]:
        with pytest.raises(ValueError, match=needle):
            fd.MixedFlowModel(**{"net": net, "num_continuous": 1, "vocab_sizes": [3], **kwargs})
    for kwargs, needle in [
        ({"num_continuous": -1}, "num_continuous"),
        ({"vocab_sizes": [2, 0]}, "vocab_sizes"),
        ({"hidden": 0}, "hidden"),
        ({"activation": "x"}, "activation"),
    ]:
        with pytest.raises(ValueError, match=needle):
            MixedMLP(**{"num_continuous": 1, "vocab_sizes": [3], **kwargs})
    model = fd.MixedFlowModel(net, num_continuous=1, vocab_sizes=[3])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="cond"):
        model(torch.zeros(4, 2), torch.zeros(4), torch.zeros(4, dtype=torch.long))
    wrong = fd.MixedFlowModel(Zero(3), num_continuous=1, vocab_sizes=[3])
    with pytest.raises(ValueError, match=r"must return \(4, 4\)"):
        wrong(torch.zeros(4, 2), torch.zeros(4))
    for cont, codes, needle in [
        (torch.zeros(4, 2), torch.zeros(4, 1, dtype=torch.long), "continuous must have"),
        (torch.zeros(4, 1), torch.zeros(3, 1, dtype=torch.long), "codes must have shape"),
        (torch.zeros(4, 1), torch.zeros(4, 1), "integer category codes"),
        (torch.zeros(4, 1), torch.full((4, 1), 3), r"codes: column j's codes"),
    ]:
        with pytest.raises(ValueError, match=needle):
            model.encode(cont, codes)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model.split(torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.0}, "steps"),
        ({"num": 0}, "num"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
    ],
)
def test_bad_sampler_options_are_named(kwargs, option):
    args = {"num": 4, "steps": 2, **kwargs}
    with pytest.raises(SamplerError) as err:
        fd.sample_mixed(oracle_model(), args.pop("num"), **args)
    assert err.value.option == option and option in str(err.value)


def test_the_sampler_refuses_other_models():
    with pytest.raises(SamplerError, match="MixedFlowModel"):
        fd.sample_mixed(nn.Linear(2, 2), 4, steps=2)


def test_files_round_trip_and_name_their_problems(tmp_path):
    std = Standardizer.fit(torch.randn(10, 2) * 3 + 1)
    layout = {
        "columns": ["a", "k", "b"],
        "kinds": ["continuous", "categorical", "continuous"],
        "categories": {"k": ["no", "yes"]},
    }
    model = fd.MixedFlowModel(
        MixedMLP(2, [2], hidden=16, depth=2),
        num_continuous=2,
        vocab_sizes=[2],
        schedule=Cosine(),
        standardizer=std,
        info={**layout, "data": "toy"},
    )
    model.save_pretrained(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "config.json").read_text())
    assert spec["kind"] == "mixed" and spec["arch"]["name"] == "mixed_mlp"
    assert spec["vocab_sizes"] == [2] and spec["kappa"]["schedule"] == "cosine"
    loaded = fm.load(tmp_path / "m")
    assert isinstance(loaded, fd.MixedFlowModel) and not loaded.training
    assert loaded.layout == layout and loaded.info["data"] == "toy"
    assert loaded.schedule == Cosine() and loaded.vocab_sizes == [2]
    assert torch.equal(loaded.standardizer.mean, std.mean)
    assert torch.equal(
        fd.sample_mixed(loaded, 64, steps=3, generator=gen(0)),
        fd.sample_mixed(model, 64, steps=3, generator=gen(0)),
    )
    assert isinstance(fd.MixedFlowModel.from_pretrained(tmp_path / "m"), fd.MixedFlowModel)
    for key in ("num_continuous", "vocab_sizes"):
        bad = {k: v for k, v in spec.items() if k != key}
        (tmp_path / "m" / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ModelFileError, match=f"missing key '{key}'"):
            fm.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**spec, "vocab_sizes": [0]}))
    with pytest.raises(ModelFileError, match="vocab_sizes"):
        fm.load(tmp_path / "m")
    with pytest.raises(ModelFileError, match="not a registered architecture"):
        oracle_model().save_pretrained(tmp_path / "o")


def test_default_layout_without_info(tmp_path):
    model = fd.MixedFlowModel(
        MixedMLP(1, [2, 3], hidden=8, depth=1), num_continuous=1, vocab_sizes=[2, 3]
    )
    assert model.layout == {
        "columns": ["x1", "c1", "c2"],
        "kinds": ["continuous", "categorical", "categorical"],
        "categories": {"c1": ["0", "1"], "c2": ["0", "1", "2"]},
    }
    x = fd.sample_mixed(model, 5, steps=2, generator=gen(0))
    out = save_mixed_table(tmp_path / "s.csv", *model.split(x), **model.layout)
    assert load_mixed_table(out, categorical=["c1", "c2"]).categorical.shape == (5, 2)


# --------------------------------------------------------------------------- training
COLORS = {"red": -3.0, "green": 0.0, "blue": 3.0}
FREQ = {"red": 0.5, "green": 0.3, "blue": 0.2}


def color_table(path, n=3000, seed=0):
    g = gen(seed)
    names = list(COLORS)
    idx = torch.multinomial(torch.tensor([FREQ[c] for c in names]), n, True, generator=g)
    x = torch.tensor([COLORS[c] for c in names])[idx] + 0.3 * torch.randn(n, generator=g)
    u = torch.rand(n, generator=g)
    lines = ["id_x,color,u"] + [
        f"{float(x[i]):.6f},{names[int(idx[i])]},{float(u[i]):.6f}" for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_training_learns_a_category_that_sets_a_columns_mean(tmp_path, one_thread):
    """color in {red, green, blue} (frequencies 0.5/0.3/0.2) sets the mean of x (-3, 0, 3;
    std 0.3); u ~ U[0, 1] is independent. MixedMLP (64 wide, 3 deep), 1500 steps, batch
    256, lr 3e-3. 10,000 rows of 32 steps: each color's frequency within 0.05 of its
    nominal one (the 3000 data rows' own are within 0.01 of it); each color's mean of x
    within 0.3 of its own, its std below 0.8 (vs 2.5 for the whole column); u's mean within
    0.05 of 0.5. fm.load gives identical samples; save_mixed_table writes the color names.
    (Measured: frequencies 0.189/0.309/0.502, means within 0.04, stds 0.37-0.53.)"""
    table = load_mixed_table(color_table(tmp_path / "colors.csv"))
    assert table.kinds == ["continuous", "categorical", "continuous"]
    assert table.categories == {"color": ["blue", "green", "red"]}
    model = fd.MixedFlowModel.from_table(table, hidden=64, depth=3)
    x1 = model.encode(table.continuous, table.categorical)
    ema = fm.train(
        model,
        x1,
        steps=1500,
        batch_size=256,
        lr=3e-3,
        out=tmp_path / "run",
        progress=False,
        echo=lambda _: None,
    )
    assert isinstance(ema, fd.MixedFlowModel)
    x = fd.sample_mixed(ema, 10_000, steps=32, generator=gen(1))
    cont, codes = ema.split(x)
    cats = table.categories["color"]
    for c, name in enumerate(cats):
        rows = codes[:, 0] == c
        freq = float(rows.double().mean())
        assert abs(freq - FREQ[name]) < 0.05, (name, freq)
        xs = cont[rows, 0].double()
        assert abs(float(xs.mean()) - COLORS[name]) < 0.3, (name, float(xs.mean()))
        assert float(xs.std()) < 0.8, (name, float(xs.std()))
    assert abs(float(cont[:, 1].mean()) - 0.5) < 0.05
    loaded = fm.load(tmp_path / "run")
    assert isinstance(loaded, fd.MixedFlowModel)
    assert torch.equal(
        fd.sample_mixed(loaded, 500, steps=8, generator=gen(2)),
        fd.sample_mixed(ema, 500, steps=8, generator=gen(2)),
    )
    out = save_mixed_table(tmp_path / "samples.csv", cont, codes, **loaded.layout)
    lines = out.read_text().splitlines()
    assert lines[0] == "id_x,color,u"
    assert {line.split(",")[1] for line in lines[1:]} == set(COLORS)


def test_train_refuses_data_and_losses_that_do_not_fit(tmp_path):
    model = fd.MixedFlowModel(
        MixedMLP(1, [3], hidden=8, depth=1), num_continuous=1, vocab_sizes=[3]
    )
    kw = {"steps": 1, "progress": False, "echo": lambda _: None}
    with pytest.raises(DataError, match="MixedFlowModel trains on float rows"):
        fm.train(model, torch.zeros(8, 2, dtype=torch.long), **kw)
    with pytest.raises(DataError, match=r"points of shape \(3,\)"):
        fm.train(model, torch.zeros(8, 3), **kw)
    with pytest.raises(ValueError, match="does not fit the MixedFlowModel"):
        fm.train(model, torch.zeros(8, 2), loss=fm.FlowMatchingLoss(), **kw)
    with pytest.raises(ValueError, match="does not fit the MixedFlowModel"):
        fm.train(model, torch.zeros(8, 2), loss=fd.MixedFlowMatchingLoss(1, [4]), **kw)
    assert isinstance(fm.train.api.default_loss(model), fd.MixedFlowMatchingLoss)
    ema = fm.train(model, torch.zeros(8, 2), batch_size=4, **kw)
    assert isinstance(ema, fd.MixedFlowModel) and ema.shape == (2,)
