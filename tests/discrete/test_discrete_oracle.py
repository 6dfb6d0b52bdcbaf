"""ExactPosterior (the oracle every sampler and ELBO test relies on) against a brute-force
posterior, and checkerboard_table."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from discrete_toys import JOINT, PairPosterior, all_sequences, exact_model

from flowmatch import discrete as fd

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_force_posterior(table, path, x, t):
    """p(x1^i = v | x_t) by summing p(x1) prod_j p_t(x_t^j | x1^j) over every x1: (B, L, V)."""
    vocab, length = table.shape[0], table.ndim
    p0 = path.source_probs(length)
    out = torch.zeros(x.shape[0], length, vocab, dtype=F64)
    for b in range(x.shape[0]):
        kappa = float(path.kappa(t[b : b + 1].to(F64))[0][0])
        for x1 in itertools.product(range(vocab), repeat=length):
            w = float(table[x1])
            for j in range(length):
                z = int(x[b, j])
                w *= kappa * (z == x1[j]) + (1 - kappa) * float(p0[j, z])
            for j in range(length):
                out[b, j, x1[j]] += w
    return out / out.sum(-1, keepdim=True)


def random_table(vocab: int, length: int, seed: int) -> torch.Tensor:
    table = torch.rand((vocab,) * length, generator=gen(seed), dtype=F64) ** 2
    return table / table.sum()


@pytest.mark.parametrize("source", ["mask", "uniform", "probs"])
def test_the_exact_posterior_matches_brute_force(source):
    """L = 3, V = 3, a random joint, random states at t in (0, 1): the einsum marginals equal
    the brute-force sum over all 27 sequences to 1e-12 (float64 rounding of sums of 27
    products). With the mask source the states hold data tokens or the mask."""
    table = random_table(3, 3, seed=0)
    src = (
        torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [1 / 3] * 3])
        if source == "probs"
        else source
    )
    path = fd.MixturePath(3, source=src)
    net = fd.ExactPosterior(table, path)
    x = torch.randint(0, path.num_ids, (40, 3), generator=gen(1))
    t = torch.rand(40, generator=gen(2)) * 0.98 + 0.01
    got = net(x, t).exp()
    want = brute_force_posterior(table, path, x, t)
    assert got.shape == (40, 3, 3) and got.dtype == F64
    assert float((got - want).abs().max()) < 1e-12


@pytest.mark.parametrize("table", [JOINT, fd.checkerboard_table(16, 4)], ids=["joint", "board"])
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_pair_posterior_helper_equals_the_exact_posterior(table, source):
    """The cheap L = 2 contraction used for the checkerboard sampler test computes the same
    numbers (1e-12: the same float64 products summed in another order), NaN/-inf included."""
    path = fd.MixturePath(table.shape[0], source=source)
    x = all_sequences(path.num_ids, 2)
    for time in (0.1, 0.5, 0.93):
        t = torch.full((x.shape[0],), time)
        a, b = fd.ExactPosterior(table, path)(x, t), PairPosterior(table, path)(x, t)
        finite = a.isfinite()
        assert torch.equal(finite, b.isfinite())
        assert float((a[finite] - b[finite]).abs().max()) < 1e-12


def test_nll_is_minus_log_of_the_table():
    model = exact_model(JOINT)
    x1 = torch.tensor([[0, 0], [1, 2], [2, 1]])
    want = torch.tensor([-math.log(0.30), -math.log(0.08), -math.log(0.05)], dtype=F64)
    assert torch.allclose(model.net.nll(x1), want, atol=1e-15, rtol=0)


def test_a_fully_masked_sequence_gets_the_marginals():
    """Mask source, every token masked: the posterior is the per-position marginals at any t."""
    net = exact_model(JOINT).net
    x = torch.full((3, 2), 3)
    got = net(x, torch.tensor([0.0, 0.4, 0.9])).exp()
    want = torch.stack([JOINT.sum(1), JOINT.sum(0)])
    assert torch.allclose(got, want.expand(3, 2, 3), atol=1e-14, rtol=0)


def test_the_mask_posterior_at_t0_with_a_data_token_is_the_conditional():
    net = exact_model(JOINT).net
    got = net(torch.tensor([[1, 3]]), torch.zeros(1)).exp()
    assert bool(got.isfinite().all())
    assert torch.allclose(got[0, 1], JOINT[1] / JOINT[1].sum(), atol=1e-12, rtol=0)


def test_a_float32_table_summing_to_1_is_accepted():
    table = torch.tensor([[0.3, 0.2], [0.1, 0.4]])
    net = fd.ExactPosterior(table, fd.MixturePath(2))
    assert math.isclose(float(net.table.sum()), 1.0, abs_tol=1e-12)


def test_bad_tables_are_rejected():
    path = fd.MixturePath(3)
    with pytest.raises(ValueError, match=r"\(V,\)\*L"):
        fd.ExactPosterior(torch.full((3, 4), 1 / 12, dtype=F64), path)
    with pytest.raises(ValueError, match="sum to 1"):
        fd.ExactPosterior(torch.full((3, 3), 0.2, dtype=F64), path)
    with pytest.raises(ValueError, match=">= 0"):
        bad = JOINT.clone()
        bad[0, 0], bad[0, 1] = -0.05, 0.40
        fd.ExactPosterior(bad, path)


def test_checkerboard_table():
    table = fd.checkerboard_table(64, 8)
    assert table.shape == (64, 64) and table.dtype == F64
    assert math.isclose(float(table.sum()), 1.0, abs_tol=1e-12)
    assert int((table > 0).sum()) == 2048
    assert float(table[0, 0]) > 0 and float(table[0, 8]) == 0 and float(table[8, 8]) > 0
    # both marginals uniform: each row and column crosses 4 dark squares of 8 cells
    assert torch.allclose(table.sum(0), torch.full((64,), 1 / 64, dtype=F64), atol=1e-15)
    soft = fd.checkerboard_table(8, 2, contrast=0.5)
    assert math.isclose(float(soft[0, 0] / soft[0, 4]), 2.0)
    with pytest.raises(ValueError, match="multiple"):
        fd.checkerboard_table(10, 3)
