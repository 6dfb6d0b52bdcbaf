"""Curves of a sample-quality metric against the number of function evaluations (NFE)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from flowmatch.viz._common import PathLike, _new_figure, _save_figure

__all__ = ["quality_vs_nfe"]


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
            over independent draws at each NFE (see DESIGN.md, "Measuring sample quality").
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
