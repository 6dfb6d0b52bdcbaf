"""Evaluation of a discrete (text) model: the ELBO on held-out items and sample quality vs NFE.

For each number of sampler steps (NFE) the model draws ``num`` items ``draws`` times and
each draw is scored by: the share of samples that are real items (found in the training or
held-out list), the share found in the held-out list, novelty (not in the training list),
uniqueness and, for molecules, RDKit validity; the mean and spread over draws are reported.
Alongside, the bound on -log p in nats per token: the continuous-time ELBO on held-out items,
and at each NFE the bound of that very sampler (:func:`~flowmatch.discrete.elbo`). Tokens
are counted as characters + 1 end token (the whole chunk for chunks of prose), the rule an
autoregressive model is scored by too.
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
from flowmatch.discrete.baselines import tokens_per_sequence
from flowmatch.discrete.elbo import elbo, nats_per_token
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.sampler import sample
from flowmatch.evaluation import seeds

__all__ = [
    "TextEvalRow",
    "evaluate_text",
    "heldout_elbo",
    "is_molecules",
    "item_nats",
    "text_report",
    "tokens_per_item",
    "write_samples",
]


def tokens_per_item(tokens: Tensor, pad_id: int | None) -> Tensor:
    """Tokens scored per item (N,): the characters up to and including the first pad (the
    end token), or the whole row when it has no pad (or the vocabulary none)."""
    if pad_id is None:
        return torch.full((tokens.shape[0],), tokens.shape[1], dtype=torch.long)
    return tokens_per_sequence(tokens, pad_id)


def is_molecules(name: str) -> bool:
    """Whether a data set's items are SMILES (scored for RDKit validity too)."""
    return "smiles" in name.lower() or name.lower().endswith("smi")


