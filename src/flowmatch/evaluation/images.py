"""Quality of generated digits: Fréchet distance, KID and class accuracy against held-out digits.

The features are those of the small CNN classifier that ships with the package
(:mod:`flowmatch.metrics.digits`). Generated sets have as many images as the training split,
with the training split's labels as their classes (the same class balance), and are compared
with the held-out test split; the **floor** is the training split itself scored the same way
(train vs test: what a model that reproduced its training data exactly would get). FD is
biased by the set sizes, which is why the generated sets and the floor's have the same size.
Every figure is a mean (and standard deviation) over independent draws of the noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowmatch.evaluation.loop import evaluate_model, mean_std

__all__ = [
    "CSV_HEADER",
    "DigitsMetric",
    "ImageEvalRow",
    "evaluate_images",
    "format_image_row",
    "format_image_table",
    "image_floor",
]

CSV_HEADER = [
    "step",
    "method",
    "steps",
    "nfe",
    "fd_mean",
    "fd_std",
    "kid_mean",
    "kid_std",
    "accuracy",
]


@dataclass
class ImageEvalRow:
    """One line of the table: a sampler at a number of steps (and guidance), over draws.

    ``accuracy`` is the share of images the classifier assigns to the class they were
    generated for (NaN for unconditional samples).
    """

    method: str
    steps: int
    nfe: int
    guidance: float | None
    fd_mean: float
    fd_std: float
    kid_mean: float
    kid_std: float
    accuracy: float

    csv_header: ClassVar[list[str]] = CSV_HEADER
    """The header of ``eval.csv``: ``step`` and the names of :meth:`csv_values`."""

    def csv_values(self) -> list[str]:
        """The row's values after ``step`` in ``eval.csv`` (:attr:`csv_header`)."""
        return [
            self.method,
            str(self.steps),
            str(self.nfe),
            f"{self.fd_mean:.6f}",
            f"{self.fd_std:.6f}",
            f"{self.kid_mean:.6g}",
            f"{self.kid_std:.6g}",
            f"{self.accuracy:.6f}",
        ]


def image_floor(train: Tensor, test: Tensor, train_labels: Tensor | None = None) -> ImageEvalRow:
    """The floor: the training split scored against the test split (one deterministic draw)."""
    from flowmatch.metrics.digits import digits_quality

    q = digits_quality(train, test, labels=train_labels)
    return ImageEvalRow(
        "floor", 0, 0, None, q["fd"], 0.0, q["kid"], q["kid_std"], q.get("accuracy", math.nan)
    )


class DigitsMetric:
    """FD, KID and class accuracy of 8x8 digits in the shipped classifier's features.

    Args:
        test: the held-out digits the samples are compared with, (M, 1, 8, 8).
        labels: the class each generated image is asked for, (N,), or None (unconditional).
        train: the training digits, scored against ``test`` for the floor; None: no floor.
    """

    label = "FD (digits classifier features)"

    def __init__(
        self, test: Tensor, labels: Tensor | None = None, train: Tensor | None = None
    ) -> None:
        self.test, self.labels, self.train = test, labels, train

    def begin(self, num: int, draws: int, generator: torch.Generator) -> None:
        return None  # the test split is the same for every draw

    def score(self, samples: Tensor, state: Any, draw: int) -> dict[str, float]:
        from flowmatch.metrics.digits import digits_quality

        q = digits_quality(samples, self.test, labels=self.labels)
        return {"fd": q["fd"], "kid": q["kid"], "accuracy": q.get("accuracy", math.nan)}

    def row(
        self, method: str, steps: int, nfe: int, guidance: float | None, scores: list[dict]
    ) -> ImageEvalRow:
        accs = [s["accuracy"] for s in scores]
        return ImageEvalRow(
            method,
            steps,
            nfe,
            guidance,
            *mean_std([s["fd"] for s in scores]),
            *mean_std([s["kid"] for s in scores]),
            sum(accs) / len(accs),
        )

    def floor(self, num: int, draws: int, seed: int) -> ImageEvalRow:
        """The train/test floor (deterministic: ``num``, ``draws`` and ``seed`` unused)."""
        if self.train is None:
            raise ValueError("the digits floor needs the training split (train=...)")
        return image_floor(self.train, self.test, self.labels)

    def format_row(self, row: ImageEvalRow) -> str:
        """One progress line for a row."""
        return format_image_row(row)

    def format_table(self, rows: Sequence[ImageEvalRow], floor: ImageEvalRow | None = None) -> str:
        """The plain-text table of ``eval.txt``."""
        return format_image_table(rows, floor)

    def curve(self, row: ImageEvalRow) -> tuple[int, float, float]:
        """(NFE, mean, std) of a row for the quality-vs-NFE plot."""
        return row.nfe, row.fd_mean, row.fd_std

    def floor_band(self, floor: ImageEvalRow) -> tuple[float, float]:
        """(mean, std) of the floor for the plot."""
        return floor.fd_mean, 0.0


