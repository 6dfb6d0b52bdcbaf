"""Atomic writes: the target is the old file or the whole new one, and a failed write leaves
nothing behind, not even the folders made for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowmatch.atomic import atomic_dir, atomic_path


def test_atomic_path_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_removes_the_folders_it_made(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x" / "y" / "a.npy"):
            raise RuntimeError("failed")
    with pytest.raises(OSError, match="File name too long"):
        with atomic_path(tmp_path / "p" / "q" / ("b" * 300 + ".npy")):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_is_needed_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("x")
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "f.yaml" / "a.npy"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.yaml"]


def test_atomic_dir_is_complete_or_absent(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "one").write_text("1")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "one").write_text("1")
    assert (tmp_path / "d" / "one").read_text() == "1"
