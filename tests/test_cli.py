import pytest

from flowmatch.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_oracle_demo_writes_plots(tmp_path, capsys):
    code, out, _ = run(["demo", "--oracle", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0
    for name in ("samples.png", "trajectories.png"):
        data = (tmp_path / "demo" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert "NFE 16" in out


def test_datasets_lists_every_toy_set_and_manifold_set(capsys):
    code, out, _ = run(["datasets"], capsys)
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == [
        "checkerboard", "8gaussians", "moons", "circles", "spirals", "rings",
        "airports", "quakes", "backbone", "frames", "residues",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--bogus", "1"], "--bogus"),
        (["nope"], "nope"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_help_exits_0(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "demo" in out
