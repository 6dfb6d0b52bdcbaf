"""One-line messages for the model-file schema (:mod:`flowmatch.models.spec`): the dotted key
and what it expects, described from its declared type and bounds as a run config's are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["SpecProblem", "first_problem"]


class SpecProblem(ValueError):
    """One problem of a model file: the dotted ``key`` (empty: the whole file) and what is
    wrong; ``str()`` is ``"key: message"``."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, " ".join(str(message).split())
        super().__init__(f"{key}: {self.message}" if key else self.message)


def _show(value: Any) -> str:
    from flowmatch.train.config.messages import _show as show  # the run config's words

    return show(value)


def _dotted(prefix: str, loc: Sequence[Any]) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(tp: Any, meta: Sequence[Any]) -> str:
    from flowmatch.train.config.messages import _describe as describe  # the run config's words

    return describe(tp, meta)


def _type_at(schema: type[BaseModel], loc: Sequence[Any]) -> tuple[Any, list[Any]] | None:
    """The declared type and constraints at an error location of ``schema``."""
    from flowmatch.train.config.messages import _unwrap

    tp: Any = schema
    meta: list[Any] = []
    for part in loc:
        tp, meta, _ = _unwrap(tp, meta)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp, meta = field.annotation, list(field.metadata)
        elif isinstance(part, int) and get_origin(tp) is list:
            tp, meta = get_args(tp)[0], []
        else:
            return None
    return tp, meta


def first_problem(err: ValidationError, schema: type[BaseModel], prefix: str) -> SpecProblem:
    """The first error of a validation of ``schema`` (at the dotted key ``prefix``) as a
    :class:`SpecProblem`."""
    first = err.errors()[0]
    loc = tuple(part for part in first["loc"] if not isinstance(part, str) or "[" not in part)
    kind = first["type"]
    if kind == "extra_forbidden":
        valid = ", ".join(schema.model_fields)
        parent = _dotted(prefix, loc[:-1])
        where = f" of {parent}" if parent else ""
        return SpecProblem(_dotted(prefix, loc), f"unknown key{where} (valid keys: {valid})")
    if kind == "value_error":
        cause = (first.get("ctx") or {}).get("error")
        return SpecProblem(_dotted(prefix, loc), str(cause) if cause else first["msg"])
    found = _type_at(schema, loc)
    expected = _describe(*found) if found is not None else first["msg"]
    if kind == "missing":
        return SpecProblem(
            _dotted(prefix, loc[:-1]), f"missing key {loc[-1]!r} (expected {expected})"
        )
    return SpecProblem(_dotted(prefix, loc), f"expected {expected}, got {_show(first['input'])}")
