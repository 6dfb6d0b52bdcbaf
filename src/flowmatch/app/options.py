"""What the commands share: exit codes and one-line errors, list options, plugins."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

__all__ = [
    "ETA_HELP",
    "EXIT_INTERRUPTED",
    "EXIT_NUMERICAL",
    "EXIT_PREEMPTED",
    "EXIT_USAGE",
    "NOISE_HELP",
    "Plugins",
    "UsageError",
    "handles_user_errors",
    "int_list",
    "load_plugins",
    "method_list",
    "say",
]

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from flowmatch.errors import FlowmatchError

    return (UsageError, FlowmatchError)


EXIT_USAGE = 2
"""Bad input: a config, data file, model file, checkpoint, flag; a full disk; too little memory."""
EXIT_NUMERICAL = 3
"""A numerical stop: a non-finite loss or samples, a solver past its cap."""
EXIT_PREEMPTED = 75
"""EX_TEMPFAIL: training stopped on SIGTERM/SIGINT or ``train.max_minutes`` after a complete
checkpoint; run ``flowmatch train --resume --out RUN`` to continue."""
EXIT_INTERRUPTED = 130
"""Interrupted (a second Ctrl-C, or Ctrl-C outside training)."""


def say(message: str) -> None:
    """The commands' ``echo``: progress lines to stdout, ``warning: ...`` lines to stderr."""
    typer.echo(message, err=message.startswith("warning:"))


_ARGUMENTS = {"run_dir": "RUN_DIR", "config": "CONFIG", "data_file": "DATA_FILE"}


def _short(text: str, most: int = 160) -> str:
    return text if len(text) <= most else f"{text[: most // 2]}...{text[-most // 2 :]}"


def _flag_of(filename: str, kwargs: dict[str, Any]) -> str | None:
    """The option (or argument) whose path an OSError's file belongs to: the path itself, a
    folder above it, a file beside it (a temporary name) or a file under it (a run
    directory's)."""
    for name, value in kwargs.items():
        if not isinstance(value, Path):
            continue
        path, parent = str(value), str(value.parent)
        if (
            filename == path
            or path.startswith(filename.rstrip("/") + "/")
            or filename.startswith(path.rstrip("/") + "/")
            or (parent not in ("", ".") and str(Path(filename).parent) == parent)
        ):
            return _ARGUMENTS.get(name, "--" + name.rstrip("_").replace("_", "-"))
    return None


def _os_error(err: OSError, kwargs: dict[str, Any]) -> str:
    """An OSError as one line: the option it concerns, the file, then the reason (``No space
    left on device``); long paths are shortened in the middle."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.filename is None:
        return reason
    flag = _flag_of(str(err.filename), kwargs)
    where = _short(str(err.filename))
    return f"{flag}: {where}: {reason}" if flag else f"{where}: {reason}"


def handles_user_errors(fn: F) -> F:
    """The one place where a command's errors become exit codes, each with one line on stderr.

    - exit 2: input errors (:class:`~flowmatch.errors.FlowmatchError`, :class:`UsageError`),
      and the machine refusing what was asked: an ``OSError`` (a full disk, a missing or
      unwritable folder, a name too long), a safetensors error, ``MemoryError``;
    - exit 3: a numerical stop (:class:`~flowmatch.errors.NumericalError`: a non-finite loss,
      non-finite samples, a solver past its cap);
    - exit 75: training was preempted (SIGTERM/SIGINT, ``train.max_minutes``) after writing a
      complete checkpoint (:class:`~flowmatch.errors.Preempted`);
    - exit 130: interrupted.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from safetensors import SafetensorError

        from flowmatch.errors import NumericalError, Preempted

        code, message = 0, ""
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except _user_errors() as err:
            code, message = EXIT_USAGE, f"error: {err}"
        except NumericalError as err:
            code, message = EXIT_NUMERICAL, f"error: {err}"
        except Preempted as err:
            code, message = EXIT_PREEMPTED, f"stopped: {err}; continue with --resume"
        except OSError as err:
            code, message = EXIT_USAGE, f"error: {_os_error(err, kwargs)}"
        except SafetensorError as err:
            code, message = EXIT_USAGE, f"error: unreadable safetensors file ({err})"
        except MemoryError:
            code, message = EXIT_USAGE, "error: not enough memory for what was asked"
        except RecursionError:
            code, message = EXIT_USAGE, "error: the input is nested too deeply"
        except KeyboardInterrupt:
            code, message = EXIT_INTERRUPTED, "interrupted"
        typer.echo(" ".join(message.split()), err=True)
        raise typer.Exit(code=code) from None

    return wrapper  # type: ignore[return-value]


def int_list(text: str, name: str, *, most: int = 100_000, length: int = 64) -> list[int]:
    """Comma-separated integers in [1, most] of the option ``name`` (at most ``length``)."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{name}: expected comma-separated integers, got {shown!r}") from None
    if not values or any(not 1 <= v <= most for v in values) or len(values) > length:
        raise UsageError(
            f"{name}: expected at most {length} integers in [1, {most}], got {shown!r}"
        )
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
