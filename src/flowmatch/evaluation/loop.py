"""The one evaluation loop: sample a model per sampler and step count, score with a metric.

Every figure is a mean and standard deviation over ``draws`` independent draws (one number
from one draw is not a result: W2 between two 5000-point draws of the same mixture swings by
30%). For each (method, steps) the loop re-seeds one generator, so every method and step
count meets the same noise, and the metric's references, and compares like with like. What is
measured is the metric's business (:class:`Metric`): W2/MMD against held-out points
(:class:`~flowmatch.evaluation.points.PointMetric`), or FD/KID/accuracy in a classifier's
features (:class:`~flowmatch.evaluation.images.DigitsMetric`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from flowmatch.flow import as_flow
from flowmatch.manifolds.model import ManifoldFlowModel
from flowmatch.sampling import generate

__all__ = ["Metric", "evaluate_model", "mean_std"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


class Metric(Protocol):
    """What the loop needs of a metric."""

    def begin(self, num: int, draws: int, generator: torch.Generator) -> Any:
        """Draw what every draw of one (method, steps) is compared with (before any noise)."""

    def score(self, samples: Tensor, state: Any, draw: int) -> dict[str, float]:
        """Score one draw of samples (CPU, float32, (n, *D)) against ``state``."""

    def row(
        self,
        method: str,
        steps: int,
        nfe: int,
        guidance: float | None,
        scores: list[dict[str, float]],
    ) -> Any:
        """The table row of a (method, steps) from its per-draw scores."""


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    metric: Metric,
    source: Callable[[int, torch.Generator], Tensor],
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    num: int,
    draws: int = 5,
    seed: int = 0,
    eta: float = 0.0,
    noise: float = 1.0,
    cond: Tensor | None = None,
    guidance: float | None = None,
    on_row: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Rows of a metric over samplers and step counts.

    Args:
        model: a :class:`~flowmatch.flow.FlowModel` (or net) to sample.
        metric: what to measure (:class:`Metric`).
        source: ``f(n, generator)`` drawing n source points x0 on the CPU.
        steps: numbers of sampler steps.
        methods: samplers of the registry; a two-time (MeanFlow) model is evaluated with its
            average-velocity jumps alone (rows labelled ``average``).
        num: samples per draw.
        draws: independent draws per figure.
        seed: seed of the draws (re-seeded for every method and step count).
        eta: DDIM's eta.
        noise: the SDE's noise scale.
        cond: the labels of the ``num`` samples (labelled models), or None.
        guidance: classifier-free guidance scale with ``cond``.
        on_row: called with each row as soon as it is computed (progress).

    Returns:
        One row per (method, steps), with the exact NFE.
    """
    flow = model if isinstance(model, ManifoldFlowModel) else as_flow(model)
    device = next(flow.parameters()).device
    labels = cond.to(device) if cond is not None else None
    guide = guidance if labels is not None else None
    rows = []
    # what runs: a two-time model's jumps stand for every method, one row per step count
    methods = list(dict.fromkeys(flow.sampler_name(m) for m in methods))
    for method in methods:
        for n_steps in steps:
            g = torch.Generator().manual_seed(seed)
            state = metric.begin(num, draws, g)
            scores, nfe = [], 0
            for d in range(draws):
                x0 = source(num, g).to(device)
                x, nfe = _generate_in_chunks(
                    flow,
                    x0,
                    labels,
                    steps=n_steps,
                    method=method,
                    eta=eta,
                    noise=noise,
                    guidance=guide,
                    generator=g,
                )
                scores.append(metric.score(x, state, d))
            row = metric.row(method, n_steps, nfe, guide, scores)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


CHUNK_VALUES = 2**16
"""The most values (samples x values per sample) the evaluation integrates in one call when a
set is larger than `WHOLE_VALUES`: 2,000 Fashion-MNIST images (784 values each) run as chunks
of 83, so that the network's activations stay under 200 MB (measured: +190 MB of resident
memory for the demo's U-Net with guidance, against +700 MB for chunks of 334)."""

WHOLE_VALUES = 2**17
"""Sets of at most this many values run in one call: points and the 8x8 digits (1,437 x 64
values), whose figures are thereby the same as when every set ran whole."""


def _generate_in_chunks(
    flow: Any, x0: Tensor, labels: Tensor | None, **kwargs: Any
) -> tuple[Tensor, int]:
    """Samples of ``x0`` (and its labels) in chunks (see `CHUNK_VALUES`), on the CPU, and the
    NFE (the largest of the chunks': an adaptive solver's may differ)."""
    per_sample = max(1, x0[0].numel())
    whole = x0.numel() <= WHOLE_VALUES
    chunk = x0.shape[0] if whole else max(1, CHUNK_VALUES // per_sample)
    xs, nfe = [], 0
    for start in range(0, x0.shape[0], chunk):
        part = slice(start, start + chunk)
        cond = labels[part] if labels is not None else None
        res = generate(flow, x0[part], cond=cond, **kwargs)
        xs.append(res.x.float().cpu())
        nfe = max(nfe, res.nfe)
    return torch.cat(xs), nfe
