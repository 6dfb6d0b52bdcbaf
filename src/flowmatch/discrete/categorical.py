"""Categorical draws in float64.

Drawing tokens from float32 probabilities biases rare tokens: Gumbel-max or inverse-CDF
sampling in float32 loses the tail of a large vocabulary, which Meta's ``flow_matching``
traced as the cause of poor generative perplexity in its text example (their issue #27).
Every draw in :mod:`flowmatch.discrete` goes through :func:`categorical`, in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["categorical"]


def categorical(probs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Draw one index per row of ``probs`` by inverse CDF in float64.

    Args:
        probs: probabilities (..., K), >= 0, each row summing to about 1 (rows are
            renormalized in float64).
        generator: the random stream.

    Returns:
        Long indices of shape ``probs.shape[:-1]``.

    Raises:
        ValueError: a row with a NaN, a negative entry or no mass.
    """
    p = probs.to(torch.float64)
    cdf = p.cumsum(-1)
    total = cdf[..., -1:]
    if not bool(torch.isfinite(total).all()) or bool((total <= 0).any()) or bool((p < 0).any()):
        raise ValueError("probs: every row must hold finite probabilities >= 0 with a positive sum")
    u = torch.rand((*p.shape[:-1], 1), generator=generator, dtype=torch.float64, device=p.device)
    idx = torch.searchsorted(cdf, u * total, right=True).squeeze(-1)
    # Never return an index of zero probability: u * total can equal the total only when u
    # is 1 - 2^-53 and rounding is unlucky; clamp into range, then step back over zeros.
    idx = idx.clamp(max=p.shape[-1] - 1)
    picked = p.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    if bool((picked <= 0).any()):
        last_positive = (p > 0).to(torch.long).cumsum(-1).argmax(-1)
        idx = torch.where(picked > 0, idx, last_positive)
    return idx
