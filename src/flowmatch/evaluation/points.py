"""Sample quality of points against held-out data: W2 and MMD, with the noise floor.

Every figure is a mean and standard deviation over several independent draws, and the noise
floor is measured the same way: two disjoint halves of the held-out set (or, for a toy set,
two fresh draws of it) compared with each other. Model samples are compared with a held-out
set of the same size. Images scored this way are flattened (pixel space).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowmatch.evaluation.loop import evaluate_model, mean_std
from flowmatch.flow import as_flow
from flowmatch.metrics import mmd, straightness, w2

__all__ = [
    "CSV_HEADER",
    "STRAIGHTNESS_POINTS",
    "STRAIGHTNESS_STEPS",
    "EvalRow",
    "PointMetric",
    "evaluate",
    "format_row",
    "format_straightness",
    "format_table",
    "model_straightness",
    "noise_floor",
    "reference_draws",
]

Reference = Tensor | Callable[[int, torch.Generator], Tensor]
CSV_HEADER = ["step", "method", "steps", "nfe", "w2_mean", "w2_std", "mmd_mean", "mmd_std"]


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

    csv_header: ClassVar[list[str]] = CSV_HEADER
    """The header of ``eval.csv``: ``step`` and the names of :meth:`csv_values`."""

    def csv_values(self) -> list[str]:
        """The row's values after ``step`` in ``eval.csv`` (:attr:`csv_header`)."""
        return [
            self.method,
            str(self.steps),
            str(self.nfe),
            f"{self.w2_mean:.6f}",
            f"{self.w2_std:.6f}",
            f"{self.mmd_mean:.6g}",
            f"{self.mmd_std:.6g}",
        ]


def reference_draws(
    reference: Reference, n: int, draws: int, generator: torch.Generator
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


class PointMetric:
    """W2 (exact, POT) and MMD (RBF kernels) of samples against a reference.

    Args:
        reference: held-out points (N, *D), or ``f(n, generator)`` drawing fresh true
            samples (toy sets).
    """

    label = "W2"

    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def begin(self, num: int, draws: int, generator: torch.Generator) -> list[Any]:
        return reference_draws(self.reference, num, draws, generator)

    def score(self, samples: Tensor, state: list[Any], draw: int) -> dict[str, float]:
        gen, ref = samples.flatten(1), state[draw][0].flatten(1)  # images: pixel space
        return {"w2": w2(gen, ref), "mmd": mmd(gen, ref)}

    def row(
        self, method: str, steps: int, nfe: int, guidance: float | None, scores: list[dict]
    ) -> EvalRow:
        return EvalRow(
            method,
            steps,
            nfe,
            *mean_std([s["w2"] for s in scores]),
            *mean_std([s["mmd"] for s in scores]),
        )

    def floor(self, num: int, draws: int, seed: int) -> EvalRow:
        """The noise floor: two independent reference sets of ``num`` points, scored alike."""
        return noise_floor(self.reference, num_samples=num, draws=draws, seed=seed)

    def format_row(self, row: EvalRow) -> str:
        """One progress line for a row."""
        return format_row(row)

    def format_table(self, rows: Sequence[EvalRow], floor: EvalRow | None = None) -> str:
        """The plain-text table of ``eval.txt``."""
        return format_table(rows, floor)

    def curve(self, row: EvalRow) -> tuple[int, float, float]:
        """(NFE, mean, std) of a row for the quality-vs-NFE plot."""
        return row.nfe, row.w2_mean, row.w2_std

    def floor_band(self, floor: EvalRow) -> tuple[float, float]:
        """(mean, std) of the floor for the plot."""
        return floor.w2_mean, floor.w2_std


def noise_floor(
    reference: Reference, *, num_samples: int, draws: int = 5, seed: int = 0
) -> EvalRow:
    """W2 and MMD between two independent reference sets of ``num_samples`` points."""
    pairs = reference_draws(reference, num_samples, draws, torch.Generator().manual_seed(seed))
    pairs = [(a.flatten(1), b.flatten(1)) for a, b in pairs]  # images: pixel space
    w2s = [w2(a, b) for a, b in pairs]
    mmds = [mmd(a, b) for a, b in pairs]
    return EvalRow("floor", 0, 0, *mean_std(w2s), *mean_std(mmds))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    reference: Reference,
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
    """W2 and MMD of a model's samples against reference data, per method and step count.

    :func:`~flowmatch.evaluation.loop.evaluate_model` with a :class:`PointMetric`.

    Args:
        model: the model to sample (a :class:`~flowmatch.flow.FlowModel`, or a net).
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
    return evaluate_model(
        model,
        PointMetric(reference),
        source,
        steps=steps,
        methods=methods,
        num=num_samples,
        draws=draws,
        seed=seed,
        eta=eta,
        noise=noise,
        on_row=on_row,
    )


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
    flow = as_flow(model)
    device = next(flow.parameters()).device
    x0 = source(STRAIGHTNESS_POINTS, torch.Generator().manual_seed(seed)).to(device)
    return straightness(flow.velocity_field(), x0, steps=STRAIGHTNESS_STEPS, method="midpoint")


def format_straightness(value: float) -> str:
    """The report line of a straightness figure."""
    return (
        f"straightness E||v(x_t,t) - (x1 - x0)||^2 = {value:.4f} "
        f"(midpoint, {STRAIGHTNESS_STEPS} steps, {STRAIGHTNESS_POINTS} source points; 0 = straight)"
    )
