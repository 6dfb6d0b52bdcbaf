"""Model files: ``config.json`` + ``model.safetensors`` + ``ema.safetensors``, and ``fm.load``.

A model directory holds everything needed to rebuild and sample a trained model with no
pickle: the architecture, the path (schedule and its parameters), the prediction kind, the
source distribution and, for tabular data, the standardization to invert on sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowmatch.atomic import atomic_path
from flowmatch.models.embeddings import DEFAULT_TIME_FREQUENCY
from flowmatch.models.mlp import MLP
from flowmatch.models.unet import UNet
from flowmatch.paths import AffinePath
from flowmatch.schedules import SCHEDULES

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "build_model",
    "build_path",
    "load",
    "load_spec",
    "save_model",
]

FORMAT_VERSION = 1
ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet}


class ModelFileError(ValueError):
    """A model directory that cannot be loaded; the message names the file and the problem."""


def build_path(spec: dict[str, Any]) -> AffinePath:
    """The AffinePath of a ``{"schedule": name, **params}`` dict."""
    params = dict(spec)
    name = params.pop("schedule", "linear")
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {tuple(SCHEDULES)}, got {name!r}")
    return AffinePath(SCHEDULES[name](**params))


def build_model(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialized network from ``{"name": "mlp", **kwargs}``."""
    params = dict(arch)
    name = params.pop("name", None)
    if name not in ARCHITECTURES:
        raise ValueError(f"model name must be one of {tuple(ARCHITECTURES)}, got {name!r}")
    # Files written before time_frequency existed embedded time at up to 1000 rad.
    params.setdefault("time_frequency", DEFAULT_TIME_FREQUENCY)
    return ARCHITECTURES[name](**params)


def save_model(
    directory: str | Path,
    spec: dict[str, Any],
    model: nn.Module,
    ema: nn.Module | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``ema.safetensors`` atomically.

    Args:
        directory: the model directory (created).
        spec: JSON-serializable description with keys ``arch`` (for :func:`build_model`),
            ``path`` (for :func:`build_path`), ``prediction``, and optionally ``source`` and
            ``standardizer``.
        model: the trained network (raw weights).
        ema: a network holding the EMA weights; the raw weights are used when None.

    Returns:
        The directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full = {"format_version": FORMAT_VERSION, **spec}
    for name, net in (("model", model), ("ema", ema if ema is not None else model)):
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(directory / f"{name}.safetensors") as tmp:
            save_file(tensors, str(tmp))
    with atomic_path(directory / "config.json") as tmp:
        tmp.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return directory


def _model_dir(path: str | Path) -> Path:
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    if (path / "config.json").is_file():
        return path
    raise ModelFileError(
        f"{path}: not a run or model directory (no model/config.json or config.json)"
    )


def load_spec(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run or model directory, checked."""
    cfg_file = _model_dir(path) / "config.json"
    try:
        spec = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{cfg_file}: not a valid JSON model config ({err})") from None
    if not isinstance(spec, dict) or spec.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{cfg_file}: expected a model config with format_version {FORMAT_VERSION}"
        )
    for key in ("arch", "path", "prediction"):
        if key not in spec:
            raise ModelFileError(f"{cfg_file}: missing key {key!r}")
    return spec


def load(
    path: str | Path, *, weights: str = "ema", device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild a trained model from a run directory or its ``model/`` directory.

    The returned module is in eval mode and carries ``flow_path`` (its AffinePath),
    ``prediction`` (its prediction kind) and ``spec`` (the model config, with ``source`` and
    ``standardizer`` when the run had them), so ``fm.sample(fm.load(run), x0, steps=8)``
    needs nothing else. No file is unpickled: weights are safetensors, the config JSON.

    Args:
        path: a run directory (holding ``model/``) or a model directory.
        weights: ``ema`` (default, what sampling should use) or ``model`` (raw weights).
        device: where to put the model.

    Raises:
        ModelFileError: a missing, corrupted or mismatched file, named in the message.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    directory = _model_dir(path)
    spec = load_spec(directory)
    try:
        model = build_model(spec["arch"])
        flow_path = build_path(spec["path"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{directory / 'config.json'}: invalid model config ({err})") from None
    weight_file = directory / f"{weights}.safetensors"
    try:
        state = load_file(str(weight_file))
    except (OSError, SafetensorError, ValueError) as err:
        raise ModelFileError(f"{weight_file}: cannot read weights ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise ModelFileError(
            f"{weight_file}: weights do not match the architecture in config.json ({detail})"
        ) from None
    model.flow_path = flow_path
    model.prediction = spec["prediction"]
    model.spec = spec
    return model.to(device).eval()
