"""``flowmatch eval``: a run's sample quality per sampler and NFE against its held-out data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowmatch.app.sample import check_sampler
from flowmatch.errors import ModelFileError
from flowmatch.models.files import load
from flowmatch.runlock import RunLock
from flowmatch.train.config import load_config
from flowmatch.train.data import load_run_data
from flowmatch.train.reports import final_report

__all__ = ["evaluate_run"]


def evaluate_run(
    run_dir: str | Path,
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int = 5,
    num: int = 2000,
    eta: float | None = None,
    noise: float | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[Any], Any]:
    """Evaluate a run against its held-out data; write ``eval.txt`` and ``quality_vs_nfe.png``.

    The held-out data is rebuilt from the run's ``config.yaml`` (same seed, same split). A
    text run is scored by its held-out ELBO and the real, novel and unique shares of its
    samples at each step count (``methods`` does not apply; :mod:`flowmatch.evaluation.text`). For a
    toy set the reference is fresh draws of the true distribution; digits runs are scored by
    FD/KID/accuracy (at the run's ``sample.guidance``). ``eta`` and ``noise`` (of ddim and
    sde) default to the run's ``sample`` section. The evaluation is the trainer's
    (:func:`flowmatch.train.reports.final_report`, the same seed streams), so the same
    settings give the trainer's numbers.

    It holds the run directory's lock while it writes (a run still training there is a
    :class:`~flowmatch.runlock.RunLockedError`).

    Returns:
        The rows (one per method and step count) and the floor.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ModelFileError(f"{run_dir}: not a run directory (no config.yaml)")
    with RunLock(run_dir, what="flowmatch eval"):  # it writes eval.txt and plots into the run
        return _evaluate(run_dir, steps, methods, draws, num, eta, noise, echo)


def _evaluate(
    run_dir: Path,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int,
    num: int,
    eta: float | None,
    noise: float | None,
    echo: Callable[[str], None],
) -> tuple[list[Any], Any]:
    cfg = load_config(run_dir / "config.yaml")
    data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=run_dir)
    model = load(run_dir)
    if data.is_mixed:
        from flowmatch.evaluation.tables import mixed_report

        echo(f"evaluating {run_dir} on {data.name}: {draws} draws per NFE")
        rows, floor = mixed_report(
            model,
            data,
            run_dir,
            seed=cfg.train.seed,
            steps=steps,
            num=num,
            draws=draws,
            sample_steps=cfg.sample.steps,
            echo=echo,
        )
        echo(f"wrote {run_dir / 'eval.txt'} and {run_dir / 'samples.csv'}")
        return rows, floor
    if data.is_text:
        from flowmatch.evaluation.text import text_report

        echo(f"evaluating {run_dir} on {data.name}: {draws} draws of {num} samples per NFE")
        s = cfg.sample
        rows, elbo = text_report(
            model,
            data.text,
            run_dir,
            seed=cfg.train.seed,
            steps=steps,
            num=num,
            draws=draws,
            temperature=s.temperature,
            corrector=s.corrector,
            echo=echo,
        )
        echo(f"wrote {run_dir / 'eval.txt'} and {run_dir / 'quality_vs_nfe.png'}")
        return rows, elbo
    eta = eta if eta is not None else cfg.sample.eta
    noise = noise if noise is not None else cfg.sample.noise
    for method in methods:
        check_sampler(model, method, steps, eta=eta)
    guidance = cfg.sample.guidance
    if data.name == "digits":
        echo(
            f"evaluating {run_dir} on digits: {draws} draws of {data.train.shape[0]} images per "
            f"figure against the {data.holdout.shape[0]} test images, guidance {guidance}"
        )
    else:
        echo(
            f"evaluating {run_dir} on {data.name}: {draws} draws of "
            f"{data.max_eval_points(num)} points per figure"
        )
    rows, floor = final_report(
        model,
        data,
        run_dir,
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
    echo(f"wrote {run_dir / 'eval.txt'} and {run_dir / 'quality_vs_nfe.png'}")
    return rows, floor
