"""What a training run records as it goes: ``metrics.csv``, TensorBoard, Weights & Biases,
``loss.png`` and a progress bar.

``metrics.csv`` holds one row per ``log_every`` steps (step, loss, lr, grad_norm, wall_time).
On resume the rows beyond the resumed step are dropped, so the file reads as if the run had
never stopped. It is always written; ``train.loggers`` adds TensorBoard and W&B
(:mod:`flowmatch.train.loggers`). ``loss.png`` (loss and learning rate against the step) is
drawn from ``metrics.csv`` when the log closes, and refreshed every few minutes while training.
Only the main process (rank 0) writes.
"""

from __future__ import annotations

import csv
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flowmatch.train.loggers import (
    METRICS_HEADER,
    open_loggers,
    resolve_loggers,
    tensorboard_writer_class,
)

__all__ = [
    "METRICS_HEADER",
    "PLOT_EVERY_S",
    "MetricsLog",
    "count_bar",
    "disabled_log",
    "progress_bar",
    "tensorboard_writer_class",
    "write_loss_plot",
]

PLOT_EVERY_S = 300.0
"""Seconds between redraws of ``loss.png`` while training (a redraw takes about 0.1 s)."""


def write_loss_plot(out: Path) -> Path | None:
    """Draw ``out/loss.png`` from ``out/metrics.csv``; None (and no file) when there are no
    rows yet or matplotlib is not installed (``pip install 'flowmatch[plots]'``)."""
    rows: list[list[float]] = []
    with open(out / "metrics.csv", newline="") as fh:
        for row in csv.reader(fh):
            if len(row) == len(METRICS_HEADER) and row[0].isdigit():
                rows.append([float(v) for v in row[:3]])
    if not rows:
        return None
    try:
        from flowmatch.viz.curves import loss_curve
    except ImportError:  # matplotlib is optional
        return None
    steps, loss, lr = zip(*rows, strict=True)
    return loss_curve(
        np.asarray(steps), np.asarray(loss), out / "loss.png", lr=np.asarray(lr), title=out.name
    )


class MetricsLog:
    """The logs of a run directory: ``metrics.csv``, the backends of ``loggers`` and
    ``loss.png``.

    Args:
        out: the run directory.
        step: the step training starts from (rows after it are dropped).
        tensorboard: also write TensorBoard scalars under ``out/tensorboard`` (the older
            ``train.tensorboard`` key; the same as adding ``"tensorboard"`` to ``loggers``).
        loggers: backends among ``csv``, ``tensorboard``, ``wandb``; ``csv`` is always added.
        hparams: the run's hyperparameters (the resolved config), recorded by each backend.
        wandb_project: the W&B project (None: ``flowmatch``).
    """

    def __init__(
        self,
        out: Path,
        *,
        step: int = 0,
        tensorboard: bool = False,
        loggers: Iterable[str] = ("csv",),
        hparams: Mapping[str, Any] | None = None,
        wandb_project: str | None = None,
    ) -> None:
        given = tuple(loggers)
        names = resolve_loggers(given, tensorboard=tensorboard)
        self.out = Path(out)
        self._backends = open_loggers(
            self.out,
            names,
            step=step,
            hparams=hparams,
            wandb_project=wandb_project,
            tensorboard_key="train.loggers" if "tensorboard" in given else "train.tensorboard",
        )
        self._plotted = time.monotonic()

    def write(self, step: int, loss: float, lr: float, grad_norm: float, wall: float) -> None:
        """Append one row (and flush it) to every backend; redraw ``loss.png`` every
        :data:`PLOT_EVERY_S` seconds."""
        for backend in self._backends:
            backend.write(step, loss, lr, grad_norm, wall)
        if time.monotonic() - self._plotted >= PLOT_EVERY_S:
            self._plot()

    def _plot(self) -> None:
        self._plotted = time.monotonic()
        try:
            write_loss_plot(self.out)
        except Exception as err:  # a plot never stops a run (nor hides why it stopped)
            warnings.warn(f"{self.out / 'loss.png'}: not drawn ({err})", stacklevel=2)

    def close(self) -> None:
        """Close every backend, then draw ``loss.png``."""
        errors = []
        for backend in self._backends:
            try:
                backend.close()
            except Exception as err:  # close the others all the same
                errors.append(err)
        self._plot()
        if errors:
            raise errors[0]


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
