"""DiscreteFlowModel: a token network together with its mixture path, vocabulary and labels."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.discrete.path import MixturePath
from flowmatch.errors import SamplerError
from flowmatch.models.base import Pretrained, net_labels

__all__ = ["DiscreteFlowModel"]


class DiscreteFlowModel(Pretrained, nn.Module):
    """A discrete flow: a network predicting the posterior p(x1 | x_t), and what it means.

    The network maps token ids x_t (B, L) in [0, num_ids) and times t (B,) (t = 0 source,
    t = 1 data) to logits (B, L, V) over the V data tokens: per position, the posterior of
    the data token given the whole noisy sequence. :meth:`log_posterior` turns them into
    log-probabilities; with the mask source a token that is not masked is its own data
    token (exactly, on the mixture path), so there the posterior is a point mass whatever
    the network says.

    Args:
        net: called as ``net(x_t, t)`` (``cond=labels`` for labelled data), returning logits
            (B, L, V); e.g. :class:`~flowmatch.models.SequenceTransformer` with
            ``vocab_size=path.num_ids, out_size=path.vocab_size``.
        path: the :class:`~flowmatch.discrete.MixturePath`.
        length: the sequence length L.
        vocab: a :class:`~flowmatch.data.text.Vocabulary` mapping ids to characters (kept
            in the model files); None for plain ids.
        num_classes: the number of labels K; read from the net's attributes when None.
        null_class: the label meaning "no label" for classifier-free guidance (K by default);
            read from the net's attributes when None.
        info: JSON-serializable facts kept in the model file.
    """

    kind = "discrete"

    def __init__(
        self,
        net: nn.Module,
        path: MixturePath,
        *,
        length: int,
        vocab: Any = None,
        num_classes: int | None = None,
        null_class: int | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be an nn.Module, got {type(net).__name__}")
        if not isinstance(path, MixturePath):
            raise ValueError(f"path must be a MixturePath, got {type(path).__name__}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be an integer >= 1, got {length!r}")
        if vocab is not None and vocab.size != path.vocab_size:
            raise ValueError(
                f"vocab has {vocab.size} tokens but the path's vocab_size is {path.vocab_size}"
            )
        num_classes, null_class = net_labels(net, num_classes, null_class)
        self.net = net
        self.path = path
        self.length = length
        self.vocab = vocab
        self.num_classes = num_classes
        self.null_class = null_class
        self.info = dict(info or {})
        # What the shared training loop reads: no continuous source, points of shape (L,).
        self.source = None
        self.shape = (length,)
        self.two_times = False

    def extra_repr(self) -> str:
        return f"path={self.path!r}, length={self.length}, num_classes={self.num_classes}"

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The net's logits (B, L, V) at token ids x (B, L) and times t (B,)."""
        out = self.net(x, t) if cond is None else self.net(x, t, cond=cond)
        want = (*x.shape, self.path.vocab_size)
        if tuple(out.shape) != want:
            raise ValueError(
                f"the network returned shape {tuple(out.shape)} for tokens of shape "
                f"{tuple(x.shape)}; it must return logits of shape {want}"
            )
        return out

    def check_guidance(self, guidance: float | None, cond: Tensor | None) -> float | None:
        """Check a guidance scale w (w = 1 conditional, 0 unconditional, > 1 sharper).

        Raises:
            SamplerError (``option`` = "guidance"): a bad scale, an unlabelled model or no
                labels.
        """
        if guidance is None:
            return None
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
            raise SamplerError(
                f"guidance must be a number >= 0, got {guidance!r}", option="guidance"
            )
        if not (math.isfinite(guidance) and guidance >= 0):
            raise SamplerError(
                f"guidance must be a number >= 0, got {guidance!r}", option="guidance"
            )
        if self.null_class is None:
            raise SamplerError(
                "guidance needs a model trained with labels and a null class", option="guidance"
            )
        if cond is None:
            raise SamplerError(
                "guidance needs labels to guide towards (cond=...)", option="guidance"
            )
        return float(guidance)

    def log_posterior(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        guidance: float | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        """log p(x1^i = v | x_t) for every position i and data token v: (B, L, V), float64.

        With guidance w the log-posteriors are combined as ``log p_null + w (log p_cond -
        log p_null)`` and renormalized (one batched forward of 2B sequences). A temperature
        divides the logits. With the mask source, unmasked positions are point masses on
        their own token.
        """
        w = self.check_guidance(guidance, cond)
        if w is None or w == 1.0:
            logits = self(x, t, cond).to(torch.float64)
        else:
            assert cond is not None and self.null_class is not None
            both = torch.cat([cond, torch.full_like(cond, self.null_class)])
            out = self(torch.cat([x, x]), torch.cat([t, t]), both).to(torch.float64)
            conditional, unconditional = out.log_softmax(-1).chunk(2)
            # A token ruled out by both branches stays ruled out; other -inf log-probs are
            # clamped so that -inf - (-inf) cannot turn a row into NaN.
            impossible = torch.isneginf(conditional) & torch.isneginf(unconditional)
            floor = torch.finfo(torch.float64).min / 4
            conditional, unconditional = (
                conditional.clamp_min(floor),
                unconditional.clamp_min(floor),
            )
            logits = unconditional + w * (conditional - unconditional)
            logits = logits.masked_fill(impossible, -math.inf)
        logp = (logits / temperature).log_softmax(-1)
        mask_id = self.path.mask_id
        if mask_id is not None:
            known = x != mask_id
            if bool(known.any()):
                point = torch.full_like(logp, -math.inf)
                point.scatter_(-1, x.clamp(max=self.path.vocab_size - 1).unsqueeze(-1), 0.0)
                logp = torch.where(known.unsqueeze(-1), point, logp)
        return logp

    # ------------------------------------------------------------------------------ files
    def config(self) -> dict[str, Any]:
        """The ``config.json`` description (see :mod:`flowmatch.discrete.files`)."""
        from flowmatch.discrete.files import spec_of

        return spec_of(self)
