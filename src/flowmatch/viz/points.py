"""Scatter plots of 2-D point clouds (e.g. samples beside the data)."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np

from flowmatch.viz._common import (
    _DATA_COLOR,
    ArrayLike,
    PathLike,
    _check_range,
    _limits,
    _new_figure,
    _points,
    _save_figure,
    _style_2d,
    _to_numpy,
)

__all__ = ["scatter"]


def scatter(
    points: ArrayLike,
    path: PathLike,
    *,
    reference: ArrayLike | None = None,
    title: str | None = None,
    lim: tuple[float, float] | None = None,
    s: float = 1.0,
    labels: ArrayLike | None = None,
    names: tuple[str, str] = ("samples", "reference"),
) -> Path:
    """Scatter plot of 2-D points, optionally beside a reference set (e.g. samples vs data).

    Args:
        points: points to draw, shape (N, 2).
        path: output file; the format follows the suffix (.png, .pdf, .svg, ...).
        reference: optional second point set, shape (M, 2), drawn in its own panel on the left
            with the same axis limits.
        title: figure title.
        lim: (lo, hi) limits for both axes; by default the range of all points plus 5%.
        s: marker size in points^2.
        labels: optional integer class of each point, shape (N,), used for colours (with a
            legend for up to 10 classes).
        names: panel titles (for `points`, for `reference`); used only with a reference.

    Returns:
        The path written.

    Raises:
        ValueError: on a bad shape, dtype, limit or file suffix.
    """
    pts = _points(points, "points")
    ref = None if reference is None else _points(reference, "reference")
    lim = _check_range(lim, "lim")
    lab = None
    if labels is not None:
        lab = _to_numpy(labels, "labels")
        if lab.shape != (len(pts),):
            raise ValueError(f"labels must have shape (N,) = ({len(pts)},), got {tuple(lab.shape)}")
        if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == np.bool_):
            raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
        lab = lab.astype(np.int64)
    xlim, ylim = _limits(pts, *(() if ref is None else (ref,)), lim=lim)

    ncols = 1 if ref is None else 2
    fig = _new_figure((4.2 * ncols, 4.4))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    if ref is not None:
        axes[0].scatter(ref[:, 0], ref[:, 1], s=s, c="0.25", linewidths=0, rasterized=True)
        axes[0].set_title(names[1], fontsize=10)
        axes[1].set_title(names[0], fontsize=10)
    ax = axes[-1]
    if lab is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=s, c=_DATA_COLOR, linewidths=0, rasterized=True)
    else:
        classes = np.unique(lab)
        colors = mpl.colormaps["tab10" if len(classes) <= 10 else "turbo"]
        for i, k in enumerate(classes):
            sel = lab == k
            c = colors(i) if len(classes) <= 10 else colors(i / max(len(classes) - 1, 1))
            ax.scatter(pts[sel, 0], pts[sel, 1], s=s, color=c, linewidths=0, label=str(k))
        if len(classes) <= 10:
            ax.legend(
                title="class", fontsize=7, title_fontsize=8, markerscale=4 / max(s, 0.1) ** 0.5
            )
    for a in axes:
        _style_2d(a, xlim, ylim)
    if title is not None:
        fig.suptitle(title)
    return _save_figure(fig, path)
