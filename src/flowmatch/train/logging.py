"""What a training run records as it goes: ``metrics.csv``, TensorBoard and a progress bar.

``metrics.csv`` holds one row per ``log_every`` steps (step, loss, lr, grad_norm, wall_time).
On resume the rows beyond the resumed step are dropped, so the file reads as if the run had
never stopped. Only the main process (rank 0) writes.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from flowmatch.atomic import atomic_path
from flowmatch.errors import ConfigError

__all__ = [
    "METRICS_HEADER",
    "MetricsLog",
    "count_bar",
    "disabled_log",
    "progress_bar",
    "tensorboard_writer_class",
]

METRICS_HEADER = ["step", "loss", "lr", "grad_norm", "wall_time"]


def tensorboard_writer_class() -> Any:
    """TensorBoard's ``SummaryWriter`` (a ConfigError naming ``train.tensorboard`` when the
    package is missing)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "config: train.tensorboard: needs the tensorboard package "
            "(pip install tensorboard), which is not installed",
            key="train.tensorboard",
        ) from None
    return SummaryWriter


class MetricsLog:
    """``metrics.csv`` (and TensorBoard scalars) of a run directory.

    Args:
        out: the run directory.
        step: the step training starts from (rows after it are dropped).
        tensorboard: also write TensorBoard scalars under ``out/tensorboard``.
    """

    def __init__(self, out: Path, *, step: int = 0, tensorboard: bool = False) -> None:
        writer_class = tensorboard_writer_class() if tensorboard else None
        path = out / "metrics.csv"
        rows: list[list[str]] = []
        if path.exists():
            with open(path, newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) == len(METRICS_HEADER) and row[0].isdigit():
                        if int(row[0]) <= step:
                            rows.append(row)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(METRICS_HEADER)
            writer.writerows(rows)
        self._fh = open(path, "a", newline="")
        self._csv = csv.writer(self._fh)
        self._tb = writer_class(str(out / "tensorboard")) if writer_class else None

    def write(self, step: int, loss: float, lr: float, grad_norm: float, wall: float) -> None:
        """Append one row (and flush it)."""
        self._csv.writerow([step, f"{loss:.6f}", f"{lr:.6g}", f"{grad_norm:.6g}", f"{wall:.3f}"])
        self._fh.flush()
        if self._tb is not None:
            for name, value in (("loss", loss), ("lr", lr), ("grad_norm", grad_norm)):
                self._tb.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


class _Disabled:
    """Stands in for :class:`MetricsLog` where nothing is written (no ``out``, rank > 0)."""

    def write(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass


def disabled_log() -> Any:
    """A log that writes nothing."""
    return _Disabled()


def progress_bar(enabled: bool, *, title: str = "train") -> Any:
    """A rich progress bar with the loss, it/s, elapsed time and ETA (a no-op if disabled)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text("- it/s" if task.speed is None else f"{task.speed:.0f} it/s")

    return Progress(
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        Speed(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def count_bar(enabled: bool) -> Any:
    """A rich progress bar of counted work (tasks add their own description and total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        disable=not enabled,
    )
