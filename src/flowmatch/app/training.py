"""``flowmatch train``: a run config trained into a run directory, stopping cleanly on
SIGTERM/SIGINT at any moment (exit 75, resume with ``--resume``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flowmatch.app.options import UsageError, say
from flowmatch.train.checkpoint import latest_step
from flowmatch.train.config import load_config
from flowmatch.train.preemption import stop_outside_training
from flowmatch.train.trainer import Trainer, TrainResult

__all__ = ["train_run"]


def train_run(
    config: Path | None,
    out: Path | None,
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    final_eval: bool = True,
    progress: bool = True,
) -> tuple[TrainResult, Path]:
    """Train ``config`` (with ``overrides``) into ``out`` (default ``runs/<config name>``), or
    continue the run in ``out`` with ``resume``; ``final_eval`` evaluates the model at the
    end (the table, ``eval.csv`` and the plots).

    A stop signal while the loop trains checkpoints the step and raises
    :class:`~flowmatch.errors.Preempted`; one that comes while no step is training (loading
    the data, restoring, the final evaluation) raises it at once (the newest checkpoint is
    complete).

    Returns:
        The result and the run directory.

    Raises:
        UsageError: ``--resume`` without a run to resume, or no config.
        ConfigError, DataError, RunExistsError, RunLockedError, CheckpointError: bad input.
        Preempted: stopped by a signal or ``train.max_minutes``.
    """
    if resume:
        if out is None:
            raise UsageError("--resume needs --out RUN_DIR")
        run_cfg = out / "config.yaml"
        if not run_cfg.is_file():
            raise UsageError(f"{out}: no run to resume (no config.yaml)")
        cfg = load_config(run_cfg, overrides)
    else:
        if config is None:
            raise UsageError("CONFIG is required (or --resume --out RUN_DIR)")
        cfg = load_config(config, overrides)
        out = out if out is not None else Path("runs") / config.stem
    base_dir = config.parent if config is not None else Path(".")
    run_dir = out
    trainers: list[Trainer] = []

    def step() -> int:  # of the newest checkpoint, for a stop while no step is training
        if trainers and trainers[0].step:
            return trainers[0].step
        return latest_step(run_dir / "checkpoints")

    with stop_outside_training(step):
        trainers.append(
            Trainer(
                cfg,
                out,
                resume=resume,
                progress=progress,
                final_eval=final_eval,
                base_dir=base_dir,
                echo=say,
            )
        )
        return trainers[0].run(), out
