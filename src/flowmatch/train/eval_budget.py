"""The final evaluation of a short run costs about its training time, not minutes more.

The default evaluation (5 draws of 5000 points over every sampler and step count, with exact
optimal transport for W2) takes minutes on a CPU: after a 16-second training run that is the
bulk of the time, spent on figures nobody asked for. :func:`fit_evaluation` times one draw of
a few hundred points, extrapolates (sampling grows linearly with the points and W2's exact
transport faster: the estimate takes the cost to grow as points^1.5 per draw), and scales the
points and then the draws down until the estimate fits the budget: the training time, and
never less than `MIN_BUDGET` seconds. The report says so; ``flowmatch eval RUN`` gives the
full table, and ``eval.fit_training_time: false`` turns this off.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MIN_BUDGET", "MIN_DRAWS", "MIN_POINTS", "fit_evaluation"]

MIN_BUDGET = 60.0
"""Seconds an evaluation may always take."""
MIN_POINTS = 500
"""The fewest points per set a scaled-down evaluation uses (fewer make W2 mostly noise)."""
MIN_DRAWS = 2
"""The fewest draws (a spread needs two)."""
PILOT_POINTS = 256
GROWTH = 1.5


def fit_evaluation(
    pilot: Callable[[int], float], num: int, draws: int, budget: float
) -> tuple[int, int, str | None]:
    """The points per set and draws of an evaluation that fits ``budget`` seconds.

    Args:
        pilot: ``pilot(n)`` runs one draw of n points and returns its seconds.
        num: the configured points per set.
        draws: the configured draws.
        budget: the seconds allowed (the training time); at least `MIN_BUDGET`.

    Returns:
        (points, draws, note): the sizes to use, and a line for the report when they were
        scaled down (None when the configured ones fit).
    """
    budget = max(budget, MIN_BUDGET)
    n0 = min(num, PILOT_POINTS)
    seconds = max(pilot(n0), 1e-6)

    def cost(n: int, d: int) -> float:
        return d * seconds * (n / n0) ** GROWTH

    n, d = num, draws
    if cost(n, d) <= budget:
        return n, d, None
    while cost(n, d) > budget and n > MIN_POINTS:
        n = max(MIN_POINTS, n // 2)
    while cost(n, d) > budget and d > MIN_DRAWS:
        d -= 1
    n, d = min(n, num), min(d, draws)
    note = (
        f"scaled down from {num} points x {draws} draws to fit the training time "
        f"({budget:.0f} s budget; estimated {cost(n, d):.0f} s); `flowmatch eval RUN` gives "
        "the full table"
    )
    return n, d, note
