"""One-step generation: MeanFlow vs reflow + distillation vs plain flow matching.

On ``checkerboard`` and ``8gaussians -> moons``, the same MLP (3 x 256, SiLU; MeanFlow's also
embeds the interval length) and optimiser (AdamW lr 1e-3, cosine decay, batch 256):

* ``fm``: plain flow matching (independent coupling), ``--steps`` steps;
* ``meanflow``: ``objective: meanflow`` (``fm.MeanFlowLoss``, 25% of the points with two
  distinct times, adaptive weight p=1), ``--steps`` steps; sampled by average-velocity jumps;
* ``reflow+distill``: pairs of ``fm`` (dopri5), the 2-rectified flow on them (``--steps``
  more) and its one-step distillation (``--steps // 2`` more): twice to 2.5 times the others'
  training budget.

W2 to fresh true samples at NFE 1, 2 and 32 (``fm``: Euler 1 and 2, midpoint 16 steps;
``meanflow``: 1, 2, 32 jumps; distilled: Euler 1 and 2, midpoint 16), mean of ``draws`` draws
of ``num`` points, with the noise floor; and the training time per step relative to ``fm``.
(The digits FD comparison waits for the image data of issue 7.)

Run ``python benchmarks/onestep.py`` (or one process per dataset: ``--datasets checkerboard
--threads 1 --no-render``, then ``--render-only``); writes the "## One-step (CPU)" section of
``benchmarks/RESULTS.md``. ``--quick`` is a smoke run whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import flowmatch as fm
from flowmatch.atomic import atomic_path
from flowmatch.runs import reflow_run
from flowmatch.train.config import config_from_dict
from flowmatch.train.data import load_run_data
from flowmatch.train.evaluate import evaluate, noise_floor
from flowmatch.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from straightness import DATASETS, base_config
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## One-step (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_onestep"
METHODS = ("fm", "meanflow", "reflow+distill")
NFES = (1, 2, 32)


def _quiet(_msg: str) -> None:
    pass


def train_all(data: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the three methods into ``work``; returns wall time per step and steps of each."""
    for name in ("fm", "meanflow", "reflow2", "reflow+distill"):
        if (work / name).exists():
            shutil.rmtree(work / name)
    facts: dict[str, Any] = {}
    for name, objective in (("fm", "flow_matching"), ("meanflow", "meanflow")):
        raw = base_config(data, args.steps, args.seed)
        raw["objective"] = {"name": objective}
        result = Trainer(
            config_from_dict(raw), work / name, progress=False, final_eval=False, echo=_quiet
        ).run()
        facts[name] = {"ms_per_step": 1e3 * result.wall_time / result.steps, "steps": args.steps}
    common = {"num": args.pairs, "seed": args.seed + 1, "progress": False, "final_eval": False}
    start = time.perf_counter()
    reflow_run(work / "fm", work / "reflow2", train_steps=args.steps, echo=_quiet, **common)
    result = reflow_run(
        work / "reflow2",
        work / "reflow+distill",
        train_steps=args.steps // 2,
        distill=True,
        echo=_quiet,
        **common,
    )
    facts["reflow+distill"] = {
        "ms_per_step": 1e3 * result.wall_time / result.steps,
        "steps": args.steps * 2 + args.steps // 2,
        "total_s": time.perf_counter() - start,
    }
    return facts


