"""The architecture registry: networks that ``fm.load``, configs and the CLI can rebuild.

A network is rebuilt from a name and JSON-serializable constructor arguments, the
``{"name": ..., **kwargs}`` dict stored in a model's ``config.json`` and written in a run
config as ``model: {name: ..., ...}``. Register your own with the decorator::

    @fm.models.register("ringnet")
    class RingNet(nn.Module):
        def __init__(self, dim: int = 2, width: int = 128): ...
        def forward(self, x, t, cond=None): ...

Every instance of a registered class (or every module a registered factory function
returns) remembers the arguments it was built with, so ``FlowModel(RingNet(width=64))``
can be saved and rebuilt with no pickle. The name must be registered in the process that
loads the model: import the defining module first (``flowmatch ... --plugin MODULE`` on the
command line), or publish it as an entry point of the ``flowmatch.models`` group.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "ENTRY_POINT_GROUP",
    "architecture",
    "build",
    "is_registered",
    "load_plugin",
    "lookup",
    "names",
    "register",
]

ENTRY_POINT_GROUP = "flowmatch.models"
"""The entry-point group an installed package can list its architectures in."""

_ARCH_ATTR = "_flowmatch_architecture"
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_entry_points_loaded = False

T = TypeVar("T")


def _check_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("_", "").replace("-", "").isalnum()
    ):
        raise ValueError(
            f"an architecture name must be a non-empty string of letters, digits, '_' and "
            f"'-', got {name!r}"
        )
    return name


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _record(module: nn.Module, name: str, bound: inspect.BoundArguments) -> None:
    bound.apply_defaults()  # the file then says everything, whatever later defaults become
    kwargs: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        param = bound.signature.parameters[key]
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(value)
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                kwargs[f"*{key}"] = list(value)  # refused by architecture(): not rebuildable
        else:
            kwargs[key] = value
    object.__setattr__(module, _ARCH_ATTR, {"name": name, **kwargs})


def register(name: str) -> Callable[[T], T]:
    """Register an architecture under ``name`` (a class decorator, or for factory functions).

    The decorated class (an ``nn.Module`` subclass) or function (returning an ``nn.Module``)
    is what :func:`build` calls with the stored keyword arguments. Registering another object
    under a name already taken is an error; registering the same one again (a re-imported
    module) is allowed.

    Args:
        name: letters, digits, ``_`` and ``-``.

    Returns:
        The decorator; it returns the class or function it was given.

    Example:
        >>> @register("tiny")
        ... class Tiny(nn.Module):
        ...     def __init__(self, dim: int = 2): ...
    """
    name = _check_name(name)

    def decorate(obj: T) -> T:
        old = _REGISTRY.get(name)
        if old is not None and _qualname(old) != _qualname(obj):
            raise ValueError(
                f"architecture {name!r} is already registered (by {_qualname(old)}); "
                "choose another name"
            )
        if inspect.isclass(obj):
            if not issubclass(obj, nn.Module):
                raise ValueError(f"register({name!r}): {obj.__name__} is not an nn.Module")
            original = obj.__init__
            signature = inspect.signature(original)

            @functools.wraps(original)
            def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                # the outermost registered class records last, so its arguments win
                if type(self) is obj or not hasattr(self, _ARCH_ATTR):
                    _record(self, name, signature.bind(self, *args, **kwargs))
                    del self.__dict__[_ARCH_ATTR]["self"]

            obj.__init__ = __init__  # type: ignore[method-assign]
            _REGISTRY[name] = obj
            return obj
        if callable(obj):
            signature = inspect.signature(obj)

            @functools.wraps(obj)
            def factory(*args: Any, **kwargs: Any) -> nn.Module:
                module = obj(*args, **kwargs)
                if not isinstance(module, nn.Module):
                    raise ValueError(
                        f"architecture {name!r}: the factory returned a "
                        f"{type(module).__name__}, not an nn.Module"
                    )
                _record(module, name, signature.bind(*args, **kwargs))
                return module

            _REGISTRY[name] = factory
            return factory  # type: ignore[return-value]
        raise ValueError(f"register({name!r}) decorates a class or a function, got {obj!r}")

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                ep.load()  # importing the module registers its architectures
            except Exception as err:  # a broken plugin must not break every other model
                print(
                    f"warning: entry point {ep.name!r} ({ep.value}) of {ENTRY_POINT_GROUP} "
                    f"failed to load: {type(err).__name__}: {err}",
                    file=sys.stderr,
                )


def names() -> tuple[str, ...]:
    """The registered architecture names (entry points of installed packages included)."""
    _load_entry_points()
    return tuple(_REGISTRY)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered architecture (after loading entry points)."""
    return isinstance(name, str) and name in names()


