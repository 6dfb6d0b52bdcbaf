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
from pathlib import Path

import torch
from torch import Tensor, nn

from flowmatch.sampling import generate
from flowmatch.train.evaluate import _mean_std

__all__ = [
    "ImageEvalRow",
    "digits_report",
    "evaluate_images",
    "format_image_row",
    "format_image_table",
    "image_floor",
    "write_image_report",
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


def image_floor(train: Tensor, test: Tensor, train_labels: Tensor | None = None) -> ImageEvalRow:
    """The floor: the training split scored against the test split (one deterministic draw)."""
    from flowmatch.metrics.digits import digits_quality

    q = digits_quality(train, test, labels=train_labels)
    return ImageEvalRow(
        "floor", 0, 0, None, q["fd"], 0.0, q["kid"], q["kid_std"], q.get("accuracy", math.nan)
    )


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

    Args:
        model: a trained image model (UNet), conditional when ``labels`` is given.
        test: the held-out digits, (M, 1, 8, 8).
        labels: the class of each generated image, (num,) (e.g. the training labels), or
            None for unconditional samples.
        num: images per generated set.
        steps, methods: the sampler grid (see :func:`flowmatch.sampling.generate`).
        draws: independent draws of the noise per figure.
        seed: seed of the draws (the same noise for every sampler).
        guidance: classifier-free guidance scale with ``labels``; None: conditional model.
        eta, noise: of ddim and sde.
        on_row: called with each row as soon as it is computed.

    Returns:
        One row per (method, steps).
    """
    from flowmatch.metrics.digits import digits_quality

    device = next(model.parameters()).device
    shape = tuple(test.shape[1:])
    cond = labels.to(device) if labels is not None else None
    rows = []
    for method in methods:
        for n_steps in steps:
            g = torch.Generator().manual_seed(seed)
            fds, kids, accs, nfe = [], [], [], 0
            for _ in range(draws):
                x0 = torch.randn(num, *shape, generator=g).to(device)
                res = generate(
                    model,
                    x0,
                    steps=n_steps,
                    method=method,
                    cond=cond,
                    guidance=guidance if cond is not None else None,
                    eta=eta,
                    noise=noise,
                    generator=g,
                )
                nfe = res.nfe
                q = digits_quality(res.x.float().cpu(), test, labels=labels)
                fds.append(q["fd"])
                kids.append(q["kid"])
                accs.append(q.get("accuracy", math.nan))
            row = ImageEvalRow(
                method,
                n_steps,
                nfe,
                guidance,
                *_mean_std(fds),
                *_mean_std(kids),
                sum(accs) / len(accs),
            )
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


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


def write_image_report(
    directory: str | Path, rows: Sequence[ImageEvalRow], floor: ImageEvalRow, *, title: str
) -> str:
    """Write ``eval.txt`` (the table) and ``quality_vs_nfe.png`` (FD vs NFE) into a run dir.

    Returns:
        The table text.
    """
    from flowmatch import viz
    from flowmatch.atomic import atomic_path

    directory = Path(directory)
    table = format_image_table(rows, floor)
    with atomic_path(directory / "eval.txt") as tmp:
        tmp.write_text(table + "\n")
    by_method: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        by_method.setdefault(r.method, []).append((r.nfe, r.fd_mean, r.fd_std))
    viz.quality_vs_nfe(
        by_method,
        directory / "quality_vs_nfe.png",
        metric="FD (digits classifier features)",
        floor=(floor.fd_mean, 0.0),
        title=title,
    )
    return table


def digits_report(
    model: nn.Module,
    directory: str | Path,
    *,
    train: Tensor,
    train_labels: Tensor | None,
    test: Tensor,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int,
    seed: int,
    guidance: float | None = None,
    eta: float = 0.0,
    noise: float = 1.0,
    echo: Callable[[str], None] = print,
) -> tuple[list[ImageEvalRow], ImageEvalRow]:
    """The final evaluation of a digits run: every row, the floor, ``eval.txt`` and the plot.

    Generated sets have the size and labels of the training split (see the module docstring);
    each row is echoed as it is computed and the table once written.

    Returns:
        The rows and the floor.
    """
    rows = evaluate_images(
        model,
        test,
        train_labels,
        num=train.shape[0],
        steps=steps,
        methods=methods,
        draws=draws,
        seed=seed,
        guidance=guidance,
        eta=eta,
        noise=noise,
        on_row=lambda r: echo(format_image_row(r)),
    )
    floor = image_floor(train, test, train_labels)
    title = f"digits: FD vs NFE (guidance {guidance if guidance is not None else 'none'})"
    echo(write_image_report(directory, rows, floor, title=title))
    return rows, floor
