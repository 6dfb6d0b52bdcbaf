"""The Trainer: a run config trained into a run directory (``flowmatch train``).

A run directory holds ``config.yaml`` (the resolved config), ``model/`` (``config.json``,
``model.safetensors``, ``ema.safetensors``), ``checkpoints/`` (resumable state),
``metrics.csv`` (step, loss, lr, grad_norm, wall_time), ``eval.csv`` and, at the end, the
evaluation table and plots. The Trainer builds the run's objects from the config
(:mod:`flowmatch.train.build`), trains them with :class:`~flowmatch.train.loop.TrainLoop`
(the loop ``fm.train`` drives too) and writes the reports (:mod:`flowmatch.train.reports`).
Everything that can fail on bad input fails before the run directory is touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowmatch._extras import MissingExtraError
from flowmatch.errors import ConfigError, DataError, ModelFileError, RunExistsError
from flowmatch.evaluation.reports import trim_eval_csv
from flowmatch.models.files import load
from flowmatch.models.hub import write_model_card
from flowmatch.models.registry import architecture
from flowmatch.rectify import Pairs
from flowmatch.runlock import LOCK_NAME, RunLock
from flowmatch.train import build, distributed
from flowmatch.train.autoencoder import finish_hook, periodic_hook, prepare_run
from flowmatch.train.batches import Batches, PairBatches, TensorBatches
from flowmatch.train.config import RunConfig, dump_config, with_absolute_paths
from flowmatch.train.data import RunData, load_run_data
from flowmatch.train.eval_budget import fit_evaluation
from flowmatch.train.loggers import check_loggers
from flowmatch.train.loop import NonFiniteLossError, TrainLoop
from flowmatch.train.pipeline import StreamBatches, streams, take_coupling
from flowmatch.train.reports import (
    eval_points,
    final_report,
    periodic_report,
    plots,
    text_reports,
    time_one_draw,
)
from flowmatch.train.threads import apply_threads

__all__ = ["NonFiniteLossError", "RunExistsError", "TrainResult", "Trainer", "model_spec"]


@dataclass
class TrainResult:
    """What a finished run reports."""

    out: Path
    steps: int
    final_loss: float
    wall_time: float
    eval_rows: list[Any]  # EvalRow, or ImageEvalRow for digits
    floor: Any


def check_run_dir(out: Path, *, resume: bool, overwrite: bool = False) -> None:
    """Refuse to start a run over another one (or over a folder that is not a run).

    Raises:
        RunExistsError: ``out`` holds a run and neither resume nor overwrite was asked, holds
            no run to resume, or is a non-empty folder that is not a run.
    """
    is_run = (out / "config.yaml").exists() or (out / "model" / "config.json").exists()
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"{out}: exists and is not a directory; choose another --out")
    if is_run and not (resume or overwrite):
        raise RunExistsError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and not is_run:
        raise RunExistsError(f"{out}: no run to resume (no config.yaml)")
    if overwrite and out.is_dir() and not is_run and _holds_files(out):
        raise RunExistsError(
            f"{out}: exists and is not a flowmatch run (no config.yaml); refusing to overwrite "
            "it, choose another --out"
        )


def _holds_files(out: Path) -> bool:
    return any(p.name != LOCK_NAME for p in out.iterdir())


def model_spec(cfg: RunConfig, data: RunData) -> dict[str, Any]:
    """The ``model/config.json`` content the run will write (built without training)."""
    torch.manual_seed(cfg.train.seed)
    loss = build.build_loss(cfg, data)
    return build.build_flow(cfg, data, loss, build.build_net(cfg, data)).config()


class Trainer:
    """Train a flow matching model as a run config says, into a run directory.

    Args:
        cfg: the validated run config.
        out: the run directory.
        resume: continue from the newest complete checkpoint in ``out``.
        overwrite: replace an existing run in ``out`` (used by the demo).
        progress: show a progress bar (loss, it/s, ETA) on rank 0.
        final_eval: evaluate at the end (table, plots).
        base_dir: directory a relative ``data.path`` is resolved against.
        echo: where messages go (rank 0 only).
        lock: the run directory's lock, already held by the caller (``flowmatch reflow``
            writes its pairs under it first); None takes it here.

    The process that trains holds the run directory's lock (:class:`~flowmatch.runlock.
    RunLock`) from construction to the end of :meth:`run`; call :meth:`close` to give it
    back without running.

    Raises:
        ConfigError: a config value this run cannot honour (named key).
        DataError: unreadable data.
        RunExistsError: ``out`` holds a run and neither resume nor overwrite was given.
        RunLockedError: another process is writing into ``out``.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        final_eval: bool = True,
        base_dir: str | Path = ".",
        echo: Callable[[str], None] = print,
        lock: RunLock | None = None,
    ) -> None:
        cfg = with_absolute_paths(cfg, base_dir)
        self.cfg, self.out = cfg, Path(out)
        self.resume, self.progress, self.final_eval = resume, progress, final_eval
        if cfg.train.precision == "fp16" and not torch.cuda.is_available():
            raise ConfigError(
                "config: train.precision: fp16 needs a CUDA device; use bf16",
                key="train.precision",
            )
        check_loggers(cfg.train.loggers, tensorboard=cfg.train.tensorboard)
        check_run_dir(self.out, resume=resume, overwrite=overwrite)
        # Everything that can fail on bad input happens before the run directory is touched.
        self.data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=base_dir)
        cfg, self.data = prepare_run(cfg, self.data, base_dir=base_dir, progress=progress)
        self.cfg = cfg  # an autoencoder's image shape; a latent run's data are latents
        self.batches = self._batches(cfg)
        try:
            self.dist = distributed.setup(cfg.train.device)
        except ValueError as err:
            raise ConfigError(f"config: {err}", key="train.device") from None
        self.echo = echo if self.dist.is_main else (lambda _msg: None)
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        self.loss = build.build_loss(cfg, self.data)
        if isinstance(self.batches, StreamBatches):  # the loader pairs x0 with x1, not the loss
            self.batches.coupling = take_coupling(self.loss) or self.batches.coupling
            self.batches.for_rank(self.dist.rank)
        net = build.build_net(cfg, self.data)
        self._warm_start(cfg, net)
        self.flow = build.build_flow(cfg, self.data, self.loss, net)
        self.threads = apply_threads(
            cfg.train.threads,
            device=self.dist.device,
            parameters=sum(p.numel() for p in net.parameters()),
        )
        build.check_sampling(cfg, self.flow)
        self.lock: RunLock | None = None
        if lock is not None and lock.held:
            self.lock = lock
        elif self.dist.is_main:
            self._lock(resume=resume, overwrite=overwrite)

    def _lock(self, *, resume: bool, overwrite: bool) -> None:
        """Take the run directory's lock, check it again (another writer may have made a run
        there since the first check), and clear it for an overwrite."""
        lock = RunLock(self.out, what="flowmatch train").acquire()
        try:
            check_run_dir(self.out, resume=resume, overwrite=overwrite)
        except BaseException:
            lock.abandon()  # a directory made for the lock holds only the lock file
            raise
        stale = lock.stale_message()
        if stale:
            self.echo(stale)
        if overwrite and not resume:
            for p in self.out.iterdir():
                if p.name != LOCK_NAME:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        self.lock = lock

    def close(self) -> None:
        """Give the run directory's lock back (``run`` does so when it ends)."""
        lock = getattr(self, "lock", None)
        if lock is not None:
            lock.release()
            self.lock = None

    def _batches(self, cfg: RunConfig) -> Batches:
        if cfg.data.pairs is None:
            if streams(cfg.data, self.data):
                return StreamBatches(
                    self.data.train,
                    self.data.labels,
                    batch_size=cfg.train.batch_size,
                    seed=cfg.train.seed,
                    workers=cfg.data.workers,
                    flip=cfg.data.flip,
                    source=self.data.source,
                )
            return TensorBatches(self.data.train, self.data.labels)
        from flowmatch.rectify import load_pairs

        path = Path(cfg.data.pairs)
        pairs = load_pairs(path)  # its path is absolute by now
        if tuple(pairs.x0.shape[1:]) != self.data.shape:
            raise DataError(
                f"{path}: pairs of shape {tuple(pairs.x0.shape[1:])} do not match the data "
                f"points of shape {self.data.shape} of {self.data.name}"
            )
        return PairBatches(Pairs(pairs.x0.float(), pairs.x1.float(), pairs.cond))

    def _warm_start(self, cfg: RunConfig, net: torch.nn.Module) -> None:
        """Copy the EMA weights of ``model.init`` into the new net (same architecture)."""
        if cfg.model.init is None:
            return
        path = Path(cfg.model.init)
        try:
            source = load(path)
        except ModelFileError as err:
            raise ConfigError(f"config: model.init: {err}", key="model.init") from None
        have, wanted = architecture(source.net), architecture(net)
        if have != wanted:
            raise ConfigError(
                f"config: model.init: {path} has architecture {have}, the run needs {wanted}",
                key="model.init",
            )
        net.load_state_dict({k: v.detach().clone() for k, v in source.net.state_dict().items()})

    def run(self) -> TrainResult:
        """Train to ``train.steps``, checkpointing and evaluating as configured."""
        cfg = self.cfg
        try:
            if self.dist.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                if not self.resume:
                    dump_config(cfg, self.out / "config.yaml")
            distributed.barrier(self.dist)
            self.loop = TrainLoop(
                self.flow,
                self.loss,
                self.batches,
                build.loop_settings(cfg, progress=self.progress),
                build.optim_settings(cfg),
                out=self.out,
                dist=self.dist,
                on_eval=self._periodic,
                echo=self.echo,
            )
            if self.resume:
                self.loop.restore()
                if self.dist.is_main:
                    # only now that the checkpoint is restored: a failed resume changes nothing
                    dump_config(cfg, self.out / "config.yaml")  # with its --set overrides
                    trim_eval_csv(self.out / "eval.csv", self.loop.step)
            try:
                final_loss = self.loop.run()
            finally:
                self.batches.close()  # loader workers, if any, are not needed any more
            self.loop.release()
            rows: list[Any] = []
            floor = None
            if self.dist.is_main and self.final_eval:
                rows, floor = self._finish()
                write_model_card(self.out)  # model/README.md with eval.txt's table
            distributed.barrier(self.dist)
        finally:
            if hasattr(self, "loop"):
                self.loop.release()
            distributed.cleanup(self.dist)
            self.close()
        loop = self.loop
        return TrainResult(self.out, loop.step, final_loss, loop.elapsed, rows, floor)

    @property
    def step(self) -> int:
        """The number of steps trained so far."""
        return self.loop.step if hasattr(self, "loop") else 0

    def _periodic(self, step: int) -> None:
        if periodic_hook(self, step):  # an autoencoder run, or a latent run's decoded samples
            return
        ev, s = self.cfg.eval, self.cfg.sample
        ema: Any = self.loop.ema.module  # a copy of self.flow, whose kind follows the data
        if self.data.is_mixed:
            return  # evaluated at the end (flowmatch eval re-scores a checkpoint's model)
        if self.data.is_text:
            from flowmatch.evaluation.text import heldout_elbo

            bound = heldout_elbo(ema, self.data.holdout[:500], seed=step)
            self.echo(f"step {step}: held-out ELBO {bound[0]:.4f} ± {bound[1]:.4f} nats/token")
            return
        periodic_report(
            ema,
            self.data,
            self.out,
            step,
            seed=self.cfg.train.seed,
            steps=ev.steps,
            methods=ev.methods,
            num=ev.num_samples,
            eta=s.eta,
            noise=s.noise,
            guidance=s.guidance,
        )

    def _finish(self) -> tuple[list[Any], Any]:
        from flowmatch.evaluation.reports import append_csv

        cfg, ev, s = self.cfg, self.cfg.eval, self.cfg.sample
        ema: Any = self.loop.ema.module  # a copy of self.flow, whose kind follows the data
        # a run resumed after it finished evaluates again: its final rows are replaced
        trim_eval_csv(self.out / "eval.csv", self.loop.step - 1)
        special = finish_hook(self)  # an autoencoder run, or a latent run's decoded samples
        if special is not None:
            return special
        self.echo(f"evaluating ({ev.draws} draws per figure)...")
        common: dict[str, Any] = {
            "seed": cfg.train.seed,
            "steps": ev.steps,
            "num": ev.num_samples,
            "draws": ev.draws,
            "echo": self.echo,
        }
        if self.data.is_mixed:
            from flowmatch.evaluation.tables import mixed_report

            rows, floor = mixed_report(ema, self.data, self.out, sample_steps=s.steps, **common)
            points = min(ev.num_samples, self.data.holdout.shape[0])
            append_csv(self.out / "eval.csv", self.loop.step, rows, points=points, draws=ev.draws)
            return rows, floor
        if self.data.is_text:
            rows, floor = text_reports(
                ema,
                self.data,
                self.out,
                sample_steps=s.steps,
                temperature=s.temperature,
                corrector=s.corrector,
                **common,
            )
            points = ev.num_samples
            append_csv(self.out / "eval.csv", self.loop.step, rows, points=points, draws=ev.draws)
            return rows, floor
        note = None
        if ev.fit_training_time and not (self.data.is_image or self.data.is_manifold):
            common["num"], common["draws"], note = fit_evaluation(
                lambda n: time_one_draw(
                    ema, self.data, n, steps=ev.steps, methods=ev.methods, eta=s.eta, noise=s.noise
                ),
                self.data.max_eval_points(ev.num_samples),
                ev.draws,
                self.loop.elapsed,
            )
            if note is not None:
                self.echo(f"evaluation {note}")
        rows, floor = final_report(
            ema,
            self.data,
            self.out,
            methods=ev.methods,
            eta=s.eta,
            noise=s.noise,
            guidance=s.guidance,
            note=note,
            **common,
        )
        points = eval_points(self.data, common["num"])
        append_csv(
            self.out / "eval.csv", self.loop.step, rows, points=points, draws=common["draws"]
        )
        try:
            plots(
                ema,
                self.data,
                self.out,
                seed=cfg.train.seed,
                steps=s.steps,
                method=s.method,
                eta=s.eta,
                noise=s.noise,
                guidance=s.guidance,
                num=ev.num_samples,
            )
        except MissingExtraError as err:  # a core install: the run is complete without plots
            self.echo(f"warning: plots not written: {err}")
        return rows, floor
