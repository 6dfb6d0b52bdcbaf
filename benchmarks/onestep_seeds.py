"""One-step target 2 over training seeds: MeanFlow vs reflow + distillation, same compute.

``benchmarks/onestep.py`` trains each method once; its 2-D rows land within a training seed of
each other. This script repeats the two one-step contenders over several training seeds at the
**same total training compute** and reports the paired differences:

* ``reflow+distill``: ``fm`` (``--steps``), ``--pairs`` dopri5 pairs of it, the 2-rectified
  flow on them (``--steps``) and its one-step distillation (``--steps // 2``), as onestep.py
  trains it. Its total training seconds T (fm's training, both pair sets, both stages) are the
  budget.
* ``meanflow-ot``: onestep.py's one-step recipe (exact minibatch OT, model tangent, gap time
  pairs), trained from scratch for T / s steps (rounded down to a hundred), where s is its
  steady seconds per step in a ``--probe-steps`` run just before, in the same process (the
  pace between the probe's first and last logged steps: its first steps are slower).
  "Same compute" is therefore wall time on this machine, as onestep.py's "train s (total)".

Both are scored by exact W2 at NFE 1 and 2 (``--num`` points, mean of ``--draws`` draws). The
draws are seeded by ``--eval-seed`` alone, so every model of every training seed meets the same
source noise and the same reference points and the per-seed differences are paired.

Run one process per dataset, then render::

    python benchmarks/onestep_seeds.py --datasets checkerboard --threads 1 --no-render
    python benchmarks/onestep_seeds.py --datasets '8gaussians->moons' --threads 1 --no-render
    python benchmarks/onestep_seeds.py --render-only

Each (dataset, seed) is saved as it finishes (``<work>/<dataset>/seed<N>.json``) and skipped by
a later run unless ``--fresh``; writes the "## One-step over training seeds (CPU)" section of
``benchmarks/RESULTS.md``. ``--quick`` is a smoke run whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import flowmatch as fm
from flowmatch.atomic import atomic_path
from flowmatch.evaluation.points import noise_floor
from flowmatch.train.config import config_from_dict
from flowmatch.train.data import load_run_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onestep import reflow_distill, train_point_method, w2_rows, workdir
from straightness import DATASETS, base_config
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## One-step over training seeds (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_onestep_seeds"
NFES = (1, 2)


def matched_steps(budget_s: float, s_per_step: float, *, multiple: int = 100) -> int:
    """Steps that fit ``budget_s`` seconds at ``s_per_step``, rounded down to ``multiple``
    (at least ``multiple``)."""
    if budget_s <= 0 or s_per_step <= 0:
        raise ValueError(f"budget and seconds per step must be > 0, got {budget_s}, {s_per_step}")
    return max(multiple, int(budget_s / s_per_step) // multiple * multiple)


def steady_pace(run_dir: Path, facts: dict[str, Any]) -> float:
    """Seconds per step of the run in ``run_dir`` between its first and last logged steps
    (``metrics.csv``), leaving out the slower first steps; the run's mean pace (``facts``)
    when it logged fewer than two rows."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [(int(r["step"]), float(r["wall_time"])) for r in csv.DictReader(f)]
    if len(rows) < 2:
        return facts["train_s"] / facts["steps"]
    (s0, w0), (s1, w1) = rows[0], rows[-1]
    return (w1 - w0) / (s1 - s0)


