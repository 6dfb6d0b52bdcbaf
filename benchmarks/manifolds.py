"""Riemannian flow matching on real manifold data, against closed-form mixtures, the uniform
density and Meta's ``flow_matching`` (its Riemannian path and solver with our network).

**Data** (:func:`flowmatch.data.load_manifold_set`): airports and Fiji quakes on S^2, protein
backbone (phi, psi) on T^2 and residues on T^2 x SO(3). One split per set with a fixed seed:
10% held out, the same points for every model; a mixture is fitted by EM on nine tenths of
the training part for each K of a grid, and the K best on the last tenth is kept (the grid
doubles while its largest K wins; airports stop at 512, as 1024 scored worse on validation).

**Our flow**: ``ManifoldFlowModel`` + ``fm.models.MLP`` (manifold features -> ambient vector,
random Fourier features), trained by ``fm.train`` (AdamW, lr 2e-3 with 200 warmup steps and
cosine decay, batch 512, EMA 0.999, seed 0) for a wall-clock budget: the step rate of short
warm-up runs sets the number of steps. Held-out NLL: ``fm.log_likelihood`` (exact Riemannian
divergence, dopri5, atol = rtol = 1e-5) on up to 2000 held-out points, in nats w.r.t. the
Riemannian volume; baselines score the same points, so differences get a paired standard error.

**Meta's flow_matching** (sphere, torus): the same network (same initial weights), data,
batches, steps and trainer, but their ``GeodesicProbPath(CondOTScheduler())`` targets and MSE
loss; samples from their ``RiemannianODESolver``. Quality vs NFE: geodesic W2 (exact OT,
radians) and feature MMD of ``--num`` samples against held-out sets, over ``--draws`` draws,
with the floor (two disjoint held-out sets). Sampler overhead: 10k points at NFE 100 divided
by 100 bare network forwards on the same points (medians of interleaved rounds).

Run ``python benchmarks/manifolds.py`` (about 30 minutes on one thread); ``--quick`` is a smoke
run whose figures mean nothing. Writes the "## Manifolds" section of ``--out``
(benchmarks/RESULTS.md) and ``results.json`` under ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import flowmatch as fm
from flowmatch.data.manifold_sets import load_manifold_set
from flowmatch.manifolds import FlatTorus, ManifoldFlowModel, Product, Sphere
from flowmatch.manifolds.distributions import VMFMixture, VonMisesMixture
from flowmatch.train.data import manifold_of
from flowmatch.train.loop import OptimSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifold_peers as peers
from train_overhead import machine_facts, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION_HEADER = "## Manifolds"
DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_WORK = ROOT / "runs" / "bench_manifolds"
NFES = (4, 8, 16, 32, 64)
METHODS = ("euler", "midpoint", "rk4")
# per set: share of --minutes, Fourier features (count, scale), mixture K grid, Meta + NFE tables
SETS: dict[str, dict[str, Any]] = {
    "airports": {"share": 1.0, "ff": (128, 10.0), "ks": (16, 32, 64, 128, 256, 512), "kmax": 512,
                 "meta": True, "overhead": ("rk4",)},
    "quakes": {"share": 0.5, "ff": (128, 10.0), "ks": (1, 2, 4, 8, 16, 32, 64), "meta": False},
    "backbone": {"share": 1.0, "ff": (64, 4.0), "ks": (1, 2, 4, 8, 16, 32, 64), "meta": True,
                 "overhead": ("euler",)},
    "residues": {"share": 0.5, "ff": (64, 4.0), "ks": (1, 2, 4, 8, 16, 32, 64), "meta": False},
}  # fmt: skip
WHY = {  # one line, shown where the flow does not beat the best baseline by more than its SE
    "airports": "the vMF mixture's validation NLL keeps falling up to K = {k} components "
    "(airports sit in many small dense clusters); the flow had {steps:,} steps ({train_s:.0f} s"
    " of one core) and scores {fit}",
    "quakes": "the quakes all lie within 18 degrees of their mean direction (half within 5.3): "
    "a mixture (K = {k}) fits the narrow cluster directly, a flow from uniform must learn to "
    "contract 4 pi steradians into it ({steps:,} steps)",
    "backbone": "with {n_train} training pairs, after {steps:,} steps the flow scores {fit}, "
    "while K = {k} von Mises products fit the few smooth basins directly",
    "residues": "the flow learns 11 coordinates (T^2 x SO(3)) from {n_train} points ({steps:,}"
    " steps; it scores {fit}); the baseline fits (phi, psi) alone (K = {k}), uniform on SO(3)",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def split(x: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train, held-out, mixture train, mixture validation): 10% held out, then a tenth of
    the training part for choosing K."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_hold = round(0.1 * x.shape[0])
    train, hold = x[perm[n_hold:]], x[perm[:n_hold]]
    n_val = round(0.1 * train.shape[0])
    return train, hold, train[n_val:], train[:n_val]


def make_model(manifold: Any, spec: dict[str, Any], args: Any) -> ManifoldFlowModel:
    torch.manual_seed(args.seed)
    ff, scale = spec["ff"]
    net = fm.models.MLP(
        dim=manifold.feature_dim, out_dim=manifold.ambient_dim, hidden=args.hidden,
        depth=args.depth, fourier_features=ff, fourier_scale=scale,
    )  # fmt: skip
    return ManifoldFlowModel(net, manifold)


def train(model: ManifoldFlowModel, data: Tensor, steps: int, args: Any, loss: Any = None):
    start = time.perf_counter()
    ema = fm.train(
        model, data, steps=steps, batch_size=args.batch, lr=args.lr, loss=loss, seed=args.seed,
        optim=OptimSettings(lr=args.lr, warmup_steps=200), progress=False, echo=lambda s: None,
    )  # fmt: skip
    wall = time.perf_counter() - start
    return ema, {"steps": steps, "train_s": wall, "ms_per_step": 1e3 * wall / steps}


def budget_steps(init: ManifoldFlowModel, data: Tensor, seconds: float, args: Any) -> int:
    """Steps that fill ``seconds``: the step rate and fixed start-up cost of fm.train from two
    timed warm-up runs (``--warmup`` and 5x as many steps) on copies of the model, after an
    untimed one (the first call in a process pays one-time costs)."""
    n1, n2 = args.warmup, 5 * args.warmup
    t0, t1, t2 = (train(copy.deepcopy(init), data, n, args)[1]["train_s"] for n in (n1, n1, n2))
    rate = max(t2 - t1, 1e-9) / (n2 - n1)
    log(f"warm-up: {n1} steps {t0:.2f} s, then {t1:.2f} s; {n2} steps {t2:.2f} s")
    return max(n1, int((seconds - max(t1 - n1 * rate, 0.0)) / rate))


def nll_points(model: ManifoldFlowModel, x: Tensor, batch: int = 500) -> Tensor:
    parts = [fm.log_likelihood(model, x[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return -torch.cat(parts).detach().double()


def fit_mixture(cls: type, tr: Tensor, va: Tensor, spec: dict[str, Any], seed: int):
    """The mixture fitted on ``tr`` whose K has the best log-likelihood on ``va``, over the
    grid ks, doubled while its largest K is still the best (up to kmax and a tenth of tr)."""
    ks, curve, best = list(spec["ks"]), [], (None, -math.inf, None)
    cap = min(spec.get("kmax", 10**9), max(1, tr.shape[0] // 10))
    for k in ks:
        if k > cap:
            break
        mix = cls.fit(tr, k, generator=torch.Generator().manual_seed(seed))
        ll = mix.log_prob(va).double().mean().item()
        curve.append((k, -ll))
        best = max(best, (k, ll, mix), key=lambda p: p[1])
        if k == ks[-1] and best[0] == k and 2 * k <= cap:
            ks.append(2 * k)
    return best[2], best[0], curve


def baselines(manifold: Any, spec: dict, sets: tuple, test: Tensor, seed: int) -> dict:
    _, _, mtr, mva = sets
    out: dict[str, Any] = {"uniform": {"nll": torch.full((test.shape[0],), manifold.log_volume)}}
    if isinstance(manifold, Sphere):
        mix, k, curve = fit_mixture(VMFMixture, mtr, mva, spec, seed)
        out["vmf"] = {"nll": -mix.log_prob(test).double(), "k": k, "curve": curve}
    elif isinstance(manifold, FlatTorus):
        mix, k, curve = fit_mixture(VonMisesMixture, mtr, mva, spec, seed)
        out["vm"] = {"nll": -mix.log_prob(test).double(), "k": k, "curve": curve}
    elif isinstance(manifold, Product):  # (phi, psi) mixture x uniform on the SO(3) factor
        mix, k, curve = fit_mixture(VonMisesMixture, mtr[:, :2], mva[:, :2], spec, seed)
        so3 = manifold.factors[1].log_volume
        out["vm"] = {"nll": -mix.log_prob(test[:, :2]).double() + so3, "k": k, "curve": curve}
    return out


def mean_se(v: Tensor) -> list[float]:
    return [v.mean().item(), (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else 0.0]


def run_set(name: str, args: Any) -> dict[str, Any]:
    spec = SETS[name]
    kind, points = load_manifold_set(name)
    manifold = manifold_of(kind, points)
    points = points.reshape(points.shape[0], -1).float()
    if args.quick:  # a fixed subset of 400 points
        points = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(1))]
        points = points[:400]
    sets = split(points, args.seed)
    train_x, hold = sets[0], sets[1]
    test = hold[: args.nll_points]
    res: dict[str, Any] = {"manifold": repr(manifold), "n_train": train_x.shape[0]}
    res["n_hold"], res["n_test"] = hold.shape[0], test.shape[0]
    init = make_model(manifold, spec, args)
    seconds = 60 * args.minutes * spec["share"]
    steps = budget_steps(init, train_x, seconds, args)
    log(f"{name}: {manifold!r}, {train_x.shape[0]} train, {steps} steps for {seconds:.0f} s")
    ours, res["train"] = train(copy.deepcopy(init), train_x, steps, args)
    start = time.perf_counter()
    res["nll"] = {"flow": {"nll": nll_points(ours, test)}}
    res["nll_s"] = time.perf_counter() - start
    res["train_nll"] = mean_se(nll_points(ours, train_x[: min(test.shape[0], 500)]))
    res["nll"].update(baselines(manifold, spec, sets, test, args.seed))
    log(f"{name}: flow NLL {res['nll']['flow']['nll'].mean():.4f} ({res['nll_s']:.0f} s)")
    meta = args.meta and spec["meta"] and peers.meta_available() and peers.supported(manifold)
    if not spec["meta"]:
        return res
    samplers = {"ours": lambda x0, m, k: peers.our_sample(ours, x0, m, k)}
    if meta:
        loss = peers.MetaGeodesicLoss(manifold)
        theirs, res["meta_train"] = train(copy.deepcopy(init), train_x, steps, args, loss=loss)
        log(f"{name}: Meta trained, {res['meta_train']['ms_per_step']:.1f} ms/step")
        res["path_gap"] = peers.path_gap(manifold)
        s_theirs, s_ours = peers.meta_solver(theirs), peers.meta_solver(ours)
        samplers["meta"] = lambda x0, m, k: peers.meta_sample(s_theirs, manifold, x0, m, k)
        samplers["ours_meta_solver"] = lambda x0, m, k: peers.meta_sample(
            s_ours, manifold, x0, m, k
        )
    res["quality"] = peers.quality(samplers, manifold, hold, args, METHODS)
    res["overhead"] = [
        peers.sampler_overhead(ours, args.overhead_n, m, 100, args.rounds, args.seed, meta)
        for m in spec["overhead"]
    ]
    log(f"{name}: quality and overhead done")
    return res


# ------------------------------------------------------------------------ rendering
def nll_table(results: dict[str, Any]) -> list[str]:
    out = [
        "| data (manifold; held-out points scored) | flow (ours) | vMF mixture | von Mises "
        "mixture | uniform | flow - best baseline (paired SE) | flow beats best by > SE |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    why = []
    for name, res in results["sets"].items():
        nll = res["nll"]
        cells = {k: peers.pm(mean_se(v["nll"])) for k, v in nll.items()}
        for k in ("vmf", "vm"):
            cells[k] = f"{cells[k]} (K={nll[k]['k']})" if k in nll else "-"
        best = min((k for k in nll if k != "flow"), key=lambda k: nll[k]["nll"].mean().item())
        diff = mean_se(nll["flow"]["nll"] - nll[best]["nll"])
        beats = diff[0] < -diff[1]
        verdict = f"yes (vs {best})" if beats else f"no (vs {best})"
        if not beats:
            k = nll[best].get("k", "-")
            fit = f"{res['train_nll'][0]:.3f} on training points, {cells['flow']} held out"
            facts = {"k": k, "n_train": res["n_train"], "fit": fit, **res["train"]}
            why.append(f"- {name}: {WHY[name].format(**facts)}.")
        out.append(
            f"| {name} ({res['manifold']}; {res['n_test']}) | {cells['flow']} | {cells['vmf']} "
            f"| {cells['vm']} | {cells['uniform']} | {peers.pm(diff)} | {verdict} |"
        )
    return [*out, ""] + (["Where the flow does not win:", "", *why, ""] if why else [])


def train_lines(results: dict[str, Any]) -> list[str]:
    out = ["| data | train / held-out | flow steps | flow ms/step | flow train s | NLL eval s "
           "| flow NLL on training points | Meta ms/step (ratio to ours) | mixture validation "
           "NLL by K (residues: phi, psi) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, r in results["sets"].items():
        t, m = r["train"], r.get("meta_train")
        meta = f"{m['ms_per_step']:.1f} ({m['ms_per_step'] / t['ms_per_step']:.2f}x)" if m else "-"
        mix = next((r["nll"][k] for k in ("vmf", "vm") if k in r["nll"]), None)
        curve = ", ".join(f"{k}: {v:.3f}" for k, v in mix["curve"]) if mix else "-"
        out.append(
            f"| {name} | {r['n_train']} / {r['n_hold']} | {t['steps']:,} | {t['ms_per_step']:.1f}"
            f" | {t['train_s']:.0f} | {r['nll_s']:.0f} | {peers.pm(r['train_nll'])} | {meta} "
            f"| {curve} |"
        )
    return [*out, ""]


def render(results: dict[str, Any], args: Any) -> str:
    facts = results["facts"]
    sets = results["sets"]
    lines = [
        SECTION_HEADER, "",
        f"Measured {results['stamp']} on {facts['cpu']} ({facts['cores']}; {facts['load']} "
        f"before the run); torch {facts['torch']}; whole run {results['wall_s'] / 60:.1f} min.",
        "", f"Reproduce: `{' '.join(['python benchmarks/manifolds.py', *results['argv']])}`", "",
        f"Flow: `ManifoldFlowModel` + `MLP(hidden={args.hidden}, depth={args.depth})` with "
        "random Fourier features (airports, quakes: 128 at scale 10; backbone, residues: 64 at "
        f"scale 4), `fm.train` for {args.minutes:g} min (quakes, residues: half), batch "
        f"{args.batch}, lr {args.lr:g}. NLL in nats w.r.t. the Riemannian volume (mean ± SE "
        "over the held-out points; exact divergence, dopri5); mixtures by EM on nine tenths of "
        "the training part, K chosen on the last tenth (the grid doubles while its largest K "
        "wins, up to 512). "
        "Residues: the von Mises mixture is on (phi, psi), times the uniform density on SO(3).",
        "", "### Held-out NLL", "", *nll_table(results),
        "### Training", "", *train_lines(results),
    ]  # fmt: skip
    quals = [(n, r["quality"], r.get("path_gap")) for n, r in sets.items() if "quality" in r]
    if quals:
        lines += ["### Quality vs NFE (ours vs Meta's flow_matching)", "",
                  "Geodesic W2 (radians) and MMD x 1e3 on embedded points, mean ± sd over "
                  f"{args.draws} draws; Meta: their GeodesicProbPath targets, loss and "
                  "RiemannianODESolver (projx, proju), our network, data, steps.", "",
                  peers.NOTE, ""]  # fmt: skip
        for name, q, gap in quals:
            lines += peers.quality_lines(name, q, gap)
        lines += ["### Sampler overhead", "",
                  f"Sampling at NFE 100 / 100 bare `net(features, t)` forwards on the same "
                  f"points; medians of {args.rounds} interleaved rounds, in wall time and in "
                  "process CPU time (one torch thread; unlike wall time it does not count the "
                  "time other processes hold the core on a shared machine).", "",
                  *peers.overhead_lines(results)]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=4.0, help="training budget per flow")
    p.add_argument("--sets", default="airports,quakes,backbone,residues")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=40, help="steps of the first warm-up run")
    p.add_argument("--nll-points", type=int, default=2000)
    p.add_argument("--num", type=int, default=1000, help="samples per quality draw")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--overhead-n", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-meta", dest="meta", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(DEFAULT_WORK))
    p.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown file to update")
    p.add_argument("--quick", action="store_true", help="a smoke run; figures mean nothing")
    args = p.parse_args(argv)
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if not args.sets or not set(args.sets) <= set(SETS):
        p.error(f"--sets: expected some of {', '.join(SETS)}, got {args.sets}")
    if args.minutes <= 0 or min(args.draws, args.num, args.rounds, args.warmup) < 1:
        p.error("--minutes must be > 0 and --draws, --num, --rounds, --warmup >= 1")
    args.nfes = NFES
    if args.quick:
        args.minutes, args.hidden, args.depth, args.batch, args.warmup = 0.01, 32, 2, 64, 5
        args.nll_points, args.num, args.draws, args.overhead_n, args.rounds = 40, 30, 2, 200, 1
        args.nfes = (4,)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    facts = machine_facts()  # before the run: its load average says how busy the machine was
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"{facts['cpu']}, {facts['cores']}, {facts['load']}, torch {facts['torch']}")
    begin = time.perf_counter()
    sets = {name: run_set(name, args) for name in args.sets}
    results = {"argv": argv, "facts": facts, "stamp": stamp, "sets": sets}
    results["wall_s"] = time.perf_counter() - begin
    section = render(results, args)
    print(section)
    write_section(args.out, section, SECTION_HEADER)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # per-point NLLs (tensors) are saved as their mean and standard error
    (work / "results.json").write_text(json.dumps(results, indent=1, default=mean_se))
    results["section"] = section
    return results


if __name__ == "__main__":
    main()
