"""One-step generation: MeanFlow vs reflow + distillation vs plain flow matching.

Points (``checkerboard``, ``8gaussians->moons``): the same MLP (3 x 256, SiLU) and optimiser
(AdamW lr 1e-3, cosine decay, batch 256) for

* ``fm``: plain flow matching (independent coupling), ``--steps`` steps;
* ``meanflow``: ``objective: meanflow`` (``fm.MeanFlowLoss`` with its defaults: half the points
  with two distinct times, plain squared error, time embedding up to 10 rad), ``--steps``
  steps, sampled by average-velocity jumps;
* ``meanflow-ot``: the one-step recipe measured best on the checkerboard
  (``benchmarks/meanflow_sweep.py``): exact minibatch OT pairs (``coupling: minibatch_ot``),
  the model's own velocity as the JVP tangent and uniform interval lengths
  (``objective: {tangent: model, time_pairs: gap}``);
* ``reflow+distill``: ``--pairs`` pairs of ``fm`` (dopri5), the 2-rectified flow on them
  (``--steps`` more) and its one-step distillation (``--steps // 2`` more).

Digits (``--datasets digits``): the class-conditional U-Net of ``flowmatch demo --dataset
digits`` for ``fm``, ``meanflow`` and ``reflow+distill`` (``--image-steps`` steps each stage,
distillation half; ``--image-pairs`` pairs, labels in turn), every sample conditional (no
guidance); FD and class accuracy of 1437 generated digits vs the 360 test digits.

Figures at NFE 1, 2 and 32 (``fm`` and the distilled model: Euler 1 and 2, midpoint 16 steps;
MeanFlow: 1, 2, 32 jumps), mean of ``draws`` draws, beside the floor. Training cost: the
trainer's wall time per step and the **total** training seconds of each method (reflow +
distill: fm's training, the pairs and both stages), all in one process, so the target
"better than reflow+distill for the same total training compute" can be read off.

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
from flowmatch.app.demo import DIGITS_OVERRIDES
from flowmatch.app.reflow import reflow_run
from flowmatch.atomic import atomic_path
from flowmatch.evaluation.images import evaluate_images, image_floor
from flowmatch.evaluation.points import evaluate, noise_floor
from flowmatch.evaluation.seeds import stream_seed
from flowmatch.train.config import config_from_dict, load_config
from flowmatch.train.data import load_run_data
from flowmatch.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from straightness import DATASETS, _quiet, base_config
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## One-step (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_onestep"
ALL_DATASETS = (*DATASETS, "digits")
POINT_METHODS = ("fm", "meanflow", "meanflow-ot", "reflow+distill")
IMAGE_METHODS = ("fm", "meanflow", "reflow+distill")
NFES = (1, 2, 32)
# NFE -> (sampler, steps) of a one-time model; a two-time model takes NFE jumps.
SAMPLERS = {1: ("euler", 1), 2: ("euler", 2), 32: ("midpoint", 16)}
OT = {"name": "minibatch_ot", "method": "exact"}
MEANFLOW_OT = {"tangent": "model", "time_pairs": "gap"}  # the meanflow-ot row's objective


def workdir(args: argparse.Namespace, name: str) -> Path:
    """The folder of dataset ``name`` under ``--work``."""
    return Path(args.work) / name.replace(">", "")


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


# point method -> (objective, coupling) of its config; reflow+distill is trained from fm
POINT_RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "fm": ({"name": "flow_matching"}, None),
    "meanflow": ({"name": "meanflow"}, None),
    "meanflow-ot": ({"name": "meanflow", **MEANFLOW_OT}, OT),
}


def train_point_method(
    name: str, data: dict[str, Any], steps: int, seed: int, out: Path
) -> dict[str, Any]:
    """Train point method ``name`` (a key of :data:`POINT_RECIPES`) afresh into ``out``;
    returns its steps and wall time."""
    objective, coupling = POINT_RECIPES[name]
    raw = base_config(data, steps, seed)
    raw["objective"] = dict(objective)
    if coupling is not None:
        raw["coupling"] = dict(coupling)
    trainer = Trainer(
        config_from_dict(raw), _fresh(out), progress=False, final_eval=False, echo=_quiet
    )
    return _facts(trainer.run())


def train_points(data: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the chosen point methods but reflow+distill into ``work``; returns their steps
    and wall times."""
    return {
        name: train_point_method(name, data, args.steps, args.seed, work / name)
        for name in POINT_RECIPES
        if name in args.methods
    }


