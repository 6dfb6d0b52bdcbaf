"""Likelihood of held-out data under trained flows, against the true value, and its cost.

The checkerboard density is uniform on 8 squares of side 2 (area 32), so the true negative
log-likelihood of every point is log 32 = 3.4657 nats. Models of a few sizes and training
lengths are trained on it (AdamW lr 1e-3, batch 256, seed 0), and their NLL on 2000 held-out
points is computed with ``fm.log_likelihood``: exact divergence and Hutchinson (4 Rademacher
probes), dopri5 at tolerance 1e-5. The table gives the NLL with its standard error over the
points, the gap to log 32, the seconds per 1000 points and the NFE of each solve. A second
table compares the cost of the two divergences at data dimension 2 and 64 on the same
fixed-step solve (rk4, 25 steps, NFE 100), where exact costs one backward pass per dimension
and Hutchinson one per probe.

Run ``python benchmarks/likelihood.py`` (about 10 minutes on 2 CPU cores; ``--quick`` for a
smoke run whose figures mean nothing). Writes the "## Likelihood (CPU)" section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import flowmatch as fm
from flowmatch.data.toy2d import sample_toy
from flowmatch.train.config import config_from_dict
from flowmatch.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Likelihood (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_likelihood"
TRUE_NLL = math.log(32.0)
MODELS: tuple[tuple[int, int, int], ...] = (
    (256, 3, 5_000),
    (256, 3, 20_000),
    (512, 4, 20_000),
    (512, 4, 50_000),
)
"""(hidden, depth, training steps) of the checkerboard models."""


def train(hidden: int, depth: int, steps: int, out: Path) -> float:
    """Train one checkerboard model; returns its training wall time."""
    if out.exists():
        shutil.rmtree(out)
    raw = {
        "data": {"name": "checkerboard"},
        "model": {"name": "mlp", "hidden": hidden, "depth": depth},
        "train": {"steps": steps, "checkpoint_every": steps, "eval_every": steps},
    }
    trainer = Trainer(
        config_from_dict(raw), out, progress=False, final_eval=False, echo=lambda _m: None
    )
    return trainer.run().wall_time


def score(model: Any, x: torch.Tensor, method: str, batch: int = 1000) -> dict[str, float]:
    """NLL (mean and standard error over points), seconds per 1000 points and NFE per solve."""
    start = time.perf_counter()
    values, nfes = [], []
    gen = torch.Generator().manual_seed(0)
    for i in range(0, x.shape[0], batch):
        res = fm.log_likelihood(
            model, x[i : i + batch], method=method, num_probes=4, generator=gen, return_result=True
        )
        values.append(res.log_prob)
        nfes.append(res.nfe)
    seconds = time.perf_counter() - start
    lp = torch.cat(values).double()
    return {
        "nll": -float(lp.mean()),
        "se": float(lp.std() / math.sqrt(lp.shape[0])),
        "s_per_1000": seconds * 1000 / x.shape[0],
        "nfe": sum(nfes) / len(nfes),
    }


def cost_rows(dims: Sequence[int], num: int) -> list[dict[str, float]]:
    """Seconds per 1000 points of exact vs Hutchinson on one fixed solve (rk4, NFE 100)."""
    rows = []
    for dim in dims:
        torch.manual_seed(0)
        model = fm.models.MLP(dim=dim, hidden=256, depth=3)
        x = torch.randn(num, dim)
        row: dict[str, float] = {"dim": dim}
        for method in ("exact", "hutchinson"):
            start = time.perf_counter()
            res = fm.log_likelihood(
                model, x, method=method, solver="rk4", steps=25, num_probes=4, return_result=True
            )
            row[method] = (time.perf_counter() - start) * 1000 / num
            row["nfe"] = res.nfe
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], costs: list[dict[str, float]], args: Any) -> str:
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_HEADER,
        "",
        f"Measured {stamp} on {facts['cpu']}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s).",
        "",
        "Reproduce: `python benchmarks/likelihood.py`",
        "",
        f"Checkerboard (true NLL log 32 = {TRUE_NLL:.4f} nats), {args.num} held-out points, "
        "dopri5 tol 1e-5; Hutchinson with 4 Rademacher probes. NLL +- its standard error over "
        "the points; s/1000: seconds per 1000 points; NFE per solve of 1000 points.",
        "",
        "| model | train steps | train s | NLL exact | gap | s/1000 | NFE | NLL Hutchinson "
        "| gap | s/1000 | NFE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, h = r["exact"], r["hutchinson"]
        lines.append(
            f"| MLP {r['depth']}x{r['hidden']} | {r['steps']:,} | {r['train_s']:.0f} "
            f"| {e['nll']:.4f} +- {e['se']:.4f} | {e['nll'] - TRUE_NLL:+.4f} "
            f"| {e['s_per_1000']:.2f} | {e['nfe']:.0f} "
            f"| {h['nll']:.4f} +- {h['se']:.4f} | {h['nll'] - TRUE_NLL:+.4f} "
            f"| {h['s_per_1000']:.2f} | {h['nfe']:.0f} |"
        )
    lines += [
        "",
        "Cost of the divergence on one fixed solve (rk4, 25 steps), MLP 3x256, seconds per "
        "1000 points:",
        "",
        "| data dim | NFE | exact (D backward passes) | Hutchinson (4 probes) | ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in costs:
        lines.append(
            f"| {c['dim']} | {c['nfe']:.0f} | {c['exact']:.2f} | {c['hutchinson']:.2f} "
            f"| {c['exact'] / c['hutchinson']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num", type=int, default=2000, help="held-out points")
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    args = p.parse_args(argv)
    models = ((32, 2, 50),) if args.quick else MODELS
    num = 200 if args.quick else args.num
    args.num = num
    held_out = sample_toy("checkerboard", num, generator=torch.Generator().manual_seed(12345))
    rows = []
    for hidden, depth, steps in models:
        out = Path(args.work) / f"mlp{depth}x{hidden}_{steps}"
        train_s = train(hidden, depth, steps, out)
        model = fm.load(out)
        row: dict[str, Any] = {"hidden": hidden, "depth": depth, "steps": steps}
        row["train_s"] = train_s
        for method in ("exact", "hutchinson"):
            row[method] = score(model, held_out, method)
        print(
            f"MLP {depth}x{hidden}, {steps} steps: NLL exact {row['exact']['nll']:.4f}, "
            f"Hutchinson {row['hutchinson']['nll']:.4f} (true {TRUE_NLL:.4f})",
            flush=True,
        )
        rows.append(row)
    costs = cost_rows((2, 64), 100 if args.quick else 1000)
    section = render(rows, costs, args)
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    return section


if __name__ == "__main__":
    main()
