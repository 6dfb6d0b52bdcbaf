"""Flow matching vs diffusion at equal NFE: the same network and training budget, many samplers.

On ``checkerboard`` and ``8gaussians`` (source N(0, I)) the same MLP (3 x 256, SiLU) is trained
with the same optimiser, batch (256) and number of steps as

* ``fm``: flow matching, linear path, velocity prediction, independent coupling;
* ``fm-ot``: the same with exact minibatch optimal transport pairs;
* ``fm-reflow``: reflow of ``fm`` (dopri5 pairs, warm start; its extra steps are reported);
* ``ddpm``: DDPM (1000 timesteps, linear betas 1e-4..0.02) trained on its discrete timesteps
  to predict the noise (``path.schedule: ddpm``, ``time.sampler: discrete``);
* ``vp``: the continuous VP path (beta 0.1..20) trained to predict the noise,

and each is sampled at NFE 1, 2, 4, 8, 16, 32, 100 and 1000 by the samplers it is used with:
FM + Euler, FM + midpoint, FM + OT (Euler), FM + reflow (Euler), DDPM ancestral, DDIM (eta 0)
and the VP probability-flow ODE with midpoint (``path.convert`` from epsilon to velocity).
Midpoint spends 2 NFE per step, so it has no NFE-1 figure. For each row: W2 to fresh true
samples (mean over ``draws`` independent draws of ``num`` points, the same draws for every
row), and the smallest NFE whose W2 is within 1.2x of the noise floor (true vs true, same
draws).

Run ``python benchmarks/fm_vs_diffusion.py`` (about 40 minutes on 2 CPU cores with the two
datasets as two processes: ``--datasets checkerboard --threads 1 --no-render`` and the same
for 8gaussians, then ``--render-only``), which writes the "## Flow matching vs diffusion
(CPU)" section of ``benchmarks/RESULTS.md`` and ``docs/images/fm_vs_diffusion.png``.
``--quick`` is a smoke run (a minute) whose figures mean nothing.

With the peer libraries installed (``pip install --no-deps torchcfm flow_matching``; see
``benchmarks/peers.py``), the same MLP is also trained and sampled through torchcfm (CFM and
exact OT-CFM) and Meta's flow_matching, and their rows join the table. ``--models`` picks a
subset; a run adds its rows to the dataset's existing results.json when that was made with
the same settings, so peers can be added to a finished run.
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

import torch

import flowmatch as fm
from flowmatch.app.reflow import reflow_run
from flowmatch.atomic import atomic_path
from flowmatch.evaluation.loop import mean_std as _mean_std
from flowmatch.evaluation.points import evaluate, noise_floor
from flowmatch.evaluation.points import reference_draws as _reference_draws
from flowmatch.evaluation.seeds import stream_seed
from flowmatch.metrics import w2
from flowmatch.train.config import config_from_dict
from flowmatch.train.data import load_run_data
from flowmatch.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers
from straightness import _quiet, base_config
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Flow matching vs diffusion (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_PLOT = ROOT / "docs" / "images" / "fm_vs_diffusion.png"
DEFAULT_WORK = ROOT / "runs" / "bench_fm_vs_diffusion"

DATASETS: dict[str, dict[str, Any]] = {
    "checkerboard": {"name": "checkerboard"},
    "8gaussians": {"name": "8gaussians"},
}
# what each model changes in the shared config
MODELS: dict[str, dict[str, Any]] = {
    "fm": {},
    "fm-ot": {"coupling": {"name": "minibatch_ot", "method": "exact"}},
    "fm-reflow": {},  # reflow of fm
    "ddpm": {
        "path": {"schedule": "ddpm", "timesteps": 1000, "betas": "linear"},
        "time": {"sampler": "discrete"},
        "objective": {"prediction": "epsilon"},
    },
    "vp": {"path": {"schedule": "vp"}, "objective": {"prediction": "epsilon"}},
}
# (row label, model, sampler)
ROWS: tuple[tuple[str, str, str], ...] = (
    ("FM + Euler", "fm", "euler"),
    ("FM + midpoint", "fm", "midpoint"),
    ("FM + OT (Euler)", "fm-ot", "euler"),
    ("FM + reflow (Euler)", "fm-reflow", "euler"),
    ("DDPM ancestral", "ddpm", "ddpm"),
    ("DDIM (eta 0)", "ddpm", "ddim"),
    ("VP prob-flow ODE + midpoint", "vp", "midpoint"),
    ("torchcfm CFM (Euler)", "torchcfm", "euler"),
    ("torchcfm OT-CFM (Euler)", "torchcfm-ot", "euler"),
    ("flow_matching (Euler)", "flow_matching", "euler"),
    ("flow_matching (midpoint)", "flow_matching", "midpoint"),
)
PEER_MODELS = peers.PEERS
# settings that must agree for rows of two runs to share a table
SHARED_ARGS = ("steps", "reflow_steps", "pairs", "num", "draws", "nfes", "seed")
NFES = (1, 2, 4, 8, 16, 32, 100, 1000)
STAGES = {"euler": 1, "midpoint": 2, "ddpm": 1, "ddim": 1}
FLOOR_FACTOR = 1.2


def train_model(name: str, data: dict[str, Any], work: Path, args: argparse.Namespace) -> dict:
    """Train one model into ``work / name``; returns its training facts."""
    out = work / name
    if out.exists():
        shutil.rmtree(out)
    echo = (lambda msg: print(f"  [{name}] {msg}", flush=True)) if args.verbose else _quiet
    if name == "fm-reflow":
        start = time.perf_counter()
        result = reflow_run(
            work / "fm",
            out,
            num=args.pairs,
            train_steps=args.reflow_steps,
            seed=args.seed + 1,
            progress=False,
            final_eval=False,
            echo=echo,
        )
        return {
            "total_steps": args.steps + result.steps,
            "train_s": result.wall_time,
            "pairs_s": time.perf_counter() - start - result.wall_time,
            "ms_per_step": 1e3 * result.wall_time / result.steps,
        }
    raw = {**base_config(data, args.steps, args.seed), **MODELS[name]}
    result = Trainer(config_from_dict(raw), out, progress=False, final_eval=False, echo=echo).run()
    return {
        "total_steps": result.steps,
        "train_s": result.wall_time,
        "ms_per_step": 1e3 * result.wall_time / result.steps,
    }


def peer_cells(
    name: str, model: torch.nn.Module, sampler: str, data: Any, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """W2 of a peer library's sampler, on exactly the draws (reference sets and source noise)
    that ``evaluate`` uses for our rows."""
    sample = peers.sampler(name, model, sampler)
    cells = []
    for steps in [n // STAGES[sampler] for n in args.nfes if n % STAGES[sampler] == 0]:
        g = torch.Generator().manual_seed(stream_seed(args.seed, "eval"))
        refs = _reference_draws(data.reference(), args.num, args.draws, g)
        w2s = [w2(sample(data.draw_source(args.num, g), steps).float(), ref) for ref, _ in refs]
        mean, std = _mean_std(w2s)
        cells.append({"nfe": steps * STAGES[sampler], "w2": mean, "std": std})
    return cells


def row_cells(
    model: torch.nn.Module, sampler: str, data: Any, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """W2 of one (model, sampler) at every NFE of NFES it can spend."""
    steps = [n // STAGES[sampler] for n in args.nfes if n % STAGES[sampler] == 0]
    rows = evaluate(
        model,
        data.reference(),
        data.draw_source,
        steps=steps,
        methods=[sampler],
        num_samples=args.num,
        draws=args.draws,
        seed=stream_seed(args.seed, "eval"),
    )
    return [{"nfe": r.nfe, "w2": r.w2_mean, "std": r.w2_std} for r in rows]


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train every model on one dataset and evaluate every row; saves results.json."""
    work = Path(args.work) / name
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
        "models": {},
        "rows": {},
    }
    saved = work / "results.json"
    if saved.is_file():
        old = json.loads(saved.read_text())
        same = all(old["args"].get(k) == vars(args)[k] for k in SHARED_ARGS)
        if same:  # add to (or redo rows of) the earlier run
            result["models"], result["rows"] = old["models"], old["rows"]
            print(f"{name}: adding to the rows of {saved}", flush=True)
    print(f"{name}: noise floor W2 {floor.w2_mean:.4f} +- {floor.w2_std:.4f}", flush=True)
    for model_name in args.models:
        t0 = time.perf_counter()
        if model_name in PEER_MODELS:
            model, facts = peers.train_peer(
                model_name, data.train, steps=args.steps, seed=args.seed
            )
        else:
            facts = train_model(model_name, data_cfg, work, args)
            model = fm.load(work / model_name)
        result["models"][model_name] = facts
        for label, owner, sampler in ROWS:
            if owner != model_name:
                continue
            if model_name in PEER_MODELS:
                cells = peer_cells(model_name, model, sampler, data, args)
            else:
                cells = row_cells(model, sampler, data, args)
            result["rows"][label] = {"model": owner, "sampler": sampler, "cells": cells}
            print(
                f"{name} {label}: "
                + ", ".join(f"NFE {c['nfe']} {c['w2']:.3f}" for c in cells)
                + f"; min NFE within {FLOOR_FACTOR}x floor: {min_nfe(cells, floor.w2_mean)}",
                flush=True,
            )
        print(
            f"{name} {model_name}: {facts['ms_per_step']:.2f} ms/step, "
            f"{time.perf_counter() - t0:.0f} s with evaluation",
            flush=True,
        )
        # rows in ROWS order, whatever order the runs added them in
        result["rows"] = {r[0]: result["rows"][r[0]] for r in ROWS if r[0] in result["rows"]}
        with atomic_path(saved) as tmp:
            tmp.write_text(json.dumps({**result, "args": vars(args)}, indent=1))
    return result


