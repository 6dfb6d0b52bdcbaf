"""Run the fuzz cases without pytest and write a report of the failing ones.

    python tests/fuzz/run.py            # the fast subset
    python tests/fuzz/run.py --all      # all 1,000 cases
    python tests/fuzz/run.py --only PATTERN [--report PATH] [--jobs N]

The report (default ``/tmp/fuzz_failures.md``) groups the failing cases by failure kind, with
the exact arguments and the first and last lines of stderr; the outcome table is printed.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package the way pytest names it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "fuzz"

from .cases import all_cases
from .gen_rundir import build_base_run
from .harness import FAILURES, KINDS, Outcome, format_args, run_case, warm_up


def report(outcomes: list[Outcome], seconds: float, path: Path) -> str:
    counts = collections.Counter(o.kind for o in outcomes)
    lines = [
        "# Fuzz failures",
        "",
        f"{len(outcomes)} cases in {seconds:.0f} s; {sum(counts[k] for k in FAILURES)} failed.",
        "",
        "| outcome | cases |",
        "|---|---|",
    ]
    lines += [f"| {k} | {counts[k]} |" for k in KINDS if counts.get(k)]
    for kind in FAILURES:
        failed = [o for o in outcomes if o.kind == kind]
        if not failed:
            continue
        lines += ["", f"## {kind} ({len(failed)})", ""]
        for o in failed:
            err = [ln for ln in o.stderr.strip().splitlines() if ln.strip()]
            first = err[0][:300] if err else ""
            last = err[-1][:300] if err else ""
            lines += [
                f"### {o.case_id}",
                "",
                f"- exit {o.code}, {o.seconds:.1f} s; {o.detail}",
                f"- args: `{format_args(o.args)}`",
                f"- stderr first: `{first}`",
                f"- stderr last: `{last}`",
                "",
            ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="all cases, not only the fast ones")
    parser.add_argument("--only", help="only the cases whose id contains this")
    parser.add_argument("--report", type=Path, default=Path("/tmp/fuzz_failures.md"))
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    cases = [c for c in all_cases() if args.all or c.fast or args.only]
    if args.only:
        cases = [c for c in cases if args.only in c.id]
    warm_up()
    start = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="fuzz_run_") as tmp:
        base = None
        if any(c.needs_run for c in cases):
            (Path(tmp) / "base").mkdir()
            base = build_base_run(Path(tmp) / "base" / "run")
        for i, case in enumerate(cases, 1):
            o = run_case(case, base_run=base, workdir=Path(tmp))
            outcomes.append(o)
            flag = "FAIL" if o.failed else "    "
            print(
                f"[{i:4d}/{len(cases)}] {flag} {o.kind:<20} {o.seconds:5.1f}s {case.id}", flush=True
            )
    seconds = time.monotonic() - start
    report(outcomes, seconds, args.report)
    counts = collections.Counter(o.kind for o in outcomes)
    print(f"\n{len(outcomes)} cases in {seconds:.0f} s")
    for k in KINDS:
        if counts.get(k):
            print(f"  {k:<22} {counts[k]:>5}")
    print(f"report: {args.report}")
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
