"""Plots of samples, ODE trajectories and quality-vs-NFE curves.

Time runs from t=0 (source, N(0, I) noise) to t=1 (data), as everywhere in flowmatch: a
trajectory ``traj[0]`` is noise and ``traj[-1]`` is the sample.

This module is the only one that imports matplotlib, and ``import flowmatch`` does not load it.
Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so no
pyplot state is touched and a user's interactive backend is never switched. Every function
writes its file atomically (a temporary file in the same directory, then :func:`os.replace`),
creates missing parent directories, and returns the :class:`~pathlib.Path` it wrote.

Inputs may be torch tensors (any device and dtype) or numpy arrays.

    >>> from flowmatch import viz
    >>> viz.scatter(samples, "out/samples.png", reference=data, names=("model", "data"))
    >>> viz.trajectories(res.trajectory, "out/trajectories.png")
    >>> viz.quality_vs_nfe({"midpoint": [(2, 0.9, 0.05), (8, 0.3, 0.02)]}, "out/w2.png",
    ...                    floor=(0.2, 0.03))
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowmatch.atomic import atomic_path

__all__ = [
    "image_grid",
    "quality_vs_nfe",
    "save_gif",
    "scatter",
    "trajectories",
    "trajectory_strip",
]

ArrayLike = torch.Tensor | np.ndarray
PathLike = str | os.PathLike

#: Pixels of padding between (and around) the tiles of :func:`image_grid`.
GRID_PADDING = 1

_DPI = 150
_NOISE_COLOR = "tab:blue"
_DATA_COLOR = "tab:orange"
_PATH_COLOR = "0.6"


# --------------------------------------------------------------------------------------------
# input checks and file handling
# --------------------------------------------------------------------------------------------


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Convert a tensor or array to a numpy array (float64 for floating inputs)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        arr = x.numpy()
    else:
        arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    return arr


def _points(x: ArrayLike, name: str) -> np.ndarray:
    """A (N, 2) float array of 2-D points, N >= 1."""
    arr = _to_numpy(x, name).astype(np.float64, copy=False)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 2) with N >= 1, got {tuple(arr.shape)}")
    return arr


def _trajectory(x: ArrayLike, name: str) -> np.ndarray:
    """A (T, N, 2) float array of 2-D point clouds along time, T, N >= 1."""
    arr = _to_numpy(x, name).astype(np.float64, copy=False)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (T, N, 2) with T, N >= 1, got {tuple(arr.shape)}")
    return arr


def _images(x: ArrayLike, name: str, leading: str) -> np.ndarray:
    """A (K, C, H, W) float array with C in {1, 3}; `leading` names K in the message."""
    arr = _to_numpy(x, name).astype(np.float64, copy=False)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or 0 in arr.shape:
        raise ValueError(
            f"{name} must have shape ({leading}, C, H, W) with C in {{1, 3}} and no empty "
            f"dimension, got {tuple(arr.shape)}"
        )
    return arr


def _check_range(value: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    """Validate a (lo, hi) pair of finite floats with lo < hi."""
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with lo < hi, got {(lo, hi)}")
    return lo, hi


def _check_positive_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _figure_format(path: Path) -> str:
    """The matplotlib output format implied by the file suffix."""
    fmt = path.suffix.lower().lstrip(".")
    supported = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"path must end in one of {sorted('.' + k for k in supported)}, got {str(path)!r}"
        )
    return fmt


@contextmanager
def _atomic_target(path: PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffix) that replaces it atomically on success.

    Raises:
        ValueError: if ``suffix`` is given and `path` does not end with it.
    """
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"path must end in {suffix!r}, got {str(path)!r}")
    with atomic_path(path) as tmp:
        yield tmp


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free figure drawn by the Agg canvas (no backend switch, no global state)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    fmt = _figure_format(path)
    with _atomic_target(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_DPI, bbox_inches="tight", pad_inches=0.1)
    return path


def _limits(*arrays: np.ndarray, lim: tuple[float, float] | None) -> tuple[tuple, tuple]:
    """Axis limits (x, y): `lim` for both axes, else the finite data range with a 5% margin."""
    if lim is not None:
        return lim, lim
    pts = np.concatenate([a.reshape(-1, 2) for a in arrays])
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    margin = 0.05 * span.max()
    return (
        (float(lo[0] - margin), float(hi[0] + margin)),
        (float(lo[1] - margin), float(hi[1] + margin)),
    )


def _style_2d(ax, xlim: tuple, ylim: tuple) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=8)


# --------------------------------------------------------------------------------------------
# 2-D point clouds
# --------------------------------------------------------------------------------------------


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


