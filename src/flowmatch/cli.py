"""The ``flowmatch`` command line (typer).

Every command validates its input: bad input prints one line naming what was wrong and exits
with code 2, leaving nothing half-written behind.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flowmatch.app.options import (
    ETA_HELP,
    NOISE_HELP,
    Plugins,
    UsageError,
    handles_user_errors,
    int_list,
    load_plugins,
    method_list,
    say,
)

MAX_SEED = 2**63 - 1  # torch's generators take 64-bit seeds

app = typer.Typer(
    name="flowmatch",
    help="Flow Matching generative models: train, sample, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: "[default: ...]" in a help string stays
)

__all__ = ["UsageError", "app", "main"]


def _print_version(value: bool) -> None:
    if value:
        from flowmatch import __version__

        typer.echo(f"flowmatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Flow Matching generative models: train, sample, evaluate."""


@app.command()
@handles_user_errors
def demo(
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory to (re)create [default: runs/demo, runs/demo_DATASET]."),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(
            help="checkerboard (points, MLP), digits (8x8 images, U-Net), fashion "
            "(Fashion-MNIST 28x28, U-Net, minutes), names (text, discrete flow "
            "matching) or airports (the sphere, Riemannian flow matching)."
        ),
    ] = "checkerboard",
    steps: Annotated[
        int | None,
        typer.Option(min=1, max=10**9, help="Training steps [default: 20000; see above]."),
    ] = None,
    oracle: Annotated[
        bool, typer.Option(help="Skip training: integrate the exact 8-Gaussian flow instead.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """The main job: train the default model (checkerboard, MLP) and write samples and plots.
    Training steps by default: 20000; digits and names 3000; fashion 1200.

    With --dataset digits: a class-conditional U-Net on scikit-learn's 8x8 digits, a 10x10
    grid (a row per class, classifier-free guidance) and one sample's path from noise; fashion:
    the same on Fashion-MNIST, with its samples' class accuracy. With --dataset names: discrete
    flow matching of US surnames, samples.txt and the ELBO. With --dataset airports: a flow on
    the sphere (world airports), a world map and the NLL.
    """
    from flowmatch.app.demo import run_demo

    run_demo(dataset, out, steps=steps, oracle=oracle, progress=progress, echo=say)


@app.command()
@handles_user_errors
def train(
    config: Annotated[
        Path | None, typer.Argument(help="Run config (YAML). Optional with --resume.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs/<config name>).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set train.steps=500."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its newest checkpoint.")
    ] = False,
    final_eval: Annotated[
        bool,
        typer.Option(
            "--eval/--no-eval", help="Evaluate the model at the end (eval.txt, eval.csv, plots)."
        ),
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    plugin: Plugins = None,
) -> None:
    """Train a flow matching model from a YAML config (also under torchrun for DDP)."""
    from flowmatch.app.training import train_run

    load_plugins(plugin)
    result, out = train_run(
        config,
        out,
        overrides=set_ or [],
        resume=resume,
        final_eval=final_eval,
        progress=progress,
    )
    typer.echo(f"done: {result.steps} steps, final loss {result.final_loss:.4f}, run in {out}")


@app.command()
@handles_user_errors
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or its model/ directory).")],
    out: Annotated[
        Path,
        typer.Option(
            help="Output file: .npy, .csv (points), .png (2-D points, images), .txt (text)."
        ),
    ],
    num: Annotated[int, typer.Option(min=1, max=10**8, help="Number of samples.")] = 1000,
    steps: Annotated[
        int | None,
        typer.Option(min=1, max=100_000, help="Solver steps [default: the run's sample.steps]."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="An ODE solver (euler, midpoint, heun, rk4, dopri5), sde, ddpm or ddim "
            "[default: the run's sample.method]."
        ),
    ] = None,
    eta: Annotated[float | None, typer.Option(min=0.0, max=1.0, help=ETA_HELP)] = None,
    noise: Annotated[float | None, typer.Option(min=0.0, max=1e6, help=NOISE_HELP)] = None,
    cond: Annotated[
        int | None,
        typer.Option(help="Class of every sample (labelled runs) [default: each class in turn]."),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Classifier-free guidance scale (1: conditional) [default: sample.guidance].",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the noise.")] = 0,
    interpolate: Annotated[
        Path | None,
        typer.Option(
            help="A .csv/.npy file: write --num points between its first two rows instead "
            "(encode, slerp in noise space, decode)."
        ),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Text runs: every sample starts with these characters.")
    ] = None,
    infill: Annotated[
        str | None,
        typer.Option(help="Text runs: a template of each sample; its --blank characters are made."),
    ] = None,
    blank: Annotated[str, typer.Option(help="The blank character of --infill.")] = "_",
    temperature: Annotated[
        float | None, typer.Option(min=1e-6, max=1e6, help="Text runs: posterior temperature.")
    ] = None,
    corrector: Annotated[
        float | None,
        typer.Option(min=0.0, max=1e6, help="Text runs (mask source): corrector strength."),
    ] = None,
    plugin: Plugins = None,
) -> None:
    """Draw samples from a trained run (EMA weights) and write them atomically (a text run:
    one sample per line of a .txt file)."""
    from flowmatch.app.sample import sample_run
    from flowmatch.app.text import TextOptions

    load_plugins(plugin)
    if len(blank) != 1:
        raise UsageError(f"--blank: expected one character, got {blank!r}")
    text = TextOptions(prefix, infill, blank, temperature, corrector)
    method = method_list(method, "--method")[0] if method is not None else None
    sample_run(
        run_dir,
        out,
        num=num,
        steps=steps,
        method=method,
        seed=seed,
        interpolate=interpolate,
        eta=eta,
        noise=noise,
        cond=cond,
        guidance=guidance,
        text=text,
        echo=say,
    )


@app.command(name="eval")
@handles_user_errors
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for eval.txt, eval.csv and the plot [default: RUN_DIR/eval]."),
    ] = None,
    steps: Annotated[str, typer.Option(help="Comma-separated step counts.")] = "1,2,4,8,16",
    methods: Annotated[
        str, typer.Option(help="Comma-separated samplers (ODE solvers, sde, ddpm, ddim).")
    ] = "euler,midpoint",
    draws: Annotated[int, typer.Option(min=1, max=1000, help="Independent draws per figure.")] = 5,
    num: Annotated[int, typer.Option(min=2, max=10**6, help="Points per set.")] = 2000,
    eta: Annotated[float | None, typer.Option(min=0.0, max=1.0, help=ETA_HELP)] = None,
    noise: Annotated[float | None, typer.Option(min=0.0, max=1e6, help=NOISE_HELP)] = None,
    plugin: Plugins = None,
) -> None:
    """W2/MMD against held-out data at each NFE and method, with the noise floor and a plot."""
    from flowmatch.app.evaluate import evaluate_run

    load_plugins(plugin)
    evaluate_run(
        run_dir,
        out=out,
        steps=int_list(steps, "--steps"),
        methods=method_list(methods, "--methods"),
        draws=draws,
        num=num,
        eta=eta,
        noise=noise,
        echo=say,
    )


@app.command()
@handles_user_errors
def reflow(
    run_dir: Annotated[Path, typer.Argument(help="The trained run to straighten.")],
    out: Annotated[Path, typer.Option(help="Directory of the new run.")],
    num: Annotated[
        int, typer.Option(min=1, max=10**7, help="Number of (noise, sample) pairs.")
    ] = 50000,
    train_steps: Annotated[
        int | None, typer.Option(min=1, max=10**9, help="Training steps (default: the old run's).")
    ] = None,
    distill: Annotated[
        bool, typer.Option(help="Train a one-step model (sample with --steps 1 --method euler).")
    ] = False,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the pairs' noise.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key of the new run."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the reflow run in --out.")] = False,
    final_eval: Annotated[
        bool, typer.Option("--eval/--no-eval", help="Evaluate the new run at the end.")
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    plugin: Plugins = None,
) -> None:
    """Reflow a run: integrate noise to samples (dopri5), train on those pairs, warm-started."""
    from flowmatch.app.reflow import reflow_run

    load_plugins(plugin)
    result = reflow_run(
        run_dir,
        out,
        num=num,
        train_steps=train_steps,
        distill=distill,
        seed=seed,
        overrides=set_ or [],
        resume=resume,
        progress=progress,
        final_eval=final_eval,
        echo=say,
    )
    typer.echo(f"done: {result.steps} steps, final loss {result.final_loss:.4f}, run in {out}")


@app.command()
@handles_user_errors
def likelihood(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or its model/ directory).")],
    data_file: Annotated[
        Path, typer.Argument(help="Points to score: .csv or .npy, one per row (text: lines).")
    ],
    method: Annotated[
        str, typer.Option(help="exact (trace of the Jacobian) or hutchinson (stochastic).")
    ] = "exact",
    probes: Annotated[int, typer.Option(min=1, max=1000, help="Hutchinson probes per point.")] = 4,
    atol: Annotated[
        float, typer.Option(min=1e-12, max=1.0, help="dopri5 absolute tolerance.")
    ] = 1e-5,
    rtol: Annotated[
        float, typer.Option(min=1e-12, max=1.0, help="dopri5 relative tolerance.")
    ] = 1e-5,
    batch_size: Annotated[int, typer.Option(min=1, max=10**6, help="Points per solve.")] = 1000,
    seed: Annotated[
        int, typer.Option(min=0, max=MAX_SEED, help="Seed of the Hutchinson probes.")
    ] = 0,
    per_point_tolerance: Annotated[
        bool,
        typer.Option(
            help="Hold every point's step error to the dopri5 tolerances (not just the "
            "batch's RMS); more steps."
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Per-point log_prob and std_err (.csv or .npy).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    plugin: Plugins = None,
) -> None:
    """Mean negative log-likelihood (nats and bits/dim) of data under a trained run."""
    from flowmatch.app.likelihood import likelihood_run

    load_plugins(plugin)
    if method not in ("exact", "hutchinson"):
        raise UsageError(f"--method: expected exact or hutchinson, got {method!r}")
    likelihood_run(
        run_dir,
        data_file,
        method=method,
        num_probes=probes,
        atol=atol,
        rtol=rtol,
        batch_size=batch_size,
        seed=seed,
        error_norm="per_sample" if per_point_tolerance else "batch",
        out=out,
        progress=progress,
        echo=say,
    )


@app.command()
def datasets() -> None:
    """List every kind of data a run can train on, with the config line that uses it."""
    from flowmatch.app.datasets import dataset_lines

    for line in dataset_lines():
        typer.echo(line)


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
            err.show()  # type: ignore[attr-defined]  # click's NoArgsIsHelpError: prints the help
            code = 0
        else:
            ctx = getattr(err, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            typer.echo(f"error: {where}{err.format_message()}", err=True)
            code = 2 if err.exit_code == 2 else err.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
