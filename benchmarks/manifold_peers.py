"""Helpers of ``benchmarks/manifolds.py``: Meta's ``flow_matching`` Riemannian path and solver
around our network, the sampler-overhead timing (ours, theirs, bare network forwards) and the
quality-vs-NFE scores (geodesic W2 and feature MMD against held-out sets, with the floor).

Meta's side uses their ``GeodesicProbPath(CondOTScheduler(), manifold)`` for the training
targets (``path.sample(x_0, x_1, t)`` -> x_t, dx_t) with their loss convention (the mean
squared error of the tangent-projected velocity, as in their Riemannian examples), and their
``RiemannianODESolver`` (``projx=True, proju=True``) for sampling. Their flat torus lives in
[0, 2 pi) and ours in [-pi, pi): points are moved between the two with ``% 2 pi`` and ``wrap``
(the network sees cos and sin of the angles either way).
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.evaluation.manifolds import geodesic_w2
from flowmatch.manifolds import (
    FlatTorus,
    GeodesicPath,
    Manifold,
    ManifoldFlowModel,
    Sphere,
    wrap,
)
from flowmatch.manifolds.solvers import solve_manifold_ode
from flowmatch.metrics.kernel import mmd

STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


def meta_available() -> bool:
    return importlib.util.find_spec("flow_matching") is not None


def supported(manifold: Manifold) -> bool:
    """Manifolds with a counterpart in flow_matching (its Sphere and FlatTorus)."""
    return isinstance(manifold, (Sphere, FlatTorus))


def meta_manifold(manifold: Manifold) -> Any:
    from flow_matching.utils.manifolds import FlatTorus as MetaTorus
    from flow_matching.utils.manifolds import Sphere as MetaSphere

    if isinstance(manifold, Sphere):
        return MetaSphere()
    if isinstance(manifold, FlatTorus):
        return MetaTorus()
    raise ValueError(f"flow_matching has no counterpart of {manifold!r}")


def to_meta(manifold: Manifold, x: Tensor) -> Tensor:
    return x % (2 * math.pi) if isinstance(manifold, FlatTorus) else x


def from_meta(manifold: Manifold, x: Tensor) -> Tensor:
    return wrap(x) if isinstance(manifold, FlatTorus) else x


class MetaGeodesicLoss:
    """Their geodesic path's targets and MSE loss, called as fm.train calls a loss (so the
    batches, base draws, optimiser, schedule and EMA are the trainer's, as for ours)."""

    def __init__(self, manifold: Manifold) -> None:
        from flow_matching.path import GeodesicProbPath
        from flow_matching.path.scheduler import CondOTScheduler

        self.manifold = manifold
        self.meta_path = GeodesicProbPath(CondOTScheduler(), meta_manifold(manifold))

    def __call__(
        self, model: nn.Module, x1: Tensor, *, x0: Tensor | None = None, cond: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:  # fmt: skip
        m = self.manifold
        if x0 is None:
            x0 = m.random_base(x1.shape[0], generator=generator, dtype=x1.dtype)
        t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype)
        s = self.meta_path.sample(x_0=to_meta(m, x0), x_1=to_meta(m, x1), t=t)
        v = model(s.x_t, t)  # a ManifoldFlowModel: the net's output projected on the tangent
        return torch.pow(v - s.dx_t, 2).mean()


def path_gap(manifold: Manifold, n: int = 4096, seed: int = 0) -> list[float]:
    """Largest differences of (x_t, dx_t) between their geodesic path and our GeodesicPath on
    the same uniform (x0, x1, t): both should be the same path."""
    g = torch.Generator().manual_seed(seed)
    x0, x1 = (manifold.random_uniform(n, generator=g) for _ in range(2))
    t = torch.rand(n, generator=g)
    theirs = MetaGeodesicLoss(manifold).meta_path.sample(
        x_0=to_meta(manifold, x0), x_1=to_meta(manifold, x1), t=t
    )
    ours = GeodesicPath(manifold).sample(x0, x1, t)
    gap = manifold.log(ours.x_t, from_meta(manifold, theirs.x_t)).abs().max().item()
    return [gap, (ours.u_t - theirs.dx_t).abs().max().item()]


