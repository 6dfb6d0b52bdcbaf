"""Sample quality against held-out data: W2 and MMD at several NFE, with the noise floor.

Following DESIGN.md ("Measuring sample quality honestly"), every figure is a mean and standard
deviation over several independent draws, and the noise floor is measured the same way: two
disjoint halves of the held-out set (or, for a toy set, two fresh draws of it) compared with
each other. Model samples are compared with a held-out half of the same size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from flowmatch.metrics import mmd, straightness, w2
from flowmatch.sampling import generate, model_velocity

__all__ = [
    "EvalRow",
    "evaluate",
    "format_row",
    "format_straightness",
    "format_table",
    "model_straightness",
    "noise_floor",
    "write_report",
]


@dataclass
class EvalRow:
    """One line of the table: a method at a number of steps, over ``draws`` draws."""

    method: str
    steps: int
    nfe: int
    w2_mean: float
    w2_std: float
    mmd_mean: float
    mmd_std: float


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def _reference_draws(
    reference: Tensor | Callable[[int, torch.Generator], Tensor],
    n: int,
    draws: int,
    generator: torch.Generator,
) -> list[tuple[Tensor, Tensor]]:
    """``draws`` pairs of disjoint reference sets of n points each."""
    pairs = []
    for _ in range(draws):
        if callable(reference):
            pairs.append((reference(n, generator), reference(n, generator)))
        else:
            if reference.shape[0] < 2 * n:
                raise ValueError(
                    f"need at least {2 * n} held-out points for sets of {n}, "
                    f"got {reference.shape[0]}"
                )
            perm = torch.randperm(reference.shape[0], generator=generator)
            pairs.append((reference[perm[:n]], reference[perm[n : 2 * n]]))
    return pairs


def noise_floor(
    reference: Tensor | Callable[[int, torch.Generator], Tensor],
    *,
    num_samples: int,
    draws: int = 5,
    seed: int = 0,
) -> EvalRow:
    """W2 and MMD between two independent reference sets of ``num_samples`` points."""
    pairs = _reference_draws(reference, num_samples, draws, torch.Generator().manual_seed(seed))
    pairs = [(a.flatten(1), b.flatten(1)) for a, b in pairs]  # images: pixel space
    w2s = [w2(a, b) for a, b in pairs]
    mmds = [mmd(a, b) for a, b in pairs]
    return EvalRow("floor", 0, 0, *_mean_std(w2s), *_mean_std(mmds))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    reference: Tensor | Callable[[int, torch.Generator], Tensor],
    source: Callable[[int, torch.Generator], Tensor],
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    num_samples: int,
    draws: int = 5,
    seed: int = 0,
    eta: float = 0.0,
    noise: float = 1.0,
    on_row: Callable[[EvalRow], None] | None = None,
) -> list[EvalRow]:
    """W2 and MMD of the model's samples against reference data, per method and step count.

    Args:
        model: the model to sample (with its ``flow_path`` / ``prediction`` attributes).
        reference: held-out points (N, D), or a function ``f(n, generator)`` drawing fresh
            true samples (toy sets).
        source: ``f(n, generator)`` drawing source points x0 (N(0, I) or a toy source).
        steps: numbers of solver steps.
        methods: samplers (:data:`flowmatch.sampling.SAMPLE_METHODS`).
        num_samples: points per set.
        draws: independent draws averaged per figure.
        seed: seed of the draws (the same noise for every method and step count; the
            stochastic samplers draw their noise from the same generator).
        eta: DDIM's eta (ddim).
        noise: the SDE's noise scale (sde).
        on_row: called with each row as soon as it is computed (progress).

    Returns:
        One row per (method, steps), with the exact NFE.
    """
    device = next(model.parameters()).device
    rows = []
    if getattr(model, "two_times", False):  # MeanFlow: one sampler, average-velocity jumps
        methods = ["average"]
    for method in methods:
        for n_steps in steps:
            g = torch.Generator().manual_seed(seed)
            refs = _reference_draws(reference, num_samples, draws, g)
            w2s, mmds, nfe = [], [], 0
            for ref, _ in refs:
                x0 = source(num_samples, g).to(device)
                res = generate(
                    model, x0, steps=n_steps, method=method, eta=eta, noise=noise, generator=g
                )
                nfe = res.nfe
                gen, ref = res.x.float().cpu().flatten(1), ref.flatten(1)  # images: pixels
                w2s.append(w2(gen, ref))
                mmds.append(mmd(gen, ref))
            row = EvalRow(method, n_steps, nfe, *_mean_std(w2s), *_mean_std(mmds))
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def format_row(row: EvalRow) -> str:
    """One progress line for a row."""
    return (
        f"  {row.method:<8} steps {row.steps:>4}  NFE {row.nfe:>4}  "
        f"W2 {row.w2_mean:.4f} +- {row.w2_std:.4f}"
    )


def format_table(rows: Sequence[EvalRow], floor: EvalRow | None = None) -> str:
    """A plain-text table of the rows (and the noise floor, with W2 as a ratio to it)."""
    head = f"{'method':<10} {'steps':>5} {'NFE':>5} {'W2 mean':>9} {'W2 std':>8} "
    head += f"{'xfloor':>7} {'MMD2 mean':>10} {'MMD2 std':>9}"
    lines = [head, "-" * len(head)]
    for r in ([floor] if floor is not None else []) + list(rows):
        ratio = (
            r.w2_mean / floor.w2_mean if floor is not None and floor.w2_mean > 0 else float("nan")
        )
        name = "noise floor" if r.method == "floor" else r.method
        steps = "-" if r.method == "floor" else str(r.steps)
        nfe = "-" if r.method == "floor" else str(r.nfe)
        lines.append(
            f"{name:<10} {steps:>5} {nfe:>5} {r.w2_mean:>9.4f} {r.w2_std:>8.4f} {ratio:>7.2f} "
            f"{r.mmd_mean:>10.5f} {r.mmd_std:>9.5f}"
        )
    return "\n".join(lines)


STRAIGHTNESS_STEPS = 64
STRAIGHTNESS_POINTS = 1000


def model_straightness(
    model: nn.Module, source: Callable[[int, torch.Generator], Tensor], *, seed: int = 0
) -> float:
    """Straightness of a model's flow from its source (midpoint, 64 steps, 1000 points).

    See :func:`~flowmatch.metrics.straightness`: 0 for a flow whose trajectories are straight.
    """
    device = next(model.parameters()).device
    x0 = source(STRAIGHTNESS_POINTS, torch.Generator().manual_seed(seed)).to(device)
    return straightness(model_velocity(model), x0, steps=STRAIGHTNESS_STEPS, method="midpoint")


def format_straightness(value: float) -> str:
    """The report line of a straightness figure."""
    return (
        f"straightness E||v(x_t,t) - (x1 - x0)||^2 = {value:.4f} "
        f"(midpoint, {STRAIGHTNESS_STEPS} steps, {STRAIGHTNESS_POINTS} source points; 0 = straight)"
    )


def write_report(
    directory: str | Path,
    rows: Sequence[EvalRow],
    floor: EvalRow,
    *,
    title: str,
    straightness: float | None = None,
) -> str:
    """Write ``eval.txt`` (the table) and ``quality_vs_nfe.png`` into a run directory.

    Returns:
        The table text (with the straightness line when given).
    """
    from flowmatch import viz
    from flowmatch.atomic import atomic_path

    directory = Path(directory)
    table = format_table(rows, floor)
    if straightness is not None:
        table += "\n" + format_straightness(straightness)
    with atomic_path(directory / "eval.txt") as tmp:
        tmp.write_text(table + "\n")
    by_method: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        by_method.setdefault(r.method, []).append((r.nfe, r.w2_mean, r.w2_std))
    viz.quality_vs_nfe(
        by_method,
        directory / "quality_vs_nfe.png",
        metric="W2",
        floor=(floor.w2_mean, floor.w2_std),
        title=title,
    )
    return table
