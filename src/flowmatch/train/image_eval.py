"""Former home of the digits evaluation; it lives in :mod:`flowmatch.evaluation` now.

The names below keep working for code written against this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn

from flowmatch.evaluation.images import (
    DigitsMetric,
    ImageEvalRow,
    evaluate_images,
    format_image_row,
    format_image_table,
    image_floor,
)
from flowmatch.evaluation.reports import write_report

__all__ = [
    "ImageEvalRow",
    "digits_report",
    "evaluate_images",
    "format_image_row",
    "format_image_table",
    "image_floor",
    "write_image_report",
]


def write_image_report(
    directory: str | Path, rows: Sequence[ImageEvalRow], floor: ImageEvalRow, *, title: str
) -> str:
    """Write ``eval.txt`` and ``quality_vs_nfe.png`` (FD vs NFE) of digits rows."""
    metric = DigitsMetric(test=floor)  # type: ignore[arg-type]  # formats only
    return write_report(directory, metric, rows, floor, title=title)


def digits_report(
    model: nn.Module,
    directory: str | Path,
    *,
    train: Tensor,
    train_labels: Tensor | None,
    test: Tensor,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int,
    seed: int,
    guidance: float | None = None,
    eta: float = 0.0,
    noise: float = 1.0,
    echo: Callable[[str], None] = print,
) -> tuple[list[ImageEvalRow], ImageEvalRow]:
    """Every row, the floor, ``eval.txt`` and the plot of a digits model; ``seed`` is the
    seed of the draws themselves (see :func:`flowmatch.evaluation.run_report` for runs)."""
    rows = evaluate_images(
        model,
        test,
        train_labels,
        num=train.shape[0],
        steps=steps,
        methods=methods,
        draws=draws,
        seed=seed,
        guidance=guidance,
        eta=eta,
        noise=noise,
        on_row=lambda r: echo(format_image_row(r)),
    )
    floor = image_floor(train, test, train_labels)
    title = f"digits: FD vs NFE (guidance {guidance if guidance is not None else 'none'})"
    echo(write_image_report(directory, rows, floor, title=title))
    return rows, floor
