"""Curves: a sample-quality metric against the number of function evaluations (NFE), and a
run's training loss and learning rate against the step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import StrMethodFormatter

from flowmatch.viz._common import ArrayLike, PathLike, _new_figure, _save_figure, _to_numpy

__all__ = ["loss_curve", "quality_vs_nfe"]


def quality_vs_nfe(
    table: Mapping[str, Sequence[tuple[float, float, float]]],
    path: PathLike,
    *,
    metric: str = "W2",
    floor: float | tuple[float, float] | None = None,
    title: str | None = None,
) -> Path:
    """Plot a sample-quality metric against the number of function evaluations per method.

    Args:
        table: method name -> list of (nfe, mean, std) tuples, e.g. the mean and spread of W2
            over independent draws at each NFE.
            A NaN std draws no error bar.
        path: output file; the format follows the suffix (.png, .pdf, .svg, ...).
        metric: name of the metric, used as the y label.
        floor: the noise floor (the metric between true samples and true samples), a float or
            a (mean, std) tuple; drawn as a dashed line with a shaded +-std band.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: on an empty table, a malformed entry, a non-positive NFE, a bad floor or
            file suffix.
    """
    if not isinstance(table, Mapping) or len(table) == 0:
        raise ValueError("table must be a non-empty mapping {method: [(nfe, mean, std), ...]}")
    curves: dict[str, np.ndarray] = {}
    for name, rows in table.items():
        try:
            arr = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"table[{name!r}] must be a list of (nfe, mean, std) tuples of numbers"
            ) from None
        if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
            raise ValueError(
                f"table[{name!r}] must be a non-empty list of (nfe, mean, std) tuples, "
                f"got shape {tuple(arr.shape)}"
            )
        if not (np.isfinite(arr[:, 0]).all() and (arr[:, 0] > 0).all()):
            raise ValueError(f"table[{name!r}] NFE values must be finite and > 0")
        if (arr[:, 2] < 0).any():
            raise ValueError(f"table[{name!r}] std values must be >= 0 (or NaN)")
        curves[str(name)] = arr[np.argsort(arr[:, 0], kind="stable")]

    floor_mean = floor_std = None
    if floor is not None:
        vals = np.atleast_1d(np.asarray(floor, dtype=np.float64))
        if (
            vals.shape not in ((1,), (2,))
            or not np.isfinite(vals).all()
            or vals[1:].min(initial=0.0) < 0
        ):
            raise ValueError(
                f"floor must be a finite float or a (mean, std) tuple with std >= 0, got {floor!r}"
            )
        floor_mean = float(vals[0])
        floor_std = float(vals[1]) if len(vals) == 2 else None

    fig = _new_figure((5.5, 4.0))
    ax = fig.subplots()
    for name, arr in curves.items():
        yerr = np.nan_to_num(arr[:, 2], nan=0.0)
        ax.errorbar(arr[:, 0], arr[:, 1], yerr=yerr, marker="o", ms=4, capsize=3, label=name)
    if floor_mean is not None:
        ax.axhline(floor_mean, color="0.3", ls="--", lw=1.0, label="noise floor")
        if floor_std:
            ax.axhspan(floor_mean - floor_std, floor_mean + floor_std, color="0.5", alpha=0.2, lw=0)
    ax.set_xscale("log", base=2)
    nfes = np.unique(np.concatenate([a[:, 0] for a in curves.values()]))
    if len(nfes) <= 12:
        ax.set_xticks(nfes, [f"{v:g}" for v in nfes])
        ax.minorticks_off()
    lows = [a[:, 1] - np.nan_to_num(a[:, 2]) for a in curves.values()]
    if floor_mean is not None:
        lows.append(np.array([floor_mean - (floor_std or 0.0)]))
    if all((lo >= 0).all() for lo in lows):
        ax.set_ylim(bottom=0)
    ax.set_xlabel("NFE (function evaluations)")
    ax.set_ylabel(metric)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    if title is not None:
        ax.set_title(title)
    return _save_figure(fig, path)


def loss_curve(
    steps: ArrayLike,
    loss: ArrayLike,
    path: PathLike,
    *,
    lr: ArrayLike | None = None,
    title: str | None = None,
) -> Path:
    """Plot a training loss against the step (a log-scale y when every loss is positive), with
    the learning rate in a second panel below it (``loss.png`` of every run directory).

    Args:
        steps: the logged steps, shape (N,), N >= 1 (``metrics.csv``'s ``step`` column).
        loss: the loss at each step, shape (N,); non-finite values are not drawn.
        path: output file; the format follows the suffix (.png, .pdf, .svg, ...).
        lr: the learning rate at each step, shape (N,); None draws no second panel.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: on empty or mismatched inputs, or a bad file suffix.
    """
    x = _to_numpy(steps, "steps").astype(np.float64, copy=False).reshape(-1)
    y = _to_numpy(loss, "loss").astype(np.float64, copy=False).reshape(-1)
    if len(x) == 0 or y.shape != x.shape:
        raise ValueError(
            f"steps and loss must be non-empty with the same length, got {len(x)} and {len(y)}"
        )
    rate = None
    if lr is not None:
        rate = _to_numpy(lr, "lr").astype(np.float64, copy=False).reshape(-1)
        if rate.shape != x.shape:
            raise ValueError(f"lr must have the length of steps ({len(x)}), got {len(rate)}")
    fig = _new_figure((5.5, 4.5) if rate is not None else (5.5, 3.5))
    if rate is not None:
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    else:
        ax, ax_lr = fig.subplots(), None
    finite = np.isfinite(y)
    ax.plot(x[finite], y[finite], lw=1.2, marker="o" if finite.sum() < 30 else None, ms=3)
    if finite.any() and (y[finite] > 0).all():
        ax.set_yscale("log")
        if y[finite].max() < 10 * y[finite].min():  # less than a decade: plain tick labels
            plain = StrMethodFormatter("{x:.3g}")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
    ax.set_ylabel("loss")
    ax.grid(True, which="major", alpha=0.3)
    if ax_lr is not None and rate is not None:
        ax_lr.plot(x, rate, color="tab:green", lw=1.2)
        ax_lr.set_ylabel("lr")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax_lr.grid(True, which="major", alpha=0.3)
        ax_lr.set_xlabel("step")
    else:
        ax.set_xlabel("step")
    if title is not None:
        ax.set_title(title)
    return _save_figure(fig, path)
