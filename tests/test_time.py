import math

import pytest
import torch
from scipy import stats

import flowmatch as fm

N = 20_000
P_MIN = 1e-3  # KS test at fixed seeds; a correct sampler fails this with probability 0.1%


def _draw(sampler, n=N, seed=0):
    t = sampler(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert t.shape == (n,)
    assert ((t >= 0) & (t <= 1)).all()
    return t.numpy()


def test_uniform_is_uniform():
    assert stats.kstest(_draw(fm.time.Uniform()), "uniform").pvalue > P_MIN


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (-0.5, 0.7), (1.0, 2.0)])
def test_logit_normal_has_normal_logits(mean, std):
    logits = [math.log(v / (1 - v)) for v in _draw(fm.time.LogitNormal(mean, std))]
    assert stats.kstest(logits, "norm", args=(mean, std)).pvalue > P_MIN


@pytest.mark.parametrize("shift", [0.5, 1.0, 3.0])
def test_shifted_matches_its_cdf(shift):
    # The noise level n = 1 - t is mapped by g(n) = shift n / (1 + (shift - 1) n); with n uniform,
    # P(t <= x) = P(n >= g^-1(1 - x)) = 1 - g^-1(1 - x), g^-1(m) = m / (shift - (shift - 1) m).
    def cdf(x):
        m = 1.0 - x
        return 1.0 - m / (shift - (shift - 1.0) * m)

    assert stats.kstest(_draw(fm.time.Shifted(shift)), cdf).pvalue > P_MIN


def test_shift_moves_mass_towards_noise():
    median = {s: float(torch.tensor(_draw(fm.time.Shifted(s))).median()) for s in (1.0, 3.0)}
    assert median[1.0] == pytest.approx(0.5, abs=0.02)
    # With shift 3 the median noise level is g(0.5) = 0.75, i.e. t = 0.25.
    assert median[3.0] == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize(
    "sampler", [fm.time.Uniform(), fm.time.LogitNormal(), fm.time.Shifted(2.0)], ids=repr
)
def test_reproducible_and_typed(sampler):
    a, b = _draw(sampler, 100, seed=5), _draw(sampler, 100, seed=5)
    assert (a == b).all()
    assert sampler(3, dtype=torch.float32).dtype == torch.float32


def test_bad_parameters():
    with pytest.raises(ValueError, match="std"):
        fm.time.LogitNormal(0.0, 0.0)
    with pytest.raises(ValueError, match="shift"):
        fm.time.Shifted(-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        fm.time.Uniform()(0)
