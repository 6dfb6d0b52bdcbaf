"""Tests for the built-in 2-D toy datasets."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from flowmatch.data import (
    CHECKERBOARD_LOG_DENSITY,
    TOY_DATASETS,
    checkerboard_log_prob,
    eight_gaussians_params,
    list_toy,
    sample_toy,
)

NAMES = ["checkerboard", "8gaussians", "moons", "circles", "spirals", "rings"]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _within_binomial(counts: torch.Tensor, n: int, p: float, n_sd: float = 3.0) -> None:
    """Every count is within n_sd binomial standard deviations of n * p."""
    sd = math.sqrt(n * p * (1.0 - p))
    deviation = (counts.to(torch.float64) - n * p).abs()
    assert bool((deviation <= n_sd * sd).all()), f"counts {counts.tolist()}, expected {n * p}±{sd}"


def _distance_to_polyline(x: torch.Tensor, curve: torch.Tensor) -> torch.Tensor:
    """Distance of each point (B, 2) to the nearest vertex of a densely sampled curve (M, 2)."""
    return torch.cdist(x.to(torch.float64), curve.to(torch.float64)).amin(dim=1)


# --- registry and arguments ---------------------------------------------------------------


def test_registry_lists_all_sets_with_one_line_descriptions() -> None:
    assert sorted(list_toy()) == sorted(NAMES)
    assert list_toy() == list(TOY_DATASETS)
    for name, dataset in TOY_DATASETS.items():
        assert dataset.name == name
        assert dataset.description.strip()
        assert "\n" not in dataset.description


def test_unknown_name_names_argument_and_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="name") as info:
        sample_toy("swissroll", 10)
    message = str(info.value)
    assert "'swissroll'" in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize("n", [0, -3])
def test_nonpositive_n_raises(n: int) -> None:
    with pytest.raises(ValueError, match=r"^n: .*got " + str(n)):
        sample_toy("moons", n)


def test_non_integer_n_and_non_float_dtype_raise() -> None:
    with pytest.raises(TypeError, match="n"):
        sample_toy("moons", 10.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        sample_toy("moons", 10, dtype=torch.int64)


# --- every set: shape, dtype, reproducibility, scale ------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_finite(name: str, dtype: torch.dtype) -> None:
    x = sample_toy(name, 257, generator=_seeded(), dtype=dtype)
    assert x.shape == (257, 2)
    assert x.dtype == dtype
    assert bool(torch.isfinite(x).all())
    assert sample_toy(name, 1, generator=_seeded()).shape == (1, 2)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_generator_reproduces_exactly(name: str) -> None:
    a = sample_toy(name, 500, generator=_seeded(7))
    b = sample_toy(name, 500, generator=_seeded(7))
    c = sample_toy(name, 500, generator=_seeded(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_generator_leaves_global_rng_alone_and_global_rng_is_used_without_one(name: str) -> None:
    state = torch.get_rng_state()
    sample_toy(name, 100, generator=_seeded())
    assert torch.equal(torch.get_rng_state(), state)

    torch.manual_seed(123)
    seeded_state = torch.get_rng_state()
    a = sample_toy(name, 100)
    assert not torch.equal(torch.get_rng_state(), seeded_state)
    torch.manual_seed(123)
    b = sample_toy(name, 100)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_sets_stay_roughly_in_minus_four_four(name: str) -> None:
    x = sample_toy(name, 20_000, generator=_seeded(1))
    assert float(x.abs().max()) < 5.0
    assert float(torch.quantile(x.abs().flatten(), 0.999)) <= 4.0
    assert float(x.std()) > 0.5  # not collapsed to a point


# --- checkerboard -------------------------------------------------------------------------


def test_checkerboard_samples_lie_in_black_squares_uniformly() -> None:
    n = 80_000
    x = sample_toy("checkerboard", n, generator=_seeded(2), dtype=torch.float64)
    assert bool(((x >= -4.0) & (x < 4.0)).all())
    col, row = (torch.floor((x + 4.0) / 2.0).long()).unbind(dim=1)
    assert bool(((col + row) % 2 == 0).all()), "a sample fell in a white square"

    counts = torch.bincount(col * 4 + row, minlength=16)
    black = torch.tensor([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert bool((counts[~black] == 0).all())
    _within_binomial(counts[black], n, 1.0 / 8.0)

    # Uniform inside the squares too: chi-square over a 16x16 grid of cells of side 0.5.
    fine = torch.floor((x + 4.0) / 0.5).long()
    cell_counts = torch.bincount(fine[:, 0] * 16 + fine[:, 1], minlength=256)
    in_black = ((fine[:, 0] // 4 + fine[:, 1] // 4) % 2 == 0).unique()
    assert in_black.tolist() == [True]
    observed = cell_counts[cell_counts > 0].double()
    assert observed.numel() == 128
    chi2 = float(((observed - n / 128) ** 2 / (n / 128)).sum())
    assert stats.chi2.sf(chi2, df=127) > 1e-3


def test_checkerboard_log_prob_on_samples_and_white_squares() -> None:
    x = sample_toy("checkerboard", 5000, generator=_seeded(3))
    logp = checkerboard_log_prob(x)
    assert logp.shape == (5000,)
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, torch.full((5000,), -math.log(32.0)))
    assert CHECKERBOARD_LOG_DENSITY == pytest.approx(-math.log(32.0), abs=1e-15)

    # Centers of the 8 white squares, points off the board, and NaN have zero density.
    white = torch.tensor(
        [[-4.0 + 2 * i + 1, -4.0 + 2 * j + 1] for i in range(4) for j in range(4) if (i + j) % 2]
    )
    assert white.shape == (8, 2)
    outside = torch.tensor([[4.5, -3.0], [-3.0, -4.01], [0.5, 9.0], [math.nan, 0.5]])
    logp_zero = checkerboard_log_prob(torch.cat([white, outside]))
    assert bool((logp_zero == -math.inf).all())


def test_checkerboard_density_integrates_to_one() -> None:
    # Midpoint rule on a 160x160 grid over [-4, 4]^2 (cells of side 0.05 never straddle squares).
    h = 0.05
    ticks = torch.arange(160, dtype=torch.float64) * h - 4.0 + h / 2
    grid = torch.cartesian_prod(ticks, ticks)
    total = float(checkerboard_log_prob(grid).exp().sum() * h * h)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_checkerboard_log_prob_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        checkerboard_log_prob(torch.zeros(4, 3))


# --- 8 gaussians --------------------------------------------------------------------------


def test_eight_gaussians_params() -> None:
    means, std, weights = eight_gaussians_params(dtype=torch.float64)
    assert means.shape == (8, 2)
    assert weights.shape == (8,)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert bool((weights == weights[0]).all())
    torch.testing.assert_close(means.norm(dim=1), torch.full((8,), 2.0 * math.sqrt(2.0)).double())
    angles = torch.atan2(means[:, 1], means[:, 0]).remainder(2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(8).double() * math.pi / 4)
    assert std == pytest.approx(math.sqrt(2.0) / 4.0)
    assert eight_gaussians_params()[0].dtype == torch.float32


def test_eight_gaussians_modes_counts_and_spread() -> None:
    n = 80_000
    means, std, _ = eight_gaussians_params(dtype=torch.float64)
    x = sample_toy("8gaussians", n, generator=_seeded(4), dtype=torch.float64)
    mode = torch.cdist(x, means).argmin(dim=1)
    counts = torch.bincount(mode, minlength=8)
    _within_binomial(counts, n, 1.0 / 8.0)
    for k in range(8):
        points = x[mode == k]
        # Standard error of a mean is std / sqrt(10^4) = 0.0035: allow 5 of them.
        torch.testing.assert_close(points.mean(dim=0), means[k], atol=0.018, rtol=0)
        # Per-coordinate std within 3% of the documented std (its standard error here is about
        # 0.7%; assigning points to the nearest mean truncates tails at ~3 std, which is <1%).
        spread = points.std(dim=0)
        assert bool(((spread / std - 1.0).abs() < 0.03).all()), f"mode {k}: std {spread.tolist()}"


# --- moons, circles, rings, spirals ---------------------------------------------------------


def _check_noise_around_curve(distance: torch.Tensor, noise_std: float) -> None:
    """Distance to the noiseless curve is at most |noise| (Rayleigh, P(>6 std) ~ 1e-8) and
    mostly its normal component, so its RMS is close to the noise std."""
    assert float(distance.max()) < 6.0 * noise_std
    rms = float(distance.pow(2).mean().sqrt())
    assert 0.8 * noise_std < rms < 1.1 * noise_std, rms


@pytest.mark.parametrize(
    ("name", "radii", "noise_std"),
    [("circles", [1.5, 3.0], 0.1), ("rings", [0.75, 1.5, 2.25, 3.0], 0.08)],
)
def test_concentric_sets_radii_weights_and_noise(
    name: str, radii: list[float], noise_std: float
) -> None:
    n = 40_000
    x = sample_toy(name, n, generator=_seeded(5), dtype=torch.float64)
    radius = x.norm(dim=1)
    ring_radii = torch.tensor(radii, dtype=torch.float64)
    offset = radius[:, None] - ring_radii[None, :]
    ring = offset.abs().argmin(dim=1)
    _within_binomial(torch.bincount(ring, minlength=len(radii)), n, 1.0 / len(radii))
    _check_noise_around_curve(offset.abs().amin(dim=1), noise_std)
    # Angles are uniform: the four quadrants hold a quarter each.
    quadrant = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
    _within_binomial(torch.bincount(quadrant, minlength=4), n, 0.25)


def test_moons_follow_two_half_circles() -> None:
    n = 8000
    x = sample_toy("moons", n, generator=_seeded(6), dtype=torch.float64)
    a = torch.linspace(0.0, math.pi, 4000, dtype=torch.float64)
    upper = torch.stack([2.0 * torch.cos(a) - 1.0, 2.0 * torch.sin(a) - 0.5], dim=1)
    lower = -upper
    d_upper = _distance_to_polyline(x, upper)
    d_lower = _distance_to_polyline(x, lower)
    _check_noise_around_curve(torch.minimum(d_upper, d_lower), 0.2)
    _within_binomial(torch.bincount((d_upper < d_lower).long(), minlength=2), n, 0.5, n_sd=4.0)


def test_spirals_follow_two_arms() -> None:
    n = 4000
    x = sample_toy("spirals", n, generator=_seeded(7), dtype=torch.float64)
    a = torch.linspace(0.0, 3.0 * math.pi, 5000, dtype=torch.float64)
    arm = (a / 3.0)[:, None] * torch.stack([-torch.cos(a), torch.sin(a)], dim=1)
    _check_noise_around_curve(_distance_to_polyline(x, torch.cat([arm, -arm])), 0.1)
    # The two arms are mirror images through 0 with equal weights.
    torch.testing.assert_close(x.mean(dim=0), torch.zeros(2, dtype=torch.float64), atol=0.1, rtol=0)
    assert float(x.norm(dim=1).max()) < math.pi + 0.6
