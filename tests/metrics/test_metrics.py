import math

import numpy as np
import pytest
import torch

import flowmatch as fm


def _points(n, d=2, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_w2_of_a_translate_is_the_translation_length():
    a = _points(300)
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    # For any set, the identity coupling is optimal for a translate: W2 = |shift| = 0.5.
    assert fm.metrics.w2(a, a + shift) == pytest.approx(0.5, rel=1e-9)


def test_w2_in_one_dimension_is_the_sorted_matching():
    a, b = _points(400, 1, seed=1), 2.0 + 0.5 * _points(400, 1, seed=2)
    expected = math.sqrt(((a.sort(0).values - b.sort(0).values) ** 2).mean().item())
    assert fm.metrics.w2(a, b) == pytest.approx(expected, rel=1e-9)
    assert fm.metrics.w2(a[:, 0], b[:, 0]) == pytest.approx(expected, rel=1e-9)


def test_w2_is_zero_for_a_permutation_and_symmetric():
    a = _points(200)
    # The optimal cost is 0 up to float64 round-off (~1e-16), so W2 = sqrt(cost) <= ~1e-8.
    assert fm.metrics.w2(a, a[torch.randperm(200)]) == pytest.approx(0.0, abs=1e-7)
    b = _points(150, seed=3)  # sizes may differ
    assert fm.metrics.w2(a, b) == pytest.approx(fm.metrics.w2(b, a), rel=1e-9)
    assert fm.metrics.w2(a.numpy(), b.numpy()) == pytest.approx(fm.metrics.w2(a, b))


def test_w2_bad_input():
    with pytest.raises(ValueError, match="same dimension"):
        fm.metrics.w2(_points(5, 2), _points(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        fm.metrics.w2(torch.tensor([[float("nan"), 0.0]]), _points(5))


def _gaussian_mmd2(mu1, s1, mu2, s2, d, bandwidths):
    """Closed form of MMD^2 between N(mu1, s1^2 I) and N(mu2, s2^2 I) for a sum of RBF kernels:
    E exp(-|X - Y|^2 / 2h^2) = (h^2 / (h^2 + v))^(d/2) exp(-|dmu|^2 / 2(h^2 + v)), v = var(X - Y).
    """

    def cross(m_a, v_a, m_b, v_b):
        dist2 = float(((m_a - m_b) ** 2).sum())
        return sum(
            (h * h / (h * h + v_a + v_b)) ** (d / 2) * math.exp(-dist2 / (2 * (h * h + v_a + v_b)))
            for h in bandwidths
        )

    return (
        cross(mu1, s1**2, mu1, s1**2)
        + cross(mu2, s2**2, mu2, s2**2)
        - 2 * cross(mu1, s1**2, mu2, s2**2)
    )


@pytest.mark.parametrize(("shift", "s2"), [(0.0, 1.0), (0.5, 1.0), (0.0, 1.5), (1.0, 0.7)])
def test_mmd_matches_the_gaussian_closed_form(shift, s2):
    d, n, draws, bw = 2, 1500, 8, (0.5, 1.0, 2.0)
    mu1, mu2 = np.zeros(d), np.array([shift, 0.0])
    values = [
        fm.metrics.mmd(
            _points(n, d, seed=2 * k),
            torch.tensor(mu2) + s2 * _points(n, d, seed=2 * k + 1),
            bandwidths=bw,
        )
        for k in range(draws)
    ]
    expected = _gaussian_mmd2(mu1, 1.0, mu2, s2, d, bw)
    # The U-statistic is unbiased: the mean of 8 draws is within 4 standard errors of the
    # closed form (one draw's sd is ~0.01-0.02 at n = 1500).
    se = np.std(values, ddof=1) / math.sqrt(draws)
    assert abs(np.mean(values) - expected) <= 4 * se + 1e-4


def test_mmd_default_bandwidths_separate_distributions():
    a, b, c = _points(1000, seed=1), _points(1000, seed=2), 0.8 + _points(1000, seed=3)
    same, diff = fm.metrics.mmd(a, b), fm.metrics.mmd(a, c)
    assert abs(same) < 0.01 < diff


def test_mmd_bad_input():
    with pytest.raises(ValueError, match="bandwidths"):
        fm.metrics.mmd(_points(5), _points(5), bandwidths=[0.0])
    with pytest.raises(ValueError, match="a must be"):
        fm.metrics.mmd(_points(1), _points(5))
    with pytest.raises(ValueError, match="same dimension"):
        fm.metrics.mmd(_points(5, 2), _points(5, 3))