def trajectories(
    traj: ArrayLike,
    path: PathLike,
    *,
    num_paths: int = 200,
    title: str | None = None,
    lim: tuple[float, float] | None = None,
) -> Path:
    """Draw ODE trajectories of 2-D points from noise (t=0) to samples (t=1).

    Straight lines mean a flow that few solver steps integrate well.

    Args:
        traj: states along the ODE, shape (T, N, 2); ``traj[0]`` is the noise at t=0 and
            ``traj[-1]`` the samples at t=1 (e.g. ``solve_ode(..., return_trajectory=True)``).
        path: output file; the format follows the suffix (.png, .pdf, .svg, ...).
        num_paths: how many of the N trajectories (the first ones) to draw as lines; the start
            and end points of all N are drawn.
        title: figure title.
        lim: (lo, hi) limits for both axes; by default the range of all states plus 5%.

    Returns:
        The path written.

    Raises:
        ValueError: on a bad shape, limit, num_paths or file suffix.
    """
    arr = _trajectory(traj, "traj")
    num_paths = _check_positive_int(num_paths, "num_paths", 0)
    lim = _check_range(lim, "lim")
    xlim, ylim = _limits(arr, lim=lim)
    n = arr.shape[1]
    s = 4.0 if n <= 2000 else 1.5

    fig = _new_figure((5.0, 5.0))
    ax = fig.subplots()
    k = min(num_paths, n)
    if k > 0:
        ax.plot(arr[:, :k, 0], arr[:, :k, 1], color=_PATH_COLOR, alpha=0.5, lw=0.6, zorder=1)
    style = {"s": s, "linewidths": 0, "rasterized": True}
    ax.scatter(*arr[0].T, c=_NOISE_COLOR, zorder=2, label="t=0 (noise)", **style)
    ax.scatter(*arr[-1].T, c=_DATA_COLOR, zorder=3, label="t=1 (samples)", **style)
    fig.legend(loc="outside lower center", ncols=2, fontsize=9, markerscale=8 / s**0.5)
    _style_2d(ax, xlim, ylim)
    if title is not None:
        ax.set_title(title)
    return _save_figure(fig, path)


def trajectory_grid(
    panels: Sequence[Sequence[tuple[str, ArrayLike]]],
    path: PathLike,
    *,
    row_titles: Sequence[str] | None = None,
    num_paths: int = 150,
    title: str | None = None,
) -> Path:
    """Trajectories of several flows side by side: one row per dataset, one panel per flow.

    Args:
        panels: rows of ``(panel title, trajectory)``; each trajectory has shape (T, N, 2),
            ``traj[0]`` the source points at t=0 and ``traj[-1]`` the samples at t=1.
        path: output file (.png, .pdf, .svg, ...).
        row_titles: a label per row (e.g. the dataset), drawn at the left.
        num_paths: trajectories drawn as lines per panel (the end points of all N are drawn).
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: no panels, rows of different lengths, or a bad trajectory shape.
    """
    rows = [list(r) for r in panels]
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("panels must be a non-empty grid: rows of the same, non-zero length")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"row_titles needs {len(rows)} entries, got {len(row_titles)}")
    num_paths = _check_positive_int(num_paths, "num_paths", 0)
    arrays = [
        [_trajectory(t, f"panels[{i}][{j}]") for j, (_, t) in enumerate(r)]
        for i, r in enumerate(rows)
    ]
    nrow, ncol = len(rows), len(rows[0])
    fig = _new_figure((2.6 * ncol, 2.6 * nrow + 0.4))
    axes = np.atleast_2d(fig.subplots(nrow, ncol, squeeze=False))
    for i in range(nrow):
        xlim, ylim = _limits(*arrays[i], lim=None)
        for j in range(ncol):
            ax, arr = axes[i, j], arrays[i][j]
            k = min(num_paths, arr.shape[1])
            if k > 0:
                ax.plot(arr[:, :k, 0], arr[:, :k, 1], color=_PATH_COLOR, alpha=0.5, lw=0.5)
            style = {"s": 1.0, "linewidths": 0, "rasterized": True}
            ax.scatter(*arr[0].T, c=_NOISE_COLOR, zorder=2, **style)
            ax.scatter(*arr[-1].T, c=_DATA_COLOR, zorder=3, **style)
            _style_2d(ax, xlim, ylim)
            ax.set_title(rows[i][j][0], fontsize=9)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i])
    if title is not None:
        fig.suptitle(title)
    return _save_figure(fig, path)


def save_gif(
    frames_2d: ArrayLike,
    path: PathLike,
    *,
    fps: int = 10,
    lim: tuple[float, float] | None = None,
) -> Path:
    """Animate a 2-D point cloud along the ODE into a GIF.

    Args:
        frames_2d: states along the ODE, shape (T, N, 2); frame 0 is the noise at t=0 and the
            last frame the samples at t=1.
        path: output file, must end in ``.gif``.
        fps: frames per second.
        lim: (lo, hi) limits for both axes; by default the range of all frames plus 5%.

    Returns:
        The path written.

    Raises:
        ValueError: on a bad shape, fps, limit or file suffix.
        RuntimeError: if Pillow (used to encode the GIF) is not installed.
    """
    arr = _trajectory(frames_2d, "frames_2d")
    fps = _check_positive_int(fps, "fps", 1)
    lim = _check_range(lim, "lim")
    if Path(path).suffix.lower() != ".gif":
        raise ValueError(f"path must end in '.gif', got {str(path)!r}")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "save_gif needs Pillow to write GIFs; install it with `pip install pillow`"
        ) from None
    from matplotlib.animation import FuncAnimation, PillowWriter

    xlim, ylim = _limits(arr, lim=lim)
    num_frames, n = arr.shape[:2]
    s = 4.0 if n <= 2000 else 1.5
    fig = _new_figure((4.0, 4.0))
    ax = fig.subplots()
    _style_2d(ax, xlim, ylim)
    dots = ax.scatter(arr[0, :, 0], arr[0, :, 1], s=s, c=_DATA_COLOR, linewidths=0)
    label = ax.set_title("")

    def update(i: int):
        dots.set_offsets(arr[i])
        label.set_text(f"step {i}/{num_frames - 1}")
        return dots, label

    anim = FuncAnimation(fig, update, frames=num_frames, blit=False, cache_frame_data=False)
    with _atomic_target(path, ".gif") as tmp:
        anim.save(tmp, writer=PillowWriter(fps=fps), dpi=100)
    return Path(path)


