"""The schedules of a model file's paths, checked strictly: every parameter a schedule is
written with is required and unknown keys are errors (part of :mod:`flowmatch.models.spec`,
with the helpers its schemas share)."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from flowmatch.models.schema_errors import SpecProblem, first_problem

__all__ = ["check_schedule"]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
_REQUIRED = ...


def _field(source: type[BaseModel], name: str, *, default: Any = None) -> tuple[Any, Any]:
    """A field of a run-config class (its type and bounds), not required here."""
    info: FieldInfo = source.model_fields[name]
    tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return tp, default


def _validate(schema: type[BaseModel], data: Any, key: str) -> BaseModel:
    if not isinstance(data, dict):
        raise SpecProblem(key, f"expected a mapping, got {data!r:.80}")
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise first_problem(err, schema, key) from None


def _schedule_ctor(name: str) -> Any:
    from flowmatch.paths import BrownianBridgePath
    from flowmatch.schedules import SCHEDULES

    return BrownianBridgePath if name == "brownian_bridge" else SCHEDULES[name]


@functools.cache
def _written(name: str) -> tuple[str, ...]:
    """The parameters a schedule is written with (those of a default one)."""
    from flowmatch.paths import AffinePath, path_to_dict

    default = _schedule_ctor(name)()
    path = default if name == "brownian_bridge" else AffinePath(default)
    return tuple(k for k in path_to_dict(path) if k != "schedule")


def _param_type(name: str, param: inspect.Parameter) -> Any:
    """A schedule parameter's type: the run config's (with its bounds) where it has it."""
    from flowmatch.train.config.choices import PATH

    variant = PATH.variants.get(name)
    if variant is not None and param.name in variant.model_fields:
        return _field(variant, param.name)[0]
    kind = type(param.default)
    if kind is float:
        return Annotated[float, Field(strict=True, allow_inf_nan=False)]
    return Annotated[kind, Field(strict=True)]


@functools.cache
def _schedule_model(name: str) -> type[BaseModel]:
    params = inspect.signature(_schedule_ctor(name)).parameters
    required = set(_written(name))
    fields: dict[str, Any] = {"schedule": (Literal[name], _REQUIRED)}
    for pname, param in params.items():
        fields[pname] = (_param_type(name, param), _REQUIRED if pname in required else None)
    return create_model(f"{name}_schedule", __config__=_STRICT, **fields)


def check_schedule(raw: Any, key: str = "path") -> dict[str, Any]:
    """A ``{"schedule": name, **parameters}`` of a path (or a kappa schedule), strictly: the
    name is required, and so is every parameter the schedule is written with; unknown keys
    are errors. The schedule is built to check its own rules (e.g. beta_max > beta_min).

    Raises:
        SpecProblem: the dotted key and what is wrong.
    """
    from flowmatch.schedules import SCHEDULES

    names = (*SCHEDULES, "brownian_bridge")
    if not isinstance(raw, dict):
        raise SpecProblem(key, f"expected a mapping (schedule: one of {', '.join(names)}; and "
                          f"its parameters), got {raw!r:.80}")  # fmt: skip
    name = raw.get("schedule")
    if "schedule" not in raw:
        raise SpecProblem(key, f"missing key 'schedule' (one of {', '.join(names)})")
    if name not in names:
        raise SpecProblem(
            f"{key}.schedule", f"expected one of {', '.join(names)}, got {name!r:.80}"
        )
    model = _validate(_schedule_model(name), raw, key)
    params = {k: getattr(model, k) for k in raw if k != "schedule"}
    try:
        _schedule_ctor(name)(**params)
    except (TypeError, ValueError) as err:
        raise SpecProblem(key, " ".join(str(err).split())) from None
    return {"schedule": name, **params}
