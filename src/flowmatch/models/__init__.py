"""Networks: ``model(x_t, t, cond=None)`` returning a prediction of the shape of x_t."""

from flowmatch.models.base import call_model
from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.mlp import MLP
from flowmatch.models.unet import UNet

__all__ = ["MLP", "SinusoidalTimeEmbedding", "UNet", "call_model"]