def run_seed(name: str, data: Any, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train both contenders with training seed ``seed`` on dataset ``name`` and score them
    against ``data`` (its :class:`~flowmatch.train.data.RunData`: source and reference)."""
    work = workdir(args, name) / f"seed{seed}"
    data_cfg = DATASETS[name]
    fm_facts = train_point_method("fm", data_cfg, args.steps, seed, work / "fm")
    facts = {"reflow+distill": reflow_distill(work, args.steps, args.pairs, fm_facts, seed)}
    budget = facts["reflow+distill"]["train_s"]
    probe = train_point_method("meanflow-ot", data_cfg, args.probe_steps, seed, work / "probe")
    pace = steady_pace(work / "probe", probe)
    steps = matched_steps(budget, pace)
    facts["meanflow-ot"] = train_point_method("meanflow-ot", data_cfg, steps, seed, work / "mf")
    out: dict[str, Any] = {"dataset": name, "seed": seed, "methods": {}}
    for method, folder in (("reflow+distill", "reflow+distill"), ("meanflow-ot", "mf")):
        rows = w2_rows(
            fm.load(work / folder),
            data,
            num=args.num,
            draws=args.draws,
            seed=args.eval_seed,
            nfes=NFES,
        )
        out["methods"][method] = {**facts[method], "rows": rows}
    out["probe_ms_per_step"] = 1e3 * pace
    mf, rd = out["methods"]["meanflow-ot"], out["methods"]["reflow+distill"]
    print(
        f"{name} seed {seed}: reflow+distill {rd['train_s']:.0f} s, W2 NFE 1 "
        f"{rd['rows'][1]['w2']:.4f}; meanflow-ot {mf['steps']} steps, {mf['train_s']:.0f} s, "
        f"W2 NFE 1 {mf['rows'][1]['w2']:.4f}",
        flush=True,
    )
    return out


def run_dataset(name: str, args: argparse.Namespace) -> None:
    """Every seed of ``args.seeds`` not saved yet (all with ``--fresh``), then the floor."""
    work = workdir(args, name)
    work.mkdir(parents=True, exist_ok=True)
    # a toy set: its reference and source draws do not depend on the seed
    data = load_run_data(config_from_dict(base_config(DATASETS[name], 1, 0)).data, seed=0)
    for seed in args.seeds:
        path = work / f"seed{seed}.json"
        if path.is_file() and not args.fresh:
            print(f"{name} seed {seed}: saved, skipped", flush=True)
            continue
        result = {**run_seed(name, data, seed, args), "args": _saved_args(args)}
        result["measured"] = _now()
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
    row = noise_floor(data.reference(), num_samples=args.num, draws=args.draws, seed=args.eval_seed)
    with atomic_path(work / "floor.json") as tmp:
        tmp.write_text(json.dumps({"w2": row.w2_mean, "std": row.w2_std, "num": args.num}))


def _saved_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("datasets", "seeds")}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def format_table(name: str, seeds: list[dict[str, Any]], floor: dict[str, Any] | None) -> list[str]:
    """The Markdown table of one dataset: a row per training seed, then mean +- SE."""
    head = ["seed", "reflow+distill s", "meanflow-ot steps", "meanflow-ot s", "compute ratio"]
    for nfe in NFES:
        head += [f"R+D W2 NFE {nfe}", f"MF W2 NFE {nfe}", f"MF - R+D NFE {nfe}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    cols: dict[str, list[float]] = {}

    def add(key: str, value: float) -> float:
        cols.setdefault(key, []).append(value)
        return value

    for res in seeds:
        rd, mf = res["methods"]["reflow+distill"], res["methods"]["meanflow-ot"]
        cells = [
            str(res["seed"]),
            f"{add('rd_s', rd['train_s']):.0f}",
            f"{mf['steps']:,}",
            f"{add('mf_s', mf['train_s']):.0f}",
            f"{add('ratio', mf['train_s'] / rd['train_s']):.2f}",
        ]
        for nfe in NFES:
            a, b = rd["rows"][str(nfe)]["w2"], mf["rows"][str(nfe)]["w2"]
            cells += [
                f"{add(f'rd{nfe}', a):.4f}",
                f"{add(f'mf{nfe}', b):.4f}",
                f"{add(f'd{nfe}', b - a):+.4f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")

    def pm(key: str, fmt: str) -> str:
        mean, se = mean_se(cols[key])
        return f"{mean:{fmt}} +- {se:.4f}" if key[-1].isdigit() else f"{mean:{fmt}}"

    summary = [
        f"mean of {len(seeds)}",
        pm("rd_s", ".0f"),
        "",
        pm("mf_s", ".0f"),
        pm("ratio", ".2f"),
    ]
    for nfe in NFES:
        summary += [pm(f"rd{nfe}", ".4f"), pm(f"mf{nfe}", ".4f"), pm(f"d{nfe}", "+.4f")]
    lines.append("| " + " | ".join(summary) + " |")
    lower = sum(d < 0 for d in cols["d1"])
    d1, se1 = mean_se(cols["d1"])
    text = (
        f"**{name}**: meanflow-ot minus reflow+distill at NFE 1: {d1:+.4f} +- {se1:.4f} "
        f"(mean +- standard error over {len(seeds)} training seeds); meanflow-ot lower in "
        f"{lower} of {len(seeds)}."
    )
    if floor is not None:
        text += f" Noise floor (two true sets): {floor['w2']:.4f} +- {floor['std']:.4f}."
    return [text, "", *lines]


def render(args: argparse.Namespace) -> str:
    blocks, saved, stamps = [], None, []
    for name in DATASETS:
        work = workdir(args, name)
        seeds = sorted(
            (json.loads(p.read_text()) for p in work.glob("seed*.json")), key=lambda r: r["seed"]
        )
        if not seeds:
            continue
        saved = seeds[0]["args"]
        stamps += [r["measured"] for r in seeds]
        floor_path = work / "floor.json"
        floor = json.loads(floor_path.read_text()) if floor_path.is_file() else None
        blocks += [*format_table(name, seeds, floor), ""]
    if saved is None:
        raise SystemExit(f"no results under {args.work}; run without --render-only first")
    facts = machine_facts()
    lines = [
        SECTION_HEADER,
        "",
        f"Rendered {_now()}; trained and measured {min(stamps)} to {max(stamps)} on "
        f"{facts['cpu']}; torch {torch.__version__}, {saved['threads']} thread(s) per process.",
        "",
        "Reproduce: `python benchmarks/onestep_seeds.py --datasets checkerboard --threads 1 "
        "--no-render` (and the same for `'8gaussians->moons'`, side by side), then "
        "`--render-only`.",
        "",
        f"Per training seed: reflow+distill as in the One-step table (fm {saved['steps']:,} "
        f"steps, {saved['pairs']:,} dopri5 pairs, {saved['steps']:,} steps of 2-rectified flow, "
        f"{saved['pairs']:,} pairs, {saved['steps'] // 2:,} steps of distillation); its total "
        "training seconds are meanflow-ot's budget: meanflow-ot (exact minibatch OT, model "
        "tangent, gap time pairs) trains from scratch for as many steps as fit, at the seconds "
        f"per step of a {saved['probe_steps']}-step probe run just before (between its first "
        "and last logged steps). Compute ratio: meanflow-ot's training seconds over "
        "reflow+distill's: the steps that fit vary with the machine's pace at the probe, "
        "the ratio is what was spent. W2: exact, "
        f"{saved['num']:,} points, mean of {saved['draws']} draws, the same draws (seed "
        f"{saved['eval_seed']}) for every model and seed, so the differences are paired. "
        "R+D: reflow+distill; MF: meanflow-ot. Last row: mean +- standard error over seeds.",
        "",
        *blocks,
    ]
    section = "\n".join(lines).rstrip() + "\n"
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    return section


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", default="0,1,2,3", help="training seeds, comma-separated")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--pairs", type=int, default=50_000)
    p.add_argument("--probe-steps", type=int, default=500)
    p.add_argument("--num", type=int, default=5000)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--eval-seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--fresh", action="store_true", help="retrain seeds already saved")
    p.add_argument("--no-render", action="store_true")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    for d in args.datasets:
        if d not in DATASETS:
            p.error(f"--datasets: unknown {d!r}; expected some of {', '.join(DATASETS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not args.seeds:
        p.error("--seeds: give at least one seed")
    if args.quick:
        args.steps, args.pairs, args.probe_steps, args.num, args.draws = 100, 500, 20, 300, 2
    torch.set_num_threads(args.threads)
    if not args.render_only:
        for name in args.datasets:
            run_dataset(name, args)
    if not args.no_render:
        render(args)


if __name__ == "__main__":
    main()
