"""``flowmatch eval``: a run's sample quality per sampler and NFE against its held-out data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowmatch.app.options import UsageError
from flowmatch.app.sample import check_sampler
from flowmatch.atomic import atomic_path
from flowmatch.errors import ModelFileError
from flowmatch.evaluation.reports import append_csv
from flowmatch.models.files import load
from flowmatch.models.latent import LatentCodec
from flowmatch.runlock import RunLock
from flowmatch.train.checkpoint import latest_step
from flowmatch.train.config import load_config
from flowmatch.train.data import load_run_data
from flowmatch.train.reports import eval_points, final_report

__all__ = ["evaluate_run"]


def evaluate_run(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int = 5,
    num: int = 2000,
    eta: float | None = None,
    noise: float | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[Any], Any]:
    """Evaluate a run against its held-out data; write ``eval.txt``, ``eval.csv`` and
    ``quality_vs_nfe.png`` into ``out`` (default ``RUN_DIR/eval``), never over the reports the
    training wrote.

    The held-out data is rebuilt from the run's ``config.yaml`` (same seed, same split). A
    text run is scored by its held-out ELBO and the real, novel and unique shares of its
    samples at each step count (``methods`` does not apply; :mod:`flowmatch.evaluation.text`). For a
    toy set the reference is fresh draws of the true distribution; digits and Fashion-MNIST
    runs are scored by FD/KID/accuracy in a small shipped classifier's features (at the run's
    ``sample.guidance``; Fashion-MNIST on ``num`` images, at most 10,000, with a floor of as
    many training images). ``eta`` and ``noise`` (of ddim and
    sde) default to the run's ``sample`` section. The evaluation is the trainer's
    (:func:`flowmatch.train.reports.final_report`, the same seed streams), so the same
    settings give the trainer's numbers.

    ``eval.txt`` and ``eval.csv`` state the points per set and the draws (the floor depends
    on both); ``eval.csv``'s step is that of the run's newest checkpoint. It holds ``out``'s
    lock while it writes (another command writing there is a
    :class:`~flowmatch.runlock.RunLockedError`).

    Returns:
        The rows (one per method and step count) and the floor.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ModelFileError(f"{run_dir}: not a run directory (no config.yaml)")
    out = Path(out) if out is not None else run_dir / "eval"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, expected a folder")
    model = load(run_dir)  # a damaged model is refused before anything is written
    lock = RunLock(out, what="flowmatch eval").acquire()
    try:
        rows, floor, points = _evaluate(
            run_dir, model, out, steps, methods, draws, num, eta, noise, echo
        )
        _write_csv(out / "eval.csv", latest_step(run_dir / "checkpoints"), rows, points, draws)
    except BaseException:
        lock.abandon()  # a failed evaluation leaves no folder behind
        raise
    lock.release()
    echo(f"wrote {out / 'eval.txt'}, {out / 'eval.csv'} and the plot")
    return rows, floor


def _write_csv(path: Path, step: int, rows: list[Any], points: int, draws: int) -> None:
    with atomic_path(path) as tmp:
        append_csv(tmp, step, rows, points=points, draws=draws)


def _evaluate(
    run_dir: Path,
    model: Any,
    out: Path,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int,
    num: int,
    eta: float | None,
    noise: float | None,
    echo: Callable[[str], None],
) -> tuple[list[Any], Any, int]:
    cfg = load_config(run_dir / "config.yaml")
    data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=run_dir)
    rows: list[Any]
    if data.is_mixed:
        from flowmatch.evaluation.tables import mixed_report

        echo(f"evaluating {run_dir} on {data.name}: {draws} draws per NFE")
        rows, floor = mixed_report(
            model,
            data,
            out,
            seed=cfg.train.seed,
            steps=steps,
            num=num,
            draws=draws,
            sample_steps=cfg.sample.steps,
            echo=echo,
        )
        return rows, floor, min(num, data.holdout.shape[0])
    if data.is_text:
        from flowmatch.evaluation.text import text_report

        echo(f"evaluating {run_dir} on {data.name}: {draws} draws of {num} samples per NFE")
        s = cfg.sample
        rows, elbo = text_report(
            model,
            data.text,
            out,
            seed=cfg.train.seed,
            steps=steps,
            num=num,
            draws=draws,
            temperature=s.temperature,
            corrector=s.corrector,
            echo=echo,
        )
        return rows, elbo, num
    eta = eta if eta is not None else cfg.sample.eta
    noise = noise if noise is not None else cfg.sample.noise
    for method in methods:
        check_sampler(model, method, steps, eta=eta)
    guidance = cfg.sample.guidance
    if data.name in ("digits", "fashion"):
        echo(
            f"evaluating {run_dir} on {data.name}: {draws} draws of {eval_points(data, num)} "
            f"images per figure against the {data.holdout.shape[0]} test images, guidance "
            f"{guidance}"
        )
    else:
        echo(
            f"evaluating {run_dir} on {data.name}: {draws} draws of "
            f"{data.max_eval_points(num)} points per figure"
        )
    report: Any = final_report
    if isinstance(getattr(model, "transform", None), LatentCodec):  # decoded, scored as images
        from flowmatch.train.latent import evaluation_data, latent_final_report, latent_points

        data, report = evaluation_data(data, model.transform), latent_final_report
        num = latent_points(data, num, guidance)
    rows, floor = report(
        model,
        data,
        out,
        seed=cfg.train.seed,
        steps=steps,
        methods=methods,
        num=num,
        draws=draws,
        eta=eta,
        noise=noise,
        guidance=guidance,
        echo=echo,
    )
    return rows, floor, num if report is not final_report else eval_points(data, num)