def _spread(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    sd = float(t.std(unbiased=True)) if t.numel() > 1 else float("nan")
    return float(t.mean()), sd


@dataclass
class TextEvalRow:
    """Sample quality at one NFE: (mean, sd over draws) of each share, and the K-step bound
    (nats per token, standard error)."""

    nfe: int
    draws: int
    real: tuple[float, float]
    heldout: tuple[float, float]
    novel: tuple[float, float]
    unique: tuple[float, float]
    valid: tuple[float, float] | None
    bound: tuple[float, float]

    csv_header: ClassVar[list[str]] = [
        "step",
        "nfe",
        "draws",
        "real",
        "real_sd",
        "heldout",
        "heldout_sd",
        "novel",
        "novel_sd",
        "unique",
        "unique_sd",
        "valid",
        "valid_sd",
        "bound_nats",
        "bound_se",
    ]

    def csv_values(self) -> list[str]:
        """The row's values after ``step`` in ``eval.csv``."""
        pairs = [self.real, self.heldout, self.novel, self.unique]
        pairs.append(self.valid if self.valid is not None else (math.nan, math.nan))
        pairs.append(self.bound)
        return [str(self.nfe), str(self.draws)] + [f"{v:.6g}" for p in pairs for v in p]

    def format(self) -> str:
        """One line of ``eval.txt``."""

        def pct(p: tuple[float, float]) -> str:
            sd = "" if math.isnan(p[1]) else f" ± {100 * p[1]:.1f}"
            return f"{100 * p[0]:5.1f}{sd:7s}"

        valid = pct(self.valid) if self.valid is not None else "      -      "
        return (
            f"{self.nfe:5d}  {pct(self.real)}  {pct(self.heldout)}  {pct(self.novel)}  "
            f"{pct(self.unique)}  {valid}  {self.bound[0]:.4f} ± {self.bound[1]:.4f}"
        )


HEADER = (
    "  NFE  real %         held-out %     novel %        unique %       valid %        "
    "bound nats/token"
)


def heldout_elbo(
    model: DiscreteFlowModel,
    items: Tensor,
    *,
    steps: int | None = None,
    draws: int = 1,
    seed: int = 0,
    batch_size: int = 500,
) -> tuple[float, float]:
    """The bound on -log p in nats per token over ``items`` (N, L) and its standard error
    (the continuous-time bound when ``steps`` is None, else the ``steps``-step sampler's)."""
    nats = item_nats(model, items, steps=steps, draws=draws, seed=seed, batch_size=batch_size)
    pad = model.vocab.pad_id if model.vocab is not None else None
    return nats_per_token(nats, tokens_per_item(items, pad))


def item_nats(
    model: DiscreteFlowModel,
    items: Tensor,
    *,
    steps: int | None = None,
    draws: int = 1,
    seed: int = 0,
    batch_size: int = 500,
) -> Tensor:
    """The bound on -log p of each item (N, L), in nats: (N,), in batches, seeded."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    return torch.cat(
        [
            elbo(model, chunk.to(device), steps=steps, draws=draws, generator=g).cpu()
            for chunk in items.split(batch_size)
        ]
    )


def _decode(model: DiscreteFlowModel, x: Tensor) -> list[str]:
    if model.vocab is None:
        return [" ".join(str(int(v)) for v in row) for row in x]
    return model.vocab.decode_batch(x.cpu())


def evaluate_text(
    model: DiscreteFlowModel,
    train_texts: Sequence[str],
    test_texts: Sequence[str],
    test_items: Tensor,
    *,
    steps: Sequence[int],
    num: int,
    draws: int,
    seed: int,
    molecules: bool = False,
    temperature: float = 1.0,
    corrector: float = 0.0,
    bound_items: int = 1000,
    on_row: Callable[[TextEvalRow], None] | None = None,
) -> list[TextEvalRow]:
    """Score ``draws`` sets of ``num`` samples at each NFE of ``steps`` (see the module
    docstring); the K-step bound on the first ``bound_items`` held-out items."""
    train_set, test_set = set(train_texts), set(test_texts)
    g = seeds.generator(seed, "eval")
    rows = []
    for k in steps:
        shares: dict[str, list[float]] = {"real": [], "held": [], "novel": [], "uniq": []}
        valid: list[float] = []
        for _ in range(draws):
            texts = _decode(
                model,
                sample(
                    model, num, steps=k, temperature=temperature, corrector=corrector, generator=g
                ),
            )
            shares["real"].append(sum(t in train_set or t in test_set for t in texts) / num)
            shares["held"].append(sum(t in test_set for t in texts) / num)
            shares["novel"].append(sum(t not in train_set for t in texts) / num)
            shares["uniq"].append(len(set(texts)) / num)
            if molecules:
                from flowmatch.metrics.text import smiles_validity

                valid.append(smiles_validity(texts))
        bound = heldout_elbo(
            model, test_items[:bound_items], steps=k, seed=seeds.stream_seed(seed, "eval")
        )
        row = TextEvalRow(
            nfe=k,
            draws=draws,
            real=_spread(shares["real"]),
            heldout=_spread(shares["held"]),
            novel=_spread(shares["novel"]),
            unique=_spread(shares["uniq"]),
            valid=_spread(valid) if molecules else None,
            bound=bound,
        )
        if on_row is not None:
            on_row(row)
        rows.append(row)
    return rows


def write_samples(texts: Sequence[str], path: str | Path) -> Path:
    """Write one sample per line, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return Path(path)


def text_report(
    model: DiscreteFlowModel,
    data: Any,
    directory: str | Path,
    *,
    seed: int,
    steps: Sequence[int],
    num: int,
    draws: int,
    temperature: float = 1.0,
    corrector: float = 0.0,
    echo: Callable[[str], None] = print,
) -> tuple[list[TextEvalRow], tuple[float, float]]:
    """The final evaluation of a text run: rows, the held-out ELBO, ``eval.txt`` and
    ``quality_vs_nfe.png``.

    Args:
        model: the run's (EMA) model.
        data: the run's :class:`~flowmatch.data.text.TextData`.
        directory: the run directory.
        seed: the run's seed (its ``eval`` stream draws everything).
        steps: the NFEs to score; num, draws: samples per draw and draws per NFE.
        temperature: the sampler's temperature.
        corrector: the sampler's corrector strength.
        echo: where the table goes.
    """
    from flowmatch import viz

    directory = Path(directory)
    test = data.test[:2000]
    cont = heldout_elbo(model, test, draws=4, seed=seeds.stream_seed(seed, "eval"))
    echo(f"held-out ELBO (continuous time): {cont[0]:.4f} ± {cont[1]:.4f} nats/token")
    echo(HEADER)
    rows = evaluate_text(
        model,
        data.train_texts,
        data.test_texts,
        test,
        steps=steps,
        num=num,
        draws=draws,
        seed=seed,
        molecules=is_molecules(data.name),
        temperature=temperature,
        corrector=corrector,
        on_row=lambda r: echo(r.format()),
    )
    lines = [
        f"{data.name}: {data.train.shape[0]} training and {data.test.shape[0]} held-out items "
        f"of {data.length} tokens, vocabulary {data.vocab.size}",
        f"samples: {num} per draw, {draws} draws per NFE (mean ± sd over draws); "
        f"temperature {temperature}, corrector {corrector}",
        f"held-out ELBO (continuous time, {test.shape[0]} items): {cont[0]:.4f} ± "
        f"{cont[1]:.4f} nats/token",
        "bound: the held-out bound of the sampler at that NFE (nats/token ± standard error)",
        HEADER,
        *(r.format() for r in rows),
    ]
    with atomic_path(directory / "eval.txt") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    table = {
        "real": [(r.nfe, 100 * r.real[0], 100 * _nan0(r.real[1])) for r in rows],
        "novel": [(r.nfe, 100 * r.novel[0], 100 * _nan0(r.novel[1])) for r in rows],
    }
    if rows and rows[0].valid is not None:
        table["valid"] = [(r.nfe, 100 * r.valid[0], 100 * _nan0(r.valid[1])) for r in rows]  # type: ignore[index]
    viz.quality_vs_nfe(
        table,
        directory / "quality_vs_nfe.png",
        metric="% of samples",
        title=f"{data.name}: samples vs NFE",
    )
    return rows, cont


def _nan0(value: float) -> float:
    return 0.0 if math.isnan(value) else value
