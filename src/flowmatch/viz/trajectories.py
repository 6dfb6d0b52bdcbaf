"""ODE trajectories of 2-D point clouds: line plots, a grid of flows, and GIF animations.

Time runs from t=0 (source, N(0, I) noise) to t=1 (data): ``traj[0]`` is noise and
``traj[-1]`` the sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowmatch.viz._common import (
    _DATA_COLOR,
    _NOISE_COLOR,
    _PATH_COLOR,
    ArrayLike,
    PathLike,
    _atomic_target,
    _check_positive_int,
    _check_range,
    _limits,
    _new_figure,
    _save_figure,
    _style_2d,
    _trajectory,
)

__all__ = ["save_gif", "trajectories", "trajectory_grid"]


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
    style: dict[str, Any] = {"s": s, "linewidths": 0, "rasterized": True}
    ax.scatter(arr[0, :, 0], arr[0, :, 1], c=_NOISE_COLOR, zorder=2, label="t=0 (noise)", **style)
    ax.scatter(
        arr[-1, :, 0], arr[-1, :, 1], c=_DATA_COLOR, zorder=3, label="t=1 (samples)", **style
    )
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
