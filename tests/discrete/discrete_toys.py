"""Shared toys of the discrete flow matching tests (imported as ``discrete_toys``, the way
tests/train imports ``test_trainer``): small tabulated targets, their exact models, and exact
enumerations (the law of the K-step sampler, the expected discrete-time bound) that the
sampler and the ELBO are checked against."""

from __future__ import annotations

import itertools
import math

import torch
from scipy import stats
from torch import Tensor, nn

from flowmatch import discrete as fd
from flowmatch.discrete.elbo import _step_kl
from flowmatch.discrete.path import jump_probability

F64 = torch.float64

JOINT = torch.tensor([[0.30, 0.05, 0.05], [0.02, 0.20, 0.08], [0.10, 0.05, 0.15]], dtype=F64)
"""A non-factorized target over L = 2 positions and V = 3 tokens (full support)."""

PMFS = (
    [0.10, 0.20, 0.30, 0.40],
    [0.50, 0.25, 0.15, 0.10],
    [0.05, 0.15, 0.60, 0.20],
)
"""Per-position pmfs of a factorized target over L = 3 positions and V = 4 tokens."""


def factorized(pmfs=PMFS) -> Tensor:
    """The outer product of per-position pmfs: a (V,) * L table."""
    table = torch.tensor(pmfs[0], dtype=F64)
    for pmf in pmfs[1:]:
        table = table.unsqueeze(-1) * torch.tensor(pmf, dtype=F64)
    return table / table.sum()


def marginals_product(table: Tensor) -> Tensor:
    """The product of the per-position marginals of a (V,) * L table."""
    length = table.ndim
    pmfs = [
        table.sum(dim=tuple(j for j in range(length) if j != i)).tolist() for i in range(length)
    ]
    return factorized(pmfs)


def exact_model(table: Tensor, source="mask", schedule=None) -> fd.DiscreteFlowModel:
    """A perfect model of a tabulated target: the exact posterior as its network."""
    path = fd.MixturePath(table.shape[0], source=source, schedule=schedule)
    return fd.DiscreteFlowModel(fd.ExactPosterior(table, path), path, length=table.ndim)


def entropy(table: Tensor) -> float:
    """H(p) in nats: the data average of the true NLL."""
    p = table.flatten()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def all_sequences(num_ids: int, length: int) -> Tensor:
    """Every sequence of ``length`` ids in [0, num_ids), (num_ids ** length, length), in the
    row-major order of a (num_ids,) * length table."""
    return torch.tensor(list(itertools.product(range(num_ids), repeat=length)), dtype=torch.long)


def flat_index(x: Tensor, vocab: int) -> Tensor:
    """The row-major index of each sequence of x (B, L) in a (vocab,) * L table."""
    index = torch.zeros(x.shape[0], dtype=torch.long)
    for i in range(x.shape[1]):
        index = index * vocab + x[:, i]
    return index


def histogram(x: Tensor, vocab: int) -> Tensor:
    """Counts of the sequences of x (B, L) over the vocab ** L cells (row-major)."""
    assert int(x.min()) >= 0 and int(x.max()) < vocab, "a token outside [0, V)"
    return torch.bincount(flat_index(x, vocab), minlength=vocab ** x.shape[1]).to(F64)


