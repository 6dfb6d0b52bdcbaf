"""Plots of samples on manifolds: the sphere S^2, the flat torus T^2 and the rotation group SO(3).

Conventions: sphere points are unit vectors (N, 3) with x = cos(lat) cos(lon),
y = cos(lat) sin(lon), z = sin(lat); torus points are angles in radians (N, 2), read as
(phi, psi) and wrapped into [-pi, pi); rotations are matrices (N, 3, 3).

Every plot takes an optional ``reference`` set (e.g. the data), drawn in its own panel first
(on the left, or in the top row), ``names`` = (samples' title, reference's title) and a figure
``title``; it writes ``path`` atomically in the format of its suffix, creating parent
directories, and returns it. Bad input raises ValueError naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm

from flowmatch.viz._common import (
    _DATA_COLOR,
    ArrayLike,
    PathLike,
    _check_positive_int,
    _figure_format,
    _new_figure,
    _save_figure,
    _to_numpy,
)

__all__ = ["globe", "ramachandran", "rotations", "world_map"]

_TOL = 1e-3  # how far a unit vector's norm (or R^T R from I) may be off
_REF_COLOR = "0.25"  # the reference set, as in scatter
_SCATTER_BELOW = 1000  # ramachandran draws a scatter, not a histogram, below this many points
_ANGLE_BINS = 36  # histogram bins of the rotation angle on [0, pi]
_GRID_COLOR = "0.75"


def _finite(x: ArrayLike, name: str, tail: tuple[int, ...], shape: str) -> np.ndarray:
    """A float64 array of shape (N, *tail), N >= 1, all finite."""
    arr = _to_numpy(x, name).astype(np.float64, copy=False)
    if arr.ndim != 1 + len(tail) or arr.shape[1:] != tail or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape {shape} with N >= 1, got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return arr


def _unit_vectors(x: ArrayLike, name: str) -> np.ndarray:
    """A (N, 3) array of points on the unit sphere (norms within 1e-3 of 1, renormalised)."""
    arr = _finite(x, name, (3,), "(N, 3)")
    norm = np.linalg.norm(arr, axis=1)
    worst = float(np.abs(norm - 1).max())
    if worst > _TOL:
        raise ValueError(f"{name} must be unit vectors (|norm - 1| <= {_TOL}), off by {worst:.3g}")
    return arr / norm[:, None]


def _torus_angles(x: ArrayLike, name: str) -> np.ndarray:
    """A (N, 2) array of angles in radians, wrapped into [-pi, pi)."""
    return _wrap(_finite(x, name, (2,), "(N, 2)"))


def _rotation_matrices(x: ArrayLike, name: str) -> np.ndarray:
    """A (N, 3, 3) array of rotations (R^T R = I within 1e-3, det R > 0)."""
    arr = _finite(x, name, (3, 3), "(N, 3, 3)")
    err = float(np.abs(np.einsum("nki,nkj->nij", arr, arr) - np.eye(3)).max())
    if err > _TOL or (np.linalg.det(arr) <= 0).any():
        raise ValueError(f"{name} must be rotations (R^T R = I within {_TOL}, det R = +1)")
    return arr


def _check_names(names: Sequence[str]) -> tuple[str, str]:
    if isinstance(names, str) or len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a pair of strings (samples, reference), got {names!r}")
    return names[0], names[1]


def _check_center(center: Sequence[float]) -> tuple[float, float]:
    try:
        lat, lon = (float(v) for v in center)
    except (TypeError, ValueError):
        raise ValueError(f"center must be a (lat_deg, lon_deg) pair, got {center!r}") from None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0):
        raise ValueError(f"center must be finite with latitude in [-90, 90], got {(lat, lon)}")
    return lat, lon


def _panels(check, samples, arg: str, reference, names, path) -> list:
    """Check every input (before anything is drawn); (name, array, colour) per panel."""
    first, second = _check_names(names)
    out = [(first, check(samples, arg), _DATA_COLOR)]
    if reference is not None:
        out.insert(0, (second, check(reference, "reference"), _REF_COLOR))
    _figure_format(Path(path))
    return out


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped into [-pi, pi)."""
    out = np.mod(angle + np.pi, 2 * np.pi) - np.pi
    return np.where(out >= np.pi, out - 2 * np.pi, out)  # mod can round up to exactly 2 pi


