"""Straight flows, few steps: how many solver steps each way of straightening a flow saves.

On ``checkerboard`` (source N(0, I)) and ``8gaussians -> moons`` (a toy source), the same MLP
(3 x 256, SiLU) is trained with the same optimiser and batch (256) by each method:

* ``independent``: plain conditional flow matching (independent coupling);
* ``ot-exact``: exact minibatch optimal transport (``MinibatchOT("exact")``);
* ``ot-sinkhorn``: entropic minibatch OT, sampled plan (``MinibatchOT("sinkhorn")``);
* ``sb``: Schrödinger bridge (``SchrodingerBridge(sigma)``);
* ``reflow-2``: the 2-rectified flow: pairs from ``independent`` (dopri5), trained on them,
  warm-started from it (``flowmatch reflow``);
* ``reflow-2+distill``: one-step distillation of ``reflow-2`` on its own pairs.

For each: W2 to fresh true samples (mean over ``draws`` independent draws of ``num`` points,
the same draws for every method) at Euler NFE 1, 2, 4, 8, 16, 100 and midpoint NFE 2, 4, 8,
16, 100, the noise floor (true vs true, same draws), the straightness of the flow
(``fm.metrics.straightness``), the training time per step and the smallest NFE whose W2 is
within 1.2x of the floor. A figure shows the trajectories of every method side by side.

Run ``python benchmarks/straightness.py`` (about an hour on 2 CPU cores). ``--datasets`` runs
a subset and ``--no-render`` skips the report, so the two datasets can run as two processes
(``--threads 1`` each) and ``--render-only`` then writes the "## Straightness (CPU)" section
of ``benchmarks/RESULTS.md`` and ``docs/images/straightness.png`` from the saved results.
``--quick`` is a smoke run (minutes) whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import flowmatch as fm
from flowmatch.app.reflow import reflow_run
from flowmatch.atomic import atomic_path
from flowmatch.evaluation.points import evaluate, model_straightness, noise_floor
from flowmatch.evaluation.seeds import stream_seed
from flowmatch.sampling import model_velocity
from flowmatch.train.config import config_from_dict
from flowmatch.train.data import load_run_data
from flowmatch.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Straightness (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_PLOT = ROOT / "docs" / "images" / "straightness.png"
DEFAULT_WORK = ROOT / "runs" / "bench_straightness"

DATASETS: dict[str, dict[str, Any]] = {
    "checkerboard": {"name": "checkerboard"},
    "8gaussians->moons": {"name": "moons", "source": {"name": "8gaussians"}},
}
COUPLINGS: dict[str, dict[str, Any]] = {
    "independent": {"name": "independent"},
    "ot-exact": {"name": "minibatch_ot", "method": "exact"},
    "ot-sinkhorn": {"name": "minibatch_ot", "method": "sinkhorn", "reg": 0.05},
    "sb": {"name": "schrodinger_bridge", "sigma": 0.5},
}
METHODS = (*COUPLINGS, "reflow-2", "reflow-2+distill")
EULER_STEPS = (1, 2, 4, 8, 16, 100)
MIDPOINT_STEPS = (1, 2, 4, 8, 50)  # NFE 2, 4, 8, 16, 100
FLOOR_FACTOR = 1.2


def base_config(data: dict[str, Any], steps: int, seed: int) -> dict[str, Any]:
    """The shared run config: same network, optimiser and batch for every method."""
    return {
        "data": data,
        "model": {"name": "mlp", "hidden": 256, "depth": 3},
        "optim": {"lr": 1e-3},
        "train": {
            "steps": steps,
            "batch_size": 256,
            "seed": seed,
            "checkpoint_every": steps,
            "eval_every": steps,
            "log_every": 100,
        },
    }


def train_method(
    method: str, data: dict[str, Any], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Train one method into ``work / method``; returns its training facts."""
    out = work / method
    if out.exists():
        shutil.rmtree(out)
    echo = (lambda msg: print(f"  [{method}] {msg}", flush=True)) if args.verbose else _quiet
    if method in COUPLINGS:
        raw = base_config(data, args.steps, args.seed)
        raw["coupling"] = COUPLINGS[method]
        result = Trainer(
            config_from_dict(raw), out, progress=False, final_eval=False, echo=echo
        ).run()
        return {"steps": result.steps, "total_steps": result.steps, "train_s": result.wall_time}
    if method == "reflow-2":
        parent, steps, distill, parent_total = work / "independent", args.reflow_steps, False, 1
    else:
        parent, steps, distill, parent_total = work / "reflow-2", args.distill_steps, True, 2
    start = time.perf_counter()
    result = reflow_run(
        parent,
        out,
        num=args.pairs,
        train_steps=steps,
        distill=distill,
        seed=args.seed + 1,
        progress=False,
        final_eval=False,
        echo=echo,
    )
    total = time.perf_counter() - start
    prior = args.steps + (args.reflow_steps if parent_total == 2 else 0)
    return {
        "steps": result.steps,
        "total_steps": prior + result.steps,
        "train_s": result.wall_time,
        "pairs_s": total - result.wall_time,
    }


