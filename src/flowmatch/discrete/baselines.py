"""Baselines for the likelihood and samples of discrete flows on text: a bigram and a causal
transformer language model, scored by the same rule.

Rows of token ids (N, L) hold a text followed by pad tokens; the pad doubles as the end
token. A model of such rows is scored on every character and on the FIRST pad (the end
token): the positions after it are determined (all pad) and are not scored. So the tokens
counted per row are its characters + 1, or L when the row has no pad
(:func:`tokens_per_sequence`), and nats per token = sum of NLLs / sum of those counts
(:func:`~flowmatch.discrete.nats_per_token`), the same normaliser for the ELBO of a discrete
flow, the autoregressive NLL and the bigram NLL.

* :class:`Bigram`: p(x_i | x_{i-1}) with a start state, add-k smoothed counts.
* :class:`AutoregressiveModel`: a causal :class:`~flowmatch.models.SequenceTransformer`
  (no time input) predicting each token from the ones before it; trained by
  :func:`train_autoregressive`, sampled one token per model evaluation (NFE = L).

Example:
    >>> bigram = Bigram.fit(data.train, data.vocab.size, pad_id=data.vocab.pad_id)
    >>> lm = AutoregressiveModel(data.length, data.vocab.size, dim=96, depth=3)
    >>> train_autoregressive(lm, data.train, seconds=60, batch_size=256)
    >>> nats_per_token(lm.nll(data.test), tokens_per_sequence(data.test, 0))
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.discrete.categorical import categorical
from flowmatch.models.transformer import SequenceTransformer

__all__ = [
    "AutoregressiveModel",
    "Bigram",
    "scored_positions",
    "tokens_per_sequence",
    "train_autoregressive",
]


def _check_tokens(tokens: Tensor, vocab_size: int, name: str = "tokens") -> None:
    if not isinstance(tokens, Tensor) or tokens.ndim != 2:
        raise ValueError(f"{name} must be a tensor of token ids (N, L), got {type(tokens)}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"{name} holds ids outside [0, {vocab_size})")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def scored_positions(tokens: Tensor, pad_id: int) -> Tensor:
    """The positions a model of the rows is scored on: (N, L) bool, True up to and including
    each row's first pad (the end token); everything after it is determined."""
    is_pad = (tokens == pad_id).to(torch.long)
    return (is_pad.cumsum(1) - is_pad) == 0


