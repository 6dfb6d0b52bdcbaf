"""The schema of a model file's ``config.json``: every key checked before anything is built.

:func:`check_spec` validates a parsed ``config.json`` of any kind (a FlowModel's, ``discrete``,
``mixed``, ``manifold``) with pydantic, with bounds: the top-level keys of its kind (unknown
ones are errors), the network's arguments (those of the built-in networks through the run
config's own model classes in :mod:`flowmatch.train.config.models`, so the bounds of a run
config apply to model files too, and a size limit, :mod:`flowmatch.models.netsize`), the
path's schedule with every parameter it is written with (:func:`check_schedule`), the data
standardization, labels and point shape. Each problem is one line naming the file and the
dotted key, e.g. ``model/config.json: prediction: expected one of velocity, x1, x0, epsilon,
score, got 'foo'``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from flowmatch.errors import ModelFileError
from flowmatch.models.files import FORMAT_VERSION
from flowmatch.models.latent import check_autoencoder_spec, check_latent_entry
from flowmatch.models.schema_errors import SpecProblem
from flowmatch.models.spec_schedules import (
    _REQUIRED,
    _STRICT,
    _field,
    _validate,
    check_schedule,
)

__all__ = ["FORMAT_VERSION", "SpecProblem", "check_arch", "check_schedule", "check_spec"]

# A model's info may hold facts of its own (kept in the file, not read back): the top level
# allows other keys, except those that look like a misspelt key of the file.
_TOP = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)
_DESCRIPTIVE = ("data", "columns", "class_names", "objective", "coupling", "units")
_MIXED_LAYOUT = ("kinds", "categories")


@functools.cache
def _types() -> dict[str, Any]:
    """The bounded value types of the run config (imported late: no import cycle)."""
    from flowmatch.train.config import types

    strict_bool = Annotated[bool, Field(strict=True)]
    return {
        "pos": types.PositiveInt,
        "nonneg": types.NonNegativeInt,
        "bool": strict_bool,
        "pos_list": Annotated[list[types.PositiveInt], Field(min_length=1)],
        "count_list": list[types.PositiveInt],
        "shape": Annotated[list[types.PositiveInt], Field(min_length=1, max_length=3)],
    }


_ARCH_EXTRAS: dict[str, dict[str, tuple[str, Any]]] = {
    # name: {key: (type name in _types() or "side", default or _REQUIRED)}
    "mlp": {"dim": ("pos", _REQUIRED), "out_dim": ("pos?", None), "two_times": ("bool", None)},
    "mixed_mlp": {"num_continuous": ("nonneg", _REQUIRED), "vocab_sizes": ("pos_list", _REQUIRED)},
    "unet": {
        "channels": ("pos", None),
        "size": ("side", None),
        "num_classes": ("pos?", None),
        "two_times": ("bool", None),
    },
    "transformer": {
        "length": ("pos", _REQUIRED),
        "vocab_size": ("pos?", None),
        "channels": ("pos?", None),
        "out_size": ("pos?", None),
        "num_classes": ("pos?", None),
        "causal": ("bool", None),
    },
}
_ARCH_EXTRAS["dit"] = _ARCH_EXTRAS["unet"]  # the image's channels and side, labels, two times
_ARCH_SHARED: dict[str, tuple[str, dict[str, str]]] = {
    # name: (run-config class, {file key: run-config key})
    "mlp": ("MLPConfig", {k: k for k in ("hidden", "depth", "activation", "time_embed_dim",
                                        "time_frequency", "fourier_features", "fourier_scale")}),
    "mixed_mlp": ("MLPConfig", {k: k for k in ("hidden", "depth", "activation",
                                              "time_embed_dim", "time_frequency")}),
    "unet": ("UNetConfig", {"base": "channels", "multipliers": "multipliers",
                           "num_res_blocks": "res_blocks", "attention_resolutions": "attention",
                           "groups": "groups", "dropout": "dropout",
                           "time_embed_dim": "time_embed_dim",
                           "time_frequency": "time_frequency"}),
    "transformer": ("TransformerConfig", {k: k for k in ("dim", "depth", "heads", "mlp_ratio",
                                                        "dropout", "positions")}),
    "dit": ("DiTConfig", {k: k for k in ("patch", "dim", "depth", "heads", "mlp_ratio", "dropout",
                                        "positions", "time_embed_dim", "time_frequency")}),
}  # fmt: skip


def _extra_type(kind: str) -> Any:
    t = _types()
    if kind == "pos?":
        return t["pos"] | None
    if kind == "side":
        return Annotated[int, Field(strict=True, ge=8, le=64)]
    return t[kind]


@functools.cache
def _arch_model(name: str) -> type[BaseModel]:
    """The schema of a built-in network's arguments in a model file."""
    from flowmatch.train.config import models

    cls_name, shared = _ARCH_SHARED[name]
    source = getattr(models, cls_name)
    fields: dict[str, Any] = {"name": (Literal[name], _REQUIRED)}
    for key, run_key in shared.items():
        fields[key] = _field(source, run_key)
    if name == "transformer":  # its time embedding: as an MLP's
        for key in ("time_embed_dim", "time_frequency"):
            fields[key] = _field(models.MLPConfig, key)
    for key, (kind, default) in _ARCH_EXTRAS[name].items():
        fields[key] = (_extra_type(kind), default)
    return create_model(f"{name}_arch", __config__=_STRICT, **fields)


