"""Image grids and per-image ODE strips, written pixel for pixel as PNGs (no resampling)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from flowmatch.viz._common import (
    ArrayLike,
    PathLike,
    _atomic_target,
    _check_positive_int,
    _check_range,
    _images,
)

__all__ = ["GRID_PADDING", "image_grid", "trajectory_strip"]

#: Pixels of padding between (and around) the tiles of :func:`image_grid`.
GRID_PADDING = 1


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
    assert vr is not None  # value_range is not None
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
    assert vr is not None  # value_range is not None
    idx = np.unique(np.round(np.linspace(0, len(arr) - 1, min(num_frames, len(arr)))))
    frames = arr[idx.astype(np.int64)]
    return _write_png(_tile(frames, len(frames), vr), path, scale)
