"""Atomic file and directory writes: write to a temporary name, fsync, then rename.

A reader (or a run resumed after a crash) sees either the old file or the complete new one,
never a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "fsync_dir"]


def fsync_dir(directory: str | Path) -> None:
    """Flush a directory entry to disk (so that a rename inside it survives a crash)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is fsynced and renamed over it.

    The temporary name keeps the target's suffix (so writers that pick a format from it work).
    On an exception the temporary file is removed and ``target`` is left as it was.

    Example:
        >>> with atomic_path("out/samples.npy") as tmp:
        ...     np.save(tmp, x)
    """
    target = Path(target)
    created = _make_parents(target.parent)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
        )
    except BaseException:
        _remove_created(created)
        raise
    # mkstemp makes the file private (0600); give it the mode of the file it replaces, or the
    # usual 0644 for a new file.
    os.fchmod(fd, target.stat().st_mode & 0o777 if target.exists() else 0o644)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_created(created)
        raise


def _make_parents(directory: Path) -> list[Path]:
    """``mkdir -p directory``; returns the folders it created, outermost first (removed again
    by `_remove_created` if what they were made for fails). A failure part-way removes the
    ones it made."""
    missing = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    missing.reverse()
    if not probe.is_dir():  # a file where a folder is needed
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(probe))
    made: list[Path] = []
    try:
        for folder in missing:
            folder.mkdir()
            made.append(folder)
    except FileExistsError:
        if not directory.is_dir():
            _remove_created(made)
            raise
    except BaseException:
        _remove_created(made)
        raise
    return made


def _remove_created(made: list[Path]) -> None:
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:  # no longer empty: something else wrote there meanwhile
            break


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it is renamed to ``target``.

    Every file written inside is fsynced before the rename. ``target`` must not exist yet. On
    an exception the temporary directory is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                _fsync_file(path)
        fsync_dir(tmp)
        os.rename(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
