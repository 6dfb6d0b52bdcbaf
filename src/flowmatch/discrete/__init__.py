"""Discrete flow matching: tokens (text, SMILES, categorical columns) on mixture paths.

Sequences of L tokens from a vocabulary of V move from a source (all-mask, uniform, or a
given distribution per position) at t = 0 to the data at t = 1 along the mixture path
(:class:`MixturePath`). A network predicts the posterior p(x1 | x_t) per position
(:class:`DiscreteFlowModel`), trained by :class:`DiscreteFlowMatchingLoss`; :func:`sample`
runs the continuous-time Markov chain in ``steps`` model evaluations (temperature,
corrector, guidance, infilling); :func:`elbo` bounds -log p(x) in nats.

Example:
    >>> from flowmatch import discrete as fd
    >>> path = fd.MixturePath(vocab_size=27, source="mask")
    >>> net = fm.models.SequenceTransformer(16, vocab_size=path.num_ids, out_size=27)
    >>> model = fd.DiscreteFlowModel(net, path, length=16)
    >>> fm.train(model, tokens, steps=2000)            # tokens: (N, 16) ids
    >>> x = fd.sample(model, 100, steps=16)           # (100, 16) ids

Tables of continuous and categorical columns: :class:`MixedFlowModel` (one network on the
product of the linear path and per-column mask mixture paths),
:class:`MixedFlowMatchingLoss`, :func:`sample_mixed`.
"""

from flowmatch.discrete.categorical import categorical
from flowmatch.discrete.elbo import elbo, nats_per_token
from flowmatch.discrete.loss import LOSS_KINDS, DiscreteFlowMatchingLoss, generalized_kl
from flowmatch.discrete.mixed_model import MixedFlowModel
from flowmatch.discrete.mixed_sampling import MixedFlowMatchingLoss, sample_mixed
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.oracle import ExactPosterior, checkerboard_table
from flowmatch.discrete.path import SOURCES, MixturePath, jump_probability
from flowmatch.discrete.sampler import sample

__all__ = [
    "LOSS_KINDS",
    "SOURCES",
    "DiscreteFlowMatchingLoss",
    "DiscreteFlowModel",
    "ExactPosterior",
    "MixedFlowMatchingLoss",
    "MixedFlowModel",
    "MixturePath",
    "categorical",
    "checkerboard_table",
    "elbo",
    "generalized_kl",
    "jump_probability",
    "nats_per_token",
    "sample",
    "sample_mixed",
]
