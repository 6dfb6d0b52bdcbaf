"""MeanFlow settings on the checkerboard: which time embedding, loss weight, share of distinct
times, JVP tangent, time pairs, coupling and optimiser settings give the best one-step
samples.

Each setting trains the 3x256 MLP (two times) with ``fm.MeanFlowLoss`` for ``--steps`` steps
(AdamW, cosine decay, batch 256, weight EMA), in its own single-thread process, and reports
the W2 of the EMA model's samples after 1, 2 and 8 average-velocity jumps (exact W2,
``--num`` points, mean of 3 draws); the ``fm`` row is plain flow matching with Euler 1, 2 and
midpoint 16 steps (NFE 32) for reference. The library's MeanFlow defaults (time embedding up
to 10 rad, half the points with distinct times, plain squared error, uniform times) were
chosen from this table, and the one-step recipe of ``benchmarks/onestep.py``'s meanflow-ot
row (minibatch OT, the model's own velocity as the JVP tangent, gap time pairs) from its
last rows.

Run ``python benchmarks/meanflow_sweep.py --jobs 15`` (15 processes at once: about 8 minutes
on a 16-core machine, several hours on 2 cores); ``--only 1,7`` runs some settings. Writes
the "## MeanFlow settings (CPU)" section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import flowmatch as fm
from flowmatch.atomic import atomic_path
from flowmatch.couplings import MinibatchOT
from flowmatch.data.toy2d import sample_toy
from flowmatch.meanflow import MeanFlowLoss, sample_average
from flowmatch.metrics.transport import w2
from flowmatch.time import LogitNormal, Uniform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## MeanFlow settings (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BASE: dict[str, Any] = {
    "freq": 10.0,
    "ratio": 0.5,
    "p": 0.0,
    "sampler": "uniform",
    "lr": 1e-3,
    "ema": 0.999,
    "ot": False,
    "seed": 0,
    "steps": 20_000,
    "fm": False,
    "tangent": "conditional",
    "pairs": "ordered",
}
# (label, changes to BASE); the first is the library's default.
SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("defaults (10 rad, 50% distinct, p 0, conditional tangent, ordered times)", {}),
    ("75% distinct", {"ratio": 0.75}),
    ("25% distinct", {"ratio": 0.25}),
    ("embedding 3 rad", {"freq": 3.0}),
    ("embedding 30 rad", {"freq": 30.0}),
    ("adaptive weight p 0.5", {"p": 0.5}),
    ("minibatch OT", {"ot": True}),
    ("minibatch OT, 75% distinct", {"ot": True, "ratio": 0.75}),
    ("lr 3e-4", {"lr": 3e-4}),
    ("EMA 0.9999", {"ema": 0.9999}),
    ("lr 2e-3", {"lr": 2e-3}),
    ("seed 1", {"seed": 1}),
    ("logit-normal(0, 1) times", {"sampler": "0:1"}),
    ("25,000 steps", {"steps": 25_000}),
    ("plain flow matching", {"fm": True}),
    ("embedding 1000 rad (the flow-matching default)", {"freq": 1000.0}),
    (
        "the paper's: p 1, 25% distinct, logit-normal(0.4, 1)",
        {"p": 1.0, "ratio": 0.25, "sampler": "0.4:1"},
    ),
    ("model tangent", {"tangent": "model"}),
    ("model tangent, gap pairs", {"tangent": "model", "pairs": "gap"}),
    ("model tangent, minibatch OT", {"tangent": "model", "ot": True}),
    ("model tangent, minibatch OT, gap pairs", {"tangent": "model", "ot": True, "pairs": "gap"}),
)


def run_one(settings: dict[str, Any], num: int) -> dict[str, Any]:
    """Train one setting on one thread and return its W2 per NFE and ms per step."""
    s = {**BASE, **settings}
    torch.set_num_threads(1)
    torch.manual_seed(s["seed"])
    # The two-time network is always built first, so the fm row's weights are drawn after it
    # (as in the run that chose the defaults).
    model = fm.models.MLP(dim=2, hidden=256, depth=3, two_times=True, time_frequency=s["freq"])
    times = (
        Uniform()
        if s["sampler"] == "uniform"
        else LogitNormal(*map(float, s["sampler"].split(":")))
    )
    loss_fn: Any = MeanFlowLoss(
        time_sampler=times,
        ratio_distinct=s["ratio"],
        adaptive_p=s["p"],
        coupling=MinibatchOT(method="exact") if s["ot"] else None,
        tangent=s["tangent"],
        time_pairs=s["pairs"],
    )
    if s["fm"]:
        model = fm.models.MLP(dim=2, hidden=256, depth=3)
        loss_fn = fm.FlowMatchingLoss(fm.AffinePath(fm.schedules.Linear()))
    steps = s["steps"]
    opt = torch.optim.AdamW(model.parameters(), lr=s["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps))
    )
    ema = copy.deepcopy(model)
    g = torch.Generator().manual_seed(s["seed"])
    start = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(model, sample_toy("checkerboard", 256, generator=g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - s["ema"])
    ms = 1e3 * (time.perf_counter() - start) / steps
    gen = torch.Generator().manual_seed(123)
    out = {}
    for nfe in (1, 2, 32) if s["fm"] else (1, 2, 8):
        dists = []
        for _ in range(3):
            x0 = torch.randn(num, 2, generator=gen)
            ref = sample_toy("checkerboard", num, generator=gen)
            if not s["fm"]:
                x = sample_average(ema, x0, steps=nfe)
            elif nfe == 32:
                x = fm.sample(ema, x0, steps=16, method="midpoint")
            else:
                x = fm.sample(ema, x0, steps=nfe, method="euler")
            dists.append(w2(x, ref))
        out[str(nfe)] = sum(dists) / len(dists)
    return {"settings": s, "w2": out, "ms": ms}


def _job(item: tuple[int, dict[str, Any], int]) -> tuple[int, dict[str, Any]]:
    index, settings, num = item
    return index, run_one(settings, num)


def _machines(results: dict[str, Any], default: str) -> str:
    """Where the rows ran: one machine, or each machine with its rows."""
    rows: dict[str, list[int]] = {}
    for index, run in sorted(results["runs"].items(), key=lambda item: int(item[0])):
        rows.setdefault(run.get("machine", results.get("machine", default)), []).append(int(index))
    if len(rows) == 1:
        return next(iter(rows))
    return "; ".join(
        f"{'row' if len(numbers) == 1 else 'rows'} {_spans(numbers)}: {machine}"
        for machine, numbers in rows.items()
    )


def _spans(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_HEADER,
        "",
        f"Rendered {stamp}; measured on {_machines(results, facts['cpu'])}; one thread per "
        "setting.",
        "",
        "Reproduce: `python benchmarks/meanflow_sweep.py --jobs 15`",
        "",
        "Checkerboard, MLP 3x256 (two times), AdamW with cosine decay, batch 256, EMA; W2 of "
        f"the EMA model, exact, {results['num']:,} points (noise floor about 0.23 at 2,000), "
        "mean of 3 draws. MeanFlow rows: NFE = average-velocity jumps; flow matching: Euler 1 "
        "and 2, midpoint 16 steps for NFE 32.",
        "",
        "| # | setting | steps | W2 NFE 1 | W2 NFE 2 | W2 NFE 8 / 32 | ms/step |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for index, (label, _) in enumerate(SETTINGS, start=1):
        res = results["runs"].get(str(index))
        if res is None:
            continue
        w = res["w2"]
        last = w.get("32", w.get("8"))
        lines.append(
            f"| {index} | {label} | {res['settings']['steps']:,} | {w['1']:.3f} | {w['2']:.3f} "
            f"| {last:.3f} | {res['ms']:.1f} |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    return section


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="settings trained at once")
    p.add_argument("--only", default="", help="comma-separated setting numbers (1-based)")
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--steps", type=int, default=None, help="override every setting's steps")
    p.add_argument("--out", default=str(ROOT / "runs" / "meanflow_sweep.json"))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--no-render", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        if not out.is_file():
            raise SystemExit(f"{out}: no results; run without --render-only first")
        render(json.loads(out.read_text()), args)
        return
    chosen = [int(i) for i in args.only.split(",") if i] or list(range(1, len(SETTINGS) + 1))
    for i in chosen:
        if not 1 <= i <= len(SETTINGS):
            p.error(f"--only: setting {i} does not exist (1..{len(SETTINGS)})")
    items = []
    for i in chosen:
        settings = dict(SETTINGS[i - 1][1])
        if args.steps is not None:
            settings["steps"] = args.steps
        items.append((i, settings, args.num))
    results: dict[str, Any] = {"num": args.num, "jobs": args.jobs, "runs": {}}
    at_once = "one setting at a time" if args.jobs == 1 else f"{args.jobs} settings at once"
    results["machine"] = f"{machine_facts()['cpu']}, {at_once}"
    if args.jobs > 1:
        pool = multiprocessing.get_context("spawn").Pool(min(args.jobs, len(items)))
        done = pool.imap_unordered(_job, items)
    else:
        pool, done = None, map(_job, items)
    try:
        for index, res in done:
            results["runs"][str(index)] = {**res, "machine": results["machine"]}
            print(f"{index} {SETTINGS[index - 1][0]}: {json.dumps(res['w2'])}", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if out.is_file():  # keep the settings run before (e.g. with --only)
        earlier = json.loads(out.read_text())
        kept = {
            i: {"machine": earlier.get("machine", "an earlier run"), **run}
            for i, run in earlier.get("runs", {}).items()
        }
        results["runs"] = {**kept, **results["runs"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    if not args.no_render:
        render(results, args)


if __name__ == "__main__":
    main()
