"""Networks: ``model(x_t, t, cond=None)`` returning a prediction of the shape of x_t."""

from flowmatch.models.base import call_model
from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.mlp import MLP

__all__ = ["MLP", "SinusoidalTimeEmbedding", "call_model"]
