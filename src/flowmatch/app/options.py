"""What the commands share: one-line user errors (exit 2), list options, plugins."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

__all__ = [
    "ETA_HELP",
    "NOISE_HELP",
    "Plugins",
    "UsageError",
    "handles_user_errors",
    "int_list",
    "load_plugins",
    "method_list",
]

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from flowmatch.errors import FlowmatchError

    return (UsageError, FlowmatchError)


def handles_user_errors(fn: F) -> F:
    """Turn the user-input errors raised by a command into one line on stderr and exit 2.

    A numerical stop (:class:`~flowmatch.errors.NumericalError`: a non-finite loss, non-finite
    samples, a solver past its cap) exits with code 3 and one line.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flowmatch.errors import NumericalError

        try:
            return fn(*args, **kwargs)
        except _user_errors() as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None
        except NumericalError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=3) from None

    return wrapper  # type: ignore[return-value]


def int_list(text: str, name: str) -> list[int]:
    """Comma-separated positive integers of the option ``name``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{name}: expected positive integers, got {text!r}")
    return values


def method_list(text: str, name: str) -> list[str]:
    """Comma-separated sampler names of the option ``name``."""
    from flowmatch.sampling import SAMPLE_METHODS

    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in SAMPLE_METHODS]
    if not values or bad:
        raise UsageError(f"{name}: expected methods from {', '.join(SAMPLE_METHODS)}, got {text!r}")
    return values


ETA_HELP = "DDIM's eta in [0, 1], 0 deterministic [default: the run's sample.eta]."

Plugins = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        metavar="MODULE",
        help="A module (dotted name or .py file) to import first: one that registers your "
        "networks with @flowmatch.models.register. Repeatable.",
    ),
]


def load_plugins(plugins: list[str] | None) -> None:
    """Import each ``--plugin`` module (they register networks); a UsageError if one fails."""
    from flowmatch.models.registry import load_plugin

    for module in plugins or []:
        try:
            load_plugin(module)
        except ValueError as err:
            raise UsageError(str(err)) from None


NOISE_HELP = "SDE noise scale, g(t) = NOISE * sigma_t [default: the run's sample.noise]."
