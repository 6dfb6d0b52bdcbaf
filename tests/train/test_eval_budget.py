"""The final evaluation of a short run is scaled to about its training time (at least a
minute), and says so; the configured sizes are used when they fit."""

from __future__ import annotations

import pytest

from flowmatch.train.eval_budget import MIN_BUDGET, MIN_DRAWS, MIN_POINTS, fit_evaluation


def _pilot(seconds_per_point: float):
    calls = []

    def pilot(n: int) -> float:
        calls.append(n)
        return seconds_per_point * n

    return pilot, calls


def test_sizes_that_fit_are_kept() -> None:
    pilot, calls = _pilot(1e-5)  # 256 points: 2.6 ms a draw
    assert fit_evaluation(pilot, 5000, 5, budget=10.0) == (5000, 5, None)
    assert calls == [256]


def test_a_short_run_scales_points_then_draws_and_says_so() -> None:
    pilot, _ = _pilot(0.01)  # 2.56 s a draw of 256 points
    n, d, note = fit_evaluation(pilot, 5000, 5, budget=16.0)
    # the budget is at least MIN_BUDGET (60 s); cost(n, d) = d * 2.56 * (n / 256)^1.5, so
    # halving the points: 5000 (1950 s), 2500 (391 s), 1250 (138 s), 625 (48.8 s): it fits
    assert (n, d) == (625, 5)
    assert d * 2.56 * (n / 256) ** 1.5 <= MIN_BUDGET
    assert note is not None and "scaled down from 5000 points x 5 draws" in note
    assert "`flowmatch eval RUN` gives the full table" in note


def test_it_never_goes_below_the_floors() -> None:
    pilot, _ = _pilot(1.0)  # absurdly slow: the floors hold
    n, d, note = fit_evaluation(pilot, 5000, 5, budget=1.0)
    assert (n, d) == (MIN_POINTS, MIN_DRAWS) and note is not None


@pytest.mark.parametrize(("num", "draws"), [(300, 5), (100, 1)])
def test_never_more_than_configured(num: int, draws: int) -> None:
    pilot, _ = _pilot(1.0)
    n, d, _ = fit_evaluation(pilot, num, draws, budget=1.0)
    assert n <= num and d <= draws