def min_nfe(cells: Sequence[dict[str, Any]], floor: float) -> str:
    """The smallest NFE whose W2 is within FLOOR_FACTOR of the floor, or '> max NFE'."""
    ok = [c["nfe"] for c in cells if c["w2"] <= FLOOR_FACTOR * floor]
    return str(min(ok)) if ok else f"> {max(c['nfe'] for c in cells)}"


def converged_nfe(cells: Sequence[dict[str, Any]], factor: float = 1.1) -> str:
    """The smallest NFE whose W2 is within ``factor`` of the row's W2 at its largest NFE:
    how many steps the sampler needs to converge, whatever the model's own error."""
    last = max(cells, key=lambda c: c["nfe"])
    ok = [c["nfe"] for c in cells if c["w2"] <= factor * last["w2"]]
    return str(min(ok))


def format_table(res: dict[str, Any], nfes: Sequence[int]) -> str:
    """A markdown table: rows are samplers, columns NFE, cells W2 (bold within 1.2x floor)."""
    floor = res["floor"]["w2"]
    head = ["sampler (model)", "train steps", *[f"NFE {n}" for n in nfes]]
    head += [f"min NFE <= {FLOOR_FACTOR}x floor", "min NFE <= 1.1x own NFE-max"]
    out = [
        f"**{res['dataset']}**: W2 to fresh true samples (mean of the draws); noise floor "
        f"{floor:.4f} +- {res['floor']['std']:.4f}; bold = within {FLOOR_FACTOR}x of it.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for label, row in res["rows"].items():
        by_nfe = {c["nfe"]: c for c in row["cells"]}
        cells = [label, f"{res['models'][row['model']]['total_steps']:,}"]
        for n in nfes:
            c = by_nfe.get(n)
            if c is None:
                cells.append("-")
            else:
                text = f"{c['w2']:.3f}"
                cells.append(f"**{text}**" if c["w2"] <= FLOOR_FACTOR * floor else text)
        cells += [min_nfe(row["cells"], floor), converged_nfe(row["cells"])]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    """W2 / floor against NFE (log-log), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.6), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        floor = res["floor"]["w2"]
        colors = plt.get_cmap("tab20").colors
        for i, (label, row) in enumerate(res["rows"].items()):
            nfe = [c["nfe"] for c in row["cells"]]
            ratio = [c["w2"] / floor for c in row["cells"]]
            style = (
                "--"
                if row["model"] in ("ddpm", "vp")
                else ":"
                if row["model"] in PEER_MODELS
                else "-"
            )
            ax.plot(nfe, ratio, style, marker="o", ms=3, label=label, color=colors[2 * i % 20])
        ax.axhline(FLOOR_FACTOR, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("NFE")
        ax.set_ylabel("W2 / noise floor")
        ax.set_title(res["dataset"])
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        "flowmatch (solid), diffusion (dashed), peer libraries (dotted): same MLP and steps"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def render(args: argparse.Namespace) -> None:
    """Write the RESULTS.md section and the figure from the saved results."""
    results = []
    for name in DATASETS:
        path = Path(args.work) / name / "results.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
    if not results:
        raise SystemExit(f"no results under {args.work}; run without --render-only first")
    saved = results[0]["args"]
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ms = "; ".join(
        f"{res['dataset']}: "
        + ", ".join(f"{m} {f['ms_per_step']:.2f}" for m, f in res["models"].items())
        for res in results
    )
    section = "\n".join(
        [
            SECTION_HEADER,
            "",
            f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, "
            f"{saved['threads']} thread(s) per process.",
            "",
            "Reproduce: `python benchmarks/fm_vs_diffusion.py` (or one process per dataset: "
            "`--datasets checkerboard --threads 1 --no-render`, then `--render-only`).",
            "",
            f"Same MLP (3x256, SiLU), AdamW lr 1e-3 with cosine decay, batch 256, "
            f"{saved['steps']:,} steps, seed {saved['seed']} for every model; FM + reflow adds "
            f"{saved['reflow_steps']:,} steps on {saved['pairs']:,} dopri5 pairs of the FM "
            "model. DDPM: 1000 timesteps, linear betas 1e-4..0.02, trained on its discrete "
            "timesteps, epsilon prediction, trailing timestep spacing. VP: beta 0.1..20, "
            "epsilon prediction, continuous time. W2: exact, "
            f"{saved['num']:,} points, mean of {saved['draws']} independent draws (the same "
            f"draws for every row). Train ms/step (wall time, processes sharing the "
            f"machine; not a timing claim, see train_overhead.py for those): {ms}.",
            "",
            *[format_table(res, saved["nfes"]) for res in results],
            "![W2 vs NFE]("
            + os.path.relpath(Path(args.plot).resolve(), Path(args.results).resolve().parent)
            + ")"
            if Path(args.plot).resolve().is_relative_to(ROOT)
            else "",
            "",
        ]
    )
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    plot(results, Path(args.plot))
    print(f"wrote {args.results} and {args.plot}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    p.add_argument(
        "--models",
        default=",".join([*MODELS, *peers.available()]),
        help="comma-separated; default: ours and the installed peer libraries'",
    )
    p.add_argument("--steps", type=int, default=20_000, help="training steps of every model")
    p.add_argument("--reflow-steps", type=int, default=10_000)
    p.add_argument("--pairs", type=int, default=50_000, help="reflow pairs")
    p.add_argument("--num", type=int, default=2000, help="points per W2 set")
    p.add_argument("--draws", type=int, default=5, help="independent draws per W2 figure")
    p.add_argument("--nfes", default=",".join(map(str, NFES)), help="comma-separated")
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
    for d in args.datasets:
        if d not in DATASETS:
            p.error(f"--datasets: unknown {d!r}; expected some of {', '.join(DATASETS)}")
    args.models = [m for m in args.models.split(",") if m]
    known = (*MODELS, *PEER_MODELS)
    for m in args.models:
        if m not in known:
            p.error(f"--models: unknown {m!r}; expected some of {', '.join(known)}")
        if m in PEER_MODELS and m not in peers.available():
            p.error(
                f"--models: {m} is not installed (pip install --no-deps torchcfm flow_matching)"
            )
    if "fm-reflow" in args.models and "fm" not in args.models:
        p.error("--models: fm-reflow reflows fm; give fm too")
    try:
        args.nfes = sorted({int(n) for n in args.nfes.split(",") if n.strip()})
    except ValueError:
        p.error(f"--nfes: expected comma-separated integers, got {args.nfes!r}")
    if not args.nfes or min(args.nfes) < 1 or max(args.nfes) > 1000:
        p.error(
            f"--nfes: expected integers in [1, 1000] (DDPM has 1000 timesteps), got {args.nfes}"
        )
    if args.quick:
        args.steps, args.reflow_steps, args.pairs = 100, 50, 500
        args.num, args.draws, args.nfes = 200, 2, [1, 2, 4]
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
