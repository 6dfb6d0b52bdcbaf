"""DiscreteFlowMatchingLoss (cross-entropy and generalized KL) and generalized_kl."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from discrete_toys import JOINT, draw_table, exact_model
from scipy import special
from torch import nn

import flowmatch as fm
from flowmatch import discrete as fd
from flowmatch.discrete.loss import T_MAX_GKL

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class FixedLogits(nn.Module):
    """Logits (L, V) that do not depend on x_t, optionally replaced by garbage at the positions
    where ``garbage(x_t)`` is True; records every (x_t, t, cond) it sees."""

    def __init__(self, length=4, vocab=5, garbage=None, seed=0):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(length, vocab, generator=gen(seed)))
        self.garbage = garbage
        self.seen = []

    def forward(self, x, t, cond=None):
        self.seen.append((x.clone(), t.clone(), None if cond is None else cond.clone()))
        out = self.logits.expand(x.shape[0], -1, -1)
        if self.garbage is not None:
            junk = 50.0 * torch.randn(out.shape, generator=gen(99))
            out = torch.where(self.garbage(x).unsqueeze(-1), junk, out)
        return out


def _loss(kind, source, garbage=None, seed=5):
    path = fd.MixturePath(5, source=source)
    net = FixedLogits(garbage=garbage)
    x1 = torch.randint(0, 5, (64, 4), generator=gen(1))
    return fd.DiscreteFlowMatchingLoss(path, kind=kind)(net, x1, generator=gen(seed)).detach()


# ------------------------------------------------------------------- which positions
@pytest.mark.parametrize("kind", ["ce", "gkl"])
def test_with_the_mask_source_only_masked_positions_count(kind):
    """Logits that are garbage at every unmasked position leave the loss unchanged (to the
    bit: those terms are replaced by zeros); garbage at masked positions changes it."""
    base = _loss(kind, "mask")
    assert float(base) > 0
    assert torch.equal(_loss(kind, "mask", garbage=lambda x: x != 5), base)
    assert not torch.allclose(_loss(kind, "mask", garbage=lambda x: x == 5), base)


@pytest.mark.parametrize("kind", ["ce", "gkl"])
def test_with_the_uniform_source_every_position_counts(kind):
    base = _loss(kind, "uniform")
    assert not torch.allclose(_loss(kind, "uniform", garbage=lambda x: x == 0), base)


def _conditional_nll(table, x1, masked):
    """-log p(x1^i | x1 at the unmasked positions) for each masked i, summed: from the table."""
    keep = [j for j in range(table.ndim) if j not in masked]
    total = 0.0
    for i in masked:
        num = den = 0.0
        for x in itertools.product(range(table.shape[0]), repeat=table.ndim):
            if all(x[j] == x1[j] for j in keep):
                den += float(table[x])
                num += float(table[x]) * (x[i] == x1[i])
        total += -math.log(num / den)
    return total


def _expected_loss(table, kind):
    """The exact expectation of the loss of the exact posterior (mask source, linear kappa)
    over x1 ~ table, t and the masking: given t, a position is masked with probability 1 - t,
    so a set S of m masked positions has weight E_t[(1 - t)^m t^(L - m) w(t)] with w = 1 (ce,
    t ~ U[0, 1]) or w = 1 / (1 - t) (gkl, t ~ U[0, T_MAX]); each masked term is the
    conditional NLL of the token given the unmasked ones; the loss averages over L."""
    length = table.ndim
    total = 0.0
    for x1 in itertools.product(range(table.shape[0]), repeat=length):
        for m in range(1, length + 1):
            if kind == "ce":  # int_0^1 (1 - t)^m t^(L - m) dt
                weight = special.beta(length - m + 1, m + 1)
            else:  # (1 / T) int_0^T (1 - t)^(m - 1) t^(L - m) dt
                a, b = length - m + 1, m
                weight = special.betainc(a, b, T_MAX_GKL) * special.beta(a, b) / T_MAX_GKL
            for masked in itertools.combinations(range(length), m):
                total += float(table[x1]) * weight * _conditional_nll(table, x1, masked)
    return total / length


@pytest.mark.parametrize("kind", ["ce", "gkl"])
def test_the_expected_loss_of_the_exact_posterior(kind):
    """Mask source, JOINT: the mean of 40 losses on batches of 2000 draws of the target
    equals the exact expectation (enumerated over sequences and masks, integrated over t in
    closed form) within 4 SE of the mean of the 40 (each an independent unbiased estimate).
    For gkl that expectation is, up to the t < 0.999 cut, the continuous-time bound per
    token: the data-averaged NLL / L."""
    model = exact_model(JOINT, "mask")
    loss = fd.DiscreteFlowMatchingLoss(model.path, kind=kind)
    g = gen(11)
    values = torch.tensor(
        [float(loss(model, draw_table(JOINT, 2000, seed=100 + i), generator=g)) for i in range(40)],
        dtype=F64,
    )
    want = _expected_loss(JOINT, kind)
    se = float(values.std() / math.sqrt(40))
    print(f"{kind}: mean loss {float(values.mean()):.4f} +- {se:.4f}, exact {want:.4f}")
    assert abs(float(values.mean()) - want) < 4 * se


# ---------------------------------------------------------------------- generalized KL
def test_the_generalized_kl_is_nonnegative_and_has_its_closed_form():
    """On random log-posteriors, tokens and rates (mask ids included): >= 0 (since p(x1) +
    p(x_t) <= 1, -log p(x1) >= -log(1 - p(x_t)) >= p(x_t)), and each case is its formula
    (1e-12: the same float64 arithmetic)."""
    g = gen(12)
    logp = torch.randn(500, 6, 7, generator=g, dtype=F64).mul(3).log_softmax(-1)
    x1 = torch.randint(0, 7, (500, 6), generator=g)
    x_t = torch.randint(0, 8, (500, 6), generator=g)  # 7 = a mask id
    x_t[::3] = x1[::3]
    rate = torch.rand(500, generator=g, dtype=F64) * 10
    out = fd.generalized_kl(logp, x1, x_t, rate)
    assert out.shape == (500, 6) and bool((out >= 0).all())
    p = logp.exp()
    p_x1 = p.gather(-1, x1.unsqueeze(-1)).squeeze(-1)
    p_z = torch.where(x_t < 7, p.gather(-1, x_t.clamp(max=6).unsqueeze(-1)).squeeze(-1), 0.0)
    want = rate[:, None] * torch.where(x_t == x1, 1 - p_x1, -p_x1.log() - p_z)
    assert torch.allclose(out, want, atol=1e-12, rtol=0)


def test_the_gkl_loss_draws_times_below_the_cut():
    path = fd.MixturePath(5)
    net = FixedLogits()
    x1 = torch.randint(0, 5, (4000, 4), generator=gen(1))
    fd.DiscreteFlowMatchingLoss(path, kind="gkl")(net, x1, generator=gen(2))
    ((_, t, _),) = net.seen
    assert float(t.max()) <= T_MAX_GKL and float(t.max()) > 0.99


# -------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", ["ce", "gkl"])
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_both_kinds_backpropagate_through_a_transformer(kind, source):
    path = fd.MixturePath(5, source=source)
    net = fm.models.SequenceTransformer(
        4, vocab_size=path.num_ids, out_size=5, dim=16, depth=1, heads=2
    )
    model = fd.DiscreteFlowModel(net, path, length=4)
    x1 = torch.randint(0, 5, (32, 4), generator=gen(3))
    loss = fd.DiscreteFlowMatchingLoss(path, kind=kind)(model, x1, generator=gen(4))
    value = float(loss.detach())
    assert loss.ndim == 0 and math.isfinite(value) and value > 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(bool(g.isfinite().all()) for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)


# ----------------------------------------------------------------------- labels and x0
def test_label_dropout_replaces_labels_at_its_rate():
    """cond_dropout = 0.3, null 5: the fraction of labels the model sees as 5 is 0.3 within
    4 binomial SE (n = 20000); the others are the given labels."""
    path = fd.MixturePath(5)
    net = FixedLogits()
    n = 20_000
    x1 = torch.randint(0, 5, (n, 4), generator=gen(5))
    cond = torch.arange(n) % 5
    loss = fd.DiscreteFlowMatchingLoss(path, cond_dropout=0.3, null_cond=5)
    loss(net, x1, cond=cond, generator=gen(6))
    ((_, _, seen),) = net.seen
    dropped = seen == 5
    assert abs(float(dropped.to(F64).mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(seen[~dropped], cond[~dropped])
    net.seen.clear()
    fd.DiscreteFlowMatchingLoss(path)(net, x1, cond=cond, generator=gen(6))
    assert torch.equal(net.seen[0][2], cond)  # no dropout by default


def test_a_given_x0_is_the_source():
    path = fd.MixturePath(5, source="uniform")
    net = FixedLogits()
    x1 = torch.randint(0, 5, (50, 4), generator=gen(7))
    fd.DiscreteFlowMatchingLoss(path)(net, x1, x0=x1, generator=gen(8))
    assert torch.equal(net.seen[0][0], x1)  # x_t is x1 whatever t when x0 = x1


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("x1", "match"),
    [
        (torch.zeros(4, 3), "integer token ids"),
        (torch.zeros(4, dtype=torch.long), "integer token ids"),
        (torch.full((4, 3), 5), "outside"),
        (torch.full((4, 3), -1), "outside"),
    ],
    ids=["float", "1-D", "mask-id", "negative"],
)
def test_bad_data_is_rejected(x1, match):
    with pytest.raises(ValueError, match=match):
        fd.DiscreteFlowMatchingLoss(fd.MixturePath(5))(FixedLogits(length=3), x1)


def test_bad_settings_are_rejected():
    path = fd.MixturePath(5)
    with pytest.raises(ValueError, match="kind"):
        fd.DiscreteFlowMatchingLoss(path, kind="mse")
    with pytest.raises(ValueError, match="MixturePath"):
        fd.DiscreteFlowMatchingLoss(fm.AffinePath())
    with pytest.raises(ValueError, match="null_cond"):
        fd.DiscreteFlowMatchingLoss(path, cond_dropout=0.1)
    with pytest.raises(ValueError, match="cond_dropout"):
        fd.DiscreteFlowMatchingLoss(path, cond_dropout=1.0, null_cond=3)
    text = repr(fd.DiscreteFlowMatchingLoss(path, kind="gkl", cond_dropout=0.1, null_cond=3))
    assert "gkl" in text and "null_cond=3" in text
