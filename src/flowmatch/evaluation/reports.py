"""Evaluation reports of a run: the table (``eval.txt``), the curve (``quality_vs_nfe.png``)
and the rows of ``eval.csv``; :func:`run_report` is the final evaluation the trainer and
``flowmatch eval`` share, so both give the same numbers for the same run and settings."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from flowmatch.evaluation import seeds
from flowmatch.evaluation.loop import Metric, evaluate_model
from flowmatch.evaluation.points import format_straightness, model_straightness

__all__ = [
    "SETTINGS_COLUMNS",
    "append_csv",
    "run_report",
    "settings_line",
    "trim_eval_csv",
    "write_report",
]


def write_report(
    directory: str | Path,
    metric: Any,
    rows: Sequence[Any],
    floor: Any,
    *,
    title: str,
    straightness: float | None = None,
    points: int | None = None,
    draws: int | None = None,
    note: str | None = None,
) -> str:
    """Write ``eval.txt`` (the table) and ``quality_vs_nfe.png`` into a run directory.

    Args:
        directory: the run directory.
        metric: the metric the rows are of (it formats them).
        rows: the evaluation's rows.
        floor: the evaluation's floor.
        title: the plot's title.
        straightness: a straightness figure for the table's last line, or None.
        points: points per set, stated in the table's first line (the floor, and so the
            "x floor" column, depends on it and on ``draws``).
        draws: draws per figure, stated there too.
        note: a line after it (e.g. why the sizes were scaled down), or None.

    Returns:
        The table text.
    """
    from flowmatch._extras import MissingExtraError
    from flowmatch.atomic import atomic_path

    directory = Path(directory)
    table = metric.format_table(rows, floor)
    if note:
        table = note + "\n" + table
    if points is not None and draws is not None:
        table = settings_line(points, draws) + "\n" + table
    if straightness is not None:
        table += "\n" + format_straightness(straightness)
    with atomic_path(directory / "eval.txt") as tmp:
        tmp.write_text(table + "\n")
    by_method: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        by_method.setdefault(r.method, []).append(metric.curve(r))
    try:
        from flowmatch import viz

        viz.quality_vs_nfe(
            by_method,
            directory / "quality_vs_nfe.png",
            metric=metric.label,
            floor=metric.floor_band(floor),
            title=title,
        )
    except MissingExtraError as err:  # a core install: the table is written, the plot is not
        return f"{table}\nwarning: quality_vs_nfe.png not written: {err}"
    return table


def trim_eval_csv(path: str | Path, step: int) -> None:
    """Drop the rows of ``eval.csv`` past training step ``step`` (atomically), so that a
    resumed run's file reads as if it had never stopped; nothing to do without the file."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if not (r and r[0].isdigit() and int(r[0]) > step)]
    if len(kept) == len(body):
        return
    from flowmatch.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(kept)


def settings_line(points: int, draws: int) -> str:
    """The first line of ``eval.txt``: the sizes the figures (and the floor) depend on."""
    return f"{points} points per set, {draws} draws per figure"


SETTINGS_COLUMNS = ["points", "draws"]
"""The columns ``eval.csv`` ends with: points per set and draws of each row's figures."""


def append_csv(
    path: str | Path,
    step: int,
    rows: Sequence[Any],
    *,
    points: int | None = None,
    draws: int | None = None,
) -> None:
    """Append the rows of an evaluation at training step ``step`` to ``eval.csv`` (with the
    rows' ``csv_header`` first when the file is new), each ending with ``points`` and
    ``draws`` (`SETTINGS_COLUMNS`) when given; a file written before those columns existed
    keeps its layout."""
    if not rows:
        return
    path = Path(path)
    header = list(rows[0].csv_header)
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as fh:
            first = next(csv.reader(fh), [])
        with_settings = first[-2:] == SETTINGS_COLUMNS
    else:
        with_settings = points is not None and draws is not None
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if not path.stat().st_size:
            writer.writerow(header + (SETTINGS_COLUMNS if with_settings else []))
        for r in rows:
            extra = [points, draws] if with_settings else []
            writer.writerow([step, *r.csv_values(), *extra])


class ReportMetric(Metric, Protocol):
    """A :class:`~flowmatch.evaluation.loop.Metric` that also has a progress line per row and
    a floor (what :func:`run_report` needs)."""

    def format_row(self, row: Any) -> str:
        """One progress line for a row."""

    def floor(self, num: int, draws: int, seed: int) -> Any:
        """The evaluation's floor."""


def run_report(
    model: nn.Module,
    metric: ReportMetric,
    source: Callable[[int, torch.Generator], Tensor],
    directory: str | Path,
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    num: int,
    draws: int,
    seed: int,
    eta: float = 0.0,
    noise: float = 1.0,
    cond: Tensor | None = None,
    guidance: float | None = None,
    title: str,
    straightness: bool = False,
    note: str | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[Any], Any]:
    """The final evaluation of a run: every row (echoed as computed), the floor, the
    straightness (points), and ``eval.txt`` with its plot.

    Args:
        model: the model (the run's EMA FlowModel).
        metric: what to measure (:class:`~flowmatch.evaluation.points.PointMetric` or
            :class:`~flowmatch.evaluation.images.DigitsMetric`).
        source: ``f(n, generator)`` drawing source points.
        directory: the run directory the report is written to.
        steps: see :func:`~flowmatch.evaluation.loop.evaluate_model`, as for the next seven.
        methods: the samplers.
        num: samples per draw.
        draws: independent draws.
        eta: DDIM's eta.
        noise: the SDE's noise scale.
        cond: labels of the samples, or None.
        guidance: classifier-free guidance scale.
        seed: the run's seed; the draws come from its ``eval`` stream and the straightness
            points from its ``straightness`` stream (:mod:`flowmatch.evaluation.seeds`).
        title: the plot's title.
        straightness: also measure the flow's straightness (a line of the table).
        note: a line of ``eval.txt`` after the sizes (:func:`write_report`).
        echo: where progress lines and the table go.

    Returns:
        The rows and the floor.
    """
    eval_seed = seeds.stream_seed(seed, "eval")
    rows = evaluate_model(
        model,
        metric,
        source,
        steps=steps,
        methods=methods,
        num=num,
        draws=draws,
        seed=eval_seed,
        eta=eta,
        noise=noise,
        cond=cond,
        guidance=guidance,
        on_row=lambda r: echo(metric.format_row(r)),
    )
    floor = metric.floor(num, draws, eval_seed)
    straight = None
    if straightness:
        straight = model_straightness(model, source, seed=seeds.stream_seed(seed, "straightness"))
    echo(
        write_report(
            directory,
            metric,
            rows,
            floor,
            title=title,
            straightness=straight,
            points=num,
            draws=draws,
            note=note,
        )
    )
    return rows, floor
