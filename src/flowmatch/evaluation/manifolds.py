"""Evaluation of a manifold run (a :class:`~flowmatch.manifolds.ManifoldFlowModel`).

- **Held-out NLL**: -log p(x) in nats w.r.t. the Riemannian volume (exact divergence, dopri5),
  mean and standard error over up to ``nll_points`` held-out points: the low-variance figure.
- **Quality vs NFE**: for each exp-map sampler and step count, ``draws`` sets of samples are
  compared with held-out sets by the geodesic 2-Wasserstein distance (exact OT with squared
  geodesic distances as the cost) and the MMD of the points' embedded features (unit vectors;
  cos/sin of angles; matrix entries: a positive-definite kernel on the manifold), next to the
  floor: the same figures between two disjoint held-out sets.
- **Plots**: a world map and a globe (sphere), a Ramachandran plot (two angles), axis-angle
  views (SO(3)); a residue product gets both of the last two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from flowmatch.atomic import atomic_path
from flowmatch.evaluation import seeds
from flowmatch.evaluation.loop import mean_std
from flowmatch.evaluation.points import EvalRow, PointMetric, format_table, reference_draws
from flowmatch.evaluation.reports import run_report
from flowmatch.manifolds import SO3, FlatTorus, Manifold, ManifoldFlowModel, Product, Sphere
from flowmatch.metrics.kernel import mmd
from flowmatch.metrics.transport import w2_from_cost

__all__ = ["ManifoldMetric", "geodesic_w2", "heldout_nll", "manifold_plots", "manifold_report"]


def geodesic_w2(manifold: Manifold, a: Tensor, b: Tensor, *, chunk: int = 256) -> float:
    """The exact 2-Wasserstein distance between point sets a (N, n) and b (M, n) on a
    manifold, with the squared geodesic distance as the cost (in radians for the sphere,
    the torus and SO(3))."""
    a, b = a.double(), b.double()
    rows = []
    for start in range(0, a.shape[0], chunk):
        x = a[start : start + chunk]
        xx = x[:, None].expand(-1, b.shape[0], -1).reshape(-1, a.shape[1])
        yy = b[None].expand(x.shape[0], -1, -1).reshape(-1, b.shape[1])
        rows.append(manifold.dist(xx, yy).reshape(x.shape[0], b.shape[0]) ** 2)
    return w2_from_cost(torch.cat(rows).numpy())


class ManifoldMetric(PointMetric):
    """Geodesic W2 and feature MMD of samples against held-out points (module docstring)."""

    label = "geodesic W2"

    def __init__(self, reference: Tensor, manifold: Manifold) -> None:
        super().__init__(reference)
        self.manifold = manifold

    def _pair(self, a: Tensor, b: Tensor) -> dict[str, float]:
        m = self.manifold
        return {
            "w2": geodesic_w2(m, a, b),
            "mmd": mmd(m.features(a.float()), m.features(b.float())),
        }

    def score(self, samples: Tensor, state: list[Any], draw: int) -> dict[str, float]:
        return self._pair(samples, state[draw][0])

    def floor(self, num: int, draws: int, seed: int) -> EvalRow:
        pairs = reference_draws(self.reference, num, draws, torch.Generator().manual_seed(seed))
        scores = [self._pair(a, b) for a, b in pairs]
        return EvalRow(
            "floor",
            0,
            0,
            *mean_std([s["w2"] for s in scores]),
            *mean_std([s["mmd"] for s in scores]),
        )

    def format_table(self, rows: Sequence[EvalRow], floor: EvalRow | None = None) -> str:
        head = "W2 is the geodesic 2-Wasserstein distance (radians); MMD on embedded points"
        return head + "\n" + format_table(rows, floor)


@torch.no_grad()
def heldout_nll(
    model: ManifoldFlowModel, points: Tensor, *, batch: int = 500
) -> tuple[float, float, int]:
    """Mean -log p (nats, w.r.t. the Riemannian volume), its standard error and the number
    of points, with the exact divergence and dopri5 (atol = rtol = 1e-5)."""
    from flowmatch.likelihood import log_likelihood

    device = next(model.parameters()).device
    parts = [
        cast(Tensor, log_likelihood(model, points[i : i + batch].to(device))).cpu()
        for i in range(0, points.shape[0], batch)
    ]
    nll = -torch.cat(parts).double()
    n = nll.numel()
    se = float(nll.std() / math.sqrt(n)) if n > 1 else math.nan
    return float(nll.mean()), se, n


def manifold_report(
    model: ManifoldFlowModel,
    data: Any,
    directory: str | Path,
    *,
    seed: int,
    steps: Sequence[int],
    methods: Sequence[str],
    num: int,
    draws: int,
    nll_points: int = 1000,
    echo: Callable[[str], None] = print,
) -> tuple[list[EvalRow], EvalRow]:
    """A manifold run's final evaluation: the rows and floor of quality vs NFE, the held-out
    NLL, ``eval.txt`` and ``quality_vs_nfe.png`` (see the module docstring)."""
    metric = ManifoldMetric(data.holdout, model.manifold)
    rows, floor = run_report(
        model,
        metric,
        model.draw_source,
        directory,
        steps=steps,
        methods=methods,
        num=data.max_eval_points(num),
        draws=draws,
        seed=seed,
        title=f"{data.name}: geodesic W2 vs NFE",
        echo=echo,
    )
    mean, se, n = heldout_nll(model, data.holdout[:nll_points])
    line = (
        f"held-out NLL: {mean:.4f} ± {se:.4f} nats ({n} points; exact divergence, dopri5; "
        f"uniform: {model.manifold.log_volume:.4f})"
    )
    echo(line)
    report = Path(directory) / "eval.txt"
    text = report.read_text() if report.is_file() else ""
    with atomic_path(report) as tmp:
        tmp.write_text(text + line + "\n")
    return rows, floor


def manifold_plots(
    model: ManifoldFlowModel,
    data: Any,
    directory: str | Path,
    *,
    seed: int,
    steps: int,
    method: str,
    num: int = 5000,
) -> list[Path]:
    """The run's pictures of ``num`` samples at its sampler, next to the held-out data:
    ``samples.png`` (a world map, sphere; Ramachandran, two angles; axis-angle views, SO(3))
    and ``globe.png`` (sphere) or ``frames.png`` (a residue's torus x SO(3))."""
    from flowmatch import sampling

    g = seeds.generator(seed, "plots")
    device = next(model.parameters()).device
    x = sampling.sample(model, model.draw_source(num, g).to(device), steps=steps, method=method)
    return plot_manifold_points(model.manifold, x.cpu(), data.holdout[:num], directory)


def plot_manifold_points(
    manifold: Manifold, samples: Tensor, reference: Tensor | None, directory: str | Path
) -> list[Path]:
    """The plots of :func:`manifold_plots` for given points (none for other manifolds)."""
    from flowmatch import viz

    directory = Path(directory)
    out = []
    if isinstance(manifold, Sphere) and manifold.dim == 2:
        out.append(viz.world_map(samples, directory / "samples.png", reference=reference))
        out.append(viz.globe(samples, directory / "globe.png", reference=reference))
    elif isinstance(manifold, FlatTorus) and manifold.dim == 2:
        out.append(viz.ramachandran(samples, directory / "samples.png", reference=reference))
    elif isinstance(manifold, SO3):
        ref = None if reference is None else reference.reshape(-1, 3, 3)
        out.append(
            viz.rotations(samples.reshape(-1, 3, 3), directory / "samples.png", reference=ref)
        )
    elif isinstance(manifold, Product) and [type(f) for f in manifold.factors] == [
        FlatTorus,
        SO3,
    ]:
        ref_a = None if reference is None else reference[:, :2]
        ref_r = None if reference is None else reference[:, 2:].reshape(-1, 3, 3)
        out.append(viz.ramachandran(samples[:, :2], directory / "samples.png", reference=ref_a))
        frames = samples[:, 2:].reshape(-1, 3, 3)
        out.append(viz.rotations(frames, directory / "frames.png", reference=ref_r))
    return out
