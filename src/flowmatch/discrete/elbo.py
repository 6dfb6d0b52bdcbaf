"""The evidence lower bound of a discrete flow: an upper bound on -log p(x) in nats.

**Discrete time** (``steps=K``): the model as a generative model is the K-step sampler of
:func:`~flowmatch.discrete.sample` (no corrector, temperature 1): per step each token still
at its source value jumps with probability q_k = (kappa_{k+1} - kappa_k) / (1 - kappa_k) to a
draw from the model's posterior. Given x1, the same chain with the data token in place of the
draw is the exact reverse of the mixture path. The bound is the sum over steps of the KL
divergences between the two chains' transitions, per position: with z = x_t^i and
p = p_theta(. | x_t),

    z != x1^i:  q (-log p(x1^i)) + (1 - q) log((1 - q) / (1 - q + q p(z)))
    z == x1^i:  -log(1 - q + q p(x1^i))

in expectation over x_{t_k} ~ p_{t_k}(. | x1) (one draw per step). It bounds -log of the
probability that the K-step sampler makes x1 (so for one sequence it can be below the data's
own -log p(x1), where the sampler over-produces x1). Averaged over the data it is >= the
entropy; for the exact posterior with the mask source, that average decreases with K to the
continuous-time bound, which is then -log p(x1) itself (tokens unmask one at a time). With
the uniform source the bound is valid but not tight, and need not fall with K.

**Continuous time** (``steps=None``): the K -> infinity limit, the time integral of
:func:`~flowmatch.discrete.loss.generalized_kl`. With the mask source its weight
kappa'/(1 - kappa) makes the plain estimator over uniform t of infinite variance (few masked
tokens, weighted by 1/(1 - t)), so it is estimated as the any-order autoregressive sum it
equals: draw a number m of masked tokens uniformly in 1..L, a time with kappa_t ~
Beta(L - m + 1, m) (the law of kappa given m masked) and m positions to mask; the estimate
is (L / m) times their cross-entropies (unbiased, finite variance). Other sources use uniform
times (their estimate is noisier near t = 1; prefer the discrete-time bound there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowmatch.discrete.loss import generalized_kl
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.path import jump_probability

__all__ = ["elbo", "nats_per_token"]


def _step_kl(logp: Tensor, x1: Tensor, x_t: Tensor, q: Tensor) -> Tensor:
    """Per-position KL of one step (B, L), q (B,) in [0, 1]."""
    vocab = logp.shape[-1]
    q = q.to(torch.float64).unsqueeze(-1)
    p_x1 = logp.gather(-1, x1.unsqueeze(-1)).squeeze(-1).exp()
    in_vocab = x_t < vocab
    p_z = logp.gather(-1, x_t.clamp(max=vocab - 1).unsqueeze(-1)).squeeze(-1).exp()
    p_z = torch.where(in_vocab, p_z, torch.zeros_like(p_z))
    tiny = torch.finfo(torch.float64).tiny
    jump = q * -(p_x1.clamp_min(tiny)).log()
    stay_ratio = (1.0 - q) / (1.0 - q + q * p_z).clamp_min(tiny)
    stay = torch.where(
        q < 1.0, (1.0 - q) * stay_ratio.clamp_min(tiny).log(), torch.zeros_like(q * p_z)
    )
    differ = jump + stay
    same = -(1.0 - q + q * p_x1).clamp_min(tiny).log()
    return torch.where(x_t == x1, same, differ)


def _masked_sum(
    model: DiscreteFlowModel, x1: Tensor, cond: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """One draw of the any-order estimate of the continuous-time bound (mask source): (B,)."""
    batch, length = x1.shape
    dev = x1.device
    m = torch.randint(1, length + 1, (batch,), generator=generator, device=dev)
    mf = m.to(torch.float64)
    # kappa | m ~ Beta(L - m + 1, m), drawn as a ratio of Gamma variates from our generator
    # (torch's Beta takes no generator): via sorted uniforms, the (L - m + 1)-th of L.
    u = torch.rand(batch, length, generator=generator, dtype=torch.float64, device=dev)
    kappa = u.sort(-1).values.gather(-1, (length - m).unsqueeze(-1)).squeeze(-1)
    t = model.path.time_of(kappa).to(torch.float32)
    scores = torch.rand(batch, length, generator=generator, device=dev)
    rank = scores.argsort(-1).argsort(-1)
    masked = rank < m.unsqueeze(-1)  # m positions chosen uniformly at random
    x_t = torch.where(masked, torch.full_like(x1, model.path.vocab_size), x1)
    logp = model.log_posterior(x_t, t, cond)
    nll = -logp.gather(-1, x1.unsqueeze(-1)).squeeze(-1)
    nll = torch.where(masked, nll, torch.zeros_like(nll))
    return nll.sum(-1) * (length / mf)


@torch.no_grad()
def elbo(
    model: DiscreteFlowModel,
    x1: Tensor,
    *,
    steps: int | None = None,
    cond: Tensor | None = None,
    draws: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The bound on -log p(x1) in nats, per sequence: (B,), float64.

    Args:
        model: the :class:`~flowmatch.discrete.DiscreteFlowModel`.
        x1: data tokens (B, L).
        steps: K for the bound of the K-step sampler (K model evaluations per draw); None
            for the continuous-time bound.
        cond: labels (B,) of a labelled model.
        draws: Monte Carlo draws averaged (of x_t per step, or of t).
        generator: the random stream of the draws.
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be None or an integer >= 1, got {steps!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    if x1.ndim != 2 or x1.shape[1] != model.length or x1.dtype.is_floating_point:
        raise ValueError(
            f"x1 must be token ids of shape (B, {model.length}), got {x1.dtype} {tuple(x1.shape)}"
        )
    if x1.numel() and (int(x1.min()) < 0 or int(x1.max()) >= model.path.vocab_size):
        raise ValueError(f"x1 holds token ids outside [0, {model.path.vocab_size})")
    path, batch = model.path, x1.shape[0]
    total = torch.zeros(batch, dtype=torch.float64, device=x1.device)
    for _ in range(draws):
        if steps is None and path.mask_id is not None:
            total += _masked_sum(model, x1, cond, generator)
            continue
        if steps is None:
            t = torch.rand(batch, generator=generator, device=x1.device)
            x_t = path.sample(x1, t, generator=generator)
            kappa, d_kappa = path.kappa(t.to(torch.float64))
            rate = d_kappa / (1.0 - kappa).clamp_min(1e-12)
            total += generalized_kl(model.log_posterior(x_t, t, cond), x1, x_t, rate).sum(-1)
            continue
        h = 1.0 / steps
        for k in range(steps):
            t64 = torch.full((batch,), k / steps, dtype=torch.float64, device=x1.device)
            t = t64.to(torch.float32)
            x_t = path.sample(x1, t64, generator=generator)
            q = jump_probability(path, t64, h)
            total += _step_kl(model.log_posterior(x_t, t, cond), x1, x_t, q).sum(-1)
    return total / draws


def nats_per_token(nats: Tensor, tokens: Tensor) -> tuple[float, float]:
    """Nats per token over a data set, and its standard error.

    The ratio of sums ``sum(nats) / sum(tokens)`` (each sequence counts by its length), with
    the delta-method standard error ``sd(nats_i - r tokens_i) / (sqrt(N) mean(tokens))`` over
    the N sequences (Monte Carlo noise of the bound included).

    Args:
        nats: per-sequence nats (N,), e.g. from :func:`elbo`.
        tokens: tokens counted per sequence (N,), e.g. characters + 1 end token.
    """
    nats, tokens = nats.to(torch.float64), tokens.to(torch.float64)
    if nats.shape != tokens.shape or nats.ndim != 1 or nats.numel() < 2:
        raise ValueError("nats and tokens must be (N,) with N >= 2")
    ratio = float(nats.sum() / tokens.sum())
    resid = nats - ratio * tokens
    se = float(resid.std(unbiased=True) / (math.sqrt(nats.numel()) * tokens.mean()))
    return ratio, se
