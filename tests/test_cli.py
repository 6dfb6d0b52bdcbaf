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


def test_datasets_lists_every_kind_of_data_with_its_config_line(capsys):
    code, out, _ = run(["datasets"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("built-in sets") and "your own files:" in lines
    rows = [line.split(None, 1) for line in lines if line.startswith("  ")]
    names = [name for name, _ in rows]
    assert names[:16] == [
        "checkerboard", "8gaussians", "moons", "circles", "spirals", "rings", "digits", "fashion",
        "airports", "quakes", "backbone", "frames", "residues", "names", "smiles", "pydoc",
    ]  # fmt: skip
    assert "  checkerboard        data: {name: checkerboard}" in out
    assert "data: {corpus: names}" in out and "data: {path: my.csv}" in out
    assert "data: {images: folder/, image_size: 32, channels: 3}" in out
    # the config line of every built-in set is a valid config
    import re

    import yaml

    from flowmatch.train.config import config_from_dict

    built_in = [m.group(0) for m in re.finditer(r"data: \{(name|corpus): [^{}]*\}", out)]
    assert len(built_in) == 16
    for text in built_in:
        raw = yaml.safe_load(text)
        if raw["data"].get("name") in ("digits", "fashion"):  # images take the U-Net
            raw["model"] = {"name": "unet"}
        assert config_from_dict(raw).data is not None


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
