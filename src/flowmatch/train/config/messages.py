"""One-line messages from pydantic's errors: the dotted key and what it expects, from its type.

A union section's variant tag, which pydantic puts in an error's location
(``("path", "vp", "beta_max")``), is not a key of the file and is left out of the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from flowmatch.errors import ConfigError
from flowmatch.train.config.choices import CHOICES
from flowmatch.train.config.sections import RunConfig
from flowmatch.train.config.types import Choice, _FieldProblem


def _unwrap(tp: Any, meta: list[Any]) -> tuple[Any, list[Any], bool]:
    """Strip Annotated and Optional from a type; return (type, constraints, nullable)."""
    nullable = False
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            parts = get_args(tp)
            tp, meta = parts[0], [*meta, *parts[1:]]
        elif origin is Union or type(tp).__name__ == "UnionType":
            args = [a for a in get_args(tp) if a is not type(None)]
            nullable = nullable or len(args) < len(get_args(tp))
            if len(args) != 1:
                return tp, meta, nullable
            tp = args[0]
        else:
            return tp, meta, nullable


def _constraints(meta: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in meta:
        for name in ("gt", "ge", "lt", "le", "min_length"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
        found.update(_constraints(list(getattr(item, "metadata", None) or [])))
    return found


def _num(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range(bounds: dict[str, Any]) -> str:
    lo = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    hi = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if lo and hi:
        return f" in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
    if lo:
        return f" {'>=' if lo[0] == '[' else '>'} {_num(lo[1])}"
    if hi:
        return f" {'<=' if hi[0] == ']' else '<'} {_num(hi[1])}"
    return ""


def _describe(tp: Any, meta: Sequence[Any] = (), *, plural: bool = False) -> str:
    if isinstance(tp, Choice):
        return tp.describe()
    tp, meta, nullable = _unwrap(tp, list(meta))
    bounds = _constraints(meta)
    origin = get_origin(tp)
    if origin is Literal:
        names = ", ".join(str(a) for a in get_args(tp))
        text = f"names among {names}" if plural else f"one of {names}"
    elif tp is bool:
        text = "booleans" if plural else "true or false"
    elif tp is int:
        text = ("integers" if plural else "an integer") + _range(bounds)
    elif tp is float:
        text = ("numbers" if plural else "a number") + _range(bounds)
    elif tp is str:
        text = "strings" if plural else "a string"
    elif origin is list:
        empty = "non-empty " if bounds.get("min_length", 0) > 0 else ""
        text = f"a {empty}list of {_describe(get_args(tp)[0], plural=True)}"
    elif origin is tuple:
        args = get_args(tp)
        text = f"a list of {len(args)} {_describe(args[0], plural=True)}"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        text = f"a mapping (keys: {', '.join(tp.model_fields)})"
    else:
        text = f"a value of type {getattr(tp, '__name__', tp)}"
    return f"{text} or null" if nullable and not plural else text


def _type_at(loc: Sequence[Any]) -> tuple[Any, list[Any]] | None:
    """The declared type and constraints of the config entry at a pydantic error location
    (a union section is its `Choice`; the variant tag that follows it picks the variant)."""
    tp: Any = RunConfig
    meta: list[Any] = []
    for part in loc:
        if isinstance(tp, Choice):
            variant = tp.variant(part) if part in tp.loc_tags() else None
            if variant is None:
                return None
            tp, meta = variant, []
            continue
        tp, meta, _ = _unwrap(tp, meta)
        if tp is RunConfig and part in CHOICES:
            tp, meta = CHOICES[part], []
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp, meta = field.annotation, list(field.metadata)
        elif isinstance(part, int) and get_origin(tp) in (list, tuple):
            args = get_args(tp)
            if get_origin(tp) is tuple and part >= len(args):
                return None
            tp, meta = args[0] if get_origin(tp) is list else args[part], []
        else:
            return None
    return tp, meta


def _section_at(parts: Sequence[Any]) -> type[BaseModel] | None:
    found = _type_at(parts)
    if found is None:
        return None
    tp, _, _ = _unwrap(*found)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _without_tag(loc: Sequence[Any]) -> tuple[Any, ...]:
    """The location less the variant tag pydantic puts after a union section."""
    if len(loc) >= 2 and loc[0] in CHOICES and loc[1] in CHOICES[loc[0]].loc_tags():
        return (loc[0], *loc[2:])
    return tuple(loc)


def _dotted(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    if isinstance(value, (str, float)):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
        except RecursionError:  # nested too deeply to show
            text = repr(type(value).__name__)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_key(section: type[BaseModel] | Choice, key: str, choice: Choice | None = None) -> str:
    """The unknown-key message: the valid keys of ``section`` and the closest one; with the
    ``choice`` of a variant, a close key of another variant is named with its variant."""
    valid = section.keys() if isinstance(section, Choice) else list(section.model_fields)
    close = get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if not close and choice is not None:
        other = get_close_matches(key, choice.keys(), n=1)
        if other and choice.owners(other[0]):
            owners = " or ".join(choice.owners(other[0]))
            hint = f"did you mean {other[0]!r} (a parameter of {owners})? "
    return f"unknown key ({hint}valid keys: {', '.join(valid)})"


def _error_text(err: Mapping[str, Any]) -> tuple[str, str]:
    """(dotted key, what is wrong) for one pydantic error."""
    raw = tuple(err["loc"])
    loc = _without_tag(raw)
    kind = err["type"]
    if kind == "value_error":
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldProblem):
            return _dotted((*loc, cause.key)), str(cause)
        return _dotted(loc), str(cause) if cause is not None else err["msg"]
    if kind == "extra_forbidden":
        section = _section_at(raw[:-1])
        if section is not None:
            choice = CHOICES.get(loc[0]) if len(loc) == 2 else None
            return _dotted(loc), _unknown_key(section, str(loc[-1]), choice)
        return _dotted(loc), "unknown key"
    if kind in ("union_tag_invalid", "union_tag_not_found") and loc and loc[-1] in CHOICES:
        choice, value = CHOICES[loc[-1]], err.get("input")
        if isinstance(value, Mapping) and choice.key in value:
            got = _show(value[choice.key])
            return _dotted((*loc, choice.key)), f"expected {choice.expected()}, got {got}"
        return _dotted(loc), f"expected {choice.describe()}, got {_show(value)}"
    if kind == "invalid_key":
        return _dotted(loc[:-1]), f"keys must be strings, got {_show(err.get('input'))}"
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a too-short tuple
        found = _type_at(raw[:-1])
        expected = _describe(*found) if found is not None else err["msg"]
        return _dotted(loc[:-1]), f"expected {expected}, item {loc[-1]} is missing"
    found = _type_at(raw)
    expected = _describe(*found) if found is not None else err["msg"]
    if kind == "missing":
        return _dotted(loc), f"missing required key (expected {expected})"
    return _dotted(loc), f"expected {expected}, got {_show(err.get('input'))}"


def _from_validation_error(exc: ValidationError) -> ConfigError:
    problems = [_error_text(err) for err in exc.errors()]
    shown = [f"{key or '(top level)'}: {what}" for key, what in problems[:5]]
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return ConfigError("config: " + "; ".join(shown) + more, key=problems[0][0] or None)
