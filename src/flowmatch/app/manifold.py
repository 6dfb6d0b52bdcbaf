"""``flowmatch sample`` and ``flowmatch likelihood`` for manifold runs: points as tables.

A manifold model's points are written and read as tables in the data's own units: latitude
and longitude for the sphere S^2, angles for the torus (degrees or radians, as the run's CSV
was; degrees for the built-in sets), the 9 entries r11 ... r33 of a rotation matrix for SO(3),
and the factors' columns side by side for a product. ``.csv`` and ``.npy`` files hold the same
table, so ``flowmatch sample RUN --out s.csv`` reads back with ``flowmatch likelihood RUN
s.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from flowmatch.app.guards import check_finite
from flowmatch.data.manifold_sets import lat_lon_to_unit, unit_to_lat_lon
from flowmatch.data.tabular import TABLE_SUFFIXES, load_table, save_table
from flowmatch.errors import DataError, SamplerError
from flowmatch.manifolds import SO3, Euclidean, FlatTorus, Manifold, ManifoldFlowModel, Sphere
from flowmatch.manifolds import Product as _Product

__all__ = ["from_table", "read_points", "sample_manifold", "table_columns", "to_table"]


def _factors(manifold: Manifold) -> tuple[Manifold, ...]:
    return manifold.factors if isinstance(manifold, _Product) else (manifold,)


def _units(model: ManifoldFlowModel) -> str:
    return str(model.info.get("units") or "degrees")


def table_columns(model: ManifoldFlowModel) -> list[str]:
    """The table's column names: the run's CSV columns, else lat/lon, phi/psi (two angles),
    angle1..., r11...r33 and x1... per factor."""
    if model.info.get("columns"):
        return list(model.info["columns"])
    columns: list[str] = []
    for f in _factors(model.manifold):
        if isinstance(f, Sphere):
            columns += ["lat", "lon"] if f.dim == 2 else [f"x{i + 1}" for i in range(f.dim + 1)]
        elif isinstance(f, FlatTorus):
            columns += ["phi", "psi"] if f.dim == 2 else [f"angle{i + 1}" for i in range(f.dim)]
        elif isinstance(f, SO3):
            columns += [f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]
        else:
            columns += [f"x{i + 1}" for i in range(f.ambient_dim)]
    return columns


def _width(f: Manifold) -> int:
    return 2 if isinstance(f, Sphere) and f.dim == 2 else f.ambient_dim


def to_table(model: ManifoldFlowModel, x: Tensor) -> Tensor:
    """Points (N, ambient_dim) in the table's units (N, len(table_columns))."""
    scale = 180.0 / math.pi if _units(model) == "degrees" else 1.0
    parts, start = [], 0
    for f in _factors(model.manifold):
        block = x[:, start : start + f.ambient_dim].double()
        start += f.ambient_dim
        if isinstance(f, Sphere) and f.dim == 2:
            block = unit_to_lat_lon(block, units=_units(model))
        elif isinstance(f, FlatTorus):
            block = f.proj_point(block) * scale
        parts.append(block)
    return torch.cat(parts, 1)


def from_table(model: ManifoldFlowModel, values: Tensor, name: str) -> Tensor:
    """A table (N, len(table_columns)) in the data's units as points on the manifold.

    Raises:
        DataError: naming the file (``name``): a latitude outside [-90, 90] degrees or a
            matrix that is not a rotation (to 1e-3).
    """
    radians = _units(model) == "radians"
    parts, start = [], 0
    for f in _factors(model.manifold):
        w = _width(f)
        block = values[:, start : start + w].double()
        start += w
        if isinstance(f, Sphere) and f.dim == 2:
            limit = math.pi / 2 if radians else 90.0
            if bool((block[:, 0].abs() > limit + 1e-9).any()):
                raise DataError(f"{name}: latitudes must lie in [-{limit:g}, {limit:g}]")
            block = lat_lon_to_unit(block, units=_units(model))
        elif isinstance(f, FlatTorus):
            block = f.proj_point(block if radians else block * math.pi / 180.0)
        elif isinstance(f, SO3) and bool((f.point_error(block) > 1e-3).any()):
            raise DataError(f"{name}: r11..r33 must be rotation matrices (R^T R = I, det 1)")
        elif isinstance(f, Sphere) and bool((f.point_error(block) > 1e-3).any()):
            raise DataError(f"{name}: points of the sphere must be unit vectors")
        parts.append(f.proj_point(block) if not isinstance(f, Euclidean) else block)
    return torch.cat(parts, 1).float()


def sample_manifold(
    model: ManifoldFlowModel,
    out: Path,
    *,
    num: int,
    steps: int,
    method: str,
    seed: int,
    echo: Callable[[str], None] = print,
) -> Path:
    """``num`` samples written to ``out``: a ``.csv``/``.npy`` table in the data's units, or a
    ``.png`` plot (a world map, a Ramachandran plot, axis-angle views)."""
    if out.suffix not in (*TABLE_SUFFIXES, ".png"):
        raise DataError(f"{out}: expected a file ending in .csv, .npy or .png")
    try:
        model.check_sampler(method, [steps])
    except SamplerError as err:
        raise SamplerError(f"--{err.option or 'method'}: {err}", option=err.option) from None
    g = torch.Generator().manual_seed(seed)
    res = model.integrate(model.draw_source(num, g), steps=steps, method=method)
    what = f"samples on {model.manifold!r} ({method}, NFE {res.nfe})"
    check_finite(res.x, what="sample")  # NaN/Inf points are never written
    if out.suffix == ".png":
        from flowmatch.evaluation.manifolds import plot_manifold_points

        made = plot_manifold_points(model.manifold, res.x, None, out.parent / f".{out.stem}")
        if not made:
            raise DataError(f"{out}: no plot for {model.manifold!r}; write a .csv or .npy")
        made[0].replace(out)
        for extra in made[1:]:
            extra.unlink()
        out.parent.joinpath(f".{out.stem}").rmdir()
    else:
        save_table(out, to_table(model, res.x).float(), table_columns(model))
    echo(f"wrote {num} {what} to {out}")
    return out


def read_points(model: ManifoldFlowModel, data_file: Path) -> Tensor:
    """The points of a table file (a CSV with the model's columns, or a table of as many
    columns, in the data's units) on the model's manifold.

    Raises:
        DataError: naming the file: missing columns, a latitude out of range, a matrix that is
            not a rotation.
    """
    columns = table_columns(model)
    table = load_table(data_file)
    if data_file.suffix.lower() == ".csv" and all(c in table.columns for c in columns):
        values = table.data[:, [table.columns.index(c) for c in columns]]
    elif table.data.shape[1] == len(columns):
        values = table.data
    else:
        raise DataError(
            f"{data_file}: expected the columns {', '.join(columns)} ({_units(model)}), got "
            f"{', '.join(table.columns)}"
        )
    return from_table(model, values, str(data_file))
