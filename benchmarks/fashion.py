"""Fashion-MNIST: image quality per NFE for the library's methods on one training budget.

Every row is trained through :class:`~flowmatch.train.trainer.Trainer` from a run config with
the same budget (``--steps`` steps of ``--batch`` images, seed ``--seed``, one thread):

* ``fm_unet``: flow matching, ``configs/fashion.yaml``'s class-conditional U-Net (16 channels,
  multipliers [1, 2, 2], 290k parameters, label dropout 0.1), linear path, velocity;
* ``ddpm``: the same U-Net as DDPM (1000 timesteps, linear betas, discrete training times,
  epsilon), sampled by DDIM (eta 0) and DDPM ancestral;
* ``fm_ot``: the same U-Net and flow matching with exact minibatch OT pairs
  (``coupling: {name: minibatch_ot, method: exact}``);
* ``dit``: flow matching with ``configs/fashion_dit.yaml``'s DiT (4x4 patches, width 128,
  depth 4; its own learning rate 1e-3, warm-up shortened to the U-Net's 200 steps);
* ``meanflow``: the U-Net trained with ``objective: meanflow`` (two times), sampled by
  average-velocity jumps at NFE 1 and 2 (no guidance: not supported for jumps);
* ``reflow``: ``--pairs`` (noise, sample) pairs of the ``fm_unet`` model (dopri5, guidance 2,
  classes in turn), the 2-rectified flow on them (``--steps``) and its one-step distillation
  (``--steps // 2``), the former at NFE 1 and 2, the latter (a one-step map) at NFE 1; its
  training seconds include ``fm_unet``'s, the pairs and both stages;
* ``latent``: ``configs/fashion_ae.yaml``'s autoencoder (28x28 -> 14x14x2) then
  ``configs/fashion_latent.yaml``'s U-Net on its latents, both at the budget; the training
  seconds are the sum of both.

Figures: FD and KID in the shipped Fashion-MNIST classifier's features (not Inception FID) and
that classifier's accuracy on the class each image was generated for, over one draw of
``--num`` images (the classes in turn, generated in chunks of 250) against the 10,000 test
images, at NFE 1, 2, 4, 8, 16, 32 (Euler at NFE 1 and 2, midpoint beyond; DDIM/DDPM one
evaluation a step; MeanFlow and the distilled model one jump or Euler step each), every row
conditional without guidance (the same footing for the rows that cannot take guidance, and half
the network evaluations); the floor is a fixed class-balanced subset of ``--num`` training
images against the test split (:class:`flowmatch.evaluation.images.FashionMetric`). Also: the
generation speed at NFE 8 (images per second) and a guidance sweep of ``fm_unet`` at NFE 4.

Each row's results are cached in ``benchmarks/fashion_results.json`` as soon as it finishes,
so rows can be run one at a time and the section rebuilt from the cache::

    python benchmarks/fashion.py --rows fm_unet,ddpm
    python benchmarks/fashion.py --rows fm_ot
    python benchmarks/fashion.py --report-only

which writes the "## Fashion-MNIST (CPU)" section of ``benchmarks/RESULTS.md`` and (with the
``fm_unet`` row) ``docs/images/fashion_grid.png``, a row of 10 samples per class. ``--quick``
is a smoke run whose figures mean nothing (it writes nothing but under ``--work``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import machine_facts, write_section  # noqa: E402

SECTION_HEADER = "## Fashion-MNIST (CPU)"
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_CACHE = ROOT / "benchmarks" / "fashion_results.json"
DEFAULT_GRID = ROOT / "docs" / "images" / "fashion_grid.png"
DEFAULT_WORK = ROOT / "runs" / "bench_fashion"
CONFIGS = ROOT / "configs"

ROW_NAMES = ("fm_unet", "ddpm", "fm_ot", "dit", "meanflow", "reflow", "latent")
NFES = (1, 2, 4, 8, 16, 32)
GUIDANCE = 2.0  # of the sample grid
SWEEP = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0)  # fm_unet's guidance sweep
SWEEP_NFE = 4
CHUNK = 250  # images per generate call (faster per image than one batch of 1000 on a CPU)
SPEED_NFE = 8
LR_WARMUP = 200  # configs/fashion.yaml's warm-up, used by every row

UNET = CONFIGS / "fashion.yaml"
DDPM = (
    "path.schedule=ddpm",
    "path.timesteps=1000",
    "path.betas=linear",
    "time.sampler=discrete",
    "objective.prediction=epsilon",
)
OT = ("coupling.name=minibatch_ot", "coupling.method=exact")


def ode_sampler(nfe: int) -> tuple[str, int]:
    """(method, steps) of a one-time flow at ``nfe``: Euler at 1 and 2, midpoint beyond."""
    return ("euler", nfe) if nfe <= 2 else ("midpoint", nfe // 2)


def one_step_sampler(nfe: int) -> tuple[str, int] | None:
    """MeanFlow jumps / the distilled map: NFE 1 and 2 only."""
    return ("euler", nfe) if nfe <= 2 else None


def budget_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides every trained row shares: steps, batch, seed, one thread, no evaluation."""
    return [
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch}",
        f"train.seed={args.seed}",
        "train.threads=1",
        f"train.checkpoint_every={args.steps}",
        "train.eval_every=1000000",
        f"optim.warmup_steps={min(LR_WARMUP, max(0, args.steps // 2))}",
    ]


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def _echo(name: str, verbose: bool) -> Callable[[str], None]:
    if verbose:
        return lambda m: print(f"  [{name}] {m}", flush=True)
    return lambda m: None


