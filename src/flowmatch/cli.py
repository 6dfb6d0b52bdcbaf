"""The ``flowmatch`` command line (typer).

Every command validates its input: bad input prints one line naming what was wrong and exits
with code 2, leaving nothing half-written behind.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    name="flowmatch",
    help="Flow Matching generative models: train, sample, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(ValueError):
    """Bad input from the user: reported as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from flowmatch.data.tabular import DataError
    from flowmatch.train.config import ConfigError

    return (UsageError, ConfigError, DataError)


def handles_user_errors(fn: F) -> F:
    """Turn the user-input errors raised by a command into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_errors() as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@handles_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the plots.")] = Path("runs/demo"),
    num: Annotated[int, typer.Option(min=1, help="Number of samples.")] = 2000,
    steps: Annotated[int, typer.Option(min=1, help="Midpoint steps (NFE = 2 x steps).")] = 8,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Integrate the exact flow from N(0, I) to an 8-Gaussian mixture and plot it."""
    from flowmatch.demo import oracle_demo

    oracle_demo(out, num=num, steps=steps, seed=seed, echo=typer.echo)


@app.command()
def datasets() -> None:
    """List the built-in datasets (usable as data or as source)."""
    from flowmatch.data.toy2d import TOY_DATASETS

    width = max(len(name) for name in TOY_DATASETS)
    for name, spec in TOY_DATASETS.items():
        typer.echo(f"{name:<{width}}  {spec.description}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``flowmatch`` console script.

    Usage errors (an unknown flag, a value out of range) are printed as one line, exit code 2.
    Typer ships its own copy of click, so its exceptions are recognized by what they offer
    (``format_message`` and ``exit_code``), not by an import of click.
    """
    try:
        code = app(prog_name="flowmatch", args=argv, standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = 1
    except Exception as err:
        if not (hasattr(err, "format_message") and hasattr(err, "exit_code")):
            raise
        if type(err).__name__ == "NoArgsIsHelpError":
            err.show()  # prints the help
            code = 0
        else:
            ctx = getattr(err, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            typer.echo(f"error: {where}{err.format_message()}", err=True)
            code = 2 if err.exit_code == 2 else err.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
