"""The fuzz harness itself: each kind of ending is recognized as what it is."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from .harness import Case, classify_streams, diff, run_case, snapshot


def _crash() -> None:
    raise RuntimeError("deliberate")


def _sleep() -> None:
    time.sleep(1000)


def _usage() -> None:
    print("error: --num: expected a positive integer", file=sys.stderr)
    sys.exit(2)


def _two_lines() -> None:
    print("warning: something", file=sys.stderr)
    print("error: --num: bad", file=sys.stderr)
    sys.exit(2)


def _numerical() -> None:
    print("error: loss is NaN at step 3", file=sys.stderr)
    sys.exit(3)


def _exit1() -> None:
    sys.exit(1)


def _segfault() -> None:
    os.kill(os.getpid(), 11)


def _exit_75() -> None:
    print("error: preempted", file=sys.stderr)
    sys.exit(75)


def _ok() -> None:
    print("done")


def _swallowed_oserror() -> None:
    open("/proc/nope/x")


def _make_dir_then_fail() -> None:
    Path("out").mkdir()
    (Path("out") / "config.yaml").write_text("x")
    print("error: config: bad", file=sys.stderr)
    sys.exit(2)


def _touch_run_then_fail() -> None:
    (Path("run") / "config.yaml").write_text("changed")
    print("error: something", file=sys.stderr)
    sys.exit(2)


def _kind(target, tmp_path: Path, **kw) -> str:
    case = Case("h", "harness", kw.pop("args", ["eval", "x"]), target=target, **kw)
    return run_case(case, base_run=kw.get("base_run"), workdir=tmp_path).kind


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        (_crash, "traceback"),
        (_usage, "usage"),
        (_two_lines, "multi_line_error"),
        (_numerical, "numerical"),
        (_exit1, "bad_exit"),
        (_segfault, "bad_exit"),
        (_exit_75, "bad_exit"),
        (_ok, "ok"),
        (_swallowed_oserror, "traceback"),
    ],
)
def test_endings(target, kind: str, tmp_path: Path) -> None:
    assert _kind(target, tmp_path) == kind


def test_hang_is_killed(tmp_path: Path) -> None:
    start = time.monotonic()
    outcome = run_case(Case("h", "harness", ["eval"], target=_sleep, timeout=2), workdir=tmp_path)
    assert outcome.kind == "hang"
    assert time.monotonic() - start < 10


def test_half_made_run_dir(tmp_path: Path) -> None:
    assert _kind(_make_dir_then_fail, tmp_path, args=["train", "c.yaml", "--out", "out"]) == (
        "half_made_run_dir"
    )


def test_changed_existing_run(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.yaml").write_text("original")
    case = Case("h", "harness", ["sample", "{run}"], needs_run=True, target=_touch_run_then_fail)
    assert run_case(case, base_run=base, workdir=tmp_path).kind == "changed_existing_run"
    assert (base / "config.yaml").read_text() == "original"


def test_unnamed_error(tmp_path: Path) -> None:
    case = Case("h", "harness", ["sample"], names=("--steps",), target=_usage)
    assert run_case(case, workdir=tmp_path).kind == "unnamed_error"
    case = Case("h", "harness", ["sample"], names=("--NUM",), target=_usage)
    assert run_case(case, workdir=tmp_path).kind == "usage"


def test_real_cli_usage_error(tmp_path: Path) -> None:
    """Through the real CLI: an unknown command is a one-line usage error."""
    case = Case("h", "harness", ["no-such-command"])
    outcome = run_case(case, workdir=tmp_path)
    assert outcome.kind == "usage", outcome.describe()
    assert outcome.stderr.startswith("error: ")


def test_classify_streams() -> None:
    assert classify_streams(0, "", False) == ("ok", "")
    assert classify_streams(2, "error: x\n", False)[0] == "usage"
    assert classify_streams(2, "x\n", False)[0] == "multi_line_error"
    assert classify_streams(2, "", False)[0] == "multi_line_error"
    assert classify_streams(3, "error: nan\n", False)[0] == "numerical"
    assert classify_streams(0, "Traceback (most recent call last):\n  x\nE: y\n", False)[0] == (
        "traceback"
    )
    assert classify_streams(None, "", True)[0] == "hang"
    assert classify_streams(-9, "", False)[0] == "bad_exit"


def test_snapshot_diff(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    (tmp_path / "d").mkdir()
    before = snapshot(tmp_path)
    (tmp_path / "a").write_text("2")
    (tmp_path / "d" / "b").write_text("3")
    assert diff(before, snapshot(tmp_path)) == ["~a", "+d/b"]
