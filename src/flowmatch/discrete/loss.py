"""The discrete flow matching loss: cross-entropy of the posterior, or the generalized KL."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch.discrete.path import MixturePath
from flowmatch.loss import check_label_dropout, drop_labels

__all__ = ["LOSS_KINDS", "DiscreteFlowMatchingLoss", "generalized_kl"]

LOSS_KINDS = ("ce", "gkl")
T_MAX_GKL = 1.0 - 1e-3
"""The generalized KL weighs time by kappa'/(1 - kappa), which diverges at t = 1; its times
are drawn in [0, 1 - 1e-3]."""


def generalized_kl(logp: Tensor, x1: Tensor, x_t: Tensor, rate: Tensor) -> Tensor:
    """The per-position integrand of the continuous-time ELBO of the mixture path.

    ``rate * ([x_t != x1] (-log p(x1) - p(x_t)) + [x_t == x1] (1 - p(x1)))`` with p the
    model's posterior, rate = kappa'_t / (1 - kappa_t) (Gat et al. 2024, the generalized KL
    of the mixture path; its integral over t bounds -log p(x1)). A mask token has p = 0.

    Args:
        logp: log-posteriors (B, L, V); x1, x_t: tokens (B, L); rate: (B,).

    Returns:
        (B, L), >= 0 up to rounding.
    """
    vocab = logp.shape[-1]
    logp_x1 = logp.gather(-1, x1.unsqueeze(-1)).squeeze(-1)
    in_vocab = x_t < vocab
    p_xt = logp.gather(-1, x_t.clamp(max=vocab - 1).unsqueeze(-1)).squeeze(-1).exp()
    p_xt = torch.where(in_vocab, p_xt, torch.zeros_like(p_xt))
    same = x_t == x1
    term = torch.where(same, 1.0 - logp_x1.exp(), -logp_x1 - p_xt)
    return rate.unsqueeze(-1) * term


class DiscreteFlowMatchingLoss:
    """Train a network to predict the posterior p(x1 | x_t) of the mixture path.

    For each sequence x1 a time t ~ U[0, 1] is drawn, x_t ~ p_t(. | x1) is formed and

    - ``kind="ce"`` (default): the cross-entropy -log p_theta(x1^i | x_t), averaged over
      positions (with the mask source only masked positions count: an unmasked token is
      known, its term is zero);
    - ``kind="gkl"``: the generalized KL (:func:`generalized_kl`), whose expectation over t
      is the continuous-time bound on -log p(x1) per position.

    Args:
        path: the :class:`~flowmatch.discrete.MixturePath`.
        kind: ``ce`` or ``gkl``.
        cond_dropout: probability of replacing a label by ``null_cond`` (classifier-free
            guidance), in [0, 1).
        null_cond: the "no label" class.

    Shapes:
        x1: (B, L) token ids in [0, V); cond: (B,).
    """

    def __init__(
        self,
        path: MixturePath,
        *,
        kind: str = "ce",
        cond_dropout: float = 0.0,
        null_cond: int | None = None,
    ) -> None:
        if not isinstance(path, MixturePath):
            raise ValueError(f"path must be a MixturePath, got {type(path).__name__}")
        if kind not in LOSS_KINDS:
            raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")
        self.path = path
        self.kind = kind
        self.cond_dropout = check_label_dropout(cond_dropout, null_cond)
        self.null_cond = null_cond

    def __repr__(self) -> str:
        return (
            f"DiscreteFlowMatchingLoss({self.path!r}, kind={self.kind!r}, "
            f"cond_dropout={self.cond_dropout!r}, null_cond={self.null_cond!r})"
        )

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss on one batch (a scalar).

        Args:
            model: called as ``model(x_t, t)`` (``cond=`` for labels), returning logits
                (B, L, V), e.g. a :class:`~flowmatch.discrete.DiscreteFlowModel`.
            x1: data tokens (B, L).
            cond: labels (B,) or None.
            x0: source tokens (B, L); drawn from the path's source when None.
            generator: the random stream of t, x0, the mixing and the label dropout.
        """
        vocab = self.path.vocab_size
        if x1.ndim != 2 or x1.dtype.is_floating_point:
            raise ValueError(
                f"x1 must be integer token ids (B, L), got {x1.dtype} {tuple(x1.shape)}"
            )
        if x1.numel() and (int(x1.min()) < 0 or int(x1.max()) >= vocab):
            raise ValueError(f"x1 holds token ids outside [0, {vocab})")
        batch = x1.shape[0]
        t = torch.rand(batch, generator=generator, device=x1.device)
        if self.kind == "gkl":
            t = t * T_MAX_GKL
        x_t = self.path.sample(x1, t, x0=x0, generator=generator)
        if cond is not None and self.cond_dropout > 0:
            assert self.null_cond is not None
            cond = drop_labels(cond, self.cond_dropout, self.null_cond, generator=generator)
        logits = model(x_t, t, cond) if cond is not None else model(x_t, t)
        logp = logits.float().log_softmax(-1)
        if self.kind == "gkl":
            kappa, d_kappa = self.path.kappa(t)
            term = generalized_kl(logp, x1, x_t, d_kappa / (1.0 - kappa))
        else:
            term = -logp.gather(-1, x1.unsqueeze(-1)).squeeze(-1)
        mask_id = self.path.mask_id
        if mask_id is not None:  # an unmasked token is its data token: nothing to learn
            term = torch.where(x_t == mask_id, term, torch.zeros_like(term))
        return term.mean()
