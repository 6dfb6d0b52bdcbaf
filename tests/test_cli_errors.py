"""Bad flags and unwritable outputs end in one line that names the flag, exit code 2, and
nothing written; huge values are refused by their bounds before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmatch.cli import main
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_errors") / "run"
    over = ["train.steps=5", "model.hidden=16", "model.depth=1", "data.num_holdout=100"]
    Trainer(
        load_config(None, over), out, progress=False, final_eval=False, echo=lambda _m: None
    ).run()
    return out


def cli(argv, capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("/proc/nope/a.npy", "error: --out: /proc/nope: No such file or directory"),
        ("{tmp}/f.yaml/a.npy", "error: --out: {tmp}/f.yaml: Not a directory"),
        ("{tmp}/" + "b" * 300 + ".npy", "File name too long"),
    ],
    ids=["missing-folder", "under-a-file", "name-too-long"],
)
def test_unwritable_out_names_the_flag(run, tmp_path, capsys, out, expected) -> None:
    (tmp_path / "f.yaml").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    out, expected = out.format(tmp=tmp_path), expected.format(tmp=tmp_path)
    code, err = cli(["sample", run, "--num", "5", "--steps", "2", "--out", out], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: --out: ") and expected in err[0]
    assert len(err[0]) < 400  # a 300-character name is shortened in the middle
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["sample", "{run}", "--out", "{tmp}/s.npy", "--steps", "1000000000"], "'--steps'"),
        (["sample", "{run}", "--out", "{tmp}/s.npy", "--num", "9223372036854775808"], "'--num'"),
        (["eval", "{run}", "--draws", "1000000000"], "'--draws'"),
        (["eval", "{run}", "--num", "1000000000"], "'--num'"),
        (["eval", "{run}", "--steps", "1,1000000000"], "--steps: expected at most 64"),
        (["reflow", "{run}", "--out", "{tmp}/re", "--num", "1000000000"], "'--num'"),
        (["likelihood", "{run}", "{tmp}/p.npy", "--atol", "0"], "'--atol'"),
        (["likelihood", "{run}", "{tmp}/p.npy", "--rtol", "0"], "'--rtol'"),
        (["likelihood", "{run}", "{tmp}/p.npy", "--probes", "1000000"], "'--probes'"),
        (["demo", "--steps", "9223372036854775808", "--out", "{tmp}/d"], "'--steps'"),
    ],
)
def test_out_of_range_flags_are_refused_by_name(run, tmp_path, capsys, argv, flag) -> None:
    args = [a.format(run=run, tmp=tmp_path) for a in argv]
    code, err = cli(args, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and flag in err[0]
    assert list(tmp_path.iterdir()) == []
