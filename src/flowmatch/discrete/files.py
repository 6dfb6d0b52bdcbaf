"""Discrete model files: ``config.json`` (``"kind": "discrete"``) + safetensors weights.

The config holds the network's registered name and arguments, the mixture path (vocabulary
size, source, kappa schedule), the sequence length, the vocabulary's tokens (so samples
decode to text with no other file), the labels and descriptive facts. :func:`flowmatch.load`
reads it back as a :class:`~flowmatch.discrete.DiscreteFlowModel`; nothing is unpickled.
"""

from __future__ import annotations

from typing import Any

from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.path import MixturePath
from flowmatch.models import registry

__all__ = ["flow_from_spec", "spec_of"]

INFO_KEYS = ("data", "class_names", "objective", "columns")


def spec_of(model: DiscreteFlowModel) -> dict[str, Any]:
    """The JSON description of a discrete model (raises ValueError for an unregistered net)."""
    return {
        **model.info,
        "kind": "discrete",
        "arch": registry.architecture(model.net),
        "path": model.path.to_dict(),
        "length": model.length,
        "vocab": None if model.vocab is None else model.vocab.to_dict(),
        "num_classes": model.num_classes,
        "null_class": model.null_class,
    }


def flow_from_spec(spec: dict[str, Any]) -> DiscreteFlowModel:
    """The model a ``config.json`` describes, freshly initialized (weights not loaded).

    Raises:
        ValueError / TypeError / KeyError: a bad field (the caller names the file).
    """
    from flowmatch.data.text import Vocabulary
    from flowmatch.models.files import build_model

    if not isinstance(spec.get("arch"), dict):
        raise ValueError(f"arch must be a mapping, got {spec.get('arch')!r}")
    path = MixturePath.from_dict(spec["path"])
    vocab = None if spec.get("vocab") is None else Vocabulary.from_dict(spec["vocab"])
    length = spec.get("length")
    return DiscreteFlowModel(
        build_model(spec["arch"]),
        path,
        length=length,  # type: ignore[arg-type]
        vocab=vocab,
        num_classes=spec.get("num_classes"),
        null_class=spec.get("null_class"),
        info={k: spec[k] for k in INFO_KEYS if k in spec},
    )