def meta_solver(model: ManifoldFlowModel) -> Any:
    """Their RiemannianODESolver around the bare net (they project onto the tangent)."""
    from flow_matching.solver import RiemannianODESolver
    from flow_matching.utils import ModelWrapper

    manifold = model.manifold

    class Velocity(ModelWrapper):
        def forward(self, x: Tensor, t: Tensor, **_: Any) -> Tensor:
            return self.model(manifold.features(x), t.expand(x.shape[0]))

    return RiemannianODESolver(meta_manifold(manifold), Velocity(model.net))


def meta_sample(solver: Any, manifold: Manifold, x0: Tensor, method: str, nfe: int) -> Tensor:
    steps = nfe // STAGES[method]
    grid = torch.linspace(0.0, 1.0, steps + 1)
    x = solver.sample(
        to_meta(manifold, x0), step_size=None, method=method, time_grid=grid, projx=True,
        proju=True,
    )  # fmt: skip
    return from_meta(manifold, x)


@torch.no_grad()
def our_sample(model: ManifoldFlowModel, x0: Tensor, method: str, nfe: int) -> Tensor:
    steps = nfe // STAGES[method]
    return solve_manifold_ode(model.manifold, model, x0, steps=steps, method=method).x


@torch.no_grad()
def sampler_overhead(
    model: ManifoldFlowModel, n: int, method: str, nfe: int, rounds: int, seed: int,
    meta: bool,
) -> dict[str, Any]:  # fmt: skip
    """Median wall and process CPU times of sampling n points at ``nfe`` (ours:
    solve_manifold_ode; theirs: RiemannianODESolver) and of nfe bare ``net(features, t)``
    forwards on the same points, in interleaved rounds with rotating order; ratios of the
    medians. CPU time (one torch thread) does not count the time other processes take the
    core, which wall time on a shared machine does."""
    m = model.manifold
    x0 = m.random_base(n, generator=torch.Generator().manual_seed(seed))
    feats = m.features(x0)
    times = torch.linspace(0, 1, nfe + 1)[:-1]
    solver = meta_solver(model) if meta else None

    def bare(f: Tensor = feats) -> None:
        for t in times:
            model.net(f, t.expand(f.shape[0]))

    fns = {"bare": bare, "ours": lambda x=x0: our_sample(model, x, method, nfe)}
    if solver is not None:
        fns["meta"] = lambda x=x0: meta_sample(solver, m, x, method, nfe)
    warm = {"bare": (feats[:256],), "ours": (x0[:256],), "meta": (x0[:256],)}
    for name, fn in fns.items():
        fn(*warm[name])  # first calls allocate
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    out = {"method": method, "nfe": nfe, "n": n, "rounds": rounds}
    for key, secs in (("wall", wall), ("cpu", cpu)):
        med = {k: statistics.median(v) for k, v in secs.items()}
        out[f"{key}_ms"] = {k: 1e3 * v for k, v in med.items()}
        out[f"{key}_ratio"] = {k: v / med["bare"] for k, v in med.items()}
    return out


