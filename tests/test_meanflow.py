"""MeanFlow: the identity on an exact flow, the JVP target, the loss and one-step sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.couplings import Coupling, Independent
from flowmatch.meanflow import MeanFlowLoss, meanflow_target, sample_average
from flowmatch.models.embeddings import TWO_TIMES_TIME_FREQUENCY
from flowmatch.train.config import MeanFlowObjectiveConfig

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
MU, S = 1.5, 0.5  # N(0, I) -> N(MU, S^2 I) on the linear path


def _sd(t: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(t**2 * S**2 + (1 - t) ** 2)


def marginal_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact velocity of the Gaussian flow x_t = t MU + sd(t) z."""
    tt = t[:, None]
    dsd = (tt * S**2 - (1 - tt)) / _sd(tt)
    return MU + dsd / _sd(tt) * (x - tt * MU)


class ExactAverage(nn.Module):
    """The exact average velocity of that flow, u(x, r, t) = (Phi_{r->t}(x) - x) / (t - r),
    and its instantaneous velocity where t = r."""

    def forward(self, x, r, *, t_end=None):
        t = r if t_end is None else t_end
        rr, tt = r[:, None], t[:, None]
        z = (x - rr * MU) / _sd(rr)
        x_t = tt * MU + _sd(tt) * z
        gap = tt - rr
        distinct = gap.abs() > 1e-12
        avg = (x_t - x) / torch.where(distinct, gap, torch.ones_like(gap))
        return torch.where(distinct, avg, marginal_velocity(x, r))


def test_exact_average_velocity_satisfies_the_identity():
    """u = v + (t - r) d/dr u holds for the exact field (float64: bar 1e-9), and one step of
    u is the flow map."""
    torch.manual_seed(0)
    z = torch.randn(64, 2, dtype=F64)
    r = torch.rand(64, dtype=F64) * 0.5
    t = r + torch.rand(64, dtype=F64) * 0.5
    x_r = r[:, None] * MU + _sd(r)[:, None] * z  # states of the flow at the start times
    u, target = meanflow_target(ExactAverage(), x_r, r, t, marginal_velocity(x_r, r))
    torch.testing.assert_close(u, target, rtol=0, atol=1e-9)
    x_t = t[:, None] * MU + _sd(t)[:, None] * z
    torch.testing.assert_close(x_r + (t - r)[:, None] * u, x_t, rtol=0, atol=1e-9)


def test_jvp_target_equals_a_finite_difference():
    """d/dr u along (v, 1, 0) by JVP equals a central difference. float64 with step 1e-8: the
    time embedding's frequencies reach 1000 rad, so the truncation error is ~h^2 1000^3 / 6
    ~ 2e-8 and the rounding error ~1e-16 / h ~ 1e-8; bar 1e-5."""
    torch.manual_seed(0)
    model = fm.models.MLP(dim=3, hidden=32, depth=2, two_times=True).double()
    x = torch.randn(16, 3, dtype=F64)
    v = torch.randn(16, 3, dtype=F64)
    r = torch.rand(16, dtype=F64) * 0.5
    t = r + 0.3
    u, target = meanflow_target(model, x, r, t, v)
    h = 1e-8
    with torch.no_grad():
        up = model(x + h * v, r + h, t_end=t)
        down = model(x - h * v, r - h, t_end=t)
    fd = (up - down) / (2 * h)
    torch.testing.assert_close(target, v + (t - r)[:, None] * fd, rtol=0, atol=1e-5)
    torch.testing.assert_close(u, model(x, r, t_end=t))
    assert not target.requires_grad and u.requires_grad


