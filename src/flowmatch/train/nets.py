"""The network of a run: its ``{"name": ..., **kwargs}`` from the ``model`` section and the
data (:func:`net_arch`), a check that it fits this machine (:func:`check_trainable`) and the
freshly initialized network (:func:`build_net`). :mod:`flowmatch.train.build` re-exports them.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from flowmatch.errors import ConfigError
from flowmatch.models import registry
from flowmatch.models.embeddings import time_frequency
from flowmatch.train.build_kinds import make, manifold_arch
from flowmatch.train.config import (
    DiscreteObjectiveConfig,
    MLPConfig,
    RunConfig,
    TransformerConfig,
    UNetConfig,
)
from flowmatch.train.config.models import DiTConfig
from flowmatch.train.data import RunData

__all__ = ["TRAIN_BYTES_PER_PARAMETER", "build_net", "check_trainable", "net_arch"]


def net_arch(cfg: RunConfig, data: RunData) -> dict[str, Any]:
    """The ``{"name": ..., **kwargs}`` the run's network is built from (and saved with).

    ``mlp``, ``unet`` and ``dit`` get the data's shape (and the image networks its classes)
    from the data; a registered network of your own gets exactly the keys of its ``model``
    section.
    """
    m = cfg.model
    two_times = cfg.objective.name == "meanflow"
    if data.is_manifold:
        return manifold_arch(cfg, data)
    if isinstance(m, MLPConfig) and data.is_mixed:
        arch: dict[str, Any] = {
            "name": "mixed_mlp",
            "num_continuous": data.mixed.continuous.shape[1],
            "vocab_sizes": data.mixed.vocab_sizes,
            "hidden": m.hidden,
            "depth": m.depth,
            "activation": m.activation,
            "time_embed_dim": m.time_embed_dim,
        }
    elif isinstance(m, MLPConfig):
        arch = {
            "name": "mlp",
            "dim": data.dim,
            "hidden": m.hidden,
            "depth": m.depth,
            "activation": m.activation,
            "time_embed_dim": m.time_embed_dim,
            **_fourier(m),
        }
    elif isinstance(m, UNetConfig):
        arch = {
            "name": "unet",
            **_image_keys(data),
            "base": m.channels,
            "multipliers": list(m.multipliers),
            "num_res_blocks": m.res_blocks,
            "attention_resolutions": list(m.attention),
            "groups": m.groups,
            "time_embed_dim": m.time_embed_dim,
            "dropout": m.dropout,
        }
    elif isinstance(m, DiTConfig):
        arch = {"name": "dit", **_image_keys(data), **m.params()}  # time_frequency: below
    elif isinstance(m, TransformerConfig):
        obj = cfg.objective
        assert isinstance(obj, DiscreteObjectiveConfig)  # RunConfig: text data are discrete
        vocab = data.text.vocab.size
        ids = vocab + (1 if obj.source == "mask" else 0)
        return {
            "name": "transformer",
            "length": data.shape[0],
            "vocab_size": ids,
            "out_size": vocab,
            "num_classes": data.num_classes,
            **m.params(),
        }
    else:
        return {"name": m.name, **m.params()}
    arch["time_frequency"] = time_frequency(m.time_frequency, two_times=two_times)
    if two_times:
        arch["two_times"] = True
    return arch


def _image_keys(data: RunData) -> dict[str, Any]:
    """An image network's arguments that come from the data: channels, side and classes."""
    return {"channels": data.shape[0], "size": data.shape[1], "num_classes": data.num_classes}


def _fourier(m: Any) -> dict[str, Any]:
    """The MLP's Fourier-feature arguments, only when asked for (older files lack them)."""
    if not m.fourier_features:
        return {}
    return {"fourier_features": m.fourier_features, "fourier_scale": m.fourier_scale}


TRAIN_BYTES_PER_PARAMETER = 20
"""float32 weights, their EMA, gradients and Adam's two moments: 5 x 4 bytes."""


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def check_trainable(arch: dict[str, Any], *, memory: int | None = None) -> None:
    """Refuse, before anything is allocated, a built-in network too large to train here: over
    2**31 parameters, or whose weights, EMA, gradients and Adam state
    (`TRAIN_BYTES_PER_PARAMETER` per parameter) would not fit in this machine's memory.

    Raises:
        ConfigError: naming ``model``, the parameter count and the memory it needs.
    """
    from flowmatch.models.netsize import MAX_PARAMETERS, estimate_parameters

    count = estimate_parameters(arch)
    if count is None:
        return
    need = TRAIN_BYTES_PER_PARAMETER * count
    memory = memory if memory is not None else _physical_memory()
    if count > MAX_PARAMETERS or (memory is not None and need > memory):
        have = f"this machine has {memory / 2**30:.3g} GiB" if memory else "over the limit"
        raise ConfigError(
            f"config: model: the {arch['name']!r} network would have about {count:.3g} "
            f"parameters; training it needs about {need / 2**30:.3g} GiB (weights, EMA, "
            f"gradients, Adam state) and {have} (at most {MAX_PARAMETERS} parameters); "
            "make it smaller",
            key="model",
        )


def build_net(cfg: RunConfig, data: RunData) -> nn.Module:
    """A freshly initialized network (seed torch first for reproducible weights); one too
    large to train here is refused before it is built (:func:`check_trainable`)."""
    arch = net_arch(cfg, data)
    check_trainable(arch)
    return make("model", lambda: registry.build(arch))