def w2_rows(model: torch.nn.Module, data: Any, args: argparse.Namespace) -> dict[int, Any]:
    """W2 (mean, std over draws) at NFE 1, 2 and 32."""
    out = {}
    for nfe, method, steps in ((1, "euler", 1), (2, "euler", 2), (32, "midpoint", 16)):
        if getattr(model, "two_times", False):
            steps = nfe
        (row,) = evaluate(
            model,
            data.reference(),
            data.draw_source,
            steps=[steps],
            methods=[method],
            num_samples=args.num,
            draws=args.draws,
            seed=args.seed + 7,
        )
        assert row.nfe == nfe, (row, nfe)
        out[nfe] = {"w2": row.w2_mean, "std": row.w2_std, "method": row.method}
    return out


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work) / name.replace(">", "")
    work.mkdir(parents=True, exist_ok=True)
    data = load_run_data(
        config_from_dict(base_config(DATASETS[name], args.steps, args.seed)).data, seed=args.seed
    )
    floor = noise_floor(
        data.reference(), num_samples=args.num, draws=args.draws, seed=args.seed + 7
    )
    facts = train_all(DATASETS[name], work, args)
    result = {"dataset": name, "floor": {"w2": floor.w2_mean, "std": floor.w2_std}, "methods": {}}
    for method in METHODS:
        rows = w2_rows(fm.load(work / method), data, args)
        result["methods"][method] = {**facts[method], "rows": rows}
        print(
            f"{name} {method}: "
            + ", ".join(f"NFE {n} W2 {rows[n]['w2']:.4f}" for n in NFES)
            + f" (floor {floor.w2_mean:.4f}); {facts[method]['ms_per_step']:.2f} ms/step",
            flush=True,
        )
    with atomic_path(work / "results.json") as tmp:
        tmp.write_text(json.dumps({**result, "args": vars(args)}, indent=1))
    return result


def render(args: argparse.Namespace) -> str:
    results = []
    for name in DATASETS:
        path = Path(args.work) / name.replace(">", "") / "results.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
    if not results:
        raise SystemExit(f"no results under {args.work}; run without --render-only first")
    saved = results[0]["args"]
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_HEADER,
        "",
        f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, {saved['threads']} "
        "thread(s) per process.",
        "",
        "Reproduce: `python benchmarks/onestep.py`",
        "",
        f"MLP 3x256, batch 256, AdamW lr 1e-3; fm and meanflow {saved['steps']:,} steps each; "
        f"reflow+distill: pairs of fm ({saved['pairs']:,}, dopri5), {saved['steps']:,} steps of "
        f"2-rectified flow, {saved['steps'] // 2:,} of distillation. W2: {saved['num']:,} "
        f"points, mean of {saved['draws']} draws. ms/step: the trainer's wall time per step "
        "(reflow+distill: its last stage); x fm: relative to fm in the same run.",
        "",
        "| dataset | method | train steps | ms/step | x fm | W2 NFE 1 | W2 NFE 2 | W2 NFE 32 "
        "| NFE 1 / floor | NFE 1 / fm at NFE 32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        floor = res["floor"]["w2"]
        ref = res["methods"]["fm"]
        for method, f in res["methods"].items():
            rows = f["rows"]
            cells = [
                res["dataset"],
                method,
                f"{f['steps']:,}",
                f"{f['ms_per_step']:.2f}",
                f"{f['ms_per_step'] / ref['ms_per_step']:.2f}",
                *(f"{rows[str(n)]['w2']:.3f} +- {rows[str(n)]['std']:.3f}" for n in NFES),
                f"{rows['1']['w2'] / floor:.2f}x",
                f"{rows['1']['w2'] / ref['rows']['32']['w2']:.2f}x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append(
            f"| {res['dataset']} | noise floor | | | | {floor:.3f} +- {res['floor']['std']:.3f} "
            "| | | | |"
        )
    section = "\n".join(lines) + "\n"
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    return section


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--pairs", type=int, default=50_000)
    p.add_argument("--num", type=int, default=5000)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--no-render", action="store_true")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    for d in args.datasets:
        if d not in DATASETS:
            p.error(f"--datasets: unknown {d!r}; expected some of {', '.join(DATASETS)}")
    if args.quick:
        args.steps, args.pairs, args.num, args.draws = 100, 500, 300, 2
    torch.set_num_threads(args.threads)
    if not args.render_only:
        for name in args.datasets:
            run_dataset(name, args)
    if not args.no_render:
        render(args)


if __name__ == "__main__":
    main()
