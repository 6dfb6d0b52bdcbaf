"""The commands on a text (discrete) run: ``flowmatch sample``, ``eval`` and ``likelihood``.

Samples are written one per line; ``--prefix`` fixes the first characters of every sample
and ``--infill`` a template whose blank characters are generated (the others are kept), with
the model's vocabulary. Likelihoods are the ELBO of each line of a text file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowmatch.app.guards import check_finite
from flowmatch.atomic import atomic_path
from flowmatch.discrete.elbo import nats_per_token
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.sampler import sample
from flowmatch.errors import DataError, SamplerError

__all__ = ["TextOptions", "likelihood_text", "sample_text", "template"]

TEXT_SUFFIXES = (".txt",)


@dataclass(frozen=True)
class TextOptions:
    """Sampling options of text runs (None: the run's ``sample`` section).

    Attributes:
        prefix: every sample starts with these characters.
        infill: a template of the sample, ``blank`` marking the characters to generate.
        blank: the blank character of ``infill``.
        temperature: divides the posterior's logits.
        corrector: the corrector's strength (mask source).
    """

    prefix: str | None = None
    infill: str | None = None
    blank: str = "_"
    temperature: float | None = None
    corrector: float | None = None

    @property
    def given(self) -> bool:
        """Whether any text-only option was given."""
        return any(
            v is not None for v in (self.prefix, self.infill, self.temperature, self.corrector)
        )


def template(
    model: DiscreteFlowModel, options: TextOptions, num: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(x0, fixed)`` for infilling from ``--prefix`` / ``--infill`` (None without them).

    Raises:
        SamplerError: both options, a template too long for the model, or a character not
            in its vocabulary (naming the flag).
    """
    if options.prefix is not None and options.infill is not None:
        raise SamplerError("--prefix and --infill: give one of them", option="prefix")
    if options.prefix is None and options.infill is None:
        return None
    vocab = model.vocab
    if vocab is None:
        raise SamplerError("--prefix/--infill: this model has no vocabulary", option="prefix")
    flag = "--prefix" if options.prefix is not None else "--infill"
    text = options.prefix if options.prefix is not None else options.infill
    assert text is not None
    if len(text) > model.length:
        raise SamplerError(
            f"{flag}: {len(text)} characters, the model makes {model.length}", option="prefix"
        )
    ids, fixed = [], []
    for i, ch in enumerate(text):
        if options.infill is not None and ch == options.blank:
            ids.append(0)
            fixed.append(False)
            continue
        try:
            ids.append(vocab.encode(ch)[0])
        except DataError:
            raise SamplerError(
                f"{flag}: character {ch!r} at position {i + 1} is not in the model's vocabulary",
                option="prefix",
            ) from None
        fixed.append(True)
    rest = model.length - len(ids)
    if options.infill is not None and rest:
        ids += [vocab.pad_id] * rest  # a template is the whole item: it ends where it ends
        fixed += [True] * rest
    else:
        ids += [0] * rest
        fixed += [False] * rest
    x0 = torch.tensor(ids).expand(num, -1).clone()
    return x0, torch.tensor(fixed).expand(num, -1).clone()


def sample_text(
    model: DiscreteFlowModel,
    out: Path,
    *,
    num: int,
    steps: int,
    seed: int,
    options: TextOptions,
    defaults: Any,
    cond: int | None = None,
    guidance: float | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Sample a text model and write one sample per line (``.txt``), atomically."""
    if out.suffix not in TEXT_SUFFIXES:
        raise DataError(f"{out}: a text model's samples are written to a .txt file")
    temperature = options.temperature if options.temperature is not None else defaults.temperature
    corrector = options.corrector if options.corrector is not None else defaults.corrector
    start = template(model, options, num)
    labels = None
    if cond is not None:
        k = model.num_classes
        if k is None or not 0 <= cond < k:
            raise SamplerError(f"--cond: this model takes no class {cond}", option="cond")
        labels = torch.full((num,), cond, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    x = sample(
        model,
        num if start is None else None,
        steps=steps,
        x0=None if start is None else start[0],
        fixed=None if start is None else start[1],
        cond=labels,
        guidance=guidance if labels is not None else None,
        temperature=temperature,
        corrector=corrector,
        generator=g,
    )
    texts = model.vocab.decode_batch(x) if model.vocab is not None else [str(r.tolist()) for r in x]
    with atomic_path(out) as tmp:
        Path(tmp).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    echo(f"wrote {num} samples (NFE {steps}, temperature {temperature:g}) to {out}")
    return out


def likelihood_text(
    model: DiscreteFlowModel,
    data_file: Path,
    *,
    steps: int | None = None,
    draws: int = 4,
    batch_size: int = 500,
    seed: int = 0,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, float]:
    """The ELBO (a bound on -log p) of each non-empty line of a UTF-8 text file.

    Returns ``{"nats_per_token", "std_err", "nats_per_item"}``; with ``out`` (.csv), a row
    per line: its text, nats, tokens and nats per token.

    Raises:
        DataError: an unreadable file, a line too long for the model or with a character
            outside its vocabulary (naming the line).
    """
    from flowmatch.evaluation.text import item_nats, tokens_per_item

    vocab = model.vocab
    if vocab is None:
        raise DataError(f"{data_file}: this model has no vocabulary to read text with")
    try:
        lines = data_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{data_file}: cannot read UTF-8 text ({err})") from None
    items = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if len(items) < 2:
        raise DataError(f"{data_file}: expected at least 2 non-empty lines, got {len(items)}")
    rows = []
    for number, line in items:
        if len(line) >= model.length:
            raise DataError(
                f"{data_file}: line {number}: {len(line)} characters, the model takes at most "
                f"{model.length - 1} (and an end token)"
            )
        try:
            ids = vocab.encode(line)
        except DataError as err:
            raise DataError(f"{data_file}: line {number}: {err}") from None
        rows.append(ids + [vocab.pad_id] * (model.length - len(ids)))
    tokens = torch.tensor(rows)
    nats = item_nats(model, tokens, steps=steps, draws=draws, seed=seed, batch_size=batch_size)
    check_finite(nats, what="likelihood", items="lines")  # an ELBO of NaN is never reported
    counts = tokens_per_item(tokens, vocab.pad_id)
    per_token, se = nats_per_token(nats, counts)
    kind = "continuous-time" if steps is None else f"{steps}-step"
    echo(
        f"{data_file}: {len(rows)} lines, {kind} ELBO {per_token:.4f} ± {se:.4f} nats/token "
        f"({per_token / math.log(2):.4f} bits), {float(nats.mean()):.3f} nats per line"
    )
    if out is not None:
        if out.suffix != ".csv":
            raise DataError(f"{out}: per-line ELBOs are written to a .csv file")
        with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "nats", "tokens", "nats_per_token"])
            for (_, line), n, c in zip(items, nats.tolist(), counts.tolist(), strict=True):
                writer.writerow([line, f"{n:.6g}", c, f"{n / c:.6g}"])
    return {"nats_per_token": per_token, "std_err": se, "nats_per_item": float(nats.mean())}
