"""Tests for flowmatch.viz: file formats, pixel sizes, atomic writes, input checks, imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from flowmatch import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGICS = (b"GIF87a", b"GIF89a")
PAD = 1  # the padding image_grid documents: 1 pixel between and around tiles


def _only_file(directory, name):
    """The directory holds exactly `name` (no temp files left) and it is non-empty."""
    assert sorted(p.name for p in directory.iterdir()) == [name]
    data = (directory / name).read_bytes()
    assert len(data) > 0
    return data


def _traj2d(t=6, n=50):
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(n, 2, generator=g), 3 + torch.randn(n, 2, generator=g)
    ts = torch.linspace(0, 1, t)[:, None, None]
    return (1 - ts) * x0 + ts * x1


TABLE = {
    "euler": [(1, 2.0, 0.1), (4, 0.8, 0.05), (2, 1.2, 0.1)],
    "midpoint": [(2, 0.9, float("nan")), (8, 0.3, 0.02)],
}


# -------------------------------------------------------------------------------- file output


@pytest.mark.parametrize("as_numpy", [False, True])
def test_figures_write_png_atomically(tmp_path, as_numpy):
    conv = (lambda x: x.numpy()) if as_numpy else (lambda x: x)
    pts = conv(torch.randn(100, 2))
    cases = {
        "scatter.png": lambda p: viz.scatter(pts, p),
        "scatter_ref.png": lambda p: viz.scatter(
            pts,
            p,
            reference=conv(torch.randn(80, 2)),
            title="t",
            labels=conv(torch.arange(100) % 3),
        ),
        "traj.png": lambda p: viz.trajectories(conv(_traj2d()), p, num_paths=10, lim=(-4, 6)),
        "nfe.png": lambda p: viz.quality_vs_nfe(TABLE, p, floor=(0.2, 0.05), title="W2"),
        "nfe_scalar_floor.png": lambda p: viz.quality_vs_nfe(TABLE, p, floor=0.2),
    }
    for name, make in cases.items():
        d = tmp_path / name.removesuffix(".png")
        out = make(d / name)  # the parent directory does not exist yet
        assert out == d / name
        assert _only_file(d, name).startswith(PNG_MAGIC)


def test_figure_format_follows_suffix(tmp_path):
    out = viz.scatter(np.zeros((5, 2)), tmp_path / "s.pdf")
    assert _only_file(tmp_path, "s.pdf").startswith(b"%PDF")
    assert out.suffix == ".pdf"
    with pytest.raises(ValueError, match="path"):
        viz.scatter(np.zeros((5, 2)), tmp_path / "s.unknownfmt")


def test_save_gif(tmp_path):
    out = viz.save_gif(_traj2d(t=4, n=30), tmp_path / "a.gif", fps=5)
    assert out == tmp_path / "a.gif"
    assert _only_file(tmp_path, "a.gif")[:6] in GIF_MAGICS
    from PIL import Image

    with Image.open(out) as im:
        assert im.n_frames == 4


def test_save_gif_needs_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` raise ImportError
    with pytest.raises(RuntimeError, match="Pillow"):
        viz.save_gif(_traj2d(t=3, n=5), tmp_path / "a.gif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("n", "nrow", "c", "h", "w"),
    [(10, None, 3, 8, 6), (10, 3, 1, 5, 7), (1, None, 1, 4, 4), (6, 6, 3, 3, 3), (5, 8, 1, 2, 2)],
)
def test_image_grid_pixel_size(tmp_path, n, nrow, c, h, w):
    images = torch.rand(n, c, h, w) * 2 - 1
    out = viz.image_grid(images, tmp_path / "g.png", nrow=nrow)
    assert _only_file(tmp_path, "g.png").startswith(PNG_MAGIC)
    cols = min(nrow or int(np.ceil(np.sqrt(n))), n)
    rows = int(np.ceil(n / cols))
    img = imread(out)
    assert img.shape[:2] == (rows * (h + PAD) + PAD, cols * (w + PAD) + PAD)


def test_image_grid_pixels_land_in_place(tmp_path):
    """Tile i sits at row i // nrow, column i % nrow; value_range maps lo->0, hi->1."""
    n, h, w, nrow = 5, 3, 4, 2
    images = torch.zeros(n, 1, h, w)
    for i in range(n):
        images[i] = i / (n - 1)  # in value_range (0, 1), so grey level i / 4
    img = imread(viz.image_grid(images, tmp_path / "g.png", nrow=nrow, value_range=(0, 1)))
    for i in range(n):
        r, q = divmod(i, nrow)
        top, left = PAD + r * (h + PAD), PAD + q * (w + PAD)
        tile = img[top : top + h, left : left + w, :3]
        np.testing.assert_allclose(tile, i / (n - 1), atol=1 / 255)
    # values outside value_range are clipped, not wrapped
    img = imread(viz.image_grid(torch.full((1, 3, 2, 2), 5.0), tmp_path / "g.png"))
    np.testing.assert_allclose(img[PAD : PAD + 2, PAD : PAD + 2, :3], 1.0)