def train(
    name: str,
    config: Path | None,
    overrides: Sequence[str],
    args: argparse.Namespace,
    *,
    finish: bool = False,
) -> dict[str, Any]:
    """Train one run into ``--work/name``; its steps, training time and parameter count.

    ``finish``: run the trainer's final step too (an autoencoder's fits its latent scale,
    which a latent run needs); its training time is then the whole run's wall time
    (``run_s``, always returned: building the trainer and its data, the steps, the end).
    """
    from flowmatch.train.config import load_config
    from flowmatch.train.trainer import Trainer

    cfg = load_config(config, [*overrides, *budget_overrides(args)])
    done = finished_run(Path(args.work) / name, args.steps) if args.reuse and not finish else None
    if done is not None:
        print(f"{name}: reusing the finished run ({done['train_s']:.0f} s of training)")
        return done
    out = _fresh(Path(args.work) / name)
    t0 = time.perf_counter()
    res = Trainer(
        cfg,
        out,
        progress=False,
        final_eval=finish,
        base_dir=CONFIGS,
        echo=_echo(name, args.verbose),
    ).run()
    run_s = time.perf_counter() - t0
    seconds = run_s if finish else res.wall_time
    print(
        f"{name}: trained {res.steps} steps in {seconds:.0f} s ({run_s:.0f} s in all)", flush=True
    )
    return {"steps": res.steps, "train_s": seconds, "run_s": run_s, "params": _params(out)}


def finished_run(run: Path, steps: int) -> dict[str, Any] | None:
    """Steps, training seconds (metrics.csv's last wall time) and parameters of a run in
    ``run`` that finished ``steps`` steps and saved its model; None otherwise."""
    import csv

    metrics = run / "metrics.csv"
    if not (metrics.is_file() and (run / "model" / "config.json").is_file()):
        return None
    with metrics.open() as f:
        last = list(csv.DictReader(f))[-1:]
    if not last or int(last[0]["step"]) != steps:
        return None
    return {"steps": steps, "train_s": float(last[0]["wall_time"]), "params": _params(run)}


def _params(run: Path) -> int:
    import flowmatch as fm

    model = fm.load(run)
    return sum(p.numel() for p in model.parameters())