def chain_law(model: fd.DiscreteFlowModel, steps: int) -> Tensor:
    """The exact law of :func:`flowmatch.discrete.sample`'s output (no corrector,
    temperature 1): a flat (V ** L,) table, by multiplying the transition matrices of the
    K-step chain over every (V [+ mask]) ** L state.

    Per step k, at t_k = k / K with q_k = jump_probability, every free position jumps with
    probability q_k to a draw from the model's posterior marginal at the current state, each
    independently: T_k(z -> y) = prod_i [q_k p_i(y_i | z) + (1 - q_k) delta(z_i, y_i)].
    """
    path, length = model.path, model.length
    num_ids, vocab = path.num_ids, path.vocab_size
    states = all_sequences(num_ids, length)  # (S, L)
    p0 = path.source_probs(length)  # (L, ids)
    law = torch.ones(states.shape[0], dtype=F64)
    for i in range(length):
        law = law * p0[i, states[:, i]]
    h = 1.0 / steps
    for k in range(steps):
        t = torch.full((states.shape[0],), k * h)
        q = float(jump_probability(path, t[:1], torch.tensor(h)))  # as the sampler does
        post = model.log_posterior(states, t).exp().nan_to_num(0.0)  # (S, L, V)
        post = torch.cat([post, post.new_zeros(*post.shape[:2], num_ids - vocab)], -1)
        stay = (states.unsqueeze(-1) == torch.arange(num_ids)).to(F64)  # (S, L, ids)
        move = q * post + (1.0 - q) * stay  # (S, L, ids): per position, z -> y_i
        trans = torch.ones(states.shape[0], states.shape[0], dtype=F64)
        for i in range(length):
            trans = trans * move[:, i, states[:, i]]  # (S, S)
        law = law @ trans
    data = (states < vocab).all(-1)
    assert float(law[~data].sum()) < 1e-12, "the chain ends with mask tokens"
    return law[data]


def expected_bound(model: fd.DiscreteFlowModel, x1: Tensor, steps: int) -> Tensor:
    """The exact expectation over x_t of :func:`flowmatch.discrete.elbo`'s discrete-time
    bound (``steps`` = K), per sequence of x1 (B, L): every x_{t_k} state weighted by its
    probability prod_i [kappa delta(z_i, x1_i) + (1 - kappa) p0_i(z_i)] under p_t(. | x1),
    summing the per-step KL (``_step_kl``, the code under test for the KL formula itself) at
    the same float32 times and jump probabilities as ``elbo``."""
    path, length = model.path, model.length
    states = all_sequences(path.num_ids, length)  # (S, L)
    p0 = path.source_probs(length)  # (L, ids)
    batch, num = x1.shape[0], states.shape[0]
    total = torch.zeros(batch, dtype=F64)
    h = 1.0 / steps
    for k in range(steps):
        t = torch.full((num,), k * h)
        kappa = float(path.kappa(t[:1].to(F64))[0][0])
        weight = torch.ones(batch, num, dtype=F64)
        for i in range(length):
            same = (states[None, :, i] == x1[:, None, i]).to(F64)
            weight = weight * (kappa * same + (1.0 - kappa) * p0[i, states[:, i]][None])
        logp = model.log_posterior(states, t)  # (S, L, V)
        q = jump_probability(path, t, torch.full_like(t, h))  # (S,)
        kl = _step_kl(
            logp.repeat(batch, 1, 1),
            x1.repeat_interleave(num, 0),
            states.repeat(batch, 1),
            q.repeat(batch),
        ).sum(-1)
        kl = torch.where(weight.flatten() > 0, kl, torch.zeros_like(kl))  # 0 * inf states
        total += (weight * kl.view(batch, num)).sum(-1)
    return total


