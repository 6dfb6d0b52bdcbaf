"""The fuzz suite of the command line: 1,000 seeded cases (configs, data files, run
directories, flags), each one CLI invocation in a forked, time-boxed child. Each must end in
success, exit 2 with one line naming what was wrong, or exit 3 with one line; with no
traceback, no hang, no half-made run directory and no change to an existing run.

The fast subset runs unmarked; the rest is marked ``slow``. ``python tests/fuzz/run.py``
runs them without pytest and writes a report of the failures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cases import all_cases
from .harness import Case

CASES = all_cases()


def _param(case: Case) -> object:
    marks = () if case.fast else (pytest.mark.slow,)
    return pytest.param(case, id=case.id, marks=marks)


def test_case_count() -> None:
    assert len(CASES) == 1000
    assert len({c.id for c in CASES}) == 1000
    assert 120 <= sum(c.fast for c in CASES) <= 250


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_fuzz(
    case: Case, fuzz_parent: None, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from .harness import run_case

    base = request.getfixturevalue("base_run") if case.needs_run else None
    outcome = run_case(case, base_run=base, workdir=tmp_path)
    request.node.user_properties.append(("fuzz_outcome", outcome.kind))
    assert not outcome.failed, outcome.describe()