class Scorer:
    """Scores generated Fashion-MNIST sets against the test split (features computed once)."""

    def __init__(self, num: int, seed: int) -> None:
        from flowmatch.data.fashion import load_fashion_mnist
        from flowmatch.evaluation.images import FashionMetric
        from flowmatch.sampling import labels_in_turn

        data = load_fashion_mnist(uint8=True)
        self.num, self.seed = num, seed
        self.metric = FashionMetric(data.test, data.train, data.train_labels)
        self.labels = labels_in_turn(num, 10)

    def floor(self) -> dict[str, float]:
        row = self.metric.floor(self.num, 1, self.seed)
        return {"fd": row.fd_mean, "kid": row.kid_mean, "accuracy": row.accuracy}

    def noise(self, shape: Sequence[int]) -> torch.Tensor:
        """The same noise for every model of a shape (one draw)."""
        g = torch.Generator().manual_seed(self.seed + 1)
        return torch.randn(self.num, *shape, generator=g)

    def cell(self, model: Any, method: str, steps: int, guidance: float | None) -> dict[str, Any]:
        """One figure: generate ``num`` images (timed, in chunks of :data:`CHUNK`) and score
        them."""
        from flowmatch.evaluation.images import _embed, _quality
        from flowmatch.sampling import generate

        x0 = self.noise(_sample_shape(model))
        g = torch.Generator().manual_seed(self.seed + 2)
        parts, seconds, nfe = [], 0.0, 0
        for lo in range(0, self.num, CHUNK):
            t0 = time.perf_counter()
            res = generate(
                model,
                x0[lo : lo + CHUNK],
                steps=steps,
                method=method,
                cond=self.labels[lo : lo + CHUNK],
                guidance=guidance,
                generator=g,
            )
            parts.append(_decode(model, res.x))
            seconds += time.perf_counter() - t0
            nfe = res.nfe
        x = torch.cat(parts)
        feats = _embed("fashion", x.float().clamp(-1, 1), "images")
        q = _quality("fashion", feats, self.metric.test_features(), self.labels)
        return {
            "nfe": nfe,
            "method": method,
            "steps": steps,
            "guidance": guidance,
            "fd": q["fd"],
            "kid": q["kid"],
            "accuracy": q["accuracy"],
            "gen_s": seconds,
            "images_per_s": self.num / seconds,
        }

    def line(
        self,
        model: Any,
        sampler: Callable[[int], tuple[str, int] | None],
        guidance: float | None,
        nfes: Sequence[int],
        label: str,
    ) -> list[dict[str, Any]]:
        out = []
        for nfe in nfes:
            spec = sampler(nfe)
            if spec is None:
                continue
            c = self.cell(model, *spec, guidance)
            print(
                f"  {label} NFE {c['nfe']}: FD {c['fd']:.2f} KID {c['kid']:.4f} "
                f"acc {c['accuracy']:.3f} ({c['gen_s']:.1f} s)",
                flush=True,
            )
            out.append(c)
        return out


def _sample_shape(model: Any) -> tuple[int, ...]:
    """The shape of one sample the model integrates (a latent model's latents)."""
    shape = getattr(model, "sample_shape", None) or getattr(model, "shape", None)
    if shape is None:
        raise ValueError("cannot tell the sample shape of the model")
    return tuple(shape)


def _decode(model: Any, x: torch.Tensor) -> torch.Tensor:
    decode = getattr(model, "decode", None)
    return decode(x) if callable(decode) else x


# --- rows ---------------------------------------------------------------------------------


