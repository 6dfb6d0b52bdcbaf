"""Networks: ``model(x_t, t, cond=None)`` returning a prediction of the shape of x_t, and the
architecture registry that lets ``fm.load``, configs and the CLI rebuild them."""

from flowmatch.models.autoencoder import AutoEncoder
from flowmatch.models.base import call_model
from flowmatch.models.dit import DiT
from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.mlp import MLP
from flowmatch.models.registry import architecture, build, load_plugin, register
from flowmatch.models.transformer import SequenceTransformer
from flowmatch.models.unet import UNet

__all__ = [
    "MLP",
    "AutoEncoder",
    "DiT",
    "SequenceTransformer",
    "SinusoidalTimeEmbedding",
    "UNet",
    "architecture",
    "build",
    "call_model",
    "load_plugin",
    "register",
]