# --------------------------------------------------------------------------------------------
# quality vs number of function evaluations
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def _tile(images: np.ndarray, ncol: int, value_range: tuple[float, float]) -> np.ndarray:
    """Tile (K, C, H, W) images into a (rows*(H+p)+p, ncol*(W+p)+p, 3) uint8 RGB array."""
    k, c, h, w = images.shape
    lo, hi = value_range
    x = np.clip((np.nan_to_num(images) - lo) / (hi - lo), 0.0, 1.0)
    x = np.broadcast_to(x, (k, 3, h, w)) if c == 1 else x
    x = np.round(x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)  # (K, H, W, 3)
    p = GRID_PADDING
    rows = math.ceil(k / ncol)
    grid = np.full((rows * (h + p) + p, ncol * (w + p) + p, 3), 255, dtype=np.uint8)
    for i in range(k):
        r, q = divmod(i, ncol)
        top, left = p + r * (h + p), p + q * (w + p)
        grid[top : top + h, left : left + w] = x[i]
    return grid


def _write_png(grid: np.ndarray, path: PathLike, scale: int = 1) -> Path:
    from matplotlib.image import imsave

    scale = _check_positive_int(scale, "scale", 1)
    if scale > 1:  # nearest-neighbour upscaling: pixels stay sharp squares
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)

    with _atomic_target(path, ".png") as tmp:
        imsave(tmp, grid, format="png")
    return Path(path)


def image_grid(
    images: ArrayLike,
    path: PathLike,
    *,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1, 1),
    scale: int = 1,
) -> Path:
    """Tile a batch of images into one PNG, pixel for pixel (no resampling).

    Tiles are separated (and surrounded) by ``GRID_PADDING`` = 1 white pixel, so the PNG is
    ``rows * (H + 1) + 1`` pixels high and ``nrow * (W + 1) + 1`` wide, with
    ``rows = ceil(N / nrow)``; empty slots in the last row are white.

    Args:
        images: shape (N, C, H, W) with C = 1 (grey) or 3 (RGB).
        path: output file, must end in ``.png``.
        nrow: images per row (as in torchvision's ``make_grid``); default ceil(sqrt(N)).
        value_range: (lo, hi) pixel values mapped to black and white; values outside are
            clipped.
        scale: integer upscaling of the whole PNG (each pixel becomes scale x scale), for
            small images such as 8x8 digits.

    Returns:
        The path written.

    Raises:
        ValueError: on a bad shape, nrow, value_range, scale or file suffix.
    """
    arr = _images(images, "images", "N")
    vr = _check_range(value_range, "value_range")
    n = arr.shape[0]
    ncol = math.ceil(math.sqrt(n)) if nrow is None else _check_positive_int(nrow, "nrow", 1)
    return _write_png(_tile(arr, min(ncol, n), vr), path, scale)


def trajectory_strip(
    traj: ArrayLike,
    path: PathLike,
    *,
    num_frames: int = 8,
    value_range: tuple[float, float] = (-1, 1),
    scale: int = 1,
) -> Path:
    """Write one image's path along the ODE as a horizontal strip, noise (t=0) on the left.

    Picks ``min(num_frames, T)`` evenly spaced states, always the first and the last, and
    tiles them like :func:`image_grid` in one row: the PNG is ``H + 2`` pixels high and
    ``K * (W + 1) + 1`` wide for K frames.

    Args:
        traj: states of one image along the ODE, shape (T, C, H, W) with C in {1, 3};
            ``traj[0]`` is the noise at t=0, ``traj[-1]`` the sample at t=1.
        path: output file, must end in ``.png``.
        num_frames: number of frames to show, >= 2.
        value_range: (lo, hi) pixel values mapped to black and white.
        scale: integer upscaling of the PNG (see :func:`image_grid`).

    Returns:
        The path written.

    Raises:
        ValueError: on a bad shape, num_frames, value_range or file suffix.
    """
    arr = _images(traj, "traj", "T")
    num_frames = _check_positive_int(num_frames, "num_frames", 2)
    vr = _check_range(value_range, "value_range")
    idx = np.unique(np.round(np.linspace(0, len(arr) - 1, min(num_frames, len(arr)))))
    frames = arr[idx.astype(np.int64)]
    return _write_png(_tile(frames, len(frames), vr), path, scale)
