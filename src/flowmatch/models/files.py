"""Model files: ``config.json`` + ``model.safetensors`` + ``ema.safetensors``, and ``fm.load``.

A model directory holds everything needed to rebuild and sample a trained
:class:`~flowmatch.flow.FlowModel` with no pickle: the architecture (a registered name and
its constructor arguments), the path (schedule and its parameters), the prediction kind,
whether it takes two times, the source distribution, its labels, the data transform (the
standardization of a table) and descriptive facts (data name, columns, class names, the
objective and coupling it was trained with). Weights are safetensors of the net's own
state dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from flowmatch.atomic import atomic_path
from flowmatch.errors import ModelFileError
from flowmatch.flow import FlowModel
from flowmatch.models import registry
from flowmatch.models.embeddings import DEFAULT_TIME_FREQUENCY
from flowmatch.paths import AffinePath, BrownianBridgePath, path_from_dict, path_to_dict

if TYPE_CHECKING:
    from flowmatch.discrete.mixed_model import MixedFlowModel
    from flowmatch.discrete.model import DiscreteFlowModel

__all__ = [
    "FORMAT_VERSION",
    "INFO_KEYS",
    "ModelFileError",
    "build_model",
    "build_path",
    "load",
    "load_spec",
    "save_flow",
    "save_model",
    "spec_of",
]

FORMAT_VERSION = 1
"""The version of the model-file format this flowmatch writes and reads."""

INFO_KEYS = ("data", "columns", "class_names", "objective", "coupling")
"""Descriptive keys of ``config.json`` kept in :attr:`FlowModel.info`."""


def build_path(spec: dict[str, Any]) -> AffinePath | BrownianBridgePath:
    """The path of a ``{"schedule": name, **params}`` dict (see
    :func:`~flowmatch.paths.path_from_dict`)."""
    return path_from_dict(spec)


def build_model(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialized network from ``{"name": "mlp", **kwargs}`` (any registered name).

    The arguments are checked first (:func:`flowmatch.models.spec.check_arch`: a built-in
    network's types, bounds and size, so that an absurd size is refused before it is built).

    Raises:
        ValueError: an unknown name, bad arguments or a network over the size limit, naming
            them (``arch.KEY: ...``).
    """
    from flowmatch.models.spec import check_arch  # pydantic: loaded only when a net is built

    params = check_arch(arch)
    if params.get("name") in ("mlp", "unet"):
        # Files written before time_frequency existed embedded time at up to 1000 rad.
        params.setdefault("time_frequency", DEFAULT_TIME_FREQUENCY)
    try:
        return registry.build(params)
    except ValueError as err:
        raise ValueError(f"arch: {err}") from None
    except Exception as err:  # a registered network of your own may raise anything
        detail = " ".join(str(err).split())
        raise ValueError(
            f"arch: building model {params['name']!r} failed ({type(err).__name__}: {detail})"
        ) from None


def spec_of(flow: FlowModel) -> dict[str, Any]:
    """The ``config.json`` description of a FlowModel: its info, the architecture (a
    registered name and its arguments), path, prediction, two-time flag, source, labels,
    point shape and data standardization.

    Raises:
        ValueError: the net is not a registered architecture.
    """
    spec: dict[str, Any] = {
        **flow.info,
        "arch": registry.architecture(flow.net),
        "path": path_to_dict(flow.path),
        "prediction": flow.prediction,
        "two_times": flow.two_times,
        "source": flow.source,
        "num_classes": flow.num_classes,
        "null_class": flow.null_class,
    }
    if flow.shape is not None:
        spec["shape"] = list(flow.shape)
    if flow.transform is not None:  # a Standardizer, or a LatentCodec (key "latent")
        spec[getattr(flow.transform, "SPEC_KEY", "standardizer")] = flow.transform.to_dict()
    return spec


def _write(
    directory: Path,
    spec: dict[str, Any],
    nets: dict[str, nn.Module],
    card: dict[str, Any] | None = None,
) -> Path:
    """Check the spec as :func:`load` will (a file that cannot be read back is never
    written), then write the weights, ``config.json`` and the model card ``README.md``
    (:func:`flowmatch.models.hub.model_card`, with ``card``'s facts), each atomically."""
    from safetensors.torch import save_file

    from flowmatch.models.hub import model_card, write_card

    full = {"format_version": FORMAT_VERSION, **spec}
    try:
        from flowmatch.models.spec import check_spec

        check_spec(json.loads(json.dumps(full, allow_nan=False)), "config.json")
        model_card(full, card)  # an unknown card key fails before anything is written
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{directory}: cannot save the model ({err})") from None
    text = json.dumps(full, indent=2, sort_keys=True) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    for name, net in nets.items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_path(directory / f"{name}.safetensors") as tmp:
            save_file(tensors, str(tmp))
    with atomic_path(directory / "config.json") as tmp:
        tmp.write_text(text)
    write_card(directory, full, card)
    return directory


