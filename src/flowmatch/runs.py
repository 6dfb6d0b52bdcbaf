"""Working with run directories: sample a trained run, evaluate it against its held-out data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from flowmatch.data.tabular import TABLE_SUFFIXES, DataError, Standardizer, save_table
from flowmatch.models.files import ModelFileError, load
from flowmatch.sampling import model_velocity
from flowmatch.solvers import solve_ode
from flowmatch.train.config import load_config
from flowmatch.train.data import draw_source, load_run_data
from flowmatch.train.evaluate import EvalRow, evaluate, format_row, noise_floor, write_report

__all__ = ["evaluate_run", "sample_run"]


def sample_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    num: int = 1000,
    steps: int = 16,
    method: str = "midpoint",
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> Path:
    """Sample a trained run (EMA weights) from its source and write the points atomically.

    Table data is mapped back to its original units with the run's stored standardization.

    Args:
        run_dir: the run (or its ``model/``) directory.
        out: ``.npy``, ``.csv`` or, for 2-D data, ``.png`` (a scatter plot).
        num: number of samples.
        steps: solver steps (for dopri5: output intervals; its tolerances set the accuracy).
        method: solver method.
        seed: seed of the source draws.
        echo: where the summary line goes.

    Raises:
        DataError: an output suffix that is not supported.
        ModelFileError: an unloadable run.
    """
    out = Path(out)
    if out.suffix not in (*TABLE_SUFFIXES, ".png"):
        raise DataError(f"{out}: expected a file ending in .npy, .csv or .png")
    model = load(run_dir)
    dim = model.spec["arch"]["dim"]
    if out.suffix == ".png" and dim != 2:
        raise DataError(f"{out}: a .png needs 2-D data, this model has dimension {dim}")
    x0 = draw_source(model.spec.get("source"), num, dim, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        res = solve_ode(model_velocity(model), x0, steps=steps, method=method)
    x = res.x
    if model.spec.get("standardizer") is not None:
        x = Standardizer.from_dict(model.spec["standardizer"]).inverse(x)
    if out.suffix == ".png":
        from flowmatch import viz

        viz.scatter(x, out, title=f"{method}, NFE {res.nfe}")
    else:
        save_table(out, x, model.spec.get("columns"))
    echo(f"wrote {num} samples to {out} ({method}, NFE {res.nfe})")
    return out


def evaluate_run(
    run_dir: str | Path,
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int = 5,
    num: int = 2000,
    echo: Callable[[str], None] = print,
) -> tuple[list[EvalRow], EvalRow]:
    """Evaluate a run against its held-out data; write ``eval.txt`` and ``quality_vs_nfe.png``.

    The held-out data is rebuilt from the run's ``config.yaml`` (same seed, same split). For a
    toy set the reference is fresh draws of the true distribution.

    Returns:
        The rows (one per method and step count) and the noise floor.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ModelFileError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=run_dir)
    model = load(run_dir)
    reference, num = data.reference(), data.max_eval_points(num)
    seed = cfg.train.seed + 7
    echo(f"evaluating {run_dir} on {data.name}: {draws} draws of {num} points per figure")
    rows = evaluate(
        model,
        reference,
        data.draw_source,
        steps=steps,
        methods=methods,
        num_samples=num,
        draws=draws,
        seed=seed,
        on_row=lambda r: echo(format_row(r)),
    )
    floor = noise_floor(reference, num_samples=num, draws=draws, seed=seed)
    echo(write_report(run_dir, rows, floor, title=f"{data.name}: W2 vs NFE"))
    echo(f"wrote {run_dir / 'eval.txt'} and {run_dir / 'quality_vs_nfe.png'}")
    return rows, floor