def draw_table(table: Tensor, num: int, seed: int) -> Tensor:
    """``num`` exact draws (num, L) from a (V,) * L table."""
    vocab, length = table.shape[0], table.ndim
    idx = torch.multinomial(
        table.flatten(), num, replacement=True, generator=torch.Generator().manual_seed(seed)
    )
    digits = [(idx // vocab ** (length - 1 - i)) % vocab for i in range(length)]
    return torch.stack(digits, 1)


def assert_law(counts: Tensor, probs: Tensor, alpha: float = 1e-3) -> None:
    """Counts over cells match probabilities: no count where the probability is 0, and on
    the others both Pearson's chi-square test and the largest per-cell z-score (binomial SE
    sqrt(p (1 - p) / N), Bonferroni over the cells) pass at level ``alpha``.

    alpha = 1e-3: a correct sampler fails a given fixed-seed check with probability 1e-3 (per
    test, whatever the number of cells), while a per-cell bias of a few SE is caught."""
    counts, probs = counts.to(F64).flatten(), probs.to(F64).flatten()
    zero = probs <= 0
    assert float(counts[zero].sum()) == 0.0, "a sequence of probability 0 was drawn"
    n = float(counts.sum())
    c, p = counts[~zero].numpy(), probs[~zero].numpy()
    p = p / p.sum()
    assert (n * p).min() >= 5, "too few draws for a chi-square test"
    pvalue = stats.chisquare(c, n * p).pvalue
    assert pvalue > alpha, f"chi-square p-value {pvalue:.2g} <= {alpha}"
    z = (c / n - p) / (p * (1 - p) / n) ** 0.5
    z_max = stats.norm.isf(alpha / (2 * len(p)))
    assert abs(z).max() < z_max, f"a cell is {abs(z).max():.2f} SE off (bound {z_max:.2f})"


def total_variation(counts: Tensor, probs: Tensor) -> float:
    """TV between the empirical law of counts and probs."""
    counts, probs = counts.to(F64).flatten(), probs.to(F64).flatten()
    return 0.5 * float((counts / counts.sum() - probs).abs().sum())


class PairPosterior(nn.Module):
    """The exact posterior of an L = 2 table like :class:`~flowmatch.discrete.ExactPosterior`
    computes it, contracted in the cheap order (O(B V^2), no (B, V, V) intermediate): the
    marginal of position 0 is lik_0 * (lik_1 @ table^T), of position 1 lik_1 * (lik_0 @
    table). Checked against ExactPosterior in test_discrete_oracle.py; used where the batch
    is large (the checkerboard)."""

    def __init__(self, table: Tensor, path: fd.MixturePath) -> None:
        super().__init__()
        assert table.ndim == 2
        self.path = path
        self.register_buffer("table", table.to(F64), persistent=False)
        self.register_buffer("p0", path.source_probs(2), persistent=False)
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        vocab = self.path.vocab_size
        k = self.path.kappa(t.to(F64))[0][:, None]
        p0 = self.p0[torch.arange(2), x]  # (B, 2)
        lik = []
        for i in range(2):
            match = nn.functional.one_hot(x[:, i].clamp(max=vocab - 1), vocab).to(F64)
            match = match * (x[:, i] < vocab).unsqueeze(-1)
            lik.append(k * match + (1.0 - k) * p0[:, i : i + 1])
        first = lik[0] * (lik[1] @ self.table.T)
        second = lik[1] * (lik[0] @ self.table)
        out = torch.stack([first, second], 1)
        return (out / out.sum(-1, keepdim=True)).log()


class AwayFromZero(nn.Module):
    """Evaluates a net at max(t, 1e-3). For the mask source the exact posterior does not
    depend on t in (0, 1) (kappa cancels between the numerator and the normalizer), so this
    is the same exact model, defined also at t = 0 for sequences holding data tokens (see the
    xfailed oracle test)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t.clamp_min(1e-3))


class Counting(nn.Module):
    """Wraps a net and records the number of rows of every call (the NFE and batch)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.rows: list[int] = []
        self.num_classes = getattr(net, "num_classes", None)
        self.null_class = getattr(net, "null_class", None)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        self.rows.append(x.shape[0])
        return self.net(x, t) if cond is None else self.net(x, t, cond=cond)


class LabelledToy(nn.Module):
    """A labelled "network" whose logits depend only on the label: fixed logits for classes 0
    and 1, all zeros (uniform) for the null class 2; the same at every position and time."""

    num_classes = 2
    null_class = 2

    def __init__(self, vocab: int = 4) -> None:
        super().__init__()
        logits = torch.zeros(3, vocab, dtype=F64)
        logits[0] = torch.linspace(-1.0, 2.0, vocab, dtype=F64)
        logits[1] = torch.linspace(1.5, -1.5, vocab, dtype=F64)
        self.register_buffer("logits", logits)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            cond = torch.full((x.shape[0],), self.null_class, dtype=torch.long)
        return self.logits[cond][:, None, :].expand(x.shape[0], x.shape[1], -1)


def log_softmax(logits: Tensor) -> Tensor:
    return logits - torch.logsumexp(logits, -1, keepdim=True)


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n)