def save_flow(
    directory: str | Path,
    flow: Any,
    *,
    ema: nn.Module | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write a FlowModel's ``config.json``, ``model.safetensors``, ``ema.safetensors`` and
    model card ``README.md``.

    Args:
        directory: the model directory (created; each file replaced atomically).
        flow: the model (a FlowModel, or any model with ``config()`` and ``net``: the
            discrete and mixed-table models); its net's weights go to ``model.safetensors``.
        ema: a model of the same class, or a net, with the averaged weights for
            ``ema.safetensors`` (what :func:`load` reads by default); ``flow``'s when None.
        card: facts for the model card (``license``, ``data``, ``quality``, ...: see
            :func:`flowmatch.models.hub.model_card`).

    Raises:
        ModelFileError: the net is not a registered architecture, an argument or info
            value is not JSON-serializable, or an unknown ``card`` key.
    """
    try:
        spec = flow.config()
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{directory}: cannot save the model ({err})") from None
    ema_net = ema.net if isinstance(ema, type(flow)) else ema
    nets = {"model": flow.net, "ema": ema_net or flow.net}
    if hasattr(getattr(flow, "transform", None), "save"):  # a latent model's autoencoder
        flow.transform.save(directory)
    return _write(Path(directory), spec, nets, card)


def save_model(
    directory: str | Path,
    spec: dict[str, Any],
    model: nn.Module,
    ema: nn.Module | None = None,
) -> Path:
    """Write a model directory from a spec dict (``arch``, ``path``, ``prediction``, and
    optionally ``source``, ``standardizer``, ``shape``, ...) and the raw and EMA nets.

    :meth:`FlowModel.save_pretrained` is the usual way; this is for specs written by hand.
    A path given with some of its schedule's parameters is written with all of them (the
    schedule's defaults), as a file must carry them.

    Raises:
        ModelFileError: a spec that :func:`load` would refuse, naming the key.
    """
    spec = dict(spec)
    if isinstance(spec.get("path"), dict) and spec.get("kind") in (None, "flow", "manifold"):
        try:
            spec["path"] = path_to_dict(path_from_dict(spec["path"]))
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"{directory}: cannot save the model (path: {err})") from None
    return _write(Path(directory), spec, {"model": model, "ema": ema or model})


def _model_dir(path: str | Path, revision: str | None = None) -> Path:
    """The model directory of a run directory, a model directory or, when ``path`` is no
    local path but reads as a Hub repo id, its downloaded snapshot."""
    from flowmatch.models.hub import download, is_hub_id  # huggingface_hub only for a hub id

    path = download(str(path), revision) if is_hub_id(path) else Path(path)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    if (path / "config.json").is_file():
        return path
    raise ModelFileError(
        f"{path}: not a run or model directory (no model/config.json or config.json)"
    )


def load_spec(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run or model directory, fully checked
    (:func:`flowmatch.models.spec.check_spec`: every key, with bounds, before anything is
    built).

    Raises:
        ModelFileError: ``FILE: KEY: what was expected`` (one line).
    """
    cfg_file = _model_dir(path) / "config.json"
    try:
        spec = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        detail = "nested too deeply" if isinstance(err, RecursionError) else err
        raise ModelFileError(f"{cfg_file}: not a valid JSON model config ({detail})") from None
    from flowmatch.models.spec import check_spec

    return check_spec(spec, cfg_file)


def _flow_from_spec(spec: dict[str, Any], net: nn.Module) -> FlowModel:
    """The FlowModel a checked spec describes around a built net (files of every version)."""
    from flowmatch.data.tabular import Standardizer

    arch = spec["arch"]
    shape = spec.get("shape")
    if shape is None and isinstance(arch.get("dim"), int):
        shape = [arch["dim"]]  # files written before images existed
    num_classes = spec.get("num_classes")
    if num_classes is None and isinstance(spec.get("class_names"), list):
        num_classes = len(spec["class_names"])
    transform = None
    if spec.get("standardizer") is not None:
        transform = Standardizer.from_dict(spec["standardizer"])
    two_times = spec.get("two_times")
    return FlowModel(
        net,
        path=path_from_dict(spec["path"]),
        prediction=spec["prediction"],
        two_times=bool(arch.get("two_times", False) if two_times is None else two_times),
        source=spec.get("source"),
        num_classes=num_classes,
        null_class=spec.get("null_class"),
        transform=transform,
        shape=shape,
        info={k: spec[k] for k in INFO_KEYS if k in spec},
    )


def _build(spec: dict[str, Any]) -> Any:
    """The model of a checked spec, freshly initialized."""
    kind = spec.get("kind")
    if kind == "discrete":
        from flowmatch.discrete.files import flow_from_spec

        return flow_from_spec(spec)
    if kind == "mixed":
        from flowmatch.discrete.mixed_model import mixed_from_spec

        return mixed_from_spec(spec)
    if kind == "manifold":
        from flowmatch.manifolds.files import flow_from_spec as manifold_flow

        return manifold_flow(spec)
    if kind == "autoencoder":
        from flowmatch.models.latent import autoencoder_from_spec

        return autoencoder_from_spec(spec)
    return _flow_from_spec(spec, build_model(spec["arch"]))


def _read_weights(weight_file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, refused if any holds NaN or Inf."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weight_file))
    except (OSError, SafetensorError, ValueError, RuntimeError) as err:
        detail = " ".join(str(err).split())
        raise ModelFileError(f"{weight_file}: cannot read weights ({detail})") from None
    bad = {
        name: int((~torch.isfinite(t)).sum())
        for name, t in state.items()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    }
    if bad:
        name, count = next(iter(bad.items()))
        others = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise ModelFileError(
            f"{weight_file}: tensor {name!r} holds {count} NaN/Inf values of "
            f"{state[name].numel()}{others}; non-finite weights cannot be used"
        )
    return state


def load(
    path: str | Path,
    *,
    weights: str = "ema",
    device: str | torch.device = "cpu",
    revision: str | None = None,
) -> FlowModel | DiscreteFlowModel | MixedFlowModel:
    """Rebuild a trained model from a run directory, its ``model/`` directory or a Hugging
    Face Hub repo id.

    Returns a :class:`~flowmatch.flow.FlowModel` (a
    :class:`~flowmatch.discrete.DiscreteFlowModel` for a discrete model, a
    :class:`~flowmatch.discrete.MixedFlowModel` for a mixed table model, a
    :class:`~flowmatch.manifolds.ManifoldFlowModel` for a manifold model, an
    :class:`~flowmatch.models.autoencoder.AutoEncoder` for an autoencoder; a latent flow
    model's ``decode`` maps its samples to images through its copy of the autoencoder) in eval mode
    carrying its path, prediction kind, source, labels and data transform, so
    ``fm.sample(fm.load(run), x0, steps=8)``
    needs nothing else. No file is unpickled: weights are safetensors, the config JSON. A net
    of your own must be registered (:func:`flowmatch.models.register`) in this process.

    Args:
        path: a run directory (holding ``model/``), a model directory, or a Hub repo id
            ``"user/name"`` (a ``str`` that is no local path; needs ``huggingface_hub``:
            only ``config.json``, ``*.safetensors`` and ``README.md`` are downloaded, see
            :mod:`flowmatch.models.hub`). A local path always wins.
        weights: ``ema`` (default, what sampling should use) or ``model`` (raw weights).
        device: where to put the model.
        revision: the Hub revision (branch, tag or commit) of a repo id; unused for a
            local path.

    Raises:
        ModelFileError: a missing, corrupted or mismatched file, named in the message.
    """
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    directory = _model_dir(path, revision)
    cfg_file = directory / "config.json"
    spec = load_spec(directory)
    try:
        flow = _build(spec)
    except ModelFileError:
        raise
    except Exception as err:  # a registered network may raise anything: one line, the file
        detail = " ".join(str(err).split()) or type(err).__name__
        if not detail.startswith("arch"):
            detail = f"invalid model config ({type(err).__name__}: {detail})"
        raise ModelFileError(f"{cfg_file}: {detail}") from None
    weight_file = directory / f"{weights}.safetensors"
    state = _read_weights(weight_file)
    try:
        flow.net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise ModelFileError(
            f"{weight_file}: weights do not match the architecture in config.json ({detail})"
        ) from None
    if spec.get("latent") is not None:  # a latent flow: its copy of the autoencoder decodes
        from flowmatch.models.latent import load_codec

        flow.transform = load_codec(directory, spec["latent"], flow.shape)
        flow.transform.autoencoder.to(device)
    return flow.to(device).eval()