def check_arch(arch: Any, key: str = "arch") -> dict[str, Any]:
    """The network's ``{"name": ..., **kwargs}``, checked: a built-in network's arguments by
    their run-config types and bounds and its size (:func:`~flowmatch.models.netsize.check_size`);
    another name must be registered (its arguments are its constructor's business).

    Raises:
        SpecProblem: the dotted key and what is wrong.
    """
    from flowmatch.models import registry
    from flowmatch.models.netsize import check_size

    if not isinstance(arch, dict):
        raise SpecProblem(key, f"expected a mapping (name: a registered model), got {arch!r:.80}")
    name = arch.get("name")
    if not isinstance(name, str):
        raise SpecProblem(f"{key}.name", f"expected a registered model name, got {name!r:.80}")
    try:
        registry.lookup(name)
    except ValueError as err:
        raise SpecProblem(f"{key}.name", str(err)) from None
    if any(not isinstance(k, str) for k in arch):
        raise SpecProblem(key, "keys must be strings")
    if name not in _ARCH_SHARED:
        return dict(arch)
    model = _validate(_arch_model(name), arch, key)
    checked = {k: getattr(model, k) for k in arch}
    try:
        check_size(checked)
    except ValueError as err:
        raise SpecProblem(key, str(err)) from None
    return checked


# --------------------------------------------------------------------- the file


def _finite_floats(value: Any, *, positive: bool) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v > 0 or not positive)
        for v in value
    )


def _check_standardizer(raw: Any, key: str, dim: int | None) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict) or set(raw) != {"mean", "std"}:
        raise SpecProblem(key, f"expected a mapping with keys mean and std, got {raw!r:.80}")
    if not _finite_floats(raw["mean"], positive=False) or not raw["mean"]:
        raise SpecProblem(f"{key}.mean", "expected a non-empty list of finite numbers")
    if not _finite_floats(raw["std"], positive=True):
        raise SpecProblem(f"{key}.std", "expected a list of finite numbers > 0")
    n = len(raw["mean"])
    if len(raw["std"]) != n:
        raise SpecProblem(f"{key}.std", f"expected {n} numbers (as mean), got {len(raw['std'])}")
    if dim is not None and n != dim:
        raise SpecProblem(f"{key}.mean", f"expected {dim} numbers (the data dimension), got {n}")


