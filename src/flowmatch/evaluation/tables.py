"""Evaluation of a table with categorical columns (a :class:`~flowmatch.discrete.MixedFlowModel`).

At each NFE, ``draws`` sets of samples are compared with the held-out rows: W2 between the
continuous columns (standardized with the run's statistics) and the total variation between
each categorical column's category frequencies, averaged over those columns; the mean and
spread over draws are reported next to the floor, the same figures between training rows and
the held-out rows (what a perfect model's samples would score at this number of rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from flowmatch.atomic import atomic_path
from flowmatch.discrete.mixed_model import MixedFlowModel
from flowmatch.discrete.mixed_sampling import sample_mixed
from flowmatch.evaluation import seeds
from flowmatch.metrics.transport import w2

__all__ = ["MixedEvalRow", "mixed_report", "table_distances"]


def table_distances(
    a: Tensor, b: Tensor, num_continuous: int, vocab_sizes: Sequence[int]
) -> tuple[float, float]:
    """(W2 of the continuous columns, mean total variation of the categorical columns)
    between two sets of rows (N, Dc + Dk) in model units (codes as floats)."""
    dc = num_continuous
    dist = w2(a[:, :dc], b[:, :dc]) if dc else math.nan
    tvs = []
    for j, v in enumerate(vocab_sizes):
        pa = torch.bincount(a[:, dc + j].round().long(), minlength=v).double() / a.shape[0]
        pb = torch.bincount(b[:, dc + j].round().long(), minlength=v).double() / b.shape[0]
        tvs.append(0.5 * float((pa - pb).abs().sum()))
    return dist, (sum(tvs) / len(tvs) if tvs else math.nan)


def _spread(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), (float(t.std(unbiased=True)) if t.numel() > 1 else math.nan)


@dataclass
class MixedEvalRow:
    """Sample quality at one NFE: (mean, sd over draws) of W2 and of the mean TV."""

    nfe: int
    draws: int
    w2: tuple[float, float]
    tv: tuple[float, float]

    csv_header: ClassVar[list[str]] = ["step", "nfe", "draws", "w2", "w2_sd", "tv", "tv_sd"]

    def csv_values(self) -> list[str]:
        """The row's values after ``step`` in ``eval.csv``."""
        return [str(self.nfe), str(self.draws)] + [f"{v:.6g}" for v in (*self.w2, *self.tv)]

    def format(self) -> str:
        """One line of ``eval.txt``."""
        w, v = self.w2, self.tv
        return f"{self.nfe:5d}  {w[0]:.4f} ± {w[1]:.4f}  {v[0]:.4f} ± {v[1]:.4f}"


def _model_units(model: MixedFlowModel, x: Tensor) -> Tensor:
    """Samples (data units) back in model units: the continuous part standardized."""
    if model.standardizer is None:
        return x
    cont = model.standardizer.transform(x[:, : model.num_continuous]).float()
    return torch.cat([cont, x[:, model.num_continuous :]], dim=1)


def mixed_report(
    model: MixedFlowModel,
    data: Any,
    directory: str | Path,
    *,
    seed: int,
    steps: Sequence[int],
    num: int,
    draws: int,
    sample_steps: int,
    echo: Callable[[str], None] = print,
) -> tuple[list[MixedEvalRow], tuple[float, float]]:
    """The final evaluation of a mixed-table run: ``eval.txt`` and ``samples.csv``.

    Args:
        model: the run's (EMA) model.
        data: the run's :class:`~flowmatch.train.data.RunData` (its ``mixed`` table).
        directory: the run directory.
        seed: the run's seed (its ``eval`` stream).
        steps: the NFEs; num: rows per draw (at most the held-out rows); draws: per NFE.
        sample_steps: the NFE of ``samples.csv`` (``num`` rows, in the data's units and
            category strings).
        echo: where the table goes.

    Returns:
        The rows and the floor (W2, TV).
    """
    from flowmatch.data.mixed import save_mixed_table

    directory = Path(directory)
    ref = data.holdout
    n = min(num, ref.shape[0])
    dc, vocab = model.num_continuous, model.vocab_sizes
    g = seeds.generator(seed, "eval")
    pick = torch.randperm(data.train.shape[0], generator=g)[:n]
    floor = table_distances(data.train[pick], ref[:n], dc, vocab)
    header = "  NFE  W2 (continuous, standardized)  TV (categories, mean over columns)"
    lines = [
        f"{data.name}: {dc} continuous and {len(vocab)} categorical columns; {n} samples per "
        f"draw against {n} held-out rows, {draws} draws per NFE (mean ± sd)",
        f"floor (training rows vs held-out rows): W2 {floor[0]:.4f}, TV {floor[1]:.4f}",
        header,
    ]
    echo("\n".join(lines))
    rows = []
    for k in steps:
        scores = [
            table_distances(
                _model_units(model, sample_mixed(model, n, steps=k, generator=g)),
                ref[:n],
                dc,
                vocab,
            )
            for _ in range(draws)
        ]
        row = MixedEvalRow(
            k, draws, _spread([s[0] for s in scores]), _spread([s[1] for s in scores])
        )
        echo(row.format())
        rows.append(row)
        lines.append(row.format())
    with atomic_path(directory / "eval.txt") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    x = sample_mixed(model, num, steps=sample_steps, generator=seeds.generator(seed, "plots"))
    layout = model.layout
    save_mixed_table(directory / "samples.csv", x[:, :dc], x[:, dc:], **layout)
    return rows, floor