def train_digits(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the chosen image methods but reflow+distill on digits into ``work``; returns
    their steps and wall times."""
    facts: dict[str, Any] = {}
    for name, extra in (("fm", ()), ("meanflow", ("objective.name=meanflow",))):
        if name not in args.methods:
            continue
        cfg = load_config(
            None,
            [
                *DIGITS_OVERRIDES,
                *extra,
                f"train.steps={args.image_steps}",
                f"train.seed={args.seed}",
            ],
        )
        trainer = Trainer(cfg, _fresh(work / name), progress=False, final_eval=False, echo=_quiet)
        facts[name] = _facts(trainer.run())
        print(f"digits {name}: {facts[name]['train_s']:.0f} s", flush=True)
    return facts


def _facts(result: Any) -> dict[str, Any]:
    return {
        "steps": result.steps,
        "ms_per_step": 1e3 * result.wall_time / result.steps,
        "train_s": result.wall_time,
    }


def reflow_distill(
    work: Path, steps: int, pairs: int, fm_facts: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Reflow ``work/fm`` (pairs + ``steps``), then distill (pairs + ``steps // 2``), pairs drawn
    with ``seed + 1``; the total includes fm's training (``fm_facts``)."""
    common = {"num": pairs, "seed": seed + 1, "progress": False, "final_eval": False}
    start = time.perf_counter()
    reflow_run(work / "fm", _fresh(work / "reflow2"), train_steps=steps, echo=_quiet, **common)
    last = reflow_run(
        work / "reflow2",
        _fresh(work / "reflow+distill"),
        train_steps=steps // 2,
        distill=True,
        echo=_quiet,
        **common,
    )
    return {
        "steps": fm_facts["steps"] + steps + steps // 2,
        "ms_per_step": 1e3 * last.wall_time / last.steps,  # its last stage
        "train_s": fm_facts["train_s"] + time.perf_counter() - start,
    }


def w2_rows(
    model: torch.nn.Module,
    data: Any,
    *,
    num: int,
    draws: int,
    seed: int,
    nfes: Sequence[int] = NFES,
) -> dict[int, Any]:
    """W2 (mean, std over ``draws`` draws of ``num`` points, drawn with ``seed``: the same for
    every model) at each NFE of ``nfes``."""
    out = {}
    two_times = getattr(model, "two_times", False)
    for nfe in nfes:
        method, steps = ("average", nfe) if two_times else SAMPLERS[nfe]
        (row,) = evaluate(
            model,
            data.reference(),
            data.draw_source,
            steps=[steps],
            methods=[method],
            num_samples=num,
            draws=draws,
            seed=seed,
        )
        assert row.nfe == nfe, (row, nfe)
        out[nfe] = {"w2": row.w2_mean, "std": row.w2_std, "method": row.method}
    return out


def fd_rows(model: torch.nn.Module, digits: Any, args: argparse.Namespace) -> dict[int, Any]:
    """FD (mean, std over draws) and class accuracy at NFE 1, 2 and 32, conditional samples."""
    out = {}
    two_times = getattr(model, "two_times", False)
    for nfe in NFES:
        method, steps = ("euler", nfe) if two_times else SAMPLERS[nfe]
        (row,) = evaluate_images(
            model,
            digits.test,
            digits.train_labels,
            num=digits.train.shape[0],
            steps=[steps],
            methods=[method],
            draws=args.draws,
            seed=stream_seed(args.seed, "eval"),
        )
        assert row.nfe == nfe, (row, nfe)
        out[nfe] = {
            "fd": row.fd_mean,
            "std": row.fd_std,
            "accuracy": row.accuracy,
            "method": "average" if two_times else row.method,
        }
    return out


def _saved_methods(work: Path, methods: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """The results of the methods that ``--methods`` leaves out, from the last full run."""
    keep = [m for m in methods if m not in args.methods]
    if not keep:
        return {}
    path = work / "results.json"
    saved = json.loads(path.read_text())["methods"] if path.is_file() else {}
    missing = [m for m in keep if m not in saved or not (work / m).is_dir()]
    if missing:
        raise SystemExit(
            f"{path}: no saved results for {', '.join(missing)}; run them too (--methods)"
        )
    if "reflow+distill" in args.methods and "fm" in keep:
        print("reflow+distill starts from the saved fm run", flush=True)
    return {m: saved[m] for m in keep}


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = workdir(args, name)
    work.mkdir(parents=True, exist_ok=True)
    methods = IMAGE_METHODS if name == "digits" else POINT_METHODS
    saved = _saved_methods(work, methods, args)  # before any training: fail early
    if name == "digits":
        from flowmatch.data.images import load_digits

        digits = load_digits()
        fl = image_floor(digits.train, digits.test, digits.train_labels)
        floor = {"fd": fl.fd_mean, "std": 0.0, "accuracy": fl.accuracy}
        metric = "fd"
        facts = train_digits(work, args)
        steps, pairs = args.image_steps, args.image_pairs
    else:
        data = load_run_data(
            config_from_dict(base_config(DATASETS[name], args.steps, args.seed)).data,
            seed=args.seed,
        )
        row = noise_floor(
            data.reference(),
            num_samples=args.num,
            draws=args.draws,
            seed=stream_seed(args.seed, "eval"),
        )
        floor = {"w2": row.w2_mean, "std": row.w2_std}
        metric = "w2"
        facts = train_points(DATASETS[name], work, args)
        steps, pairs = args.steps, args.pairs
    if "reflow+distill" in args.methods:  # from fm, trained now or saved
        fm_facts = facts.get("fm", saved.get("fm"))
        facts["reflow+distill"] = reflow_distill(work, steps, pairs, fm_facts, args.seed)
    result = {"dataset": name, "metric": metric, "floor": floor, "methods": {}}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for method in methods:
        if method in saved:
            result["methods"][method] = saved[method]
            continue
        model = fm.load(work / method)
        if name == "digits":
            rows = fd_rows(model, digits, args)
        else:
            rows = w2_rows(
                model, data, num=args.num, draws=args.draws, seed=stream_seed(args.seed, "eval")
            )
        result["methods"][method] = {**facts[method], "rows": rows, "measured": stamp}
        print(
            f"{name} {method}: "
            + ", ".join(f"NFE {n} {metric} {rows[n][metric]:.4f}" for n in NFES)
            + f" (floor {floor[metric]:.4f}); {facts[method]['ms_per_step']:.2f} ms/step, "
            f"{facts[method]['train_s']:.0f} s in all",
            flush=True,
        )
    with atomic_path(work / "results.json") as tmp:
        tmp.write_text(json.dumps({**result, "args": vars(args)}, indent=1))
    return result


def format_table(res: dict[str, Any]) -> list[str]:
    """The Markdown table of one dataset's results."""
    metric = res["metric"]
    unit = "FD" if metric == "fd" else "W2"
    floor = res["floor"][metric]
    ref = res["methods"]["fm"]
    lines = [
        f"| dataset | method | train steps | ms/step | x fm | train s (total) | {unit} NFE 1 "
        f"| {unit} NFE 2 | {unit} NFE 32 | NFE 1 / floor | NFE 1 / fm at NFE 32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, f in res["methods"].items():
        rows = f["rows"]

        def cell(n: str, rows: dict[str, Any] = rows) -> str:
            text = f"{rows[n][metric]:.3f} +- {rows[n]['std']:.3f}"
            if metric == "fd":
                text += f" ({100 * rows[n]['accuracy']:.0f}%)"
            return text

        cells = [
            res["dataset"],
            method,
            f"{f['steps']:,}",
            f"{f['ms_per_step']:.2f}",
            f"{f['ms_per_step'] / ref['ms_per_step']:.2f}",
            f"{f['train_s']:.0f}",
            *(cell(str(n)) for n in NFES),
            f"{rows['1'][metric] / floor:.2f}x",
            f"{rows['1'][metric] / ref['rows']['32'][metric]:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    std = f" +- {res['floor']['std']:.3f}" if metric == "w2" else ""
    lines.append(f"| {res['dataset']} | floor | | | | | {floor:.3f}{std} | | | | |")
    stamps = {m: f.get("measured", "an earlier run") for m, f in res["methods"].items()}
    if len(set(stamps.values())) > 1:  # some methods rerun alone (--methods)
        lines += ["", "Trained and measured: " + "; ".join(f"{m} {s}" for m, s in stamps.items())]
    return lines


def render(args: argparse.Namespace) -> str:
    results = []
    for name in ALL_DATASETS:
        path = workdir(args, name) / "results.json"
        if path.is_file():
            results.append(json.loads(path.read_text()))
    if not results:
        raise SystemExit(f"no results under {args.work}; run without --render-only first")
    saved = results[0]["args"]
    images = next((r["args"] for r in results if r["dataset"] == "digits"), saved)
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_HEADER,
        "",
        f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, {saved['threads']} "
        "thread(s) per process.",
        "",
        "Reproduce: `python benchmarks/onestep.py` (or one process per dataset: `--datasets "
        "checkerboard --threads 1 --no-render`, then `--render-only`).",
        "",
        f"Points: MLP 3x256, batch 256, AdamW lr 1e-3 with cosine decay; fm, meanflow (library "
        "defaults) and meanflow-ot (exact minibatch OT, model tangent, gap time pairs) "
        f"{saved['steps']:,} steps each; reflow+distill: {saved['pairs']:,} dopri5 "
        f"pairs of fm, {saved['steps']:,} steps of 2-rectified flow, {saved['pairs']:,} pairs "
        f"of that, {saved['steps'] // 2:,} steps of distillation. W2: exact, {saved['num']:,} "
        f"points, mean +- std of {saved['draws']} draws. Digits: the digits demo's U-Net, "
        f"{images['image_steps']:,} steps per stage (distillation half), "
        f"{images['image_pairs']:,} pairs, conditional samples without guidance; FD (class "
        "accuracy) of 1,437 digits vs the test split. ms/step: the trainer's wall time per step "
        "(reflow+distill: its last stage), x fm: relative to fm; train s (total): every "
        "training stage and the pairs, in one process.",
        "",
    ]
    for res in results:
        lines += [*format_table(res), ""]
    section = "\n".join(lines)
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    return section


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(ALL_DATASETS))
    p.add_argument(
        "--methods",
        default=",".join(POINT_METHODS),
        help="methods to (re)train; the others' figures are kept from the last run",
    )
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--pairs", type=int, default=50_000)
    p.add_argument("--image-steps", type=int, default=3000)
    p.add_argument("--image-pairs", type=int, default=2000)
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
        if d not in ALL_DATASETS:
            p.error(f"--datasets: unknown {d!r}; expected some of {', '.join(ALL_DATASETS)}")
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in POINT_METHODS:
            p.error(f"--methods: unknown {m!r}; expected some of {', '.join(POINT_METHODS)}")
    if args.quick:
        args.steps, args.pairs, args.num, args.draws = 100, 500, 300, 2
        args.image_steps, args.image_pairs = 4, 64
    torch.set_num_threads(args.threads)
    if not args.render_only:
        for name in args.datasets:
            run_dataset(name, args)
    if not args.no_render:
        render(args)


if __name__ == "__main__":
    main()
