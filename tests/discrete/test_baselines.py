"""The bigram and autoregressive baselines: exact scores, sampling, training, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

from flowmatch.discrete import nats_per_token
from flowmatch.discrete.baselines import (
    AutoregressiveModel,
    Bigram,
    scored_positions,
    tokens_per_sequence,
    train_autoregressive,
)

PAD = 0


def tiny_lm(length: int = 6, vocab: int = 4) -> AutoregressiveModel:
    torch.manual_seed(0)
    model = AutoregressiveModel(length, vocab, pad_id=PAD, dim=16, depth=1, heads=2)
    # The output layer starts at zero (uniform logits); make it say something.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_tokens_per_sequence_and_scored_positions():
    x = torch.tensor([[3, 1, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0], [1, 0, 2, 0]])
    assert tokens_per_sequence(x, PAD).tolist() == [3, 4, 1, 2]
    assert scored_positions(x, PAD).tolist() == [
        [True, True, True, False],
        [True, True, True, True],
        [True, False, False, False],
        [True, True, False, False],
    ]
    with pytest.raises(ValueError):
        tokens_per_sequence(torch.tensor([1, 0]), PAD)


def test_bigram_matches_hand_computed_nll():
    # Vocabulary {0: pad, 1: a, 2: b}. Corpus "ab", "a", "b" (L = 3).
    corpus = torch.tensor([[1, 2, 0], [1, 0, 0], [2, 0, 0]])
    k = 0.5
    bigram = Bigram.fit(corpus, 3, pad_id=PAD, smoothing=k)
    # Scored transitions: start->a, a->b, b->pad | start->a, a->pad | start->b, b->pad.
    # start: a 2, b 1 (3 in all); a: b 1, pad 1 (2); b: pad 2 (2). Add k to each of 3 cells.
    p_start = {0: k / (3 + 3 * k), 1: (2 + k) / (3 + 3 * k), 2: (1 + k) / (3 + 3 * k)}
    p_a = {0: (1 + k) / (2 + 3 * k), 1: k / (2 + 3 * k), 2: (1 + k) / (2 + 3 * k)}
    p_b = {0: (2 + k) / (2 + 3 * k), 1: k / (2 + 3 * k), 2: k / (2 + 3 * k)}
    test = torch.tensor([[2, 1, 0], [1, 1, 1], [0, 2, 2]])  # "ba", "aaa" (no end), ""
    want = [
        -math.log(p_start[2] * p_b[1] * p_a[0]),
        -math.log(p_start[1] * p_a[1] * p_a[1]),
        -math.log(p_start[0]),  # positions after the first pad are not scored
    ]
    got = bigram.nll(test)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(want, rel=1e-12)
    assert torch.allclose(bigram.log_probs.exp().sum(1), torch.ones(4, dtype=torch.float64))
    rate, se = nats_per_token(got, tokens_per_sequence(test, PAD))
    assert rate == pytest.approx(sum(want) / 7) and se > 0


def test_ar_nll_is_the_sum_of_per_step_log_softmax():
    model = tiny_lm()
    x = torch.tensor(
        [[1, 2, 3, 0, 0, 0], [3, 3, 3, 3, 3, 3], [0, 0, 0, 0, 0, 0], [2, 0, 1, 2, 0, 3]]
    )
    got = model.nll(x, batch_size=3)
    assert got.shape == (4,) and got.dtype == torch.float64
    want = []
    with torch.no_grad():
        for row in x:
            total, prefix = 0.0, [model.bos_id]
            for token in row.tolist():
                logits = model.net(torch.tensor([prefix]), None)[0, -1].double()
                total -= float(logits.log_softmax(-1)[token])
                if token == PAD:
                    break
                prefix.append(token)
            want.append(total)
    assert got.tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)
    # The differentiable per-token form agrees and is zero where not scored.
    per_token = model.token_nll(x)
    assert per_token.sum(1).double().tolist() == pytest.approx(want, rel=1e-4)
    assert bool((per_token[0, 4:] == 0).all())


def test_ar_nll_ignores_tokens_after_the_first_pad():
    model = tiny_lm()
    x = torch.tensor([[1, 2, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0]])
    y = torch.tensor([[1, 2, 0, 3, 1, 2], [3, 0, 2, 2, 2, 1]])
    assert torch.allclose(model.nll(x), model.nll(y), rtol=0, atol=1e-6)
    # ... while tokens before it do matter.
    z = torch.tensor([[2, 2, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0]])
    assert abs(float(model.nll(z)[0] - model.nll(x)[0])) > 1e-4


def test_ar_samples_end_with_pads_and_follow_the_generator():
    model = tiny_lm(length=8, vocab=5)
    x = model.sample(200, generator=torch.Generator().manual_seed(1))
    assert x.shape == (200, 8) and x.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) < 5
    is_pad = x == PAD
    after_first = (is_pad.long().cumsum(1) - is_pad.long()) > 0
    assert bool(is_pad[after_first].all())
    assert bool(is_pad.any()) and bool((~is_pad).any())
    again = model.sample(200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, again)
    cold = model.sample(200, temperature=0.05, generator=torch.Generator().manual_seed(2))
    assert len({tuple(r) for r in cold.tolist()}) < len({tuple(r) for r in x.tolist()})


def test_training_reduces_nll_on_a_toy_language():
    # Words "ab", "abab", "ba" (vocab pad, a, b, c; c never used), L = 5.
    words = torch.tensor([[1, 2, 0, 0, 0], [1, 2, 1, 2, 0], [2, 1, 0, 0, 0]])
    data = words[torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(0))]
    torch.manual_seed(0)
    model = AutoregressiveModel(5, 4, pad_id=PAD, dim=16, depth=1, heads=2)
    before = float(model.nll(words).mean())
    assert before == pytest.approx(
        float(tokens_per_sequence(words, PAD).double().mean()) * math.log(4), rel=1e-6
    )
    facts = train_autoregressive(model, data, steps=150, batch_size=32, lr=3e-3, seed=0)
    after = float(model.nll(words).mean())
    assert facts["steps"] == 150 and facts["seconds"] > 0 and math.isfinite(facts["loss"])
    assert after < 0.5 * before
    assert not model.training
    # The best possible: each word has probability 1/3 (log 3 = 1.10 nats per word).
    assert after < 1.6
    # A wall-time budget alone stops training.
    fresh = AutoregressiveModel(5, 4, pad_id=PAD, dim=16, depth=1, heads=2)
    timed = train_autoregressive(fresh, data, seconds=0.2, batch_size=8)
    assert timed["steps"] >= 1 and timed["seconds"] < 2.0


def test_bad_arguments_raise():
    x = torch.tensor([[1, 2, 0]])
    with pytest.raises(ValueError):
        Bigram.fit(x, 3, pad_id=3)
    with pytest.raises(ValueError):
        Bigram.fit(x, 3, pad_id=0, smoothing=0.0)
    with pytest.raises(ValueError):
        Bigram.fit(x.float(), 3, pad_id=0)
    with pytest.raises(ValueError):
        Bigram.fit(x, 2, pad_id=0)  # id 2 outside the vocabulary
    with pytest.raises(ValueError):
        Bigram.fit(x, 3, pad_id=0).nll(torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        AutoregressiveModel(0, 3)
    with pytest.raises(ValueError):
        AutoregressiveModel(3, 3, pad_id=5)
    model = AutoregressiveModel(3, 3, dim=8, depth=1, heads=2)
    with pytest.raises(ValueError):
        model.nll(torch.tensor([[1, 2, 3]]))  # id 3 is the start token, not data
    with pytest.raises(ValueError):
        model.nll(torch.tensor([[1, 2]]))  # wrong length
    with pytest.raises(ValueError):
        model.sample(0)
    with pytest.raises(ValueError):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError):
        train_autoregressive(model, x)  # neither steps nor seconds
    with pytest.raises(ValueError):
        train_autoregressive(model, x, steps=0)
    with pytest.raises(ValueError):
        train_autoregressive(model, x, seconds=-1.0)
    with pytest.raises(ValueError):
        train_autoregressive(model, x, steps=2, lr=0.0)
    with pytest.raises(ValueError):
        train_autoregressive(model, torch.tensor([[1, 2]]), steps=2)