def row_fm_unet(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm

    facts = train("fm_unet", UNET, [], args)
    model = fm.load(Path(args.work) / "fm_unet")
    lines = {"FM (U-Net)": scorer.line(model, ode_sampler, None, args.nfes, "FM (U-Net)")}
    sweep = {}
    for w in SWEEP:
        (c,) = scorer.line(model, ode_sampler, w, [SWEEP_NFE], f"FM (U-Net) w={w:g}")
        sweep[str(w)] = c
    if args.grid:
        write_grid(model, Path(args.grid), args.seed)
    return {**facts, "lines": lines, "guidance": sweep}


def row_ddpm(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm

    facts = train("ddpm", UNET, DDPM, args)
    model = fm.load(Path(args.work) / "ddpm")
    lines = {
        label: scorer.line(model, lambda n, m=method: (m, n), None, args.nfes, label)
        for label, method in (
            ("DDIM (eta 0, U-Net)", "ddim"),
            *((("DDPM ancestral (U-Net)", "ddpm"),) if args.ancestral else ()),
        )
    }
    return {**facts, "lines": lines}


def row_fm_ot(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm

    facts = train("fm_ot", UNET, OT, args)
    model = fm.load(Path(args.work) / "fm_ot")
    label = "FM + exact minibatch OT (U-Net)"
    return {**facts, "lines": {label: scorer.line(model, ode_sampler, None, args.nfes, label)}}


def row_dit(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm

    facts = train("dit", CONFIGS / "fashion_dit.yaml", [], args)
    model = fm.load(Path(args.work) / "dit")
    label = "FM (DiT)"
    return {**facts, "lines": {label: scorer.line(model, ode_sampler, None, args.nfes, label)}}


def row_meanflow(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm

    facts = train("meanflow", UNET, ["objective.name=meanflow"], args)
    model = fm.load(Path(args.work) / "meanflow")
    label = "MeanFlow (U-Net, jumps)"
    return {**facts, "lines": {label: scorer.line(model, one_step_sampler, None, args.nfes, label)}}


def row_reflow(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm
    from flowmatch.app.reflow import reflow_run

    work = Path(args.work)
    if not (work / "fm_unet" / "config.yaml").is_file():
        raise SystemExit("the reflow row starts from the fm_unet run: run --rows fm_unet first")
    cache = load_cache(Path(args.cache))
    fm_facts = cache.get("rows", {}).get("fm_unet")
    if fm_facts is None:
        raise SystemExit("the reflow row needs fm_unet's cached training time")
    common = {
        "num": args.pairs,
        "seed": args.seed + 1,
        "progress": False,
        "final_eval": False,
        "overrides": [f"train.batch_size={args.batch}", "train.threads=1"],
    }
    start = time.perf_counter()
    reflow_run(
        work / "fm_unet",
        _fresh(work / "reflow2"),
        train_steps=args.steps,
        echo=_echo("reflow2", args.verbose),
        **common,
    )
    mid = time.perf_counter()
    reflow_run(
        work / "reflow2",
        _fresh(work / "distill"),
        train_steps=args.steps // 2,
        distill=True,
        echo=_echo("distill", args.verbose),
        **common,
    )
    own = time.perf_counter() - start
    print(f"reflow: 2-rectified {mid - start:.0f} s, distilled {own - (mid - start):.0f} s")
    rectified, distilled = fm.load(work / "reflow2"), fm.load(work / "distill")
    lines = {
        label: scorer.line(model, sampler, None, args.nfes, label)
        for label, model, sampler in (
            ("2-rectified flow (U-Net)", rectified, one_step_sampler),
            ("reflow + distill (U-Net)", distilled, lambda n: ("euler", 1) if n == 1 else None),
        )
    }
    return {
        "steps": fm_facts["steps"] + args.steps + args.steps // 2,
        "train_s": fm_facts["train_s"] + own,
        "own_s": own,
        "pairs": args.pairs,
        "params": fm_facts["params"],
        "lines": lines,
    }


def row_latent(args: argparse.Namespace, scorer: Scorer) -> dict[str, Any]:
    import flowmatch as fm

    work = Path(args.work)
    ae = train("latent_ae", CONFIGS / "fashion_ae.yaml", [], args, finish=True)
    facts = train(
        "latent", CONFIGS / "fashion_latent.yaml", [f"data.latent={work / 'latent_ae'}"], args
    )
    model = fm.load(work / "latent")
    label = "latent FM (autoencoder + U-Net)"
    return {
        "steps": facts["steps"],
        # the latent run's whole wall time: it encodes the training images before its steps
        "train_s": ae["train_s"] + facts["run_s"],
        "ae_s": ae["train_s"],
        "params": facts["params"],
        "ae_params": ae["params"],
        "lines": {label: scorer.line(model, ode_sampler, None, args.nfes, label)},
    }


ROW_FUNCS: dict[str, Callable[[argparse.Namespace, Scorer], dict[str, Any]]] = {
    "fm_unet": row_fm_unet,
    "ddpm": row_ddpm,
    "fm_ot": row_fm_ot,
    "dit": row_dit,
    "meanflow": row_meanflow,
    "reflow": row_reflow,
    "latent": row_latent,
}


def write_grid(model: Any, path: Path, seed: int) -> None:
    """10 x 10 images, a row per class: midpoint NFE 8, guidance 2."""
    from flowmatch import viz
    from flowmatch.sampling import labels_in_turn, sample

    labels = labels_in_turn(100, 10)  # ten of class 0, then ten of class 1, ...: a row each
    x0 = torch.randn(100, 1, 28, 28, generator=torch.Generator().manual_seed(seed + 3))
    x = sample(model, x0, steps=4, method="midpoint", cond=labels, guidance=GUIDANCE)
    path.parent.mkdir(parents=True, exist_ok=True)
    viz.image_grid(x, path, nrow=10, scale=2)
    print(f"wrote {path}", flush=True)


# --- cache and report ---------------------------------------------------------------------


def load_cache(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"rows": {}}


def save_cache(path: Path, cache: dict[str, Any]) -> None:
    from flowmatch.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(cache, indent=1) + "\n")


def budget_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "steps": args.steps,
        "batch": args.batch,
        "num": args.num,
        "seed": args.seed,
        "pairs": args.pairs,
        "nfes": list(args.nfes),
    }


def _fmt_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "-"
    return f"{c['fd']:.1f} ({100 * c['accuracy']:.0f}%)"


def _fmt_kid(c: dict[str, Any] | None) -> str:
    return "-" if c is None else f"{c['kid']:.3f}"


def _speed(cells: Sequence[dict[str, Any]]) -> str:
    for c in cells:
        if c["nfe"] == SPEED_NFE:
            return f"{c['images_per_s']:.0f}"
    return "-"


def format_tables(cache: dict[str, Any]) -> str:
    """The NFE table (FD and accuracy), the KID table and the guidance sweep."""
    budget, floor, rows = cache["budget"], cache["floor"], cache["rows"]
    nfes = budget["nfes"]
    head = ["method", *[f"NFE {n}" for n in nfes], "train s", f"img/s at NFE {SPEED_NFE}"]
    out = [
        f"FD (class accuracy) per NFE; floor ({budget['num']:,} training images vs the test "
        f"split): FD {floor['fd']:.2f}, KID {floor['kid']:.3f}, accuracy "
        f"{100 * floor['accuracy']:.1f}%.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    kid = [
        "KID per NFE (the same images; unbiased, so it can fall below 0).",
        "",
        "| method | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---|" + "---:|" * len(nfes),
    ]
    for name in ROW_NAMES:
        row = rows.get(name)
        if row is None:
            continue
        for label, cells in row["lines"].items():
            by = {c["nfe"]: c for c in cells}
            out.append(
                "| "
                + " | ".join(
                    [
                        label,
                        *[_fmt_cell(by.get(n)) for n in nfes],
                        f"{row['train_s']:.0f}",
                        _speed(cells),
                    ]
                )
                + " |"
            )
            kid.append("| " + " | ".join([label, *[_fmt_kid(by.get(n)) for n in nfes]]) + " |")
    out += ["", *kid, ""]
    sweep = rows.get("fm_unet", {}).get("guidance")
    if sweep:
        scales = list(sweep)
        method, steps = ode_sampler(SWEEP_NFE)
        out += [
            f"Guidance scale of FM (U-Net) at NFE {SWEEP_NFE} ({method}, {steps} steps): FD, "
            "KID, "
            "class accuracy (w = 0: the unconditional model).",
            "",
            "| | " + " | ".join(f"w = {float(w):g}" for w in scales) + " |",
            "|---|" + "---:|" * len(scales),
            "| FD | " + " | ".join(f"{sweep[w]['fd']:.1f}" for w in scales) + " |",
            "| KID | " + " | ".join(f"{sweep[w]['kid']:.3f}" for w in scales) + " |",
            "| accuracy | "
            + " | ".join(f"{100 * sweep[w]['accuracy']:.0f}%" for w in scales)
            + " |",
            "",
        ]
    return "\n".join(out)


def row_notes(cache: dict[str, Any]) -> list[str]:
    """One line per row: what it trained and cost, or that it did not run."""
    rows = cache["rows"]
    notes = []
    for name in ROW_NAMES:
        row = rows.get(name)
        if row is None:
            why = cache.get("not_run", {}).get(name)  # a reason recorded by hand in the cache
            notes.append(f"- `{name}`: not run" + (f" ({why})." if why else "."))
            continue
        text = (
            f"- `{name}`: {row['steps']:,} steps, {row['params']:,} parameters, "
            f"{row['train_s']:.0f} s of training"
        )
        if name == "reflow":
            text += (
                f" in all (fm_unet's run, then {row['pairs']:,} dopri5 pairs, the 2-rectified "
                f"flow and its distillation: {row['own_s']:.0f} s of its own; the pairs are "
                f"drawn with guidance {GUIDANCE:g}, the run's sample.guidance, so the rectified "
                "models learn the guided flow and are not on the unguided rows' footing)"
            )
        if name == "latent":
            text += (
                f" in all: the autoencoder's run ({row['ae_params']:,} parameters, its latent "
                f"scale fitted at the end) {row['ae_s']:.0f} s, then the latent run, encoding "
                "the training images included"
            )
        notes.append(text + ".")
    return notes


def render(args: argparse.Namespace) -> str:
    """The section from the cache, written into ``--results``."""
    cache = load_cache(Path(args.cache))
    if not cache.get("rows"):
        raise SystemExit(f"{args.cache}: no cached rows; run some rows first")
    budget = cache["budget"]
    facts = machine_facts()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    grid = Path(args.grid).resolve() if args.grid else None
    show_grid = (
        grid is not None
        and grid.is_file()
        and grid.is_relative_to(ROOT)
        and "fm_unet" in cache["rows"]
    )
    lines = [
        SECTION_HEADER,
        "",
        f"Rendered {stamp} on {facts['cpu']}; torch {torch.__version__}, one thread per run, "
        "one row at a time, on a machine shared with other jobs: the training seconds and "
        "images per second are noisy wall times, not timing claims.",
        "",
        "Reproduce: `python benchmarks/fashion.py --rows fm_unet,ddpm,...` (one or more rows; "
        "results are cached in `benchmarks/fashion_results.json`), then "
        "`python benchmarks/fashion.py --report-only`.",
        "",
        f"Budget of every row: {budget['steps']:,} steps at batch {budget['batch']}, seed "
        f"{budget['seed']}, AdamW with the config's learning rate, {LR_WARMUP} warm-up steps, "
        "EMA 0.999; the U-Net (16 channels, multipliers [1, 2, 2], label dropout 0.1, "
        "configs/fashion.yaml) for FM, FM + OT, DDPM and MeanFlow; the DiT of "
        "configs/fashion_dit.yaml; the latent row trains configs/fashion_ae.yaml's autoencoder "
        "and configs/fashion_latent.yaml's U-Net, each for the budget. This is a short "
        "budget: the figures compare methods at it, not what the models reach when trained "
        "longer.",
        "",
        f"Figures: one draw of {budget['num']:,} generated images (the classes in turn, the "
        "same noise for every model) scored against the 10,000 test images: FD and KID in the "
        "shipped Fashion-MNIST classifier's features (not Inception FID, not comparable with "
        "published FID), and that classifier's accuracy on the class asked for. Euler at NFE "
        "1-2, midpoint beyond; DDIM and DDPM one evaluation a step; MeanFlow average-velocity "
        "jumps and the 2-rectified flow at NFE 1-2 only, the distilled map at NFE 1. Every row "
        "is sampled conditionally without classifier-free guidance (the rows that cannot take "
        "guidance are on the same footing, and a guided evaluation costs twice the network "
        "evaluations); the guidance sweep shows what guidance adds to FM (U-Net). "
        f"Images per second: the {budget['num']:,} images at NFE {SPEED_NFE}, decoding "
        "included, generated in chunks of 250 images.",
        "",
        *row_notes(cache),
        "",
        format_tables(cache),
    ]
    if show_grid:
        assert grid is not None
        rel = os.path.relpath(grid, Path(args.results).resolve().parent)
        lines += [
            f"FM (U-Net) samples, a row per class (midpoint NFE 8, guidance {GUIDANCE:g}):",
            "",
            f"![Fashion-MNIST samples]({rel})",
            "",
        ]
    section = "\n".join(lines)
    write_section(args.results, section, SECTION_HEADER)
    print(section)
    print(f"wrote {args.results}")
    return section


def run_rows(args: argparse.Namespace) -> None:
    """Run the chosen rows one after the other, caching each as it finishes."""
    cache_path = Path(args.cache)
    cache = load_cache(cache_path)
    budget = budget_of(args)
    old = cache.get("budget")
    same = ("steps", "batch", "num", "seed", "nfes")  # --pairs concerns the reflow row alone
    if old is not None and cache.get("rows") and any(old[k] != budget[k] for k in same):
        raise SystemExit(
            f"{cache_path} holds rows of another budget ({old}); pass the same arguments "
            "or another --cache"
        )
    Path(args.work).mkdir(parents=True, exist_ok=True)
    scorer = Scorer(args.num, args.seed)
    if "floor" not in cache:
        cache["floor"] = scorer.floor()
    cache["budget"] = budget
    f = cache["floor"]
    print(f"floor: FD {f['fd']:.2f}, KID {f['kid']:.4f}, accuracy {f['accuracy']:.3f}")
    for name in args.rows:
        t0 = time.perf_counter()
        result = ROW_FUNCS[name](args, scorer)
        result["wall_s"] = time.perf_counter() - t0
        result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
        cache.setdefault("rows", {})[name] = result
        save_cache(cache_path, cache)
        print(f"{name}: done in {result['wall_s']:.0f} s, cached in {cache_path}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="", help=f"comma-separated, of {', '.join(ROW_NAMES)}")
    p.add_argument("--report-only", action="store_true", help="rebuild the section from the cache")
    p.add_argument("--no-report", action="store_true", help="do not write the section")
    p.add_argument("--steps", type=int, default=1000, help="training steps of every run")
    p.add_argument("--batch", type=int, default=64, help="batch size of every run")
    p.add_argument("--num", type=int, default=500, help="images per figure (and the floor)")
    p.add_argument("--pairs", type=int, default=500, help="reflow pairs")
    p.add_argument("--nfes", default=",".join(map(str, NFES)), help="comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(DEFAULT_WORK), help="folder of the runs")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="the results JSON")
    p.add_argument("--results", default=str(DEFAULT_RESULTS))
    p.add_argument("--grid", default=str(DEFAULT_GRID), help="'' for none")
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    p.add_argument("--ancestral", action="store_true", help="also DDPM ancestral sampling")
    p.add_argument(
        "--reuse", action="store_true", help="evaluate runs under --work that finished --steps"
    )
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in args.rows if r not in ROW_NAMES]
    if bad:
        p.error(f"--rows: unknown {', '.join(bad)}; choose from {', '.join(ROW_NAMES)}")
    if not args.rows and not args.report_only:
        p.error("give --rows (one or more rows to run) or --report-only")
    if args.rows and args.report_only:
        p.error("--rows and --report-only exclude each other")
    try:
        args.nfes = sorted({int(n) for n in args.nfes.split(",") if n.strip()})
    except ValueError:
        p.error(f"--nfes: expected comma-separated integers, got {args.nfes!r}")
    if not args.nfes or min(args.nfes) < 1 or max(args.nfes) > 1000:
        p.error(f"--nfes: expected integers in [1, 1000], got {args.nfes}")
    if args.nfes != sorted(args.nfes):
        p.error("--nfes: unsorted")
    for key in ("steps", "batch", "num", "pairs"):
        if getattr(args, key) < (2 if key == "num" else 1):
            p.error(f"--{key}: too small ({getattr(args, key)})")
    if args.quick:
        args.steps, args.batch, args.num, args.pairs, args.nfes = 4, 8, 20, 16, [1, 2, 8]
        work = Path(args.work) / "quick"
        args.work, args.cache = str(work), str(work / "results.json")
        args.results, args.grid = str(work / "RESULTS.md"), str(work / "grid.png")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.rows:
        run_rows(args)
    if not args.no_report:
        render(args)


if __name__ == "__main__":
    main()
