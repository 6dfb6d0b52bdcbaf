"""Digits: image quality per NFE for flow matching and diffusion, and guidance scales.

On scikit-learn's 8x8 digits (1437 train / 360 test images, 10 classes) the same
class-conditional U-Net (``flowmatch demo --dataset digits``'s: 32 channels, multipliers
[1, 2], label dropout 0.1) is trained with the same optimiser, batch (128) and steps as

* ``fm``: flow matching, linear path, velocity, independent coupling;
* ``fm-ot``: the same with exact minibatch OT pairs (on the 64 pixels; labels travel with
  their images);
* ``ddpm``: DDPM (1000 timesteps, linear betas, discrete training times, epsilon),

and sampled by FM + Euler, FM + midpoint, FM-OT + Euler, DDPM ancestral and DDIM (eta 0) at
NFE 1, 2, 4, 8, 16 and 32 with guidance 2. Every figure: Fréchet distance (FD) and KID in the
feature space of the shipped digits classifier and that classifier's accuracy on the class
each image was generated for, over ``draws`` draws of 1437 images (the training labels)
against the test split, beside the floor (the training split against the test split). A second
table sweeps the guidance scale (0, 1, 2, 4) at NFE 8 for three of the rows.

Run ``python benchmarks/digits.py`` (about 40 minutes on one CPU core), which writes the
"## Digits (CPU)" section of ``benchmarks/RESULTS.md`` and ``docs/images/digits_grid.png``
(a row per class from the FM model, midpoint NFE 8, guidance 2). ``--quick`` is a smoke run
whose figures mean nothing.
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
from flowmatch.app.demo import DIGITS_OVERRIDES
from flowmatch.atomic import atomic_path
from flowmatch.evaluation.images import evaluate_images, image_floor
from flowmatch.evaluation.seeds import stream_seed
from flowmatch.sampling import labels_in_turn
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from straightness import _quiet
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Digits (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_GRID = ROOT / "docs" / "images" / "digits_grid.png"
DEFAULT_WORK = ROOT / "runs" / "bench_digits"

MODELS: dict[str, tuple[str, ...]] = {
    "fm": (),
    "fm-ot": ("coupling.name=minibatch_ot", "coupling.method=exact"),
    "ddpm": (
        "path.schedule=ddpm",
        "path.timesteps=1000",
        "time.sampler=discrete",
        "objective.prediction=epsilon",
    ),
}
# (row label, model, sampler)
ROWS: tuple[tuple[str, str, str], ...] = (
    ("FM + Euler", "fm", "euler"),
    ("FM + midpoint", "fm", "midpoint"),
    ("FM-OT + Euler", "fm-ot", "euler"),
    ("DDPM ancestral", "ddpm", "ddpm"),
    ("DDIM (eta 0)", "ddpm", "ddim"),
)
NFES = (1, 2, 4, 8, 16, 32)
GUIDANCE = (0.0, 1.0, 2.0, 4.0)
GUIDANCE_NFE = 8
SWEEP_ROWS = ("FM + midpoint", "FM-OT + Euler", "DDIM (eta 0)")  # the guidance table's rows
STAGES = {"euler": 1, "midpoint": 2, "ddpm": 1, "ddim": 1}
FLOOR_FACTOR = 2.0  # the target: FD within 2x of the train/test floor


def cells(
    model: torch.nn.Module,
    sampler: str,
    data: Any,
    args: argparse.Namespace,
    guidance: float,
    nfes: Sequence[int],
) -> list[dict[str, Any]]:
    """FD / KID / accuracy of one (model, sampler, guidance) at each NFE it can spend."""
    steps = [n // STAGES[sampler] for n in nfes if n % STAGES[sampler] == 0]
    rows = evaluate_images(
        model,
        data.test,
        data.train_labels,
        num=data.train.shape[0],
        steps=steps,
        methods=[sampler],
        draws=args.draws,
        seed=stream_seed(args.seed, "eval"),
        guidance=guidance,
    )
    return [
        {
            "nfe": r.nfe,
            "fd": r.fd_mean,
            "fd_std": r.fd_std,
            "kid": r.kid_mean,
            "accuracy": r.accuracy,
        }
        for r in rows
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train every model, evaluate every row and the guidance sweep; saves results.json."""
    from flowmatch.data.images import load_digits

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_digits()
    floor = image_floor(data.train, data.test, data.train_labels)
    result: dict[str, Any] = {
        "floor": {"fd": floor.fd_mean, "kid": floor.kid_mean, "accuracy": floor.accuracy},
        "models": {},
        "rows": {},
        "guidance": {},
    }
    print(f"floor (train vs test): FD {floor.fd_mean:.3f}, accuracy {floor.accuracy:.3f}")
    for name, overrides in MODELS.items():
        out = work / name
        if out.exists():
            shutil.rmtree(out)
        cfg = load_config(
            None,
            [*DIGITS_OVERRIDES, *overrides, f"train.steps={args.steps}", f"train.seed={args.seed}"],
        )
        echo = (lambda m, n=name: print(f"  [{n}] {m}", flush=True)) if args.verbose else _quiet
        res = Trainer(cfg, out, progress=False, final_eval=False, echo=echo).run()
        result["models"][name] = {
            "steps": res.steps,
            "train_s": res.wall_time,
            "ms_per_step": 1e3 * res.wall_time / res.steps,
        }
        print(f"{name}: trained {res.steps} steps in {res.wall_time:.0f} s", flush=True)
        model = fm.load(out)
        for label, owner, sampler in ROWS:
            if owner != name:
                continue
            t0 = time.perf_counter()
            row = cells(model, sampler, data, args, args.guidance, args.nfes)
            result["rows"][label] = {"model": owner, "sampler": sampler, "cells": row}
            sweep = {}
            if label in SWEEP_ROWS:
                for w in GUIDANCE:
                    sweep[str(w)] = cells(model, sampler, data, args, w, [GUIDANCE_NFE])[0]
            result["guidance"][label] = sweep
            print(
                f"{label}: "
                + ", ".join(f"NFE {c['nfe']} FD {c['fd']:.2f} acc {c['accuracy']:.3f}" for c in row)
                + "; guidance at NFE 8: "
                + ", ".join(
                    f"w={w} FD {c['fd']:.2f} acc {c['accuracy']:.3f}" for w, c in sweep.items()
                )
                + f" ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        with atomic_path(work / "results.json") as tmp:
            tmp.write_text(json.dumps({**result, "args": vars(args)}, indent=1))
    write_grid(work / "fm", Path(args.grid), args.seed)
    return result


def write_grid(run_dir: Path, path: Path, seed: int) -> None:
    """10 x 10 digits of a run, a row per class: midpoint NFE 8, guidance 2."""
    from flowmatch import viz

    model = fm.load(run_dir)
    labels = labels_in_turn(100, 10)  # a row of 10 per class
    x0 = torch.randn(
        100, 1, 8, 8, generator=torch.Generator().manual_seed(stream_seed(seed, "plots"))
    )
    x = fm.sample(model, x0, steps=4, method="midpoint", cond=labels, guidance=2.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    viz.image_grid(x, path, nrow=10, scale=8)


def format_tables(res: dict[str, Any], nfes: Sequence[int], guidance: float) -> str:
    floor = res["floor"]
    head = ["sampler (model)", *[f"NFE {n}" for n in nfes], f"min NFE <= {FLOOR_FACTOR:g}x floor"]
    out = [
        f"FD (mean of the draws) and class accuracy per NFE, guidance {guidance:g}; floor "
        f"(train split vs test split): FD {floor['fd']:.2f}, accuracy {floor['accuracy']:.3f}; "
        f"bold = FD within {FLOOR_FACTOR:g}x the floor.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for label, row in res["rows"].items():
        by = {c["nfe"]: c for c in row["cells"]}
        cells_ = [label]
        for n in nfes:
            c = by.get(n)
            if c is None:
                cells_.append("-")
                continue
            text = f"{c['fd']:.2f} ({100 * c['accuracy']:.0f}%)"
            cells_.append(f"**{text}**" if c["fd"] <= FLOOR_FACTOR * floor["fd"] else text)
        ok = [c["nfe"] for c in row["cells"] if c["fd"] <= FLOOR_FACTOR * floor["fd"]]
        cells_.append(str(min(ok)) if ok else f"> {max(c['nfe'] for c in row['cells'])}")
        out.append("| " + " | ".join(cells_) + " |")
    out += [
        "",
        f"Guidance scale at NFE {GUIDANCE_NFE}: FD (class accuracy).",
        "",
        "| sampler (model) | " + " | ".join(f"w = {w:g}" for w in GUIDANCE) + " |",
        "|---|" + "---:|" * len(GUIDANCE),
    ]
    for label, sweep in res["guidance"].items():
        if not sweep:
            continue
        out.append(
            f"| {label} | "
            + " | ".join(
                f"{sweep[str(w)]['fd']:.2f} ({100 * sweep[str(w)]['accuracy']:.0f}%)"
                for w in GUIDANCE
            )
            + " |"
        )
    out.append("")
    return "\n".join(out)


def render(args: argparse.Namespace) -> None:
    path = Path(args.work) / "results.json"
    if not path.is_file():
        raise SystemExit(f"no results under {args.work}; run without --render-only first")
    res = json.loads(path.read_text())
    saved = res["args"]
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ms = ", ".join(f"{m} {f['ms_per_step']:.0f}" for m, f in res["models"].items())
    section = "\n".join(
        [
            SECTION_HEADER,
            "",
            f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, "
            f"{saved['threads']} thread(s).",
            "",
            "Reproduce: `python benchmarks/digits.py`.",
            "",
            f"The digits demo's class-conditional U-Net (32 channels, multipliers [1, 2], label "
            f"dropout 0.1), AdamW lr 2e-3, batch 128, {saved['steps']:,} steps, seed "
            f"{saved['seed']} for every model. FD and KID in the shipped digits classifier's "
            f"features; {saved['draws']} draws of 1437 generated images (the training labels) "
            f"against the 360 test images. w = 0 is the unconditional model: its accuracy "
            f"is chance (10%). Train ms/step (wall time, other jobs sharing the machine; not "
            f"a timing claim): {ms}.",
            "",
            format_tables(res, saved["nfes"], saved["guidance"]),
            "![digits]("
            + os.path.relpath(Path(args.grid).resolve(), Path(args.results).resolve().parent)
            + ")"
            if Path(args.grid).resolve().is_relative_to(ROOT)
            else "",
            "",
        ]
    )
    print(section)
    write_section(args.results, section, SECTION_HEADER)
    print(f"wrote {args.results}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="training steps of every model")
    p.add_argument("--draws", type=int, default=2, help="independent draws per figure")
    p.add_argument("--guidance", type=float, default=2.0, help="guidance of the NFE table")
    p.add_argument("--nfes", default=",".join(map(str, NFES)), help="comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--grid", default=str(DEFAULT_GRID))
    p.add_argument("--no-render", action="store_true")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    try:
        args.nfes = sorted({int(n) for n in args.nfes.split(",") if n.strip()})
    except ValueError:
        p.error(f"--nfes: expected comma-separated integers, got {args.nfes!r}")
    if not args.nfes or min(args.nfes) < 1 or max(args.nfes) > 1000:
        p.error(f"--nfes: expected integers in [1, 1000], got {args.nfes}")
    if args.quick:
        args.steps, args.draws, args.nfes = 10, 1, [1, 2]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.render_only:
        run(args)
    if not args.no_render:
        render(args)


if __name__ == "__main__":
    main()
