"""Private helpers of :mod:`flowmatch.viz`: input conversion and checks, atomic file targets,
pyplot-free figures, axis limits and the shared colours.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, so no
pyplot state is touched and a user's interactive backend is never switched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowmatch.atomic import atomic_path

ArrayLike = torch.Tensor | np.ndarray
PathLike = str | os.PathLike

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