def _quiet(_msg: str) -> None:
    pass


def rows_of(model: torch.nn.Module, data: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """W2 rows of one model: Euler and midpoint at every step count."""
    reference = data.reference()
    rows = []
    for method, steps in (("euler", EULER_STEPS), ("midpoint", MIDPOINT_STEPS)):
        for r in evaluate(
            model,
            reference,
            data.draw_source,
            steps=steps,
            methods=[method],
            num_samples=args.num,
            draws=args.draws,
            seed=stream_seed(args.seed, "eval"),
        ):
            rows.append(
                {
                    "method": r.method,
                    "steps": r.steps,
                    "nfe": r.nfe,
                    "w2": r.w2_mean,
                    "std": r.w2_std,
                }
            )
    return rows


def trajectory(model: torch.nn.Module, data: Any, method: str, seed: int) -> np.ndarray:
    """Trajectories of 600 source points for the figure: midpoint 32 steps (one Euler step for
    the one-step model, which is what it is sampled with)."""
    x0 = data.draw_source(600, torch.Generator().manual_seed(seed + 21))
    one_step = method.endswith("distill")
    with torch.no_grad():
        res = fm.solve_ode(
            model_velocity(model),
            x0,
            steps=1 if one_step else 32,
            method="euler" if one_step else "midpoint",
            return_trajectory=True,
        )
    return res.trajectory.numpy()


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate every method on one dataset; saves results.json and trajectories."""
    work = Path(args.work) / name.replace(">", "")
    work.mkdir(parents=True, exist_ok=True)
    data_cfg = DATASETS[name]
    data = load_run_data(
        config_from_dict(base_config(data_cfg, args.steps, args.seed)).data, seed=args.seed
    )
    floor = noise_floor(
        data.reference(),
        num_samples=args.num,
        draws=args.draws,
        seed=stream_seed(args.seed, "eval"),
    )
    result: dict[str, Any] = {
        "dataset": name,
        "floor": {"w2": floor.w2_mean, "std": floor.w2_std},
        "methods": {},
    }
    print(f"{name}: noise floor W2 {floor.w2_mean:.4f} +- {floor.w2_std:.4f}", flush=True)
    for method in args.methods:
        t0 = time.perf_counter()
        facts = train_method(method, data_cfg, work, args)
        model = fm.load(work / method)
        facts["ms_per_step"] = 1e3 * facts["train_s"] / facts["steps"]
        facts["straightness"] = model_straightness(
            model, data.draw_source, seed=stream_seed(args.seed, "straightness")
        )
        facts["rows"] = rows_of(model, data, args)
        np.save(work / f"traj_{method}.npy", trajectory(model, data, method, args.seed))
        result["methods"][method] = facts
        best = min_nfe(facts["rows"], floor.w2_mean)
        print(
            f"{name} {method}: {facts['ms_per_step']:.2f} ms/step, straightness "
            f"{facts['straightness']:.4f}, W2 at Euler NFE 1 {facts['rows'][0]['w2']:.4f}, "
            f"min NFE within {FLOOR_FACTOR}x floor: {best} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        with atomic_path(work / "results.json") as tmp:
            tmp.write_text(json.dumps({**result, "args": vars(args)}, indent=1))
    return result


def min_nfe(rows: Sequence[dict[str, Any]], floor: float) -> str:
    """The smallest NFE whose W2 is within FLOOR_FACTOR of the floor, with its solver."""
    ok = [r for r in rows if r["w2"] <= FLOOR_FACTOR * floor]
    if not ok:
        return f"> {max(r['nfe'] for r in rows)}"
    best = min(ok, key=lambda r: (r["nfe"], r["w2"]))
    return f"{best['nfe']} ({best['method']})"


def format_tables(results: Sequence[dict[str, Any]]) -> str:
    """Markdown tables: per dataset, W2 (mean over draws) per method and NFE."""
    out = []
    for res in results:
        floor = res["floor"]["w2"]
        head = ["method", "train steps", "ms/step", "straightness"]
        head += [f"Euler {n}" for n in EULER_STEPS]
        head += [f"mid {2 * s}" for s in MIDPOINT_STEPS]
        head += [f"NFE <= {FLOOR_FACTOR}x floor"]
        out.append(
            f"**{res['dataset']}**: W2 to fresh true samples at each NFE (mean of the draws); "
            f"noise floor {floor:.4f} +- {res['floor']['std']:.4f}; bold = within "
            f"{FLOOR_FACTOR}x of it.\n"
        )
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for method, facts in res["methods"].items():
            cells = [
                method,
                f"{facts['total_steps']:,}",
                f"{facts['ms_per_step']:.2f}",
                f"{facts['straightness']:.4f}",
            ]
            for r in facts["rows"]:
                text = f"{r['w2']:.3f}"
                cells.append(f"**{text}**" if r["w2"] <= FLOOR_FACTOR * floor else text)
            cells.append(min_nfe(facts["rows"], floor))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def format_ratios(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of W2 / floor (with the W2 spread) at the low NFEs the targets name."""
    out = [
        "| dataset | method | Euler 1 | Euler 2 | mid 2 | Euler 4 | mid 4 |",
        "|---|---|" + "---:|" * 5,
    ]
    for res in results:
        floor = res["floor"]["w2"]
        for method, facts in res["methods"].items():
            by = {(r["method"], r["nfe"]): r for r in facts["rows"]}
            cells = []
            for key in (("euler", 1), ("euler", 2), ("midpoint", 2), ("euler", 4), ("midpoint", 4)):
                r = by[key]
                cells.append(f"{r['w2'] / floor:.2f}x (+-{r['std'] / floor:.2f})")
            out.append(f"| {res['dataset']} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def render(args: argparse.Namespace) -> None:
    """Write the RESULTS.md section and the trajectory figure from the saved results."""
    from flowmatch import viz

    results, panels, row_titles = [], [], []
    for name in DATASETS:
        path = Path(args.work) / name.replace(">", "") / "results.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        results.append(res)
        row_titles.append(name)
        panels.append(
            [
                (m, np.load(path.parent / f"traj_{m}.npy"))
                for m in res["methods"]
                if (path.parent / f"traj_{m}.npy").is_file()
            ]
        )
    if not results:
        raise SystemExit(f"no results under {args.work}; run without --render-only first")
    saved = results[0]["args"]
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            SECTION_HEADER,
            "",
            f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, "
            f"{saved['threads']} thread(s) per process.",
            "",
            "Reproduce: `python benchmarks/straightness.py` (or one process per dataset: "
            "`--datasets checkerboard --threads 1 --no-render`, then `--render-only`).",
            "",
            f"Same MLP (3x256, SiLU), AdamW lr 1e-3 with cosine decay, batch 256, seed "
            f"{saved['seed']}. Base methods train {saved['steps']:,} steps; reflow-2 adds "
            f"{saved['reflow_steps']:,} steps on {saved['pairs']:,} dopri5 pairs of the "
            f"independent model (warm start); the distilled model adds {saved['distill_steps']:,} "
            f"steps on {saved['pairs']:,} pairs of reflow-2. W2: exact, {saved['num']:,} points, "
            f"mean of {saved['draws']} independent draws (the same draws for every row); "
            "straightness: E||v(x_t,t) - (x1 - x0)||^2 along the model's own trajectories "
            "(midpoint, 64 steps, 1000 points). ms/step: the trainer's wall time per step "
            "(for reflow rows, of the reflow training only; the pair generation is extra).",
            "",
            format_tables(results),
            "W2 relative to the noise floor (and the spread over the draws, relative to it):",
            "",
            format_ratios(results),
            "",
            "![trajectories]("
            + os.path.relpath(Path(args.plot).resolve(), Path(args.results).resolve().parent)
            + ")"
            if Path(args.plot).resolve().is_relative_to(ROOT)
            else "",
            "",
        ]
    )
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    viz.trajectory_grid(
        panels,
        args.plot,
        row_titles=row_titles,
        title="trajectories from the source (t=0, blue) to samples (t=1)",
    )
    print(f"wrote {args.results} and {args.plot}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    p.add_argument("--steps", type=int, default=20_000, help="training steps of base methods")
    p.add_argument("--reflow-steps", type=int, default=20_000)
    p.add_argument("--distill-steps", type=int, default=10_000)
    p.add_argument("--pairs", type=int, default=50_000, help="reflow pairs")
    p.add_argument("--num", type=int, default=5000, help="points per W2 set")
    p.add_argument("--draws", type=int, default=5, help="independent draws per W2 figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--work", default=str(DEFAULT_WORK), help="run directories and results")
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--plot", default=str(DEFAULT_PLOT))
    p.add_argument("--no-render", action="store_true", help="only train and evaluate")
    p.add_argument("--render-only", action="store_true", help="only write the report")
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.methods = [m for m in args.methods.split(",") if m]
    for d in args.datasets:
        if d not in DATASETS:
            p.error(f"--datasets: unknown {d!r}; expected some of {', '.join(DATASETS)}")
    for m in args.methods:
        if m not in METHODS:
            p.error(f"--methods: unknown {m!r}; expected some of {', '.join(METHODS)}")
    if args.quick:
        args.steps, args.reflow_steps, args.distill_steps = 200, 100, 100
        args.pairs, args.num, args.draws = 1000, 300, 2
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.render_only:
        for name in args.datasets:
            run_dataset(name, args)
    if not args.no_render:
        render(args)


if __name__ == "__main__":
    main()