@pytest.mark.parametrize(("t", "num_frames", "expected"), [(30, 8, 8), (5, 8, 5), (2, 2, 2)])
def test_trajectory_strip(tmp_path, t, num_frames, expected):
    h, w = 6, 5
    # frame k is a constant image of value k / (t - 1): noise side dark, data side bright
    traj = torch.linspace(0, 1, t)[:, None, None, None].expand(t, 1, h, w)
    out = viz.trajectory_strip(traj, tmp_path / "s.png", num_frames=num_frames, value_range=(0, 1))
    assert _only_file(tmp_path, "s.png").startswith(PNG_MAGIC)
    img = imread(out)
    assert img.shape[:2] == (h + 2 * PAD, expected * (w + PAD) + PAD)
    levels = [img[PAD + h // 2, PAD + k * (w + PAD) + w // 2, 0] for k in range(expected)]
    assert levels[0] == pytest.approx(0.0, abs=1 / 255)  # first frame (t=0) included
    assert levels[-1] == pytest.approx(1.0, abs=1 / 255)  # last frame (t=1) included
    assert all(np.diff(levels) > 0)  # in time order, no repeats


# -------------------------------------------------------------------------------- atomicity


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "s.png"
    target.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        viz.scatter(torch.randn(10, 2), target)
    assert _only_file(tmp_path, "s.png") == b"old"


def test_overwrite_replaces_file(tmp_path):
    target = tmp_path / "g.png"
    target.write_bytes(b"old")
    viz.image_grid(torch.zeros(4, 1, 2, 2), target)
    assert _only_file(tmp_path, "g.png").startswith(PNG_MAGIC)


# -------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "argname"),
    [
        (lambda p: viz.scatter(torch.zeros(5, 3), p / "a.png"), "points"),
        (lambda p: viz.scatter(torch.zeros(5), p / "a.png"), "points"),
        (lambda p: viz.scatter(torch.zeros(0, 2), p / "a.png"), "points"),
        (lambda p: viz.scatter(torch.zeros(5, 2), p / "a.png", reference=torch.zeros(4, 3)),
         "reference"),
        (lambda p: viz.scatter(torch.zeros(5, 2), p / "a.png", labels=torch.zeros(4)), "labels"),
        (lambda p: viz.scatter(torch.zeros(5, 2), p / "a.png", labels=torch.rand(5)), "labels"),
        (lambda p: viz.scatter(torch.zeros(5, 2), p / "a.png", lim=(1, 0)), "lim"),
        (lambda p: viz.trajectories(torch.zeros(5, 2), p / "a.png"), "traj"),
        (lambda p: viz.trajectories(torch.zeros(3, 5, 3), p / "a.png"), "traj"),
        (lambda p: viz.trajectories(torch.zeros(3, 5, 2), p / "a.png", num_paths=-1), "num_paths"),
        (lambda p: viz.save_gif(torch.zeros(5, 2), p / "a.gif"), "frames_2d"),
        (lambda p: viz.save_gif(torch.zeros(3, 5, 2), p / "a.gif", fps=0), "fps"),
        (lambda p: viz.save_gif(torch.zeros(3, 5, 2), p / "a.png"), "path"),
        (lambda p: viz.image_grid(torch.zeros(4, 2, 8, 8), p / "a.png"), "images"),
        (lambda p: viz.image_grid(torch.zeros(1, 8, 8), p / "a.png"), "images"),
        (lambda p: viz.image_grid(torch.zeros(4, 1, 8, 8), p / "a.png", nrow=0), "nrow"),
        (lambda p: viz.image_grid(torch.zeros(4, 1, 8, 8), p / "a.jpg"), "path"),
        (lambda p: viz.image_grid(torch.zeros(4, 1, 8, 8), p / "a.png", value_range=(1, 1)),
         "value_range"),
        (lambda p: viz.trajectory_strip(torch.zeros(4, 8, 8), p / "a.png"), "traj"),
        (lambda p: viz.trajectory_strip(torch.zeros(4, 1, 8, 8), p / "a.png", num_frames=1),
         "num_frames"),
        (lambda p: viz.quality_vs_nfe({}, p / "a.png"), "table"),
        (lambda p: viz.quality_vs_nfe({"e": [(1, 2.0)]}, p / "a.png"), "table"),
        (lambda p: viz.quality_vs_nfe({"e": [(0, 2.0, 0.1)]}, p / "a.png"), "NFE"),
        (lambda p: viz.quality_vs_nfe({"e": [(1, 2.0, 0.1)]}, p / "a.png", floor=(1, 2, 3)),
         "floor"),
    ],
)  # fmt: skip
def test_bad_input_raises_naming_argument(tmp_path, call, argname):
    with pytest.raises(ValueError, match=argname):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_tensor_on_any_dtype(tmp_path):
    pts = torch.randn(20, 2, dtype=torch.bfloat16, requires_grad=True)
    viz.scatter(pts, tmp_path / "a.png")
    viz.image_grid(torch.rand(2, 3, 4, 4, dtype=torch.float16), tmp_path / "b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


# -------------------------------------------------------------------------------- imports


def test_import_flowmatch_does_not_load_matplotlib_and_viz_avoids_pyplot(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import flowmatch
        assert "matplotlib" not in sys.modules, "import flowmatch loaded matplotlib"
        import torch
        from flowmatch import viz
        viz.scatter(torch.randn(10, 2), {str(tmp_path / "a.png")!r})
        viz.save_gif(torch.randn(2, 10, 2), {str(tmp_path / "a.gif")!r})
        assert "matplotlib.pyplot" not in sys.modules, "viz loaded pyplot"
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# -------------------------------------------------------------------------------- trajectory grid


def test_trajectory_grid_writes_one_png(tmp_path):
    panels = [[("a", _traj2d()), ("b", _traj2d())], [("c", _traj2d()), ("d", _traj2d(t=2))]]
    out = viz.trajectory_grid(panels, tmp_path / "g.png", row_titles=["r1", "r2"], title="T")
    assert out == tmp_path / "g.png"
    assert _only_file(tmp_path, "g.png").startswith(PNG_MAGIC)
    h, w = imread(out).shape[:2]
    assert min(h, w) > 300  # a 2x2 grid of 2.6-inch panels, not a single small one


@pytest.mark.parametrize(
    ("panels", "kwargs", "needle"),
    [
        ([], {}, "non-empty grid"),
        ([[("a", _traj2d())], []], {}, "same, non-zero length"),
        ([[("a", _traj2d())]], {"row_titles": ["x", "y"]}, "row_titles"),
        ([[("a", np.zeros((3, 4)))]], {}, "panels[0][0]"),
    ],
)
def test_trajectory_grid_rejects_bad_input(tmp_path, panels, kwargs, needle):
    with pytest.raises(ValueError) as err:
        viz.trajectory_grid(panels, tmp_path / "g.png", **kwargs)
    assert needle in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_scale_repeats_every_pixel(tmp_path):
    """scale=k makes each pixel a k x k block of the unscaled PNG (nearest neighbour)."""
    images = torch.rand(4, 1, 3, 5) * 2 - 1
    base = imread(viz.image_grid(images, tmp_path / "a.png", nrow=2))
    big = imread(viz.image_grid(images, tmp_path / "b.png", nrow=2, scale=3))
    np.testing.assert_array_equal(big, base.repeat(3, axis=0).repeat(3, axis=1))
    traj = torch.rand(6, 1, 4, 4)
    base = imread(viz.trajectory_strip(traj, tmp_path / "c.png", num_frames=3))
    big = imread(viz.trajectory_strip(traj, tmp_path / "d.png", num_frames=3, scale=2))
    np.testing.assert_array_equal(big, base.repeat(2, axis=0).repeat(2, axis=1))
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="scale"):
            viz.image_grid(images, tmp_path / "e.png", scale=bad)
