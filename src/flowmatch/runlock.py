"""One writer per run directory: an exclusive ``fcntl.flock`` on ``RUN/.lock``.

Every command that writes into a run directory (``train``, ``train --resume``, ``reflow``
into its output, ``eval`` into the run) holds the lock while it writes. A second writer fails
at once with a one-line :class:`RunLockedError` naming the holder's PID. The kernel releases
a flock when its holder dies, however it dies, so a lock is never stuck; a ``.lock`` file that
still names a process that is gone (it was killed) is taken over, and `stale_message` says
so. Readers
(``sample``, ``likelihood``) take no lock: every file they read is replaced by an atomic rename,
so they see the old file or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

from flowmatch.errors import FlowmatchError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

LOCK_NAME = ".lock"


class RunLockedError(FlowmatchError):
    """Another process is writing into the run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory, held from :meth:`acquire` to :meth:`release`
    (or as a context manager).

    Args:
        directory: the run directory; created if missing (``created`` says whether it was).
        what: the command that takes the lock, for the other writer's message.

    Raises:
        RunLockedError: another live process holds the lock (from ``acquire``).
    """

    def __init__(self, directory: str | Path, *, what: str = "flowmatch") -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what
        self.created = False
        self.stale_pid: int | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock (no waiting); a RunLockedError if another process holds it."""
        if self._fd is not None:
            return self
        self.created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd).split(maxsplit=1)
            os.close(fd)
            who = "another process"
            if holder and holder[0].isdigit():
                who = f"process {holder[0]}" + (f" ({holder[1]})" if len(holder) > 1 else "")
            raise RunLockedError(
                f"{self.directory}: {who} is writing into this run (it holds {self.path}); "
                "wait for it to finish or choose another --out"
            ) from None
        previous = _read(fd)
        if previous and previous.split()[0].isdigit():
            pid = int(previous.split()[0])
            if pid != os.getpid() and not _alive(pid):
                self.stale_pid = pid
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.what}\n".encode(), 0)
        self._fd = fd
        return self

    def stale_message(self) -> str | None:
        """The warning to show when the lock was taken over from a process that is gone."""
        if self.stale_pid is None:
            return None
        return (
            f"warning: {self.directory}: took over the lock of process {self.stale_pid}, which "
            "is no longer running (it was killed while writing into this run)"
        )

    def release(self) -> None:
        """Give the lock back (the file stays, empty, so no other holder's inode is unlinked)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:  # pragma: no cover - a full or read-only disk: the kernel still unlocks
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def abandon(self) -> None:
        """Give the lock back and, when this lock created the directory, remove it with
        whatever was written into it: a command that failed before it made a run leaves
        nothing behind."""
        self.release()
        if self.created:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:  # pragma: no cover
        return ""
