"""The ELBO of a discrete flow against exact enumerations with the oracle.

The discrete-time bound (``steps=K``) bounds -log of the likelihood of the K-step sampler
itself, p_K(x1) (computed exactly by ``chain_law``), for every sequence; the K-step sampler
is not the target for K < infinity (several tokens jump at once), so per sequence the bound
can be below the target's -log p(x1). Averaged over the data it is >= the entropy H(p)
(cross-entropy >= entropy). With the mask source it tightens to -log p(x1) as K grows; with
the uniform source it is valid but not tight.

Expected bounds are enumerated exactly (``expected_bound``: every x_t state with its
probability); Monte Carlo estimates are compared with them within 4 standard errors of the
mean (a correct estimator fails with probability 6e-5; seeds fixed)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from discrete_toys import (
    JOINT,
    all_sequences,
    chain_law,
    entropy,
    exact_model,
    expected_bound,
)
from torch import nn

from flowmatch import discrete as fd

F64 = torch.float64
STEPS = (1, 2, 4, 16, 64)
X1 = all_sequences(3, 2)  # the 9 sequences of JOINT, row-major
P = JOINT.flatten()
# measured expected bounds (nats, data average over JOINT, H = 1.9276):
#   K:        1       2       4       16      64      256
#   mask:    2.1709  2.0492  1.9884  1.9428  1.9314  1.9285
#   uniform: 2.1709  2.4286  2.4869  2.5084  2.5112  2.5118


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_mean_within_4_se(diff: torch.Tensor, slack: float = 0.0) -> None:
    mean, se = float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))
    assert abs(mean) < 4 * se + slack, f"mean difference {mean:.4f}, SE {se:.4f}"


# ---------------------------------------------------------------- discrete time, exact
def test_the_expected_mask_bound_bounds_the_chain_and_tightens_with_steps():
    model = exact_model(JOINT, "mask")
    averages = []
    for steps in STEPS:
        bound = expected_bound(model, X1, steps)
        chain_nll = -chain_law(model, steps).log()
        # 1e-12: at K = 1 the bound is exactly the chain's NLL (one step, q = 1); rounding
        assert bool((bound >= chain_nll - 1e-12).all()), steps
        averages.append(float((P * bound).sum()))
    assert all(a >= entropy(JOINT) for a in averages)
    assert all(a >= b for a, b in itertools.pairwise(averages)), averages
    # per sequence it bounds the K-step model, not the target: x1 = (1, 2) at K = 1 has
    # -log p1(1) p2(2) = -log(0.3 * 0.28) = 2.477 < -log p(1, 2) = -log 0.08 = 2.526
    one = expected_bound(model, torch.tensor([[1, 2]]), 1)
    assert float(one) < -math.log(0.08)
    assert math.isclose(float(one), -math.log(0.3 * 0.28), abs_tol=1e-12)


def test_the_expected_mask_bound_at_256_steps_is_the_nll_within_001():
    """The excess over -log p(x1) is O(1/K): the K-step law is (1 - 1/K) p + (1/K) p1 x p2
    (test_discrete_sampler.py), and the bound's excess over that law's NLL falls as fast;
    measured max 0.0072 nats over the 9 sequences at K = 256 (exact, no noise)."""
    model = exact_model(JOINT, "mask")
    bound = expected_bound(model, X1, 256)
    assert float((bound - model.net.nll(X1)).abs().max()) < 0.01


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_one_step_bound_is_the_nll_of_the_product_of_marginals(source):
    """One step draws every token from its t = 0 posterior, the marginal: the bound is
    exactly -log p1(a) - log p2(b) (1e-12: float64 rounding)."""
    model = exact_model(JOINT, source)
    want = -(JOINT.sum(1)[X1[:, 0]].log() + JOINT.sum(0)[X1[:, 1]].log())
    assert float((expected_bound(model, X1, 1) - want).abs().max()) < 1e-12


def test_a_single_masked_token_has_an_exact_bound_at_every_step_count():
    table = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)
    model = exact_model(table, "mask")
    x1 = torch.arange(4)[:, None]
    for steps in (1, 4, 64):
        # 1e-12: one token unmasks once, from the exact marginal: no gap, only rounding
        assert float((expected_bound(model, x1, steps) - model.net.nll(x1)).abs().max()) < 1e-12


@pytest.mark.parametrize("steps", [1, 4, 16])
def test_the_expected_uniform_bound_is_valid_but_not_tight(steps):
    model = exact_model(JOINT, "uniform")
    bound = expected_bound(model, X1, steps)
    chain_nll = -chain_law(model, steps).log()
    assert bool((bound >= chain_nll - 1e-12).all())  # 1e-12: equality at K = 1, rounding
    average = float((P * bound).sum())
    assert average >= entropy(JOINT)
    if steps > 1:  # measured 2.487 (K = 4), 2.508 (K = 16) vs H = 1.928: not tight
        assert average > entropy(JOINT) + 0.5


def test_a_single_uniform_token_is_sampled_exactly_but_bounded_loosely():
    """L = 1, table (0.5, 0.3, 0.15, 0.05): the K-step chain's law (product of transition
    matrices) is the table (the sampler is exact for one token), the enumerated bound is >=
    -log p(x1) for every x1, exact at K = 1, and at K = 64 the first token's bound is 0.919
    vs -log 0.5 = 0.693 (the figures the lead measured)."""
    table = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)
    model = exact_model(table, "uniform")
    x1 = torch.arange(4)[:, None]
    nll = model.net.nll(x1)
    for steps in (1, 4, 16, 64):
        law = chain_law(model, steps)
        assert float((law - table).abs().max()) < 1e-12  # 1e-12: rounding of 64 products
        bound = expected_bound(model, x1, steps)
        assert bool((bound >= -law.log() - 1e-12).all())
        if steps == 1:
            assert float((bound - nll).abs().max()) < 1e-12
    assert abs(float(bound[0]) - 0.9186) < 1e-3  # K = 64, measured 0.918639
    assert bool((bound - nll > 0.2).all())


# -------------------------------------------------------------- discrete time, sampled
@pytest.mark.parametrize(("source", "draws"), [("mask", 1), ("uniform", 1), ("mask", 3)])
def test_the_sampled_bound_matches_the_enumeration(source, draws):
    """elbo(steps=4): one x_t draw per step per sequence (averaged over ``draws``); over 9 x
    400 sequences its mean matches the enumerated expectation within 4 SE."""
    model = exact_model(JOINT, source)
    x1 = X1.repeat(400, 1)
    got = fd.elbo(model, x1, steps=4, draws=draws, generator=gen(3))
    assert got.shape == (3600,) and got.dtype == F64
    assert_mean_within_4_se(got - expected_bound(model, X1, 4).repeat(400))


def test_the_sampled_bound_is_reproducible():
    model = exact_model(JOINT, "uniform")
    a = fd.elbo(model, X1, steps=3, generator=gen(4))
    assert torch.equal(a, fd.elbo(model, X1, steps=3, generator=gen(4)))
    assert not torch.equal(a, fd.elbo(model, X1, steps=3, generator=gen(5)))


# ------------------------------------------------------------------- continuous time
def _random_joint(vocab: int, length: int, seed: int) -> torch.Tensor:
    table = torch.rand((vocab,) * length, generator=gen(seed), dtype=F64) + 0.05
    return table / table.sum()


@pytest.mark.parametrize("table", [JOINT, _random_joint(2, 4, seed=1)], ids=["L2", "L4"])
def test_the_continuous_mask_bound_is_unbiased_for_the_nll(table):
    """steps=None with the mask source: the any-order estimator's mean over 3600 sequences
    (each x1 of the table repeated) is the exact NLL within 4 SE."""
    model = exact_model(table, "mask")
    x1 = all_sequences(table.shape[0], table.ndim)
    x1 = x1.repeat(3600 // x1.shape[0], 1)
    got = fd.elbo(model, x1, generator=gen(6))
    assert got.dtype == F64 and bool((got >= 0).all())
    assert_mean_within_4_se(got - model.net.nll(x1))


def test_the_continuous_mask_estimator_draws_its_times_and_masks_as_documented():
    """L = 4: given m masked tokens, kappa ~ Beta(L - m + 1, m) (mean (L - m + 1) / (L + 1))
    and every position is masked with probability m / L; each within 4 SE."""

    class Recording(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.seen = net, []

        def forward(self, x, t):
            self.seen.append((x.clone(), t.clone()))
            return self.net(x, t)

    table = _random_joint(2, 4, seed=2)
    path = fd.MixturePath(2)
    net = Recording(fd.ExactPosterior(table, path))
    model = fd.DiscreteFlowModel(net, path, length=4)
    x1 = torch.randint(0, 2, (20_000, 4), generator=gen(7))
    fd.elbo(model, x1, generator=gen(8))
    ((x, t),) = net.seen
    masked = x == 2
    m = masked.sum(1)
    kappa = t.to(F64)  # linear kappa
    for count in range(1, 5):
        rows = m == count
        n = int(rows.sum())
        assert abs(n / 20_000 - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20_000)  # m uniform
        a, b = 4 - count + 1, count
        mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
        assert abs(float(kappa[rows].mean()) - mean) < 4 * math.sqrt(var / n)
        freq = masked[rows].to(F64).mean(0)
        p = count / 4
        se = math.sqrt(p * (1 - p) / n) if 0 < p < 1 else 1e-12
        assert float((freq - p).abs().max()) < 4 * se + 1e-12


def test_the_continuous_uniform_bound_is_the_limit_of_the_discrete_bound():
    """steps=None with the uniform source (plain uniform times): the mean over 9 x 20000
    sequences, 4 draws each, is the K -> infinity limit of the enumerated discrete bound
    within 0.15 nats (of ~3.11). Not an SE check: this estimator is heavy-tailed (its second
    moment diverges like log 1/(1 - t) near t = 1, cut only by float32 t <= 1 - 2^-24;
    single values reach 6000 nats), so its sample SE is unreliable (z-scores from -4.0 to
    +1.5 over 10 seeds at 9 x 4000). Measured over 10 seeds at this size: |mean - limit| <=
    0.062; the enumerated K = 256 bound is 0.004 below the limit (equal-weight means 3.0960,
    3.1077, 3.1106 at K = 64, 256, 1024)."""
    model = exact_model(JOINT, "uniform")
    x1 = X1.repeat(20_000, 1)
    got = fd.elbo(model, x1, draws=4, generator=gen(9))
    limit = float(expected_bound(model, X1, 256).mean()) + 0.004
    assert abs(float(got.mean()) - limit) < 0.15


# ----------------------------------------------------------------------- nats per token
def test_nats_per_token_on_hand_numbers():
    """nats (10, 20, 30) over tokens (2, 4, 5): r = 60 / 11 = 5.4545; residuals
    nats - r tokens = (-10/11, -20/11, 30/11), sd = sqrt((100 + 400 + 900) / 121 / 2)
    = 2.40523; SE = sd / (sqrt(3) * 11/3) = 0.378725 (tolerance 1e-12: float64 rounding)."""
    ratio, se = fd.nats_per_token(torch.tensor([10.0, 20.0, 30.0]), torch.tensor([2, 4, 5]))
    assert math.isclose(ratio, 60 / 11, abs_tol=1e-12)
    sd = math.sqrt(1400 / 121 / 2)
    assert math.isclose(se, sd / (math.sqrt(3) * 11 / 3), abs_tol=1e-12)
    assert math.isclose(se, 0.378725, abs_tol=1e-6)
    # equal lengths: the ratio is mean / length and the SE the plain SE of the mean / length
    nats = torch.tensor([3.0, 5.0, 4.0, 8.0], dtype=F64)
    ratio, se = fd.nats_per_token(nats, torch.full((4,), 2))
    assert math.isclose(ratio, 2.5, abs_tol=1e-12)
    assert math.isclose(se, float(nats.std()) / 2 / 2, abs_tol=1e-12)


@pytest.mark.parametrize(
    ("nats", "tokens"),
    [
        (torch.ones(3), torch.ones(4)),
        (torch.ones(1), torch.ones(1)),
        (torch.ones(2, 2), torch.ones(2, 2)),
    ],
)
def test_nats_per_token_rejects_bad_shapes(nats, tokens):
    with pytest.raises(ValueError, match="N >= 2"):
        fd.nats_per_token(nats, tokens)


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": True}, "steps"),
        ({"steps": 2.0}, "steps"),
        ({"draws": 0}, "draws"),
        ({"draws": True}, "draws"),
        ({"draws": 1.5}, "draws"),
    ],
)
def test_bad_options_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fd.elbo(exact_model(JOINT), X1, **kwargs)


@pytest.mark.parametrize(
    "x1",
    [X1.float(), X1[:, :1], X1[0], torch.zeros(2, 3, dtype=torch.long)],
    ids=["float", "short", "1-D", "long"],
)
def test_bad_sequences_are_rejected(x1):
    with pytest.raises(ValueError, match="x1 must be token ids"):
        fd.elbo(exact_model(JOINT), x1, steps=2)


@pytest.mark.parametrize("steps", [None, 2])
@pytest.mark.parametrize("bad", [3, -1], ids=["mask-id", "negative"])
def test_ids_outside_the_vocabulary_raise_value_error(steps, bad):
    x1 = torch.tensor([[0, bad]])
    with pytest.raises(ValueError, match="x1"):
        fd.elbo(exact_model(JOINT), x1, steps=steps)