def _unknown(name: object) -> str:
    return (
        f"unknown model {name!r} (registered: {', '.join(names())}); register yours with "
        "@flowmatch.models.register(name) and import its module first (--plugin MODULE on "
        f"the command line, or an entry point in the {ENTRY_POINT_GROUP!r} group)"
    )


def lookup(name: str) -> Callable[..., nn.Module]:
    """The class or factory registered as ``name``.

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    if not is_registered(name):
        raise ValueError(_unknown(name))
    return _REGISTRY[name]


def build(arch: Mapping[str, Any] | str, **kwargs: Any) -> nn.Module:
    """A freshly initialized network from ``{"name": ..., **kwargs}`` (or a name and kwargs).

    Raises:
        ValueError: an unknown name, or arguments the constructor does not take or rejects;
            one line naming them.
    """
    if isinstance(arch, str):
        params = dict(kwargs)
        name = arch
    else:
        params = {**dict(arch), **kwargs}
        name = params.pop("name", None)
    ctor = lookup(name)
    signature = inspect.signature(ctor)  # a class's without self; a factory's own
    try:
        signature.bind(**params)
    except TypeError as err:
        accepted = [p for p in signature.parameters if p not in ("args", "kwargs")]
        raise ValueError(
            f"model {name!r}: bad arguments {sorted(params)} ({err}; it takes: "
            f"{', '.join(accepted)})"
        ) from None
    try:
        return ctor(**params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model {name!r}: {' '.join(str(err).split())}") from None


def _check_json(name: str, key: str, value: Any) -> None:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(
            f"model {name!r}: constructor argument {key}={value!r} is not JSON-serializable, so "
            "the model cannot be saved for fm.load; give it numbers, strings, booleans, "
            "lists or dicts"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):  # pragma: no cover - allow_nan
        raise ValueError(f"model {name!r}: {key}={value!r} is not finite")
    del text


def architecture(net: nn.Module) -> dict[str, Any]:
    """The ``{"name": ..., **kwargs}`` a registered network was built with (JSON types).

    Raises:
        ValueError: the network's class is not registered, or an argument is not
            JSON-serializable; one line saying how to fix it.
    """
    arch = getattr(net, _ARCH_ATTR, None)
    if arch is None:
        raise ValueError(
            f"{type(net).__name__} is not a registered architecture, so fm.load could not "
            "rebuild it; decorate its class with @flowmatch.models.register('name')"
        )
    name = arch["name"]
    for key, value in arch.items():
        if key.startswith("*"):
            raise ValueError(
                f"model {name!r}: positional *{key[1:]} arguments cannot be saved; use keywords"
            )
        _check_json(name, key, value)
    return json.loads(json.dumps(arch))  # a deep copy with tuples as lists


def load_plugin(module: str) -> None:
    """Import a module (a dotted name, or a path to a ``.py`` file) that registers models.

    The working directory is searched first, as ``python -m`` does.

    Raises:
        ValueError: the module cannot be found or fails to import; one line.
    """
    if not isinstance(module, str) or not module:
        raise ValueError(f"--plugin: expected a module name or a .py file, got {module!r}")
    path = Path(module)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise ValueError(f"--plugin: {module}: file not found")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:  # pragma: no cover
                raise ValueError(f"--plugin: {module}: cannot import")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = mod
            spec.loader.exec_module(mod)
            return
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        importlib.import_module(module)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"--plugin: cannot import {module!r} ({type(err).__name__}: {err})"
        ) from None