def test_training_makes_one_step_samples_good():
    """A small MeanFlow model (library defaults) on a 2-Gaussian mixture: after 1500 steps with
    cosine decay, one-step samples have a mean mixture log-density within 2.5 nats of true
    samples' (untrained: > 5 nats off) and hit both modes. Measured 1.4-1.8 nats over seeds
    0-3 on an AMD EPYC; modes of std 0.3 make the log-density a strict judge of the few points
    a smooth one-step map leaves between them."""
    torch.manual_seed(0)
    steps = 1500
    gm = fm.oracle.GaussianMixture(torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), 0.3)
    model = fm.models.MLP(dim=2, hidden=128, depth=3, two_times=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    loss_fn = MeanFlowLoss()
    before = gm.log_prob(sample_average(model, torch.randn(2000, 2))).mean()
    for _ in range(steps):
        loss = loss_fn(model, gm.sample(256))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    x = sample_average(model, torch.randn(2000, 2), steps=1)
    true = gm.log_prob(gm.sample(2000)).mean()
    assert before < true - 5
    assert gm.log_prob(x).mean() > true - 2.5
    assert 0.3 < (x[:, 0] > 0).float().mean() < 0.7


def test_defaults_are_the_measured_ones():
    """Uniform ordered times, half the points with distinct times, plain squared error, the
    paper's conditional JVP tangent, and two-time models embed time up to 10 rad."""
    loss = MeanFlowLoss()
    assert isinstance(loss.time_sampler, fm.time.Uniform)
    assert (loss.ratio_distinct, loss.adaptive_p) == (0.5, 0.0)
    assert (loss.tangent, loss.time_pairs) == ("conditional", "ordered")
    assert isinstance(loss.coupling, Independent)
    assert fm.models.MLP(dim=2, two_times=True).time_frequency == TWO_TIMES_TIME_FREQUENCY == 10
    assert fm.models.MLP(dim=2).time_frequency == 1000.0
    # the config's objective defaults are the loss's
    objective = MeanFlowObjectiveConfig()
    assert (objective.ratio_distinct, objective.adaptive_p) == (0.5, 0.0)
    assert (objective.tangent, objective.time_pairs) == (loss.tangent, loss.time_pairs)


class _Reverse(Coupling):
    """A test coupling: pairs x0[i] with x1[B-1-i] (and its label)."""

    def partner_index(self, x0, x1, generator=None):
        return torch.arange(x1.shape[0] - 1, -1, -1)


def test_coupling_pairs_the_batch_before_the_path():
    """The loss with a coupling equals the loss on the batch that coupling returns, with the
    same randomness for the times; a Schrödinger bridge (no linear path) is refused."""
    model = fm.models.MLP(dim=2, hidden=16, depth=1, two_times=True)
    x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
    cond = torch.arange(8)
    coupled = MeanFlowLoss(coupling=_Reverse())
    plain = MeanFlowLoss()
    a = coupled(model, x1, x0=x0, generator=torch.Generator().manual_seed(3))
    b = plain(model, x1.flip(0), x0=x0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert _Reverse()(x0, x1, cond)[2].tolist() == cond.flip(0).tolist()
    with pytest.raises(ValueError, match="SchrodingerBridge"):
        MeanFlowLoss(coupling=fm.couplings.SchrodingerBridge(0.5))
    with pytest.raises(ValueError, match="coupling must be a Coupling"):
        MeanFlowLoss(coupling="ot")


def test_minibatch_ot_lowers_the_cost_of_the_pairs():
    """With MinibatchOT the velocities x1 - x0 the loss regresses on come from the optimal
    pairing: their total squared length is the assignment's minimum, below the independent
    pairing's."""
    seen = []

    class Spy(nn.Module):
        two_times = True

        def forward(self, x, r, *, t_end=None):
            return x * 0

    def hook(model, x_r, r, t, tangent, cond=None, v=None):
        seen.append(v)
        return torch.zeros_like(v), torch.zeros_like(v)

    import flowmatch.meanflow as mf

    x0, x1 = torch.randn(64, 2), torch.randn(64, 2) + 3
    original = mf.meanflow_target
    mf.meanflow_target = hook
    try:
        MeanFlowLoss(ratio_distinct=1.0)(Spy(), x1, x0=x0)  # every point through the JVP
        MeanFlowLoss(ratio_distinct=1.0, coupling=fm.couplings.MinibatchOT("exact"))(
            Spy(), x1, x0=x0
        )
    finally:
        mf.meanflow_target = original
    independent, ot = (v.pow(2).sum().item() for v in seen)
    assert ot < independent
    # a permutation of the same points: the velocities' sum is unchanged
    torch.testing.assert_close(seen[1].sum(0), seen[0].sum(0), rtol=0, atol=1e-4)


class _Preset(fm.time.TimeSampler):
    """A test time sampler: returns the given tensors in turn."""

    def __init__(self, *draws: torch.Tensor) -> None:
        self.draws = list(draws)

    def _draw(self, batch_size, device, dtype, generator):
        return self.draws.pop(0).to(dtype)


def _times_seen(loss: MeanFlowLoss, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (r, t) pairs the loss evaluates a two-time model at, in batch order."""
    calls = []

    class Record(nn.Module):
        def forward(self, x, r, *, t_end=None):
            calls.append((x[:, 0].round().long(), r, t_end))
            return x * 0 + r[:, None]

    # x0 = x1 = the point's index, so every x_r carries it and the calls can be put back in
    # batch order
    index = torch.arange(n, dtype=torch.float64)[:, None].expand(n, 2)
    loss(Record(), index.clone(), x0=index.clone())
    r, t = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    for i, rr, tt in calls:
        r[i], t[i] = rr, tt
    return r, t


def test_split_batch_loss_equals_one_jvp_over_the_batch():
    """Points with r = t skip the JVP (their target is x1 - x0); the loss equals the mean of
    ||u - target||^2 with one JVP over the whole batch and the same draws (float64: 1e-12)."""
    torch.manual_seed(0)
    model = fm.models.MLP(dim=2, hidden=32, depth=2, two_times=True).double()
    x0, x1 = torch.randn(64, 2, dtype=F64), torch.randn(64, 2, dtype=F64)
    for tangent in ("conditional", "model"):
        got = MeanFlowLoss(tangent=tangent)(
            model, x1, x0=x0, generator=torch.Generator().manual_seed(5)
        )
        g = torch.Generator().manual_seed(5)
        a = torch.rand(64, generator=g, dtype=F64)
        c = torch.rand(64, generator=g, dtype=F64)
        r, t = torch.minimum(a, c), torch.maximum(a, c)
        same = torch.rand(64, generator=g, dtype=F64) >= 0.5
        t = torch.where(same, r, t)
        x_r = r[:, None] * x1 + (1 - r[:, None]) * x0
        with torch.no_grad():
            move = x1 - x0 if tangent == "conditional" else model(x_r, r)
        u, target = meanflow_target(model, x_r, r, t, move, v=x1 - x0)
        assert 0 < same.sum() < 64
        torch.testing.assert_close(got, (u - target).pow(2).sum(1).mean(), rtol=0, atol=1e-12)


def test_model_tangent_leaves_only_the_velocity_noise_on_the_exact_field():
    """tangent="model": the JVP moves x_r with the network's own instantaneous velocity. For
    the exact average velocity of a Gaussian flow, target - u = (x1 - x0) - v(x_r, r), so the
    loss is mean ||x1 - x0 - v(x_r, r)||^2. The conditional tangent adds (t - r) J (x1 - x0 -
    v), and here J = (sd(t)/sd(r) - 1)/(t - r) I, so its loss is the same noise scaled by
    (sd(t)/sd(r))^2 per point. Both closed forms in float64 (bar 1e-9)."""
    torch.manual_seed(0)
    n = 256
    x0 = torch.randn(n, 2, dtype=F64)
    x1 = MU + S * torch.randn(n, 2, dtype=F64)
    a, c = torch.rand(n, dtype=F64), torch.rand(n, dtype=F64)
    r, t = torch.minimum(a, c), torch.maximum(a, c)
    x_r = r[:, None] * x1 + (1 - r[:, None]) * x0
    noise = (x1 - x0 - marginal_velocity(x_r, r)).pow(2).sum(1)
    model = MeanFlowLoss(time_sampler=_Preset(a, c), ratio_distinct=1.0, tangent="model")
    torch.testing.assert_close(model(ExactAverage(), x1, x0=x0), noise.mean(), rtol=0, atol=1e-9)
    plain = MeanFlowLoss(time_sampler=_Preset(a, c), ratio_distinct=1.0)
    scaled = (noise * (_sd(t) / _sd(r)) ** 2).mean()
    torch.testing.assert_close(plain(ExactAverage(), x1, x0=x0), scaled, rtol=0, atol=1e-9)


def test_gap_time_pairs():
    """time_pairs="gap": the first draw is the gap t - r and the start is uniform over
    [0, 1 - gap] (r = (1 - gap) c); with uniform draws the gaps are uniform (mean 1/2 within
    4 SE over 4000 points), where ordered pairs have gaps of mean 1/3."""
    a, c = torch.tensor([0.25, 1.0, 0.0]), torch.tensor([0.5, 0.3, 0.9])
    r, t = _times_seen(
        MeanFlowLoss(time_sampler=_Preset(a, c), ratio_distinct=1.0, time_pairs="gap"), 3
    )
    torch.testing.assert_close(r, torch.tensor([0.375, 0.0, 0.9], dtype=F64))
    torch.testing.assert_close(t - r, a.double())
    torch.manual_seed(0)
    n, se = 4000, (1 / 12 / 4000) ** 0.5
    r, t = _times_seen(MeanFlowLoss(ratio_distinct=1.0, time_pairs="gap"), n)
    assert abs((t - r).mean().item() - 0.5) < 4 * se and r.min() >= 0 and t.max() <= 1
    r, t = _times_seen(MeanFlowLoss(ratio_distinct=1.0), n)
    assert abs((t - r).mean().item() - 1 / 3) < 4 * se


def test_cond_dropout_replaces_labels_by_the_null_class():
    """cond_dropout p: each label becomes null_cond with probability p (classifier-free
    guidance training); p=0.5 over 4000 labels: the share is within 4 SE (0.03) of 0.5."""
    got = []

    class Record(nn.Module):
        def forward(self, x, r, *, t_end=None, cond=None):
            got.append(cond)
            return x * 0 + r[:, None]

    loss = MeanFlowLoss(cond_dropout=0.5, null_cond=10)
    loss(Record(), torch.randn(4000, 2), cond=torch.zeros(4000, dtype=torch.int64))
    share = (got[0] == 10).float().mean().item()
    assert abs(share - 0.5) < 0.03 and set(got[0].tolist()) == {0, 10}
    with pytest.raises(ValueError, match="null_cond"):
        MeanFlowLoss(cond_dropout=0.1)
    with pytest.raises(ValueError, match="cond_dropout"):
        MeanFlowLoss(cond_dropout=1.0, null_cond=3)


def test_sample_average_steps():
    """x_{k+1} = x_k + h u(x_k, t_k, t_{k+1}) on a uniform grid, one evaluation per step."""
    calls = []

    class Constant(nn.Module):
        def forward(self, x, r, *, t_end=None):
            calls.append((float(r[0]), float(t_end[0])))
            return torch.ones_like(x)

    x = sample_average(Constant(), torch.zeros(3, 2), steps=4)
    torch.testing.assert_close(x, torch.ones(3, 2))
    assert [c[0] for c in calls] == pytest.approx([0, 0.25, 0.5, 0.75])
    assert [c[1] for c in calls] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="steps"):
        sample_average(Constant(), torch.zeros(3, 2), steps=0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"ratio_distinct": 1.5}, "ratio_distinct"),
        ({"adaptive_p": -1}, "adaptive_p"),
        ({"adaptive_c": 0}, "adaptive_c"),
        ({"tangent": "marginal"}, "tangent"),
        ({"time_pairs": "random"}, "time_pairs"),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        MeanFlowLoss(**kwargs)


def test_two_times_mlp():
    """t_end=None is the instantaneous velocity u(x, t, t); one-time MLPs refuse t_end."""
    model = fm.models.MLP(dim=2, hidden=8, depth=1, two_times=True)
    x, t = torch.randn(4, 2), torch.rand(4)
    torch.testing.assert_close(model(x, t), model(x, t, t_end=t))
    assert not torch.allclose(model(x, t), model(x, t, t_end=t + 0.5))
    with pytest.raises(ValueError, match="two_times"):
        fm.models.MLP(dim=2, hidden=8, depth=1)(x, t, t_end=t)


def test_fm_sample_uses_the_average_velocity_of_a_two_time_model():
    """fm.sample on a two-time model takes average-velocity jumps; average=False integrates
    its instantaneous velocity instead."""
    torch.manual_seed(0)
    model = fm.models.MLP(dim=2, hidden=16, depth=1, two_times=True)
    x0 = torch.randn(5, 2)
    torch.testing.assert_close(fm.sample(model, x0, steps=1), sample_average(model, x0, steps=1))
    torch.testing.assert_close(fm.sample(model, x0, steps=3), sample_average(model, x0, steps=3))
    ode = fm.sample(model, x0, steps=1, method="euler", average=False)
    with torch.no_grad():
        torch.testing.assert_close(ode, x0 + model(x0, torch.zeros(5)))


def test_bad_batches_are_named():
    """MeanFlowLoss checks its batch like FlowMatchingLoss (the shared loss.source_batch)."""
    model = fm.models.MLP(dim=2, hidden=8, depth=1, two_times=True)
    loss = MeanFlowLoss()
    with pytest.raises(ValueError, match="x1 must have shape"):
        loss(model, torch.randn(4))
    with pytest.raises(ValueError, match="x0 and x1"):
        loss(model, torch.randn(4, 2), x0=torch.randn(3, 2))
    with pytest.raises(ValueError, match="cond must have one entry"):
        loss(model, torch.randn(4, 2), cond=torch.zeros(3))