@functools.cache
def _file_model(kind: str) -> type[BaseModel]:
    """The top-level keys of a ``config.json`` of one kind (the parts checked elsewhere are
    typed Any here)."""
    from flowmatch.data.toy2d import TOY_DATASETS
    from flowmatch.paths import PREDICTION_KINDS

    t = _types()
    str_list = list[str] | None
    fields: dict[str, Any] = {
        "format_version": (Literal[FORMAT_VERSION], _REQUIRED),
        "arch": (Any, _REQUIRED),
        "data": (str | None, None),
        "columns": (str_list, None),
        "class_names": (str_list, None),
        "objective": (Any, None),
        "coupling": (Any, None),
        "units": (Literal["degrees", "radians"] | None, None),
    }
    labels = {"num_classes": (t["pos"] | None, None), "null_class": (t["nonneg"] | None, None)}
    if kind == "flow":
        fields.update(
            kind=(Literal["flow"], None),
            path=(Any, _REQUIRED),
            prediction=(Literal[PREDICTION_KINDS], _REQUIRED),
            two_times=(t["bool"], None),
            source=(Literal[tuple(TOY_DATASETS)] | None, None),
            shape=(t["shape"] | None, None),
            standardizer=(Any, None),
            latent=(Any, None),
            **labels,
        )
    elif kind == "autoencoder":
        fields.update(kind=(Literal[kind], _REQUIRED), shape=(t["shape"], _REQUIRED),
                      latent_shape=(t["shape"], _REQUIRED))  # fmt: skip
    elif kind == "discrete":
        fields.update(
            kind=(Literal["discrete"], _REQUIRED),
            path=(Any, _REQUIRED),
            length=(t["pos"], _REQUIRED),
            vocab=(Any, None),
            **labels,
        )
    elif kind == "mixed":
        fields.update(
            kind=(Literal["mixed"], _REQUIRED),
            num_continuous=(t["nonneg"], _REQUIRED),
            vocab_sizes=(t["count_list"], _REQUIRED),
            kappa=(Any, _REQUIRED),
            standardizer=(Any, None),
            kinds=(Any, None),
            categories=(Any, None),
        )
    else:
        fields.update(
            kind=(Literal["manifold"], _REQUIRED),
            manifold=(Any, _REQUIRED),
            path=(Any, _REQUIRED),
            **labels,
        )
    return create_model(f"{kind}_model_file", __config__=_TOP, **fields)


def _check_misspelt(spec: dict[str, Any], schema: type[BaseModel]) -> None:
    """Refuse an unknown top-level key that looks like a misspelt key of the file."""
    from difflib import get_close_matches

    for key in spec:
        if key not in schema.model_fields:
            close = get_close_matches(str(key), list(schema.model_fields), n=1, cutoff=0.8)
            if close:
                raise SpecProblem(str(key), f"unknown key (did you mean {close[0]!r}?)")


def _kind(spec: dict[str, Any]) -> str:
    kind = spec.get("kind", "flow")
    if kind not in _CHECKS:
        raise SpecProblem("kind", f"expected one of {', '.join(_CHECKS)}, got {kind!r:.80}")
    return str(kind)


def _check_labels(spec: dict[str, Any], arch: dict[str, Any]) -> None:
    k, null = spec.get("num_classes"), spec.get("null_class")
    net_k = arch.get("num_classes")
    if k is not None and net_k is not None and k != net_k:
        raise SpecProblem("num_classes", f"expected {net_k} (arch.num_classes), got {k}")
    k = k if k is not None else net_k
    if null is not None and (k is None or null > k):
        bound = "null (a model without labels)" if k is None else f"in [0, {k}]"
        raise SpecProblem("null_class", f"expected {bound}, got {null}")


def _check_flow(spec: dict[str, Any], arch: dict[str, Any]) -> None:
    """The FlowModel's path, point shape (against its network) and standardization."""
    spec["path"] = check_schedule(spec["path"], "path")
    shape = spec.get("shape")
    name = arch["name"]
    if name == "mlp":
        expected: list[Any] | None = [arch["dim"]]
        if arch.get("out_dim") not in (None, arch["dim"]):
            raise SpecProblem("arch.out_dim", f"expected null or {arch['dim']} (arch.dim)")
    elif name in ("unet", "dit"):
        side = arch.get("size", 8)
        expected = [arch.get("channels", 1), side, side]
    else:
        expected = shape
    if shape is not None and expected is not None and shape != expected:
        raise SpecProblem("shape", f"expected {expected} (the network's points), got {shape}")
    two = spec.get("two_times")
    if name in ("mlp", "unet", "dit") and two is not None and two != bool(arch.get("two_times")):
        want = str(bool(arch.get("two_times"))).lower()
        raise SpecProblem("two_times", f"expected {want} (arch.two_times), got {str(two).lower()}")
    shape = shape if shape is not None else expected
    _check_standardizer(spec.get("standardizer"), "standardizer", _point_dim(shape))
    check_latent_entry(spec.get("latent"), shape)
    _check_labels(spec, arch)


