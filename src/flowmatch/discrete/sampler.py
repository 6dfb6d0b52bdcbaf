"""Sampling a discrete flow: Euler steps of its continuous-time Markov chain.

From t = 0 (source tokens) to t = 1 (data) on a uniform grid of ``steps`` steps, one model
evaluation per step (exact NFE; guidance batches both branches into one forward). In a step
from t to t + h a token still at its source value takes a new value, drawn from the model's
posterior p(x1^i | x_t), with probability (kappa_{t+h} - kappa_t) / (1 - kappa_t): the
mixture path's own jump probability over the step, which is 1 at the last step, so the last
step draws every remaining token from the posterior. All draws are float64
(:func:`~flowmatch.discrete.categorical.categorical`).

The optional corrector (mask source) adds the divergence-free term of Gat et al. 2024
(eq. 26): masked tokens unmask at (1 + a) times the forward rate and unmasked ones are
masked again at a times the backward rate kappa'/kappa, which leaves the marginals of the
exact model unchanged and lets early mistakes be revised. Those steps use Euler
probabilities h * rate (capped at 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowmatch.discrete.categorical import categorical
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.path import jump_probability
from flowmatch.errors import SamplerError

__all__ = ["sample"]


def _check(model: DiscreteFlowModel, steps: int, temperature: float, corrector: float) -> None:
    if not isinstance(model, DiscreteFlowModel):
        raise SamplerError(
            f"expected a DiscreteFlowModel, got {type(model).__name__}", option="model"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SamplerError(f"steps must be an integer >= 1, got {steps!r}", option="steps")
    if not (isinstance(temperature, (int, float)) and 0 < temperature < float("inf")):
        raise SamplerError(
            f"temperature must be a finite number > 0, got {temperature!r}", option="temperature"
        )
    if not (isinstance(corrector, (int, float)) and 0 <= corrector < float("inf")):
        raise SamplerError(
            f"corrector must be a finite number >= 0, got {corrector!r}", option="corrector"
        )
    if corrector > 0 and model.path.mask_id is None:
        raise SamplerError(
            "corrector: the corrector term needs the mask source (its backward rate is known "
            f"in closed form only there); this model's source is {model.path.source!r}",
            option="corrector",
        )


def _start(
    model: DiscreteFlowModel,
    num: int | None,
    x0: Tensor | None,
    fixed: Tensor | None,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """The starting tokens and the (B, L) mask of positions that may change."""
    path, length = model.path, model.length
    if x0 is None:
        if num is None or isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise SamplerError(f"num must be an integer >= 1, got {num!r}", option="num")
        if fixed is not None:
            raise SamplerError("fixed positions need x0 (the tokens they keep)", option="fixed")
        x = path.sample_source((num, length), generator=generator, device=device)
        return x, torch.ones_like(x, dtype=torch.bool)
    if x0.ndim != 2 or x0.shape[1] != length or x0.dtype.is_floating_point:
        raise SamplerError(
            f"x0 must be token ids of shape (B, {length}), got {x0.dtype} {tuple(x0.shape)}",
            option="x0",
        )
    x0 = x0.to(device)
    if x0.numel() and (int(x0.min()) < 0 or int(x0.max()) >= path.num_ids):
        raise SamplerError(f"x0 holds ids outside [0, {path.num_ids})", option="x0")
    if fixed is None:
        return x0.clone(), torch.ones_like(x0, dtype=torch.bool)
    if fixed.shape != x0.shape or fixed.dtype != torch.bool:
        raise SamplerError(
            f"fixed must be a bool mask of the shape of x0 {tuple(x0.shape)}, got "
            f"{fixed.dtype} {tuple(fixed.shape)}",
            option="fixed",
        )
    fixed = fixed.to(device)
    if bool((x0[fixed] >= path.vocab_size).any()):
        raise SamplerError("fixed positions must hold data tokens, not the mask", option="fixed")
    source = path.sample_source((x0.shape[0], x0.shape[1]), generator=generator, device=device)
    return torch.where(fixed, x0, source), ~fixed


@torch.no_grad()
def sample(
    model: DiscreteFlowModel,
    num: int | None = None,
    *,
    steps: int,
    x0: Tensor | None = None,
    fixed: Tensor | None = None,
    cond: Tensor | None = None,
    guidance: float | None = None,
    temperature: float = 1.0,
    corrector: float = 0.0,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Generate token sequences with ``steps`` model evaluations.

    Args:
        model: the :class:`~flowmatch.discrete.DiscreteFlowModel`.
        num: how many sequences (when ``x0`` is not given).
        steps: Euler steps = model evaluations (NFE), >= 1.
        x0: starting tokens (B, L); with ``fixed``, the tokens to keep.
        fixed: infilling: a bool mask (B, L), True where ``x0``'s data token stays (a
            prefix, a suffix, any positions); the others start from the source and are
            generated. With the mask source this is exact conditioning for an exact model.
        cond: labels (B,) of a labelled model.
        guidance: classifier-free guidance scale w (1: conditional, 0: unconditional).
        temperature: divides the posterior logits (< 1 sharper, > 1 more diverse).
        corrector: the divergence-free corrector's strength a >= 0 (mask source).
        generator: the random stream (the same generator state gives the same samples).
        device: where to sample; the model's device by default.
        callback: called as ``callback(k, x)`` after step k with the current tokens.

    Returns:
        Token ids (B, L) in [0, V).

    Raises:
        SamplerError: a bad option, naming it.
    """
    _check(model, steps, temperature, corrector)
    dev = (
        torch.device(device)
        if device is not None
        else next(model.parameters(), torch.zeros(0)).device
    )
    x, free = _start(model, num, x0, fixed, generator, dev)
    if cond is not None:
        cond = cond.to(dev)
        if cond.shape != (x.shape[0],):
            raise SamplerError(
                f"cond must have shape ({x.shape[0]},), got {tuple(cond.shape)}", option="cond"
            )
    path, mask_id = model.path, model.path.mask_id
    h = 1.0 / steps
    for k in range(steps):
        t64 = torch.full((1,), k / steps, dtype=torch.float64, device=dev)  # the exact grid
        t = t64.to(torch.float32).expand(x.shape[0])
        probs = model.log_posterior(x, t, cond, guidance=guidance, temperature=temperature).exp()
        draw = categorical(probs, generator=generator)
        u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=dev)
        last = k == steps - 1
        if corrector == 0 or last:
            jump = u < jump_probability(path, t64, h)
            x = torch.where(jump & free, draw, x)
        else:
            kappa, d_kappa = path.kappa(t64)
            up = ((1.0 + corrector) * h * d_kappa / (1.0 - kappa)).clamp(max=1.0)
            down = (corrector * h * d_kappa / kappa.clamp_min(1e-12)).clamp(max=1.0)
            assert mask_id is not None  # _check: the corrector needs the mask source
            masked = x == mask_id
            new = torch.where(masked & (u < up), draw, x)
            x = torch.where(free & ~masked & (u < down), torch.full_like(x, mask_id), new)
        if callback is not None:
            callback(k, x)
    return x
