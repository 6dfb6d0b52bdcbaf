"""Reading, overriding and writing run configs: YAML in, `RunConfig` out, and back."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from flowmatch.errors import ConfigError
from flowmatch.train.config.choices import CHOICES
from flowmatch.train.config.messages import (
    _describe,
    _from_validation_error,
    _section_at,
    _show,
    _type_at,
    _unknown_key,
)
from flowmatch.train.config.sections import RunConfig
from flowmatch.train.config.types import Choice

# ---------------------------------------------------------------------------------------------
# YAML


MAX_YAML_DEPTH = 64
"""The deepest nesting of mappings and lists a config may have (a run config has 3 levels)."""
MAX_YAML_NODES = 100_000
"""The most values a config may expand to, aliases counted at every use (a "billion laughs"
alias bomb is a few hundred bytes that expand to 10^9 values)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), rejects duplicate keys, and
    refuses documents nested deeper than `MAX_YAML_DEPTH` or expanding (aliases included) to
    more than `MAX_YAML_NODES` values, before building them."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_YAML_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: let SafeLoader report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands to more than `MAX_YAML_NODES` values or refers to
    itself (a recursive alias); linear in the number of distinct nodes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"expands to more than {MAX_YAML_NODES} values (an alias bomb?)",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise yaml.composer.ComposerError(
                None, None, "a recursive alias (a value that contains itself)", node.start_mark
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}invalid YAML: {problem}"


# ---------------------------------------------------------------------------------------------
# Public functions


def config_from_dict(data: Mapping[str, Any] | None) -> RunConfig:
    """Validate a mapping of sections (as read from YAML) into a `RunConfig`.

    Args:
        data: ``{"train": {"steps": 500}, ...}``; None or ``{}`` is the all-defaults run.

    Raises:
        ConfigError: on an unknown key, a wrong type or an out-of-range value.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config: expected a mapping of sections at the top level, got {_show(data)}"
        )
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _from_validation_error(exc) from None


def _check_key(parts: Sequence[str]) -> None:
    """Refuse a dotted override key that names no key of the schema. Under a union section a
    key of any variant is valid, and under ``model`` any key (a registered model's)."""
    key = ".".join(parts)
    node: type[BaseModel] | Choice = RunConfig
    for i, part in enumerate(parts):
        dotted = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, Choice):
            if part not in node.keys():
                if node.custom is not None:
                    return  # validation decides
                raise ConfigError(f"config: {dotted}: {_unknown_key(node, part)}", key=dotted)
            if not last:
                raise ConfigError(
                    f"config: {key}: unknown key ({dotted} is a value, not a section)", key=key
                )
            return
        if part not in node.model_fields:
            raise ConfigError(f"config: {dotted}: {_unknown_key(node, part)}", key=dotted)
        if not last:
            sub: type[BaseModel] | Choice | None = _section_at(parts[: i + 1])
            if node is RunConfig and part in CHOICES:
                sub = CHOICES[part]
            if sub is None:
                raise ConfigError(
                    f"config: {key}: unknown key ({dotted} is a value, not a section)", key=key
                )
            node = sub


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(parts):
        raise ConfigError(
            f"config: override {override!r}: expected KEY=VALUE with a dotted key, "
            "e.g. train.steps=500",
            key=key or None,
        )
    _check_key(parts)
    try:
        value = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config: {key}: override {override!r}: {_yaml_problem(exc)}", key=key
        ) from None
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            dotted = ".".join(parts[: i + 1])
            found = _type_at(parts[: i + 1])
            expected = _describe(*found) if found is not None else "a mapping"
            raise ConfigError(
                f"config: {dotted}: expected {expected}, got {_show(child)}", key=dotted
            )
        node = child
    choice = CHOICES.get(parts[0]) if len(parts) == 2 else None
    if choice is not None and parts[1] == choice.key and choice.variant(value) is not None:
        if value != node.get(choice.key, choice.default):  # a switch: the old defaults go
            kept = choice.without_defaults(node, value)
            node.clear()
            node.update(kept)
    node[parts[-1]] = value


def apply_overrides(cfg: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """A copy of ``cfg`` with ``--set`` style overrides applied and validated.

    Args:
        cfg: the config to start from; it is not changed.
        overrides: ``"section.key=value"`` strings, as for `load_config`.

    Raises:
        ConfigError: an override is malformed, names an unknown key or sets an invalid value.
    """
    raw = config_to_dict(cfg)
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config from YAML and apply ``--set`` overrides.

    Args:
        path: the YAML file; None starts from the defaults.
        overrides: ``"section.key=value"`` strings applied in order; the value is read as YAML
            (``500``, ``1e-3``, ``true``, ``null``, ``[1, 2, 4]``, ``{name: moons}``). An override
            may set a key of a section the file leaves out. Setting the tag of a union section
            (``path.schedule=vp``) drops the keys of the old variant that are at their defaults.

    Returns:
        The validated `RunConfig`.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, is not a mapping,
            an override is malformed or names an unknown key, or a value is invalid.
    """
    raw: Any = {}
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config: {file}: file not found", key=str(file)) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"config: {file}: cannot read ({reason})", key=str(file)) from None
        try:
            raw = _parse_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {file}: {_yaml_problem(exc)}", key=str(file)) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"config: {file}: expected a mapping of sections at the top level "
                f"(data, model, ...), got {type(raw).__name__} {_show(raw)}",
                key=str(file),
            )
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain JSON/YAML types (lists, not tuples), keyed as in the YAML file; a
    union section holds its chosen variant's keys only."""
    return cfg.model_dump(mode="json", by_alias=True)


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the config as YAML, atomically: a reader sees the old file or the whole new one.

    Args:
        cfg: the config to write.
        path: the destination; its directory must exist.
    """
    from flowmatch.atomic import atomic_path

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def with_absolute_paths(cfg: RunConfig, base_dir: str | Path) -> RunConfig:
    """The config with its file paths (data.path, data.images, data.labels, data.pairs,
    data.latent, model.init) made absolute against ``base_dir``, so a run's ``config.yaml``
    still finds them from any working directory (eval, reflow, resume); ``cfg`` itself when
    none is relative."""
    raw = config_to_dict(cfg)
    changed = False
    for section, key in (
        ("data", "path"),
        ("data", "images"),
        ("data", "labels"),
        ("data", "pairs"),
        ("data", "latent"),
        ("model", "init"),
    ):
        value = raw[section].get(key)
        if value is not None and not Path(value).is_absolute():
            raw[section][key] = str((Path(base_dir) / value).resolve())
            changed = True
    return config_from_dict(raw) if changed else cfg