def _point_dim(shape: list[int] | None) -> int | None:
    return shape[0] if shape is not None and len(shape) == 1 else None


def _check_discrete(spec: dict[str, Any], arch: dict[str, Any]) -> None:
    from flowmatch.data.text import Vocabulary
    from flowmatch.discrete.path import MixturePath

    path = spec["path"] = dict(spec["path"]) if isinstance(spec["path"], dict) else spec["path"]
    if not isinstance(path, dict):
        raise SpecProblem(
            "path", f"expected a mapping (vocab_size, source, kappa), got {path!r:.80}"
        )
    unknown = sorted(set(path) - {"vocab_size", "source", "kappa"})
    if unknown:
        raise SpecProblem(
            f"path.{unknown[0]}", "unknown key (valid keys: vocab_size, source, kappa)"
        )
    for key in ("vocab_size", "source", "kappa"):
        if key not in path:
            raise SpecProblem("path", f"missing key {key!r}")
    path["kappa"] = check_schedule(path["kappa"], "path.kappa")
    try:
        MixturePath.from_dict(path)
    except (TypeError, ValueError) as err:
        raise SpecProblem("path", " ".join(str(err).split())) from None
    if spec.get("vocab") is not None:
        try:
            Vocabulary.from_dict(spec["vocab"])
        except (TypeError, ValueError) as err:
            raise SpecProblem("vocab", str(err)) from None
    if arch["name"] == "transformer" and arch["length"] != spec["length"]:
        raise SpecProblem(
            "length", f"expected {arch['length']} (arch.length), got {spec['length']}"
        )
    _check_labels(spec, arch)


def _check_mixed(spec: dict[str, Any], arch: dict[str, Any]) -> None:
    spec["kappa"] = check_schedule(spec["kappa"], "kappa")
    if arch["name"] == "mixed_mlp":
        for key in ("num_continuous", "vocab_sizes"):
            if arch[key] != spec[key]:
                raise SpecProblem(key, f"expected {arch[key]} (arch.{key}), got {spec[key]}")
    _check_standardizer(spec.get("standardizer"), "standardizer", spec["num_continuous"] or None)


def _check_manifold(spec: dict[str, Any], arch: dict[str, Any]) -> None:
    from flowmatch.manifolds.files import manifold_from_dict

    try:
        manifold = manifold_from_dict(spec["manifold"])
    except (TypeError, ValueError, RecursionError) as err:
        raise SpecProblem("manifold", " ".join(str(err).split())) from None
    spec["path"] = check_schedule(spec["path"], "path")
    if spec["path"]["schedule"] == "brownian_bridge":
        raise SpecProblem("path.schedule", "a manifold model's path needs a schedule, got a bridge")
    if arch["name"] == "mlp":
        for key, want in (("dim", manifold.feature_dim), ("out_dim", manifold.ambient_dim)):
            if arch.get(key) != want:
                raise SpecProblem(
                    f"arch.{key}", f"expected {want} (the manifold's), got {arch.get(key)}"
                )
    _check_labels(spec, arch)


_CHECKS = {"flow": _check_flow, "discrete": _check_discrete, "mixed": _check_mixed,
           "manifold": _check_manifold, "autoencoder": check_autoencoder_spec}  # fmt: skip


def check_spec(spec: Any, file: str | Path) -> dict[str, Any]:
    """A parsed ``config.json``, fully checked before anything is built; returns it with its
    network arguments and schedules as validated.

    Raises:
        ModelFileError: ``FILE: KEY: what was expected, got what`` (one line).
    """
    if not isinstance(spec, dict):
        raise ModelFileError(f"{file}: expected a JSON mapping (a model config), got {spec!r:.80}")
    if spec.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{file}: format_version: expected a model config with format_version "
            f"{FORMAT_VERSION}, got {spec.get('format_version')!r:.40}"
        )
    try:
        kind = _kind(spec)
        schema = _file_model(kind)
        _validate(schema, spec, "")
        _check_misspelt(spec, schema)
        checked = dict(spec)
        checked["arch"] = arch = check_arch(spec["arch"], "arch")
        _CHECKS[kind](checked, arch)
    except SpecProblem as err:
        raise ModelFileError(f"{file}: {err}") from None
    return checked