def quality(
    samplers: dict, manifold: Manifold, hold: Tensor, args: Any, methods: Sequence[str]
) -> dict[str, Any]:
    """Geodesic W2 and feature MMD of every sampler at each (method, NFE), per draw against
    a random held-out half; the floor compares the two halves."""
    num = min(args.num, hold.shape[0] // 2)
    rows: dict[str, Any] = {}
    floor = []
    for d in range(args.draws):
        perm = torch.randperm(hold.shape[0], generator=torch.Generator().manual_seed(100 + d))
        ref, other = hold[perm[:num]], hold[perm[num : 2 * num]]
        floor.append(pair_scores(manifold, other, ref))
        x0 = manifold.random_base(num, generator=torch.Generator().manual_seed(args.seed + d))
        for method in methods:
            for nfe in args.nfes:
                if nfe % STAGES[method]:
                    continue
                cell = rows.setdefault(f"{method} {nfe}", {})
                for name, fn in samplers.items():
                    x = fn(x0, method, nfe)
                    cell.setdefault(name, []).append(pair_scores(manifold, x, ref))
    summary = {k: {n: summarise(v) for n, v in c.items()} for k, c in rows.items()}
    return {"num": num, "rows": summary, "floor": summarise(floor)}


def pair_scores(manifold: Any, a: Tensor, b: Tensor) -> dict[str, float]:
    feats = manifold.features
    return {"w2": geodesic_w2(manifold, a, b), "mmd": mmd(feats(a.float()), feats(b.float()))}


def summarise(cells: list[dict[str, float]]) -> dict[str, list[float]]:
    out = {}
    for key in cells[0]:
        v = torch.tensor([c[key] for c in cells], dtype=torch.float64)
        out[key] = [v.mean().item(), v.std().item() if v.numel() > 1 else 0.0]
    return out


# ------------------------------------------------------------------------ rendering
NOTE = (
    "On the flat torus their targets and loss (the mean squared angle error) equal ours (the "
    "squared angle norm over the dimension) and the trainer draws the same x0 and t, so both "
    "trainings are one computation: their Euler and midpoint samples equal ours there, and "
    "only their RK4 (Kutta's 3/8 rule; ours is the classic one) differs. On the sphere their "
    "loss is the mean over 3 ambient coordinates (2/3 of ours), and their solver steps to "
    "x + h v and renormalizes, where ours takes exp-map steps: the column 'our net + Meta "
    "solver' separates the solver from the training."
)


def pm(pair: Sequence[float], digits: int = 3) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def quality_lines(name: str, q: dict[str, Any], gap: list[float] | None) -> list[str]:
    names = [n for n in ("ours", "meta", "ours_meta_solver") if n in next(iter(q["rows"].values()))]
    label = {"ours": "ours", "meta": "Meta", "ours_meta_solver": "our net + Meta solver"}
    head = " | ".join([*(f"W2 {label[n]}" for n in names), *(f"MMD {label[n]}" for n in names)])
    same = f"; their path's x_t, dx_t differ from ours by <= {max(gap):.1e}" if gap else ""
    out = [f"**{name}** ({q['num']} samples per draw vs a held-out set of {q['num']}{same}):", "",
           f"| sampler | NFE | {head} |", "|---|---:|" + "---:|" * 2 * len(names)]  # fmt: skip
    for key, cell in q["rows"].items():
        method, nfe = key.split()
        w2 = " | ".join(pm(cell[n]["w2"], 4) for n in names)
        mm = " | ".join(pm([1e3 * v for v in cell[n]["mmd"]], 2) for n in names)
        out.append(f"| {method} | {nfe} | {w2} | {mm} |")
    f, dash = q["floor"], ["-"] * (len(names) - 1)
    cells = [pm(f["w2"], 4), *dash, pm([1e3 * v for v in f["mmd"]], 2), *dash]
    out.append(f"| floor (held-out vs held-out) | - | {' | '.join(cells)} |")
    return [*out, ""]


def overhead_lines(results: dict[str, Any]) -> list[str]:
    out = [
        "| data | sampler | points | bare forwards: wall / CPU (ms) | ours: wall / CPU (ms) "
        "| ours / bare: wall, CPU | Meta / bare: wall, CPU | target ours <= 1.1x (wall, CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results["sets"].items():
        for o in r.get("overhead", []):
            w, c, wr, cr = o["wall_ms"], o["cpu_ms"], o["wall_ratio"], o["cpu_ratio"]
            steps = 100 // STAGES[o["method"]]
            meta = f"{wr['meta']:.3f}, {cr['meta']:.3f}" if "meta" in wr else "-"
            ok = ", ".join("ok" if v["ours"] <= 1.1 else "ABOVE" for v in (wr, cr))
            out.append(
                f"| {name} | {o['method']} {steps} steps (NFE 100) | {o['n']:,} | "
                f"{w['bare']:.0f} / {c['bare']:.0f} | {w['ours']:.0f} / {c['ours']:.0f} | "
                f"{wr['ours']:.3f}, {cr['ours']:.3f} | {meta} | {ok} |"
            )
    return [*out, ""]
