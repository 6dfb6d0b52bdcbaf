"""The K-step sampler against exact models of small tabulated targets (the oracle), plus its
NFE, reproducibility, infilling, temperature, corrector, guidance and argument errors.

Empirical laws are checked with ``assert_law`` (discrete_toys.py): Pearson's chi-square test
and the Bonferroni-corrected largest per-cell z-score, each at level 1e-3 (a correct sampler
fails a fixed-seed check with probability 1e-3; the seeds are fixed, so the suite is
deterministic)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from discrete_toys import (
    JOINT,
    AwayFromZero,
    Counting,
    LabelledToy,
    PairPosterior,
    assert_law,
    chain_law,
    draw_table,
    exact_model,
    factorized,
    histogram,
    log_softmax,
    marginals_product,
    total_variation,
)
from torch import nn

from flowmatch import discrete as fd
from flowmatch.errors import SamplerError
from flowmatch.schedules import Cosine, Polynomial

F64 = torch.float64
PER_POSITION = torch.tensor(
    [[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]], dtype=F64
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ exact for factorized
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("source", ["mask", "uniform", "probs"])
def test_a_factorized_target_is_sampled_exactly_at_any_steps(source, steps):
    """L = 3, V = 4 (64 cells), 20000 samples: with the exact posterior a factorized target is
    sampled exactly for every K >= 1 (each position's marginal is preserved by every step)."""
    table = factorized()
    model = exact_model(table, PER_POSITION if source == "probs" else source)
    x = fd.sample(model, 20_000, steps=steps, generator=gen(steps))
    assert x.shape == (20_000, 3) and x.dtype == torch.long
    assert_law(histogram(x, 4), table)


@pytest.mark.parametrize("schedule", [None, Cosine(), Polynomial(2.0)], ids=repr)
@pytest.mark.parametrize("source", ["mask", "uniform", "probs"])
def test_the_chain_law_of_a_factorized_target_is_the_target(source, schedule):
    """The exact law of the K-step chain (transition matrices over every state, no sampling
    noise) equals the factorized target to 1e-8: the network is given float32 times (kappa
    off by ~1e-8 from the float64 grid of the jumps), which moves the law by ~4e-10."""
    table = factorized()
    model = exact_model(table, PER_POSITION if source == "probs" else source, schedule)
    for steps in (1, 2, 5):
        law = chain_law(model, steps)
        assert float((law - table.flatten()).abs().max()) < 1e-8


# --------------------------------------------------------------------- a general joint
def test_a_joint_at_64_steps_matches_the_target():
    """Mask source, L = 2, V = 3 non-factorized, K = 64: 20000 samples match the exact law
    of the 64-step chain (level 1e-3), which is within TV 0.005 of the target (next test);
    the first 5000 also pass the check against the target itself. (At 20000 the known bias
    (1/64)(p1 x p2 - p) would make that check fail with probability 2.5%, noncentral
    chi-square lambda = 4.5; at 5000, lambda = 1.1 and 0.5%.)"""
    model = exact_model(JOINT, "mask")
    x = fd.sample(model, 20_000, steps=64, generator=gen(5))
    law = chain_law(model, 64)
    assert total_variation(law, JOINT) < 0.005
    assert_law(histogram(x, 3), law)
    assert_law(histogram(x[:5000], 3), JOINT)


@pytest.mark.parametrize("steps", [1, 2, 8, 64])
def test_the_mask_chain_law_of_a_joint_is_the_target_mixed_with_its_marginals(steps):
    """With the mask source and linear kappa, the two tokens of an L = 2 sequence unmask in
    the same step with probability sum_k (kappa_{k+1} - kappa_k)^2 = 1 / K, and are then
    drawn independently from their marginals; otherwise one after the other, exactly. So the
    K-step law is (1 - 1/K) p + (1/K) p1 x p2 (TV 0.308 / K here), to float64 rounding."""
    model = exact_model(JOINT, "mask")
    want = (1 - 1 / steps) * JOINT + (1 / steps) * marginals_product(JOINT)
    law = chain_law(model, steps)
    assert float((law - want.flatten()).abs().max()) < 1e-12


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_samples_of_a_joint_follow_the_exact_chain_law(source):
    """K = 2, where the sampler is far from the target (TV 0.15 mask, 0.20 uniform) but has
    an exact law by enumeration: 20000 samples match that law, not the target."""
    model = exact_model(JOINT, source)
    law = chain_law(model, 2)
    assert total_variation(law, JOINT) > 0.1
    x = fd.sample(model, 20_000, steps=2, generator=gen(6))
    assert_law(histogram(x, 3), law)


def test_checkerboard_total_variation_falls_with_steps():
    """64 x 64 checkerboard (L = 2, V = 64, 2048 dark cells), 20000 samples per K.

    The K-step law is (1 - 1/K) p + (1/K) u (see above; both marginals are uniform, so p1 x p2
    is uniform u), so the mass on the light squares is exactly 0.5 / K: checked within 4
    binomial SE. The TV to the target at K = 16 must be below that of 20000 exact draws (the
    floor: an empirical histogram of 2048 cells is far from its law at this N) + 0.03 (the
    K = 16 bias is 0.5 / 16 = 0.031 at most, and partly hidden by the noise). Measured TVs:
    K = 1: 0.506, K = 4: 0.194, K = 16: 0.146 vs a floor of 0.126 (seeds fixed)."""
    table = fd.checkerboard_table(64, 8)
    path = fd.MixturePath(64)
    # PairPosterior: ExactPosterior's formula in a cheap contraction order (checked equal in
    # test_discrete_oracle.py); ExactPosterior itself takes ~0.5-1 s per 20000-row call here
    model = fd.DiscreteFlowModel(PairPosterior(table, path), path, length=2)
    n = 20_000
    floor = total_variation(histogram(draw_table(table, n, seed=0), 64), table)
    light = (table == 0).flatten()
    tv = {}
    for steps in (1, 4, 16):
        counts = histogram(fd.sample(model, n, steps=steps, generator=gen(steps)), 64)
        tv[steps] = total_variation(counts, table)
        p_light = 0.5 / steps
        se = math.sqrt(p_light * (1 - p_light) / n)
        assert abs(float(counts[light].sum()) / n - p_light) < 4 * se
    print(f"checkerboard TV at N={n}: {tv} (floor {floor:.4f})")
    assert tv[1] > tv[4] > tv[16]
    assert tv[16] < floor + 0.03


# ------------------------------------------------------------------------- NFE and RNG
def test_the_nfe_is_the_number_of_steps():
    net = Counting(fd.ExactPosterior(factorized(), fd.MixturePath(4)))
    model = fd.DiscreteFlowModel(net, fd.MixturePath(4), length=3)
    for steps in (1, 5, 12):
        net.rows.clear()
        fd.sample(model, 9, steps=steps, generator=gen(0))
        assert net.rows == [9] * steps


@pytest.mark.parametrize("guidance", [0.0, 2.0, 3.5])
def test_guidance_keeps_the_nfe_with_both_branches_in_one_batch(guidance):
    net = Counting(LabelledToy())
    model = fd.DiscreteFlowModel(net, fd.MixturePath(4), length=3)
    cond = torch.tensor([0, 1, 0, 1, 1])
    fd.sample(model, 5, steps=6, cond=cond, guidance=guidance, generator=gen(0))
    assert net.rows == [10] * 6
    net.rows.clear()
    fd.sample(model, 5, steps=6, cond=cond, guidance=1.0, generator=gen(0))
    assert net.rows == [5] * 6  # w = 1 is the conditional model: one branch


def test_callback_sees_every_step():
    model = exact_model(factorized(), "mask")
    seen = []
    x = fd.sample(
        model, 6, steps=4, generator=gen(0), callback=lambda k, x: seen.append((k, x.clone()))
    )
    assert [k for k, _ in seen] == [0, 1, 2, 3] and torch.equal(seen[-1][1], x)
    masked = [int((x_k == 4).sum()) for _, x_k in seen]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_same_seed_gives_the_same_samples(source):
    model = exact_model(JOINT, source)
    a = fd.sample(model, 300, steps=5, generator=gen(11))
    b = fd.sample(model, 300, steps=5, generator=gen(11))
    c = fd.sample(model, 300, steps=5, generator=gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("schedule", [None, Cosine(), Polynomial(3.0)], ids=repr)
@pytest.mark.parametrize("steps", [1, 3, 10, 100])
def test_no_mask_token_is_left(schedule, steps):
    model = exact_model(factorized(), "mask", schedule)
    x = fd.sample(model, 500, steps=steps, generator=gen(steps))
    assert int(x.min()) >= 0 and int(x.max()) < 4


# ---------------------------------------------------------------------------- infilling
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_fixed_positions_keep_their_tokens(source):
    table = factorized()
    model = _infilling_model(table) if source == "mask" else exact_model(table, source)
    g = gen(3)
    x0 = torch.randint(0, 4, (400, 3), generator=g)
    fixed = torch.rand(400, 3, generator=g) < 0.5
    x = fd.sample(model, steps=4, x0=x0, fixed=fixed, generator=gen(4))
    assert torch.equal(x[fixed], x0[fixed])
    assert int(x.max()) < 4
    assert not torch.equal(x[~fixed], x0[~fixed])  # the free positions were generated


def _infilling_model(table: torch.Tensor) -> fd.DiscreteFlowModel:
    """The exact mask-source model, evaluated at max(t, 1e-3): ExactPosterior returns NaN at
    t = 0 for a sequence holding data tokens (an xfailed bug, test_discrete_oracle.py), which
    is where infilling starts; for the mask source the posterior does not depend on t."""
    path = fd.MixturePath(table.shape[0])
    net = AwayFromZero(fd.ExactPosterior(table, path))
    return fd.DiscreteFlowModel(net, path, length=table.ndim)


def _shift_table(vocab: int = 5) -> torch.Tensor:
    """x^2 = x^1 + 1 mod V, with x^1 of unequal probabilities."""
    table = torch.zeros(vocab, vocab, dtype=F64)
    weights = torch.arange(1, vocab + 1, dtype=F64)
    table[torch.arange(vocab), (torch.arange(vocab) + 1) % vocab] = weights / weights.sum()
    return table


@pytest.mark.parametrize("steps", [1, 4])
def test_infilling_a_deterministic_relation_is_exact(steps):
    """Mask source, x^2 = x^1 + 1 mod 5: fixing either position determines the other, for
    every sample (an exact model with the mask source conditions exactly)."""
    model = _infilling_model(_shift_table())
    first = torch.arange(500) % 5
    x0 = torch.stack([first, torch.full_like(first, 5)], 1)
    fixed = torch.tensor([True, False]).expand(500, 2)
    x = fd.sample(model, steps=steps, x0=x0, fixed=fixed, generator=gen(7))
    assert torch.equal(x[:, 0], first) and torch.equal(x[:, 1], (first + 1) % 5)
    x0 = torch.stack([torch.full_like(first, 5), first], 1)
    x = fd.sample(model, steps=steps, x0=x0, fixed=fixed.flip(1), generator=gen(8))
    assert torch.equal(x[:, 1], first) and torch.equal(x[:, 0], (first - 1) % 5)


def test_infilling_with_the_exact_posterior_itself_is_exact():
    model = exact_model(_shift_table(), "mask")
    first = torch.arange(50) % 5
    x0 = torch.stack([first, torch.full_like(first, 5)], 1)
    fixed = torch.tensor([True, False]).expand(50, 2)
    x = fd.sample(model, steps=1, x0=x0, fixed=fixed, generator=gen(7))
    assert torch.equal(x[:, 1], (first + 1) % 5)


def test_infilling_samples_the_conditional_law():
    """Mask source, JOINT with x^1 = 1 fixed: x^2 ~ p(x^2 | x^1 = 1) = (0.02, 0.2, 0.08) / 0.3."""
    model = _infilling_model(JOINT)
    x0 = torch.tensor([[1, 3]]).expand(20_000, 2)
    fixed = torch.tensor([True, False]).expand(20_000, 2)
    x = fd.sample(model, steps=3, x0=x0, fixed=fixed, generator=gen(9))
    assert bool((x[:, 0] == 1).all())
    assert_law(torch.bincount(x[:, 1], minlength=3), JOINT[1] / JOINT[1].sum())


# ------------------------------------------------------------- temperature and corrector
def test_a_small_temperature_gives_the_posterior_mode():
    """Mask source, factorized target with modes (3, 0, 2): every masked token is drawn from
    its marginal sharpened to p^(1/T); at T = 1e-3 the runner-up has relative mass
    (0.3/0.4)^1000 = 1e-125."""
    model = exact_model(factorized(), "mask")
    x = fd.sample(model, 2000, steps=4, temperature=1e-3, generator=gen(10))
    assert bool((x == torch.tensor([3, 0, 2])).all())


def test_the_corrector_keeps_a_factorized_target():
    """Mask source, K = 32, corrector a = 1 (tokens are re-masked and redrawn): each redraw
    is from the exact marginal, so the factorized target is still sampled exactly."""
    model = exact_model(factorized(), "mask")
    x = fd.sample(model, 20_000, steps=32, corrector=1.0, generator=gen(12))
    assert_law(histogram(x, 4), factorized())


def test_the_corrector_remasks_tokens():
    model = exact_model(factorized(), "mask")
    masked = []
    fd.sample(
        model,
        200,
        steps=16,
        corrector=2.0,
        generator=gen(13),
        callback=lambda k, x: masked.append(int((x == 4).sum())),
    )
    assert masked[-1] == 0
    assert any(b > a for a, b in itertools.pairwise(masked))  # some re-masking


def test_the_corrector_needs_the_mask_source():
    model = exact_model(factorized(), "uniform")
    with pytest.raises(SamplerError, match="corrector") as err:
        fd.sample(model, 4, steps=4, corrector=0.5)
    assert err.value.option == "corrector"
    fd.sample(model, 4, steps=4, corrector=0.0)  # 0 is no corrector


# ----------------------------------------------------------------------------- guidance
@pytest.mark.parametrize("w", [0.0, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_guidance_combines_the_log_posteriors(w, temperature):
    """log p_w = log p_u + w (log p_c - log p_u), renormalized, then divided by T: w = 1 is
    the conditional, w = 0 the unconditional (uniform here). Tolerance 1e-12: the same
    float64 arithmetic in another order."""
    toy = LabelledToy()
    model = fd.DiscreteFlowModel(toy, fd.MixturePath(4, source="uniform"), length=3)
    x = torch.randint(0, 4, (2, 3), generator=gen(0))
    t = torch.tensor([0.1, 0.7])
    cond = torch.tensor([0, 1])
    got = model.log_posterior(x, t, cond, guidance=w, temperature=temperature)
    log_c, log_u = log_softmax(toy.logits[cond]), log_softmax(toy.logits[[2, 2]])
    want = log_softmax((log_u + w * (log_c - log_u)) / temperature)[:, None].expand(2, 3, 4)
    assert got.dtype == F64 and torch.allclose(got, want, atol=1e-12, rtol=0)
    if w == 0.0 and temperature == 1.0:
        assert torch.allclose(got, torch.full_like(got, -math.log(4)), atol=1e-12, rtol=0)


def test_the_guided_sampler_draws_from_the_guided_posterior():
    """Mask source; the toy's posterior is the same at every step, so each token is one draw
    from softmax(log p_u + 2 (log p_c - log p_u)): label 0 for every sequence."""
    toy = LabelledToy()
    model = fd.DiscreteFlowModel(toy, fd.MixturePath(4), length=2)
    n = 10_000
    x = fd.sample(
        model, n, steps=3, cond=torch.zeros(n, dtype=torch.long), guidance=2.0, generator=gen(14)
    )
    log_c, log_u = log_softmax(toy.logits[0]), log_softmax(toy.logits[2])
    want = log_softmax(log_u + 2.0 * (log_c - log_u)).exp()
    for i in range(2):
        assert_law(torch.bincount(x[:, i], minlength=4), want)


class ForbidsLastToken(nn.Module):
    """A labelled net that rules out the last token (logit -inf) in both branches, as nets
    that mask forbidden tokens (padding, say) do; uniform over the others."""

    num_classes = 1
    null_class = 1

    def __init__(self, vocab: int = 3) -> None:
        super().__init__()
        self.vocab = vocab
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        out = torch.zeros(*x.shape, self.vocab)
        out[..., -1] = -math.inf
        return out


def test_a_token_ruled_out_without_guidance_is_never_drawn():
    model = fd.DiscreteFlowModel(ForbidsLastToken(), fd.MixturePath(3), length=2)
    cond = torch.zeros(200, dtype=torch.long)
    for w in (None, 1.0):
        x = fd.sample(model, 200, steps=2, cond=cond, guidance=w, generator=gen(16))
        assert bool((x != 2).all())


@pytest.mark.parametrize("w", [0.0, 2.0])
def test_guidance_never_draws_a_token_both_branches_rule_out(w):
    model = fd.DiscreteFlowModel(ForbidsLastToken(), fd.MixturePath(3), length=2)
    cond = torch.zeros(200, dtype=torch.long)
    logp = model.log_posterior(torch.full((200, 2), 3), torch.zeros(200), cond, guidance=w)
    assert not bool(logp.isnan().any())
    x = fd.sample(model, 200, steps=2, cond=cond, guidance=w, generator=gen(16))
    assert bool((x != 2).all())


def test_guidance_errors_name_guidance():
    unlabelled = exact_model(factorized(), "mask")
    labelled = fd.DiscreteFlowModel(LabelledToy(), fd.MixturePath(4), length=3)
    cond = torch.zeros(4, dtype=torch.long)
    cases = [
        (unlabelled, {"guidance": 2.0, "cond": cond}, "labels and a null class"),
        (labelled, {"guidance": 2.0}, "cond="),
        (labelled, {"guidance": -1.0, "cond": cond}, ">= 0"),
        (labelled, {"guidance": float("inf"), "cond": cond}, ">= 0"),
        (labelled, {"guidance": True, "cond": cond}, ">= 0"),
        (labelled, {"guidance": "2", "cond": cond}, ">= 0"),
    ]
    for model, kwargs, match in cases:
        with pytest.raises(SamplerError, match=match) as err:
            fd.sample(model, 4, steps=2, **kwargs)
        assert err.value.option == "guidance"


# ------------------------------------------------------------------------------- errors
def _bad_calls():
    x0 = torch.full((4, 3), 4)
    half = torch.tensor([True, False, False]).expand(4, 3)
    data = torch.zeros(4, 3, dtype=torch.long)
    return [
        ({"num": 4, "steps": 0}, "steps"),
        ({"num": 4, "steps": 2.0}, "steps"),
        ({"num": 4, "steps": True}, "steps"),
        ({"steps": 2}, "num"),
        ({"num": 0, "steps": 2}, "num"),
        ({"num": True, "steps": 2}, "num"),
        ({"steps": 2, "x0": torch.full((4, 2), 4)}, "x0"),
        ({"steps": 2, "x0": torch.full((4,), 4)}, "x0"),
        ({"steps": 2, "x0": x0.float()}, "x0"),
        ({"steps": 2, "x0": torch.full((4, 3), 5)}, "x0"),
        ({"steps": 2, "x0": torch.full((4, 3), -1)}, "x0"),
        ({"num": 4, "steps": 2, "fixed": half}, "fixed"),
        ({"steps": 2, "x0": data, "fixed": half.long()}, "fixed"),
        ({"steps": 2, "x0": data, "fixed": half[:2]}, "fixed"),
        ({"steps": 2, "x0": x0, "fixed": half}, "fixed"),  # a fixed mask token
        ({"num": 4, "steps": 2, "temperature": 0.0}, "temperature"),
        ({"num": 4, "steps": 2, "temperature": float("inf")}, "temperature"),
        ({"num": 4, "steps": 2, "corrector": -0.5}, "corrector"),
        ({"num": 4, "steps": 2, "cond": torch.zeros(3, dtype=torch.long)}, "cond"),
    ]


@pytest.mark.parametrize(("kwargs", "option"), _bad_calls())
def test_bad_arguments_raise_sampler_error_naming_the_option(kwargs, option):
    model = exact_model(factorized(), "mask")
    with pytest.raises(SamplerError) as err:
        fd.sample(model, **kwargs)
    assert err.value.option == option, str(err.value)


def test_only_a_discrete_flow_model_is_sampled():
    with pytest.raises(SamplerError, match="DiscreteFlowModel") as err:
        fd.sample(nn.Linear(2, 2), 4, steps=2)
    assert err.value.option == "model"


def test_a_uniform_source_x0_of_mask_ids_is_rejected():
    model = exact_model(factorized(), "uniform")
    with pytest.raises(SamplerError) as err:
        fd.sample(model, steps=2, x0=torch.full((2, 3), 4))  # no mask id without a mask
    assert err.value.option == "x0"


def test_a_deterministic_relation_breaks_only_when_both_tokens_jump_together():
    """x^2 = x^1 + 1 mod 5 with the mask source at K = 8: both tokens unmask in the same step
    with probability 1/8 and are then drawn from their marginals independently, valid with
    probability sum_a p1(a)^2 = 55/225; so a fraction (1/8)(1 - 55/225) = 0.0944 of the
    samples break the relation (within 4 binomial SE), and the rest of the law follows the
    exact chain (chain_law also handles the impossible states, whose posterior is 0/0)."""
    model = exact_model(_shift_table(), "mask")
    n = 20_000
    x = fd.sample(model, n, steps=8, generator=gen(15))
    broken = float((x[:, 1] != (x[:, 0] + 1) % 5).to(F64).mean())
    p = (1 / 8) * (1 - 55 / 225)
    assert abs(broken - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert_law(histogram(x, 5), chain_law(model, 8))