def tokens_per_sequence(tokens: Tensor, pad_id: int) -> Tensor:
    """Tokens scored per row (N,), long: its characters + 1 (the end token), or L if it has no
    pad. The normaliser of nats per token for every model of a benchmark.

    Example:
        >>> tokens_per_sequence(torch.tensor([[3, 1, 0, 0], [2, 2, 2, 2]]), 0)
        tensor([3, 4])
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (N, L), got {tuple(tokens.shape)}")
    return scored_positions(tokens, pad_id).sum(1)


class Bigram:
    """A first-order Markov chain over tokens with a start state: p(x_0 | start) and
    p(x_i | x_{i-1}), the same at every position.

    Args:
        log_probs: (V + 1, V) float64 log-probabilities; row v < V is the previous token v,
            row V the start state.
        pad_id: the pad / end token.
    """

    def __init__(self, log_probs: Tensor, *, pad_id: int) -> None:
        if log_probs.ndim != 2 or log_probs.shape[0] != log_probs.shape[1] + 1:
            raise ValueError(f"log_probs must have shape (V + 1, V), got {tuple(log_probs.shape)}")
        vocab = log_probs.shape[1]
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab:
            raise ValueError(f"pad_id must be an id in [0, {vocab}), got {pad_id!r}")
        self.log_probs = log_probs.to(torch.float64)
        self.vocab_size = vocab
        self.pad_id = pad_id

    @classmethod
    def fit(cls, tokens: Tensor, vocab_size: int, *, pad_id: int, smoothing: float = 0.1) -> Bigram:
        """Count the scored transitions of ``tokens`` (N, L) (start -> first token, ..., last
        character -> first pad) and add ``smoothing`` to every count (add-k, k = 0.1 by
        default: a fixed choice, not tuned on any data; it only matters for transitions
        never seen in training).

        Raises:
            ValueError: bad tokens, vocabulary size, pad id or smoothing (must be > 0).
        """
        _check_int("vocab_size", vocab_size, 2)
        _check_tokens(tokens, vocab_size)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be an id in [0, {vocab_size}), got {pad_id!r}")
        if isinstance(smoothing, bool) or not (
            isinstance(smoothing, (int, float)) and math.isfinite(smoothing) and smoothing > 0
        ):
            raise ValueError(f"smoothing must be a finite number > 0, got {smoothing!r}")
        prev = _shift_right(tokens, vocab_size)
        keep = scored_positions(tokens, pad_id)
        counts = torch.zeros(vocab_size + 1, vocab_size, dtype=torch.float64)
        ones = torch.ones(int(keep.sum()), dtype=torch.float64)
        counts.index_put_((prev[keep], tokens[keep]), ones, accumulate=True)
        counts += smoothing
        return cls((counts / counts.sum(1, keepdim=True)).log(), pad_id=pad_id)

    def nll(self, tokens: Tensor) -> Tensor:
        """-log p of each row in nats, over its scored positions: (N,) float64."""
        _check_tokens(tokens, self.vocab_size)
        prev = _shift_right(tokens, self.vocab_size)
        logp = self.log_probs[prev, tokens]
        return -(logp * scored_positions(tokens, self.pad_id)).sum(1)


def _shift_right(tokens: Tensor, start: int) -> Tensor:
    """(N, L) -> (N, L): ``start`` then the first L - 1 tokens (each token's predecessor)."""
    first = torch.full_like(tokens[:, :1], start)
    return torch.cat([first, tokens[:, :-1]], dim=1)


class AutoregressiveModel(nn.Module):
    """A causal transformer language model of rows of L tokens from a vocabulary of V.

    Its network is a :class:`~flowmatch.models.SequenceTransformer` with ``causal=True``,
    ``vocab_size=V + 1`` inputs (the V tokens and a start token, id V) and ``out_size=V``,
    called without time (``t=None``): the same network as a discrete flow's of the same
    ``dim`` / ``depth`` (whose extra input id is the mask), so the two have the same number
    of parameters (here the time MLP is unused).

    Args:
        length: the row length L.
        vocab_size: V, the number of tokens (pad included).
        pad_id: the pad / end token.
        **net_kwargs: passed to the SequenceTransformer (dim, depth, heads, ...).

    Shapes:
        tokens: (B, L') ids in [0, V), L' <= L -> logits (B, L', V).
    """

    def __init__(self, length: int, vocab_size: int, *, pad_id: int = 0, **net_kwargs: Any):
        super().__init__()
        _check_int("length", length, 1)
        _check_int("vocab_size", vocab_size, 2)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be an id in [0, {vocab_size}), got {pad_id!r}")
        self.length, self.vocab_size, self.pad_id = length, vocab_size, pad_id
        self.bos_id = vocab_size
        self.net = SequenceTransformer(
            length, vocab_size=vocab_size + 1, out_size=vocab_size, causal=True, **net_kwargs
        )

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-token logits (B, L', V): entry i is the distribution of ``tokens[:, i]``
        given ``tokens[:, :i]`` (position 0 sees only the start token)."""
        _check_tokens(tokens, self.vocab_size)
        return self.net(_shift_right(tokens, self.bos_id), None)

    def token_nll(self, tokens: Tensor) -> Tensor:
        """-log p of each token given those before it, zero where not scored: (B, L),
        differentiable (the training loss is its sum over the scored tokens)."""
        logp = self(tokens).float().log_softmax(-1)
        nll = -logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return nll * scored_positions(tokens, self.pad_id)

    @torch.no_grad()
    def nll(self, tokens: Tensor, *, batch_size: int = 1024) -> Tensor:
        """-log p of each row in nats (float64 log-softmax), over its scored positions (each
        character and the first pad): (N,) float64. Evaluated in batches, without gradients.
        """
        _check_tokens(tokens, self.vocab_size)
        _check_int("batch_size", batch_size, 1)
        if tokens.shape[1] != self.length:
            raise ValueError(
                f"tokens must have shape (N, {self.length}), got {tuple(tokens.shape)}"
            )
        out = []
        for chunk in tokens.split(batch_size):
            logp = self(chunk).to(torch.float64).log_softmax(-1)
            nll = -logp.gather(-1, chunk.unsqueeze(-1)).squeeze(-1)
            out.append((nll * scored_positions(chunk, self.pad_id)).sum(1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    @torch.no_grad()
    def sample(
        self,
        num: int,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate ``num`` rows (num, L), one token per model evaluation (NFE = L, fewer
        when every row has ended early), each draw in float64
        (:func:`~flowmatch.discrete.categorical`); after a row's first pad, only pads.
        """
        _check_int("num", num, 1)
        if isinstance(temperature, bool) or not (
            isinstance(temperature, (int, float)) and 0 < temperature < math.inf
        ):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        dev = next(self.parameters()).device
        x = torch.full((num, self.length), self.pad_id, dtype=torch.long, device=dev)
        ended = torch.zeros(num, dtype=torch.bool, device=dev)
        inputs = torch.full((num, 1), self.bos_id, dtype=torch.long, device=dev)
        for i in range(self.length):
            logits = self.net(inputs, None)[:, -1].to(torch.float64)
            draw = categorical((logits / temperature).softmax(-1), generator=generator)
            x[:, i] = torch.where(ended, torch.full_like(draw, self.pad_id), draw)
            ended |= x[:, i] == self.pad_id
            if bool(ended.all()):
                break
            inputs = torch.cat([inputs, x[:, i : i + 1]], dim=1)
        return x


def train_autoregressive(
    model: AutoregressiveModel,
    tokens: Tensor,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    ema_decay: float = 0.999,
    grad_clip: float = 1.0,
) -> dict[str, float]:
    """Train ``model`` by maximum likelihood on rows ``tokens`` (N, L), in place.

    The optimiser is the one ``fm.train`` uses: AdamW at ``lr``, gradient clipping, an EMA
    of the weights whose values the model holds at the end; batches drawn with replacement.
    The loss is the mean NLL per scored token. Training stops after ``steps`` (the learning
    rate then decays to 0 along a cosine, as in ``fm.train``) or when ``seconds`` of wall
    time have passed, whichever comes first (with only ``seconds``, the rate is constant).

    Returns:
        ``{"steps": steps done, "seconds": wall time, "loss": mean loss of the last 50}``.

    Raises:
        ValueError: neither ``steps`` nor ``seconds``, or a bad setting.
    """
    if steps is None and seconds is None:
        raise ValueError("give steps, seconds or both")
    if steps is not None:
        _check_int("steps", steps, 1)
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0
    ):
        raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
    _check_int("batch_size", batch_size, 1)
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    _check_tokens(tokens, model.vocab_size)
    if tokens.shape[1] != model.length or tokens.shape[0] < 1:
        raise ValueError(f"tokens must have shape (N, {model.length}), got {tuple(tokens.shape)}")
    from flowmatch.train.ema import EMA  # the training layer, loaded only to train
    from flowmatch.train.loop import lr_lambda

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=float(lr), weight_decay=0.0)
    factor = lr_lambda(0, steps) if steps is not None else (lambda _k: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ema = EMA(model, ema_decay)
    dev = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    done, start = 0, time.perf_counter()
    while (steps is None or done < steps) and (
        seconds is None or time.perf_counter() - start < seconds
    ):
        batch = tokens[torch.randint(0, tokens.shape[0], (batch_size,), generator=gen)].to(dev)
        nll = model.token_nll(batch)
        loss = nll.sum() / scored_positions(batch, model.pad_id).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        ema.update(model, done)
        losses.append(float(loss.detach()))
        done += 1
    wall = time.perf_counter() - start
    model.load_state_dict(ema.state_dict())
    model.eval()
    tail = losses[-50:]
    return {"steps": done, "seconds": wall, "loss": sum(tail) / max(1, len(tail))}
