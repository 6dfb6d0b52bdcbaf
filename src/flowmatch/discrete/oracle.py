"""Exact posteriors of small discrete targets: the oracle the discrete flow is tested against.

For a target given as a full probability table over V^L sequences (small V and L), the
posterior of the mixture path is known in closed form:

    p(x1 | x_t) ∝ p(x1) * prod_i [kappa_t delta(x_t^i, x1^i) + (1 - kappa_t) p0^i(x_t^i)],

and its per-position marginals are what a perfectly trained network predicts. Sampling or
bounding with :class:`ExactPosterior` as the network checks the sampler and the ELBO with no
training error in the way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch.discrete.path import MixturePath

__all__ = ["ExactPosterior", "checkerboard_table"]


class ExactPosterior(nn.Module):
    """A "network" returning the exact posterior log-marginals of a tabulated target.

    Args:
        table: probabilities of every sequence, shape (V,) * L (sums to 1).
        path: the mixture path (its vocab_size must be V).

    Shapes:
        x_t (B, L), t (B,) -> logits (B, L, V) (log-probabilities; -inf where impossible).
    """

    table: Tensor  # buffers
    p0: Tensor

    def __init__(self, table: Tensor, path: MixturePath) -> None:
        super().__init__()
        table = table.to(torch.float64)
        vocab, length = path.vocab_size, table.ndim
        if any(s != vocab for s in table.shape):
            raise ValueError(
                f"table must have shape (V,)*L with V={vocab}, got {tuple(table.shape)}"
            )
        if not torch.isfinite(table).all() or (table < 0).any():
            raise ValueError("table must hold finite probabilities >= 0")
        if abs(float(table.sum()) - 1.0) > 1e-6:  # float32 tables sum to 1 within ~1e-7
            raise ValueError(f"table must sum to 1, got {float(table.sum())!r}")
        table = table / table.sum()
        self.path = path
        self.length = length
        self.register_buffer("table", table, persistent=False)  # (V,)*L
        self.register_buffer("p0", path.source_probs(length), persistent=False)  # (L, ids)
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def nll(self, x1: Tensor) -> Tensor:
        """The exact -log p(x1) in nats: (B,)."""
        return -self.table[tuple(x1.T)].log()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        vocab, length = self.path.vocab_size, self.length
        kappa, _ = self.path.kappa(t.to(torch.float64))
        k = kappa[:, None, None]
        p0 = self.p0[torch.arange(length, device=x.device), x]  # (B, L): p0^i(x_t^i)
        match = nn.functional.one_hot(x.clamp(max=vocab - 1), vocab).to(torch.float64)
        match = match * (x < vocab).unsqueeze(-1)
        if self.path.mask_id is not None:
            # Mask source: a token is its data token or masked, so p(x1 | x_t) is the data
            # conditioned on the unmasked tokens whatever kappa is (t = 0 included, where an
            # infilled sequence holds data tokens that the path itself gives probability 0).
            lik = match + (x == self.path.mask_id).unsqueeze(-1).to(torch.float64)
        else:
            lik = k * match + (1.0 - k) * p0.unsqueeze(-1)  # p_t(x_t^i | x1^i = v)
        letters = "abcdefghijklmnopqrstuvwxy"[:length]
        factors = [lik[:, i] for i in range(length)]
        marg = []
        for i in range(length):  # sum the joint posterior over every position but i
            spec = f"{letters},{','.join('z' + c for c in letters)}->z{letters[i]}"
            marg.append(torch.einsum(spec, self.table, *factors))
        out = torch.stack(marg, 1)
        return (out / out.sum(-1, keepdim=True)).log()


def checkerboard_table(grid: int = 64, squares: int = 8, *, contrast: float = 0.0) -> Tensor:
    """A 2-D discrete checkerboard: a (grid, grid) probability table, uniform on the dark
    squares of a ``squares`` x ``squares`` board (``contrast`` > 0 puts that relative mass
    on the light squares too)."""
    if grid % squares:
        raise ValueError(f"grid ({grid}) must be a multiple of squares ({squares})")
    cell = torch.arange(grid) // (grid // squares)
    dark = ((cell[:, None] + cell[None, :]) % 2 == 0).to(torch.float64)
    table = dark + contrast * (1.0 - dark)
    return table / table.sum()
