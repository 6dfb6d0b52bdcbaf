"""Fixtures of the fuzz suite, and its outcome table at the end of the run.

Each fuzz test records its outcome kind as a user property; the controller (also under
pytest-xdist, where properties travel with the reports) counts them and prints the table.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import FAILURES, KINDS, warm_up

_OUTCOMES: collections.Counter[str] = collections.Counter()
_FAILED: list[str] = []


@pytest.fixture(scope="session")
def fuzz_parent() -> Iterator[None]:
    """Pre-import what the commands need, once per (xdist worker) process. Each child runs on
    one torch thread; the parent's thread count is restored at the end of the session."""
    import torch

    threads = torch.get_num_threads()
    warm_up()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def base_run(fuzz_parent: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained run that each run-directory case copies."""
    from .gen_rundir import build_base_run

    return build_base_run(tmp_path_factory.mktemp("fuzz_base") / "run")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == "fuzz_outcome":
            _OUTCOMES[value] += 1
            if value in FAILURES:
                _FAILED.append(report.nodeid.split("[", 1)[-1].rstrip("]"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    tr = terminalreporter
    total = sum(_OUTCOMES.values())
    tr.section(f"fuzz: {total} cases")
    for kind in KINDS:
        if _OUTCOMES.get(kind):
            mark = "FAIL" if kind in FAILURES else "pass"
            tr.write_line(f"  {kind:<22} {_OUTCOMES[kind]:>5}  {mark}")
    failed = sum(_OUTCOMES[k] for k in FAILURES)
    tr.write_line(f"  {'failures':<22} {failed:>5}")
