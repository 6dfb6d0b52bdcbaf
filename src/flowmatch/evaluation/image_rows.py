"""The rows of an image evaluation (FD, KID, class accuracy) and their text formats."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["CSV_HEADER", "ImageEvalRow", "format_image_row", "format_image_table"]

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
