"""Tests for flowmatch.viz.maps: sphere, torus and SO(3) plots, their input checks and geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from flowmatch import viz
from flowmatch.viz.maps import _axis_angle, _lonlat, _orthographic, _subsample, _xyz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _only_png(directory, name):
    """The directory holds exactly `name` (no temp files left), a PNG; its (height, width)."""
    assert sorted(p.name for p in directory.iterdir()) == [name]
    data = (directory / name).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    h, w = imread(directory / name).shape[:2]
    assert min(h, w) > 200
    return h, w


def _sphere(n, seed=0, mean=(0.0, 0.0, 0.0)):
    x = np.random.default_rng(seed).normal(size=(n, 3)) + np.asarray(mean)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rodrigues(axis, angle):
    """Rotation matrices (N, 3, 3) from unit axes (N, 3) and angles (N,), in float64."""
    k = np.zeros((len(axis), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _random_rotations(n, seed=0):
    axis = _sphere(n, seed)
    angle = np.random.default_rng(seed + 1).uniform(0, np.pi, n)
    return _rodrigues(axis, angle)


def _plots():
    """(function, samples, reference) per plot; tensors and arrays both."""
    rng = np.random.default_rng(3)
    torus = np.column_stack([rng.normal(-1.2, 0.3, 1500), rng.normal(2.3, 0.5, 1500)])
    return {
        "world_map": (viz.world_map, torch.from_numpy(_sphere(300, 0, (2, 0, 1))), _sphere(200, 1)),
        "globe": (viz.globe, _sphere(300, 0, (2, 0, 1)), torch.from_numpy(_sphere(200, 1))),
        "ramachandran": (viz.ramachandran, torch.from_numpy(torus), torus[:200] + 0.3),
        "rotations": (
            viz.rotations,
            _random_rotations(300),
            torch.tensor(_random_rotations(80, 5)),
        ),
    }


# -------------------------------------------------------------------------------- file output


@pytest.mark.parametrize("name", ["world_map", "globe", "ramachandran", "rotations"])
def test_writes_png_with_and_without_reference(tmp_path, name):
    fn, samples, reference = _plots()[name]
    alone = tmp_path / "alone" / "deeper" / "a.png"  # parent directories do not exist yet
    assert fn(samples, alone) == alone
    h1, w1 = _only_png(alone.parent, "a.png")
    both = tmp_path / "both" / "b.png"
    assert fn(samples, both, reference=reference, names=("m", "d"), title="T") == both
    h2, w2 = _only_png(both.parent, "b.png")
    if name == "rotations":  # one row per set
        assert h2 > 1.5 * h1
    else:  # one panel per set, side by side
        assert w2 > 1.5 * w1


def test_overwrites_atomically_and_accepts_single_points(tmp_path):
    target = tmp_path / "w.png"
    target.write_bytes(b"old")
    viz.world_map(np.array([[0.0, 0.0, 1.0]]), target, max_points=1)
    viz.globe(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float32), tmp_path / "g.png")
    viz.ramachandran(np.array([[math.pi, -math.pi]]), tmp_path / "r.png", bins=2)
    viz.rotations(np.eye(3)[None], tmp_path / "o.png")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["g.png", "o.png", "r.png", "w.png"]
    assert target.read_bytes().startswith(PNG_MAGIC)


# -------------------------------------------------------------------------------- bad input

_UNIT = _sphere(5)
_ROT = _random_rotations(5)


@pytest.mark.parametrize(
    ("call", "argname"),
    [
        (lambda p: viz.world_map(np.zeros((5, 2)), p / "a.png"), "samples"),
        (lambda p: viz.world_map(np.zeros((0, 3)), p / "a.png"), "samples"),
        (lambda p: viz.world_map(2 * _UNIT, p / "a.png"), "samples"),
        (lambda p: viz.world_map(_UNIT * (1 + 2e-3), p / "a.png"), "samples"),
        (lambda p: viz.world_map(np.full((5, 3), np.nan), p / "a.png"), "samples"),
        (lambda p: viz.world_map(_UNIT, p / "a.png", reference=np.zeros((4, 3))), "reference"),
        (lambda p: viz.world_map(_UNIT, p / "a.png", max_points=0), "max_points"),
        (lambda p: viz.world_map(_UNIT, p / "a.png", names=("a",)), "names"),
        (lambda p: viz.world_map(_UNIT, p / "a.unknownfmt"), "path"),
        (lambda p: viz.globe(torch.zeros(5, 3), p / "a.png"), "samples"),
        (lambda p: viz.globe(_UNIT, p / "a.png", reference=_UNIT[:, :2]), "reference"),
        (lambda p: viz.globe(_UNIT, p / "a.png", center=(91.0, 0.0)), "center"),
        (lambda p: viz.globe(_UNIT, p / "a.png", center=(0.0, math.inf)), "center"),
        (lambda p: viz.globe(_UNIT, p / "a.png", center="ab"), "center"),
        (lambda p: viz.ramachandran(np.zeros((5, 3)), p / "a.png"), "angles"),
        (lambda p: viz.ramachandran(np.zeros(5), p / "a.png"), "angles"),
        (lambda p: viz.ramachandran(np.array([[0.0, np.inf]]), p / "a.png"), "angles"),
        (lambda p: viz.ramachandran(np.zeros((5, 2)), p / "a.png", bins=1), "bins"),
        (lambda p: viz.ramachandran(np.zeros((5, 2)), p / "a.png", reference=np.zeros((5, 1))),
         "reference"),
        (lambda p: viz.rotations(np.zeros((5, 3)), p / "a.png"), "matrices"),
        (lambda p: viz.rotations(np.zeros((0, 3, 3)), p / "a.png"), "matrices"),
        (lambda p: viz.rotations(2 * _ROT, p / "a.png"), "matrices"),
        (lambda p: viz.rotations(np.diag([1.0, 1.0, -1.0])[None], p / "a.png"), "matrices"),
        (lambda p: viz.rotations(np.full((2, 3, 3), np.nan), p / "a.png"), "matrices"),
        (lambda p: viz.rotations(_ROT, p / "a.png", reference=-_ROT), "reference"),
    ],
)  # fmt: skip
def test_bad_input_raises_naming_argument(tmp_path, call, argname):
    with pytest.raises(ValueError, match=argname) as err:
        call(tmp_path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_axis_angle_recovers_known_rotations(dtype):
    """Angles within 1e-12 (float64) / 1e-6 (float32) rad; axes within 1e-9 / 1e-5 (up to sign
    where the angle is pi, or for float32 within 1e-3 of pi, where +-axis give one rotation)."""
    n = 40
    angle = np.concatenate(
        [[0.0, np.pi / 2, np.pi - 1e-7, np.pi, 1e-5, np.pi - 1e-3, 1.0],
         np.random.default_rng(7).uniform(0, np.pi, n - 7)]
    )  # fmt: skip
    axis = _sphere(n, 11)
    axis[3:5] = [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # coordinate axes at pi and near 0 too
    mats = _rodrigues(axis, angle).astype(dtype)
    tol_angle, tol_axis = (1e-12, 1e-9) if dtype == np.float64 else (1e-6, 1e-5)
    got_axis, got_angle = _axis_angle(mats)

    assert got_axis.shape == (n, 3) and got_angle.shape == (n,)
    assert np.all((got_angle >= 0) & (got_angle <= np.pi))
    np.testing.assert_allclose(np.linalg.norm(got_axis, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(got_angle, angle, rtol=0, atol=tol_angle)
    assert got_angle[0] == 0.0 and got_angle[3] == pytest.approx(np.pi, abs=tol_angle)
    has_axis = angle > 1e-3 if dtype == np.float32 else angle > 0
    ambiguous = angle >= (np.pi if dtype == np.float64 else np.pi - 1e-3)
    dots = np.sum(got_axis * axis, axis=1)
    signed = has_axis & ~ambiguous
    np.testing.assert_allclose(dots[signed], 1.0, atol=tol_axis)
    np.testing.assert_allclose(np.abs(dots[ambiguous]), 1.0, atol=tol_axis)
    np.testing.assert_allclose(got_axis[0], [0.0, 0.0, 1.0])  # the identity's axis
    # whatever the sign, the axis and angle rebuild the matrix
    rebuilt = _rodrigues(got_axis, got_angle)
    np.testing.assert_allclose(rebuilt, mats.astype(np.float64), atol=10 * tol_axis)


def test_axis_angle_at_exactly_pi_picks_positive_largest_component():
    """R = 2 k k^T - I is symmetric (v = 0 exactly): +-k are the same rotation by pi."""
    axis = np.array([[0.6, -0.8, 0.0], [0.0, 0.0, -1.0], [-1.0, 2.0, -3.0]])
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    mats = 2 * axis[:, :, None] * axis[:, None, :] - np.eye(3)
    got, angle = _axis_angle(mats)
    assert np.all(angle == np.pi)
    np.testing.assert_allclose(
        got, [[-0.6, 0.8, 0.0], [0.0, 0.0, 1.0], np.array([1.0, -2.0, 3.0]) / 14**0.5]
    )


@pytest.mark.parametrize("center", [(20.0, 0.0), (0.0, 0.0), (90.0, 0.0), (-45.0, 170.0),
                                    (-90.0, 33.0), (10.0, -180.0), (60.0, 400.0)])  # fmt: skip
def test_orthographic_centres_the_view(center):
    lat, lon = np.radians(center)
    c = _xyz(np.array([lat]), np.array([lon]))
    yz, vis = _orthographic(np.concatenate([c, -c]), center)
    np.testing.assert_allclose(yz[0], [0.0, 0.0], atol=1e-12)
    assert vis.tolist() == [True, False]  # the centre faces the viewer, its antipode is hidden
    pts = _sphere(500, 2)
    yz, vis = _orthographic(pts, center)
    assert np.all(np.hypot(*yz.T) <= 1 + 1e-12)
    np.testing.assert_array_equal(vis, pts @ c[0] > 0)  # the hemisphere around the centre


def test_orthographic_puts_north_up_and_east_right():
    d = np.radians(10.0)
    north, east = _xyz(np.array([d, 0.0]), np.array([0.0, d]))
    yz, vis = _orthographic(np.stack([north, east]), (0.0, 0.0))
    np.testing.assert_allclose(yz, [[0.0, np.sin(d)], [np.sin(d), 0.0]], atol=1e-12)
    assert vis.all()


def test_lonlat_follows_the_convention_and_subsample_is_deterministic():
    lat = np.array([0.0, 0.5, -1.2, np.pi / 2, 0.3])
    lon = np.array([0.0, 2.0, -3.0, 0.0, np.pi])
    got_lon, got_lat = _lonlat(_xyz(lat, lon))
    np.testing.assert_allclose(got_lat, lat, atol=1e-12)
    np.testing.assert_allclose(got_lon[:4], lon[:4], atol=1e-12)
    assert got_lon[4] == pytest.approx(-np.pi)  # longitude pi is written -pi: in [-pi, pi)
    arr = np.arange(1000)[:, None]
    a, b = _subsample(arr, 100), _subsample(arr, 100)
    assert len(a) == 100 and len(np.unique(a)) == 100 and np.array_equal(a, b)
    assert _subsample(arr, 1000) is arr
