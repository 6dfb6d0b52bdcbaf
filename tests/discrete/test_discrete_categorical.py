"""categorical: inverse-CDF draws in float64 that never return a zero-probability index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowmatch.discrete import categorical

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_frequencies_match_the_probabilities():
    """200k draws of a 5-way distribution with a zero entry: the zero is never drawn and each
    other frequency is within 4 binomial SE of its probability (a correct sampler is outside
    with probability 6e-5 per entry: about 2.5e-4 for the test; a bias of 4 SE = 0.004 at
    p = 0.45 is caught)."""
    probs = torch.tensor([0.45, 0.3, 0.0, 0.2, 0.05], dtype=F64)
    n = 200_000
    idx = categorical(probs.expand(n, 5), generator=gen(0))
    assert idx.dtype == torch.long and idx.shape == (n,)
    freq = torch.bincount(idx, minlength=5).to(F64) / n
    assert float(freq[2]) == 0.0
    se = (probs * (1 - probs) / n).sqrt()
    keep = probs > 0
    assert float(((freq - probs)[keep] / se[keep]).abs().max()) < 4.0


@pytest.mark.parametrize(
    "row",
    [
        [0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.3, 0.0, 0.7, 0.0],
        [1e-300, 0.0, 0.0],
        [2.0, 0.0, 6.0, 0.0],  # not normalized: renormalized in float64
    ],
)
def test_zero_probability_entries_are_never_drawn(row):
    probs = torch.tensor(row, dtype=F64)
    idx = categorical(probs.expand(20_000, -1), generator=gen(1))
    assert bool((probs[idx] > 0).all())


def _fixed_uniform(monkeypatch, value: float) -> None:
    """Make torch.rand return ``value`` (float64) everywhere: the u of the inverse CDF."""
    rand = torch.rand

    def fake(*shape, generator=None, dtype=None, device=None, **kw):
        out = rand(*shape, generator=generator, dtype=dtype, device=device, **kw)
        return torch.full_like(out, value)

    monkeypatch.setattr(torch, "rand", fake)


def test_a_u_that_rounds_up_to_a_subnormal_total_does_not_return_a_trailing_zero(monkeypatch):
    """u = 1 - 2^-53 (torch.rand's largest float64) times a subnormal total rounds to the
    total itself, so the search lands past the last positive entry (on the trailing zeros,
    then past the end): the draw must step back to the last entry of positive probability."""
    u = 1.0 - 2.0**-53
    assert u * 1e-320 == 1e-320  # the rounding this test relies on
    _fixed_uniform(monkeypatch, u)
    probs = torch.tensor([[1e-320, 0.0, 0.0], [0.0, 1e-320, 0.0]], dtype=F64)
    assert categorical(probs).tolist() == [0, 1]


def test_u_zero_skips_leading_zeros(monkeypatch):
    _fixed_uniform(monkeypatch, 0.0)
    probs = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.4, 0.6], [0.3, 0.0, 0.7]], dtype=F64)
    assert categorical(probs).tolist() == [2, 1, 0]


def test_float32_probabilities_are_drawn_in_float64(monkeypatch):
    """A head token of mass 1 then 10000 tail tokens of 5e-8 each, in float32: a sequential
    float32 cumsum loses the whole tail (1 + 5e-8 rounds back to 1), and even torch's accurate
    float32 cumsum cannot resolve tail tokens (float32's spacing near 1 is 1.2e-7 > 5e-8).
    With u fixed at 0.9999, u * total = 1.0004 falls in the tail: the draw must be the token
    float64 arithmetic picks (8000), not the float32 one (8001)."""
    probs = torch.cat([torch.ones(1), torch.full((10_000,), 5e-8)]).to(torch.float32)
    assert float(np.cumsum(probs.numpy())[-1]) == 1.0  # sequential float32: no tail at all
    u = 0.9999
    cdf32 = probs.cumsum(0)
    in_float32 = int(torch.searchsorted(cdf32, torch.tensor([u]) * cdf32[-1], right=True))
    cdf = probs.to(F64).cumsum(0)
    want = int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])], dtype=F64), right=True))
    assert want > 0 and in_float32 != want  # the check tells float32 from float64 apart
    _fixed_uniform(monkeypatch, u)
    assert int(categorical(probs.unsqueeze(0))[0]) == want


def test_float32_and_float64_inputs_give_the_same_draws():
    probs = torch.rand(500, 7, generator=gen(2)) ** 4  # float32, not normalized
    a = categorical(probs, generator=gen(3))
    b = categorical(probs.to(F64), generator=gen(3))
    assert torch.equal(a, b)


def test_the_same_generator_state_gives_the_same_draws():
    probs = torch.rand(2, 3, 11, generator=gen(4), dtype=F64)
    a = categorical(probs, generator=gen(5))
    g = gen(5)
    state = g.get_state()
    b = categorical(probs, generator=g)
    g.set_state(state)
    c = categorical(probs, generator=g)
    assert a.shape == (2, 3) and torch.equal(a, b) and torch.equal(b, c)
    assert not torch.equal(
        categorical(probs.expand(50, 2, 3, 11), generator=gen(6)),
        categorical(probs.expand(50, 2, 3, 11), generator=gen(7)),
    )