@torch.no_grad()
def evaluate_images(
    model: nn.Module,
    test: Tensor,
    labels: Tensor | None,
    *,
    num: int,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int = 5,
    seed: int = 0,
    guidance: float | None = None,
    eta: float = 0.0,
    noise: float = 1.0,
    on_row: Callable[[ImageEvalRow], None] | None = None,
) -> list[ImageEvalRow]:
    """FD, KID and accuracy of the model's digits against the test split, per sampler.

    :func:`~flowmatch.evaluation.loop.evaluate_model` with a :class:`DigitsMetric` and
    N(0, I) noise.

    Args:
        model: a trained image model (FlowModel or net), conditional when ``labels`` is given.
        test: the held-out digits, (M, 1, 8, 8).
        labels: the class of each generated image, (num,) (e.g. the training labels), or
            None for unconditional samples.
        num: images per generated set.
        steps: the step counts of the sampler grid (see :func:`flowmatch.sampling.generate`).
        methods: the samplers of the grid.
        draws: independent draws of the noise per figure.
        seed: seed of the draws (the same noise for every sampler).
        guidance: classifier-free guidance scale with ``labels``; None: conditional model.
        eta: DDIM's eta.
        noise: the SDE's noise scale.
        on_row: called with each row as soon as it is computed.

    Returns:
        One row per (method, steps).
    """
    shape = tuple(test.shape[1:])
    return evaluate_model(
        model,
        DigitsMetric(test, labels),
        lambda n, g: torch.randn(n, *shape, generator=g),
        steps=steps,
        methods=methods,
        num=num,
        draws=draws,
        seed=seed,
        eta=eta,
        noise=noise,
        cond=labels,
        guidance=guidance,
        on_row=on_row,
    )


def format_image_row(row: ImageEvalRow) -> str:
    """One progress line for a row."""
    acc = "" if math.isnan(row.accuracy) else f"  acc {row.accuracy:.3f}"
    return (
        f"  {row.method:<8} steps {row.steps:>4}  NFE {row.nfe:>4}  "
        f"FD {row.fd_mean:.3f} +- {row.fd_std:.3f}  KID {row.kid_mean:.4f}{acc}"
    )


def format_image_table(rows: Sequence[ImageEvalRow], floor: ImageEvalRow | None = None) -> str:
    """A plain-text table of the rows, with FD as a ratio to the floor's."""
    head = f"{'method':<10} {'steps':>5} {'NFE':>5} {'guid':>5} {'FD mean':>9} {'FD std':>8} "
    head += f"{'xfloor':>7} {'KID mean':>9} {'KID std':>8} {'acc':>6}"
    lines = [head, "-" * len(head)]
    for r in ([floor] if floor is not None else []) + list(rows):
        ratio = r.fd_mean / floor.fd_mean if floor is not None and floor.fd_mean > 0 else math.nan
        name = "train/test" if r.method == "floor" else r.method
        steps = "-" if r.method == "floor" else str(r.steps)
        nfe = "-" if r.method == "floor" else str(r.nfe)
        guid = "-" if r.guidance is None else f"{r.guidance:g}"
        acc = "-" if math.isnan(r.accuracy) else f"{r.accuracy:.3f}"
        lines.append(
            f"{name:<10} {steps:>5} {nfe:>5} {guid:>5} {r.fd_mean:>9.3f} {r.fd_std:>8.3f} "
            f"{ratio:>7.2f} {r.kid_mean:>9.4f} {r.kid_std:>8.4f} {acc:>6}"
        )
    return "\n".join(lines)
