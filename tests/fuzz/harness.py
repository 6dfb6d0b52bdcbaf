"""Run one fuzz case (one ``flowmatch`` command line) in a forked child, time-boxed, and
classify how it ended.

The parent process has torch and ``flowmatch.cli`` imported already, so a case costs a fork
(milliseconds), not a fresh interpreter (~2 s). The child:

- starts its own process group (so a hang is killed with everything it started),
- caps its address space (an impossible allocation fails there instead of swapping the box),
- runs on one torch thread, with Python's default warning filters (not pytest's),
- sends stdout/stderr to files, changes into the case's directory,
- calls ``flowmatch.cli.main(argv)`` and leaves with ``os._exit`` and the exit code; an
  exception that escapes ``main`` is printed as a traceback and exits 1.

The outcome is one of ``ok``, ``usage`` (exit 2, one ``error:`` line), ``numerical`` (exit
3, one line), or a failure kind (:data:`FAILURES`). Besides the exit code and stderr, the
files are checked: a failed command must leave no new files behind (a half-made run
directory), and a command that only reads a run (``sample``, ``likelihood``, ``reflow``; any
command that failed) must not change a byte of an existing run directory.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASSES = ("ok", "usage", "numerical")
FAILURES = (
    "traceback",
    "multi_line_error",
    "bad_exit",
    "hang",
    "half_made_run_dir",
    "left_partial_output",
    "changed_existing_run",
    "unnamed_error",
    "nonfinite_output",
)
KINDS = PASSES + FAILURES

#: Seconds a case may run before it is killed and called a hang. Generous: a legitimately slow
#: case (a manifold run's likelihood, torch.compile) takes 10-30 s on an idle 2-core machine
#: and several times that when the suite shares the cores (pytest -n 2 plus other work);
#: a hang runs forever, so a wide box costs nothing while none hangs.
DEFAULT_TIMEOUT = 150.0
#: Extra address space a child may map on top of what the parent has mapped already.
MEMORY_HEADROOM = 6 << 30

#: Commands that only read the run directory they are given.
READERS = ("sample", "likelihood", "reflow")
#: Commands that make a new run directory (their ``--out``).
MAKERS = ("train", "reflow", "demo")

TINY = (
    "train.steps=2",
    "eval.num_samples=50",
    "eval.draws=1",
    "eval.steps=1",
    "data.num_train=200",
    "data.num_holdout=100",
)
"""``--set`` overrides that keep a training case to a few steps and a tiny evaluation."""


@dataclass
class Case:
    """One fuzz case: a command line, and the files it needs.

    ``args`` may hold ``{d}`` (the case's own empty directory, also the working directory)
    and ``{run}`` (``{d}/run``, a fresh copy of the session's tiny trained run when
    ``needs_run``). ``files`` are written under ``{d}`` first (bytes, or a callable given
    the path to write), then ``tamper`` is called with the copied run directory.

    Attributes:
        id: unique, stable name (the pytest id).
        group: configs, data, rundir, flags or harness.
        args: the ``flowmatch`` arguments (without the program name).
        files: relative path -> bytes or ``fn(path)``.
        needs_run: copy the base run to ``{d}/run`` first.
        tamper: ``fn(run_dir)`` applied to the copy.
        names: when the case ends in a usage error, its line must contain one of these
            (case-insensitively): the key, flag or file it is about. Empty: not checked.
        fast: part of the fast subset (runs under plain ``make test``).
        timeout: seconds before the case is a hang.
        target: run this instead of the CLI (harness self-tests): ``fn()`` in the child.
    """

    id: str
    group: str
    args: list[str]
    files: dict[str, Any] = field(default_factory=dict)
    needs_run: bool = False
    tamper: Callable[[Path], None] | None = None
    names: tuple[str, ...] = ()
    fast: bool = False
    timeout: float = DEFAULT_TIMEOUT
    target: Callable[[], Any] | None = None

    @property
    def command(self) -> str | None:
        return next((a for a in self.args if not a.startswith("-")), None)


@dataclass
class Outcome:
    """How a case ended. ``kind`` is one of :data:`KINDS`; ``detail`` says why (failures)."""

    case_id: str
    kind: str
    code: int | None
    args: list[str]
    stdout: str
    stderr: str
    seconds: float
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES

    def describe(self) -> str:
        lines = self.stderr.strip().splitlines()
        first = lines[0] if lines else ""
        last = lines[-1] if lines else ""
        return (
            f"{self.case_id}: {self.kind} (exit {self.code}, {self.seconds:.1f} s) {self.detail}\n"
            f"  args: {format_args(self.args)}\n  stderr first: {first[:300]}\n"
            f"  stderr last: {last[:300]}"
        )


def format_args(args: list[str], limit: int = 200) -> str:
    """The command line, each argument shortened to ``limit`` characters."""
    out = []
    for a in args:
        out.append(a if len(a) <= limit else f"{a[:60]}...<{len(a)} chars>")
    return "flowmatch " + " ".join(out)


# --- files --------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative paths; directories as ``dir/``)."""
    found: dict[str, str] = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for d in dirnames:
            found[os.path.normpath(os.path.join(rel_dir, d)) + "/"] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            rel = os.path.normpath(os.path.join(rel_dir, f))
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    found[rel] = "special"
                    continue
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
                found[rel] = h.hexdigest()
            except OSError as err:
                found[rel] = f"unreadable: {err.errno}"
    return found


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paths added, removed or changed, each prefixed with ``+``, ``-`` or ``~``."""
    changes = [f"+{p}" for p in after if p not in before]
    changes += [f"-{p}" for p in before if p not in after]
    changes += [f"~{p}" for p in before if p in after and before[p] != after[p]]
    return sorted(changes, key=lambda c: c[1:])


def _write_files(d: Path, files: dict[str, Any]) -> None:
    for rel, content in files.items():
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)


def expand(args: list[str], d: Path) -> list[str]:
    return [a.replace("{run}", str(d / "run")).replace("{d}", str(d)) for a in args]


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` (the last one given)."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1 :]
    return value


# --- the child ----------------------------------------------------------------------------


def _child(args: list[str], cwd: Path, out: Path, err: Path, target: Callable | None) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        import faulthandler

        faulthandler.disable()  # pytest's dumps into the parent's stderr; ours would add noise
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, out), (2, err)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stdin = open(0, closefd=False)
        sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        mapped = _mapped_bytes()
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_HEADROOM,) * 2)
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
            warnings.simplefilter("ignore", category)
        import torch

        torch.set_num_threads(1)
        os.chdir(cwd)
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            if target is not None:
                target()
                code = 0
            else:
                from flowmatch.cli import main

                main(args)
                code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    except BaseException:
        with contextlib.suppress(Exception):
            os.write(2, traceback.format_exc().encode())
        code = 1
    os._exit(code & 0xFF)


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def run_args(
    args: list[str],
    cwd: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    target: Callable | None = None,
) -> tuple[int | None, str, str, float, bool]:
    """Run ``flowmatch ARGS`` (or ``target``) in a forked child in ``cwd``.

    Returns (exit code or None if killed by a signal, stdout, stderr, seconds, timed out).
    A child killed by a signal gets the code ``-signum``.
    """
    with tempfile.TemporaryDirectory(prefix="fuzz_io_") as io_dir:
        out, err = Path(io_dir) / "stdout", Path(io_dir) / "stderr"
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _child(args, cwd, out, err, target)
        timed_out = False
        status = None
        deadline = start + timeout
        delay = 0.001
        while True:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            if time.monotonic() > deadline:
                timed_out = True
                for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, 9)):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill()
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        # anything left in the child's process group (workers it started)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        seconds = time.monotonic() - start
        if os.WIFEXITED(status):
            code: int | None = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            code = -os.WTERMSIG(status)
        else:
            code = None
        stdout = out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""
        stderr = err.read_text(encoding="utf-8", errors="replace") if err.exists() else ""
    return code, stdout, stderr, seconds, timed_out


# --- classification -----------------------------------------------------------------------


def classify_streams(code: int | None, stderr: str, timed_out: bool) -> tuple[str, str]:
    """The kind from the exit code and stderr alone, and why."""
    if timed_out:
        return "hang", "killed at the time limit"
    if "Traceback (most recent call last)" in stderr:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        return "traceback", last[:300]
    lines = stderr.strip("\n").splitlines()
    if code == 0:
        return "ok", ""
    if code in (2, 3):
        kind = "usage" if code == 2 else "numerical"
        if len(lines) != 1:
            return "multi_line_error", f"{len(lines)} lines on stderr"
        if not lines[0].startswith("error: "):
            return "multi_line_error", "the line does not start with 'error: '"
        return kind, ""
    if code is not None and code < 0:
        return "bad_exit", f"killed by signal {signal.Signals(-code).name}"
    return "bad_exit", f"exit code {code}"


def run_case(case: Case, base_run: Path | None = None, workdir: Path | None = None) -> Outcome:
    """Set up ``case`` in a fresh directory, run it, classify it, clean up."""
    tmp = Path(tempfile.mkdtemp(prefix="fuzz_case_", dir=workdir))
    try:
        d = tmp / "d"
        d.mkdir()
        if case.needs_run:
            if base_run is None:
                raise ValueError(f"{case.id} needs the base run")
            shutil.copytree(base_run, d / "run")
        _write_files(d, case.files)
        if case.tamper is not None:
            case.tamper(d / "run")
        args = expand(case.args, d)
        before = snapshot(d)
        code, stdout, stderr, seconds, timed_out = run_args(
            args, d, timeout=case.timeout, target=case.target
        )
        after = snapshot(d)
        kind, detail = classify_streams(code, stderr, timed_out)
        kind, detail = _check_files(case, args, d, before, after, kind, detail, code)
        if kind == "usage" and case.names:
            line = stderr.strip().lower()
            if not any(n.lower() in line for n in case.names):
                kind, detail = "unnamed_error", f"names none of {list(case.names)}"
        if kind == "ok":
            kind, detail = _check_output(case, args, d, kind, detail)
        return Outcome(case.id, kind, code, args, stdout, stderr, seconds, detail)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_files(
    case: Case,
    args: list[str],
    d: Path,
    before: dict[str, str],
    after: dict[str, str],
    kind: str,
    detail: str,
    code: int | None,
) -> tuple[str, str]:
    if kind in ("hang",):
        return kind, detail  # killed: whatever it left is not its fault alone
    changes = diff(before, after)
    if not changes:
        return kind, detail
    command = case.command
    out_opt = _option(args, "--out")
    out_rel = os.path.relpath(out_opt, d) if out_opt is not None else None
    succeeded = code == 0
    run_changes = [c for c in changes if c[1:].startswith("run/") or c[1:] == "run"]
    if case.needs_run and run_changes:
        allowed = set()
        if succeeded and out_rel is not None:
            allowed = {out_rel}
        reader = command in READERS or (command == "train" and "--resume" not in args)
        if not succeeded or reader:
            bad = [c for c in run_changes if c[1:] not in allowed and c[1:].rstrip("/") != "run"]
            if command == "train" and "--resume" in args:
                bad = _without_moves_aside(bad, before, after)
            if bad:
                return "changed_existing_run", "changed " + ", ".join(bad[:6])
    if succeeded:
        return kind, detail
    new = [c for c in changes if c.startswith("+") and not c[1:].startswith("run/")]
    if new:
        made = "half_made_run_dir" if command in MAKERS else "left_partial_output"
        if kind in FAILURES:
            return kind, f"{detail}; also left " + ", ".join(new[:6])
        return made, f"{kind}, but left " + ", ".join(new[:6])
    other = [c for c in changes if not c[1:].startswith("run/")]
    if other and kind not in FAILURES:
        return "changed_existing_run", "changed " + ", ".join(other[:6])
    return kind, detail


def _without_moves_aside(
    changes: list[str], before: dict[str, str], after: dict[str, str]
) -> list[str]:
    """Drop the changes that only move damaged checkpoint files aside: a resume may rename a
    damaged checkpoint (issue 21: "moves it aside, never deletes it") as long as every file
    it removed under ``checkpoints/`` reappears there byte for byte under a new name."""
    removed = [c[1:] for c in changes if c.startswith("-") and "/checkpoints/" in c]
    added = [c[1:] for c in changes if c.startswith("+") and "/checkpoints/" in c]
    if not removed:
        return changes
    added_hashes = collections.Counter(after[p] for p in added if after[p] != "dir")
    removed_hashes = collections.Counter(before[p] for p in removed if before[p] != "dir")
    if removed_hashes - added_hashes:
        return changes  # something was lost or altered, not just moved
    moved = set(removed) | set(added)
    return [c for c in changes if c[1:] not in moved]


def _check_output(case: Case, args: list[str], d: Path, kind: str, detail: str) -> tuple[str, str]:
    """A successful ``sample`` into a .npy/.csv file must have written finite numbers."""
    if case.command != "sample":
        return kind, detail
    out = _option(args, "--out")
    if out is None:
        return kind, detail
    path = d / out
    if not path.is_file():
        return kind, detail
    import numpy as np

    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            values = np.genfromtxt(io.StringIO(path.read_text()), delimiter=",", skip_header=1)
        else:
            return kind, detail
        values = np.asarray(values, dtype=np.float64)
    except (ValueError, OSError, TypeError):
        return kind, detail
    bad = int((~np.isfinite(values)).sum())
    if bad:
        return "nonfinite_output", f"exit 0 but {bad} of {values.size} values are not finite"
    return kind, detail


# --- the parent ---------------------------------------------------------------------------

WARM_MODULES = (
    "torch._dynamo",
    "torch.optim",
    "ot",
    "matplotlib.pyplot",
    "scipy.stats",
    "scipy.linalg",
    "scipy.optimize",
    "sklearn.datasets",
    "PIL.Image",
    "safetensors.torch",
    "yaml",
    "pydantic",
)


def warm_up() -> list[str]:
    """Import, once in the parent, what the commands import lazily (torch.compile's machinery
    through the optimizers, POT, matplotlib, every flowmatch module), so that each forked case
    starts with them loaded. One torch thread. Returns the modules that failed to import."""
    import importlib
    import pkgutil

    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    failed = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            failed.append(name)
    import flowmatch

    for info in pkgutil.walk_packages(flowmatch.__path__, "flowmatch."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:
            failed.append(info.name)
    try:  # parsed structure files are cached (lru_cache): parse them once, here
        from flowmatch.data.structures import scan_structures

        scan_structures()
    except Exception:
        failed.append("flowmatch.data.structures.scan_structures")
    return failed