def _lonlat(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude in [-pi, pi) and latitude in [-pi/2, pi/2] (radians) of unit vectors."""
    lon = _wrap(np.arctan2(xyz[:, 1], xyz[:, 0]))
    return lon, np.arcsin(np.clip(xyz[:, 2], -1.0, 1.0))


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Unit vectors of latitudes and longitudes in radians."""
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def _orthographic(xyz: np.ndarray, center: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic view of unit vectors with ``center`` = (lat_deg, lon_deg) facing the viewer.

    The sphere is rotated by -lon about z, then by lat about y, which takes ``center`` to +x;
    the viewer looks from +x, so the (y, z) coordinates are the picture (east right, north up).

    Returns:
        (N, 2) projected coordinates inside the unit disk, and a (N,) mask of the visible
        (front) hemisphere, x > 0 after the rotation.
    """
    lat, lon = np.radians(center[0]), np.radians(center[1])
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    x, y = np.cos(lon) * x + np.sin(lon) * y, -np.sin(lon) * x + np.cos(lon) * y
    x, z = np.cos(lat) * x + np.sin(lat) * z, -np.sin(lat) * x + np.cos(lat) * z
    return np.stack([y, z], -1), x > 0


def _axis_angle(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rotation axes (N, 3) and angles in [0, pi] (N,) of rotation matrices (N, 3, 3).

    With v = vee((R - R^T) / 2) = sin(theta) k and c = clamp((trace R - 1) / 2, -1, 1) =
    cos(theta), the angle is atan2(|v|, c), well conditioned at 0 and at pi alike (arccos(c)
    loses half the digits there). The axis is v / |v| for theta <= pi/2; beyond it, where v
    shrinks to 0, it is read off k k^T = ((R + R^T) / 2 - c I) / (1 - c) (at pi, the diagonal
    of (R + I) / 2) from its largest column, and given the sign of v. Exactly at pi (v = 0) the
    sign is chosen so the largest component of k is positive; the identity gets k = (0, 0, 1).
    """
    r = np.asarray(mats, dtype=np.float64)
    v = 0.5 * np.stack(
        [r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], -1
    )
    s = np.linalg.norm(v, axis=1)
    c = np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    theta = np.arctan2(s, c)
    small = np.where(s > 0, s, 1.0)[:, None]
    axis = np.where(s[:, None] > 0, v / small, np.array([0.0, 0.0, 1.0]))
    sym = 0.5 * (r + r.transpose(0, 2, 1))
    kk = (sym - c[:, None, None] * np.eye(3)) / np.maximum(1 - c, 1e-12)[:, None, None]
    diag = np.diagonal(kk, axis1=1, axis2=2)
    j = np.argmax(diag, axis=1)
    big = (
        kk[np.arange(len(r)), :, j]
        / np.sqrt(np.maximum(diag[np.arange(len(r)), j], 1e-300))[:, None]
    )
    big = np.where(np.sum(big * v, axis=1, keepdims=True) < 0, -big, big)
    axis = np.where((c < 0)[:, None], big, axis)
    return axis / np.linalg.norm(axis, axis=1, keepdims=True), theta


def _subsample(arr: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` rows of ``arr``, picked by a fixed seed (same call, same rows)."""
    if len(arr) <= max_points:
        return arr
    idx = np.sort(np.random.default_rng(0).choice(len(arr), size=max_points, replace=False))
    return arr[idx]


def _plot_sets(sets: list, figsize: tuple[float, float], axes, draw, title, path) -> Path:
    """The panel loop of every plot: a figure of ``figsize``; each checked set (name, array,
    colour) of :func:`_panels`, in order, on the axes that ``axes(fig, len(sets))`` yields for it,
    drawn by ``draw(fig, ax, i, name, array, colour)``, which returns the panel's title; then the
    figure's title, and the file written."""
    fig = _new_figure(figsize)
    for i, (ax, (name, arr, color)) in enumerate(zip(axes(fig, len(sets)), sets, strict=True)):
        ax.set_title(draw(fig, ax, i, name, arr, color), fontsize=10)
    if title is not None:
        fig.suptitle(title)
    return _save_figure(fig, path)


def _side_by_side(fig, n: int):
    """n plain axes in a row, one per set."""
    return fig.subplots(1, n, squeeze=False)[0]


def _mollweide(fig, rows: int, cols: int, index: int):
    ax = fig.add_subplot(rows, cols, index, projection="mollweide")
    ax.grid(True, color=_GRID_COLOR, linewidth=0.5)
    ax.tick_params(labelsize=7)
    return ax


def _globe_panel(ax, xyz: np.ndarray, center: tuple[float, float], color: str) -> int:
    """Draw the disk, the graticule's visible arcs and the visible points; return their count."""
    t = np.linspace(0, 2 * np.pi, 361)
    ax.plot(np.cos(t), np.sin(t), color="0.3", linewidth=0.8)
    lons, lats = np.radians(np.arange(-180, 180, 30)), np.radians(np.arange(-60, 61, 30))
    line = np.linspace(-np.pi, np.pi, 361)
    curves = [_xyz(np.full_like(line, a), line) for a in lats]  # parallels
    curves += [_xyz(line / 2, np.full_like(line, b)) for b in lons]  # meridians
    for curve in curves:
        yz, vis = _orthographic(curve, center)
        yz[~vis] = np.nan  # break the line where it goes behind the sphere
        ax.plot(yz[:, 0], yz[:, 1], color=_GRID_COLOR, linewidth=0.5)
    yz, vis = _orthographic(xyz, center)
    ax.scatter(*yz[vis].T, s=2, c=color, alpha=0.4, linewidths=0, rasterized=True)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
    ax.set_axis_off()
    return int(vis.sum())


def world_map(
    samples: ArrayLike,
    path: PathLike,
    *,
    reference: ArrayLike | None = None,
    names: tuple[str, str] = ("model", "data"),
    title: str | None = None,
    max_points: int = 20000,
) -> Path:
    """Points on the sphere on Mollweide world maps, one panel per set (reference on the left).

    Args:
        samples: unit vectors, shape (N, 3) (see the module docstring for lat/lon).
        max_points: at most this many points per panel, subsampled with a fixed seed.

    Raises:
        ValueError: on a bad shape, non-finite or non-unit vectors, bad names or suffix.
    """
    sets = _panels(_unit_vectors, samples, "samples", reference, names, path)
    max_points = _check_positive_int(max_points, "max_points", 1)

    def maps(fig, n):
        return (_mollweide(fig, 1, n, i + 1) for i in range(n))

    def draw(fig, ax, i, name, xyz, color):
        lon, lat = _lonlat(_subsample(xyz, max_points))
        ax.scatter(lon, lat, s=2, c=color, alpha=0.3, linewidths=0, rasterized=True)
        return f"{name} (N={len(xyz)})"

    return _plot_sets(sets, (5.0 * len(sets), 3.0), maps, draw, title, path)


def globe(
    samples: ArrayLike,
    path: PathLike,
    *,
    reference: ArrayLike | None = None,
    center: tuple[float, float] = (20.0, 0.0),
    names: tuple[str, str] = ("model", "data"),
    title: str | None = None,
    max_points: int = 20000,
) -> Path:
    """Points on the sphere in an orthographic view (the hemisphere around ``center``).

    Args:
        samples: unit vectors, shape (N, 3).
        center: (latitude, longitude) in degrees of the point facing the viewer.
        max_points: at most this many points per panel, subsampled with a fixed seed.

    Raises:
        ValueError: on a bad shape, non-finite or non-unit vectors, bad center, names or suffix.
    """
    sets = _panels(_unit_vectors, samples, "samples", reference, names, path)
    center = _check_center(center)
    max_points = _check_positive_int(max_points, "max_points", 1)

    def draw(fig, ax, i, name, xyz, color):
        pts = _subsample(xyz, max_points)
        shown = _globe_panel(ax, pts, center, color)
        return f"{name} ({shown} of {len(pts)} in view)"

    return _plot_sets(sets, (3.6 * len(sets), 3.8), _side_by_side, draw, title, path)


def ramachandran(
    angles: ArrayLike,
    path: PathLike,
    *,
    reference: ArrayLike | None = None,
    names: tuple[str, str] = ("model", "data"),
    title: str | None = None,
    bins: int = 90,
) -> Path:
    """Ramachandran plot of torus angles (phi, psi): a log-coloured 2-D histogram per set.

    A set of fewer than 1000 points is drawn as a scatter instead.

    Args:
        angles: (phi, psi) in radians, shape (N, 2); wrapped into [-pi, pi) and shown in degrees.
        bins: histogram bins per axis over [-180, 180].

    Raises:
        ValueError: on a bad shape, non-finite angles, bad bins, names or suffix.
    """
    sets = _panels(_torus_angles, angles, "angles", reference, names, path)
    bins = _check_positive_int(bins, "bins", 2)
    edges = np.linspace(-180.0, 180.0, bins + 1)

    def draw(fig, ax, i, name, ang, color):
        deg = np.degrees(ang)
        if len(deg) < _SCATTER_BELOW:
            ax.scatter(deg[:, 0], deg[:, 1], s=4, c=color, alpha=0.6, linewidths=0)
        else:
            h, _, _ = np.histogram2d(deg[:, 0], deg[:, 1], bins=[edges, edges])
            norm = LogNorm(vmin=1.0, vmax=max(float(h.max()), 2.0))
            mesh = ax.pcolormesh(
                edges, edges, np.ma.masked_equal(h.T, 0), norm=norm, cmap="viridis"
            )
            mesh.set_rasterized(True)
            fig.colorbar(mesh, ax=ax, label="count", shrink=0.8)
        ticks = [-180, -90, 0, 90, 180]
        ax.set(xlim=(-180, 180), ylim=(-180, 180), xticks=ticks, yticks=ticks, aspect="equal")
        ax.set(xlabel="φ (degrees)", ylabel="ψ (degrees)")
        ax.grid(True, color=_GRID_COLOR, linewidth=0.4)
        ax.tick_params(labelsize=8)
        return f"{name} (N={len(deg)})"

    return _plot_sets(sets, (4.4 * len(sets), 4.0), _side_by_side, draw, title, path)


def rotations(
    matrices: ArrayLike,
    path: PathLike,
    *,
    reference: ArrayLike | None = None,
    names: tuple[str, str] = ("model", "data"),
    title: str | None = None,
    max_points: int = 20000,
) -> Path:
    """Axis-angle views of rotations: one row per set (reference first).

    Left, the rotation axes on a Mollweide map coloured by the rotation angle; right, a
    histogram of the angle theta in [0, pi] with the Haar (uniform on SO(3)) density
    (1 - cos theta) / pi drawn over it.

    Args:
        matrices: rotation matrices, shape (N, 3, 3) (R^T R = I within 1e-3, det R = +1).
        max_points: at most this many axes on each map (the histogram uses all the angles).

    Raises:
        ValueError: on a bad shape, non-finite or non-rotation matrices, bad names or suffix.
    """
    sets = _panels(_rotation_matrices, matrices, "matrices", reference, names, path)
    max_points = _check_positive_int(max_points, "max_points", 1)
    grid = np.linspace(0.0, np.pi, 200)

    def maps(fig, n):  # the left column
        return (_mollweide(fig, n, 2, 2 * i + 1) for i in range(n))

    def draw(fig, ax, i, name, mats, color):
        axis, theta = _axis_angle(mats)
        ax.set_xticks(np.radians([-120, -60, 0, 60, 120]))  # a narrow panel: fewer labels
        shown = _subsample(np.column_stack([axis, theta]), max_points)
        lon, lat = _lonlat(shown[:, :3])
        dots = ax.scatter(
            lon, lat, s=2, c=shown[:, 3], cmap="viridis", vmin=0, vmax=np.pi, linewidths=0
        )
        dots.set_rasterized(True)
        fig.colorbar(dots, ax=ax, label="angle θ (rad)", shrink=0.7)
        hist = fig.add_subplot(len(sets), 2, 2 * i + 2)
        hist.hist(theta, bins=_ANGLE_BINS, range=(0, np.pi), density=True, color=color, alpha=0.6)
        hist.plot(grid, (1 - np.cos(grid)) / np.pi, color="k", linewidth=1.2, label="Haar")
        hist.set_xticks([0, np.pi / 2, np.pi], ["0", "π/2", "π"])
        hist.set(xlim=(0, np.pi), xlabel="angle θ", ylabel="density")
        hist.tick_params(labelsize=8)
        hist.legend(fontsize=7)
        hist.set_title(f"{name}: rotation angle", fontsize=10)
        return f"{name}: rotation axes (N={len(mats)})"

    return _plot_sets(sets, (9.0, 3.2 * len(sets)), maps, draw, title, path)
