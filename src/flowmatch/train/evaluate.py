"""Former home of the point evaluation; it lives in :mod:`flowmatch.evaluation` now.

The names below keep working for code written against this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flowmatch.evaluation.loop import mean_std as _mean_std
from flowmatch.evaluation.points import (
    EvalRow,
    PointMetric,
    evaluate,
    format_row,
    format_straightness,
    format_table,
    model_straightness,
    noise_floor,
)
from flowmatch.evaluation.points import reference_draws as _reference_draws
from flowmatch.evaluation.reports import write_report as _write_report

__all__ = [
    "EvalRow",
    "evaluate",
    "format_row",
    "format_straightness",
    "format_table",
    "model_straightness",
    "noise_floor",
    "write_report",
]

_ = (_mean_std, _reference_draws)  # re-exported for older callers


def write_report(
    directory: str | Path,
    rows: Sequence[EvalRow],
    floor: EvalRow,
    *,
    title: str,
    straightness: float | None = None,
) -> str:
    """Write ``eval.txt`` and ``quality_vs_nfe.png`` of W2 rows (see
    :func:`flowmatch.evaluation.reports.write_report`)."""
    metric = PointMetric(reference=None)  # type: ignore[arg-type]  # formats only
    return _write_report(directory, metric, rows, floor, title=title, straightness=straightness)
