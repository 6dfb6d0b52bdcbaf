"""The training loop: one loop for one CPU, one GPU or many processes (torchrun + DDP).

:class:`TrainLoop` trains a :class:`~flowmatch.flow.FlowModel` with a loss on a batch source
(:mod:`flowmatch.train.batches`), keeps the EMA of its weights, logs, checkpoints atomically
and resumes. Every random draw of the loop (batches, noise, times, couplings) comes from one
seeded generator per process whose state is checkpointed with the optimizer, the EMA and
torch's global RNG, so a run killed at any moment and resumed ends bit-identical (on CPU) to
an uninterrupted one. ``fm.train`` and the config-driven :class:`~flowmatch.train.Trainer`
both drive this loop.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from flowmatch.errors import CheckpointError, NumericalError, Preempted
from flowmatch.evaluation import seeds
from flowmatch.flow import FlowModel
from flowmatch.train import distributed
from flowmatch.train.batches import Batches
from flowmatch.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    newest_good_checkpoint,
    remove_partial,
    save_checkpoint,
)
from flowmatch.train.ema import EMA
from flowmatch.train.logging import MetricsLog, disabled_log, progress_bar
from flowmatch.train.preemption import StopRequests
from flowmatch.train.settings import LoopSettings, OptimSettings, lr_lambda

if TYPE_CHECKING:
    from flowmatch.discrete.mixed_model import MixedFlowModel
    from flowmatch.discrete.model import DiscreteFlowModel
    from flowmatch.manifolds.model import ManifoldFlowModel

__all__ = ["LoopSettings", "NonFiniteLossError", "OptimSettings", "TrainLoop", "lr_lambda"]


class NonFiniteLossError(NumericalError):
    """The loss or the gradient became NaN/Inf; the run stopped before applying it."""


class TrainLoop:
    """Train a FlowModel with a loss on a batch source.

    Args:
        flow: the model (its net is trained in place; moved to the process's device).
        loss: called as ``loss(model, x1, x0=, cond=, generator=)``, returning a scalar.
        batches: the batch source.
        settings: :class:`LoopSettings`.
        optim: :class:`OptimSettings`.
        out: the run directory for checkpoints, ``model/`` and ``metrics.csv``; None keeps
            everything in memory.
        dist: the process's place (:func:`flowmatch.train.distributed.setup`).
        on_eval: called on rank 0 with the step every ``eval_every`` steps (not at the end).
        echo: where messages go (rank 0 only).

    Preemption: with an ``out``, SIGTERM or SIGINT (what SLURM and Kubernetes send before
    they kill a job; Ctrl-C) while :meth:`run` trains makes the loop finish the current step,
    write a complete checkpoint and raise :class:`~flowmatch.errors.Preempted`; so does
    ``settings.max_minutes``. Under torchrun the ranks agree on the stop step (a signal on
    any rank stops all of them after the same step). A second signal interrupts at once
    (KeyboardInterrupt).
    """

    def __init__(
        self,
        flow: FlowModel | DiscreteFlowModel | MixedFlowModel | ManifoldFlowModel,
        loss: Any,
        batches: Batches,
        settings: LoopSettings,
        optim: OptimSettings,
        *,
        out: str | Path | None = None,
        dist: distributed.DistInfo,
        on_eval: Callable[[int], None] | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.settings, self.optim_settings = settings, optim
        self.out = Path(out) if out is not None else None
        self.dist = dist
        self.echo = echo if dist.is_main else (lambda _msg: None)
        self.on_eval = on_eval
        dev = dist.device
        self.flow = flow.to(dev)
        self.loss_fn = loss
        self.ema = EMA(self.flow, settings.ema_decay)
        self.opt = torch.optim.AdamW(
            self.flow.parameters(),
            lr=optim.lr,
            betas=optim.betas,
            weight_decay=optim.weight_decay,
            fused=dev.type == "cuda" or None,  # one kernel per step on a GPU; CPU as before
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(optim.warmup_steps, settings.steps)
        )
        # fp16 gradients underflow without loss scaling; bf16 (fp32's range) needs none
        self.scaler = torch.amp.GradScaler(dev.type, enabled=settings.precision == "fp16")
        self.gen = seeds.generator(settings.seed, "batches", rank=dist.rank, device=dev)
        self.batches = batches.to(dev)
        net: nn.Module = self.flow
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                net, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        if settings.compile:
            net = cast(nn.Module, torch.compile(net))  # an OptimizedModule, typed as a function
        self.net = net
        self.step = 0
        self.elapsed = 0.0
        self.log: Any = disabled_log()
        self.stop = StopRequests(settings.max_minutes, dist)

    # ---------------------------------------------------------------------- checkpoints
    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "data": self.gen.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                state[f"cuda{i}"] = s
        return state

    def _gather_rng(self) -> dict[str, torch.Tensor]:
        """RNG states of every rank (each rank's batch generator differs)."""
        state = self._rng_state()
        if not self.dist.enabled:
            return state
        import torch.distributed as tdist

        gathered: list[Any] = [None] * self.dist.world_size
        tdist.all_gather_object(gathered, state["data"].cpu())
        for r, s in enumerate(gathered):
            state[f"data_rank{r}"] = s
        return state

    def checkpoint(self) -> None:
        """Write the resumable state and ``model/`` (rank 0; every rank takes part).

        Raises:
            CheckpointError: the disk is full (or another I/O error); the previous
                checkpoint is intact.
        """
        rng = self._gather_rng()  # collective
        if self.dist.is_main and self.out is not None:
            optim = {
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(),
                "elapsed": self.elapsed,
                "batches": self.batches.state_dict(),
            }
            save_checkpoint(
                self.out / "checkpoints",
                step=self.step,
                model=self.flow.net.state_dict(),
                ema=self.ema.module.net.state_dict(),
                optim=optim,
                rng=rng,
            )
            from safetensors import SafetensorError

            try:
                self.flow.save_pretrained(self.out / "model", ema=self.ema.module)
            except (OSError, SafetensorError) as err:  # a full disk
                raise CheckpointError(
                    f"{self.out / 'model'}: cannot write the model files ({err}); the "
                    f"checkpoint of step {self.step} is complete: free the space and continue "
                    "with --resume"
                ) from None
        distributed.barrier(self.dist)

    def restore(self) -> bool:
        """Load the newest intact checkpoint of ``out``; False when there is none.

        A damaged newest checkpoint (a checksum that does not match, a missing file, an
        implausible ``state.json``) is moved aside with a one-line warning and the one before
        it is used.

        Raises:
            CheckpointError: there are checkpoints but none is intact, or the newest intact
                one does not fit this run (another architecture, a step past
                ``settings.steps``).
        """
        if self.out is None:
            return False
        ckpt_dir = self.out / "checkpoints"
        if ckpt_dir.exists() and not ckpt_dir.is_dir():
            raise CheckpointError(f"{ckpt_dir}: expected the folder of checkpoints, found a file")
        if self.dist.is_main:
            remove_partial(ckpt_dir)
            newest_good_checkpoint(ckpt_dir, warn=self.echo)  # moves damaged ones aside
        distributed.barrier(self.dist)
        latest = latest_checkpoint(ckpt_dir)
        if latest is None:
            self.echo(f"{ckpt_dir}: no checkpoint yet; training from step 0")
            return False
        ck = load_checkpoint(latest, device=self.dist.device)
        if ck.step > self.settings.steps:
            raise CheckpointError(
                f"{latest}: the checkpoint is at step {ck.step}, past train.steps="
                f"{self.settings.steps} of this run; raise train.steps to continue it"
            )
        try:
            self.flow.net.load_state_dict(ck.model)
            self.ema.module.net.load_state_dict(ck.ema)
            self.opt.load_state_dict(ck.optim["optimizer"])
            self.sched.load_state_dict(ck.optim["scheduler"])
            if self.scaler.is_enabled() and ck.optim.get("scaler"):
                self.scaler.load_state_dict(ck.optim["scaler"])
            self.batches.load_state_dict(ck.optim.get("batches", {}))
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"{latest}: the checkpoint does not fit this run's model or optimizer (was "
                f"config.yaml changed?): {str(err).splitlines()[0][:200]}"
            ) from None
        torch.set_rng_state(ck.rng["torch"])
        data_key = f"data_rank{self.dist.rank}"
        self.gen.set_state(ck.rng[data_key if data_key in ck.rng else "data"].to("cpu"))
        for key, value in ck.rng.items():
            if key.startswith("cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state(value, int(key[4:]))
        self.step = ck.step
        self.elapsed = float(ck.optim.get("elapsed", 0.0))
        self.echo(f"resumed from {latest} (step {self.step})")
        return True

    # ------------------------------------------------------------------------------ run
    def _autocast(self) -> Any:
        precision = self.settings.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.dist.device.type, dtype=dtype)

    def _batch(self, size: int) -> tuple[Any, torch.Tensor, Any]:
        """(x0, x1, labels) of one step; x0 from the model's source when the batch has none
        (None for N(0, I): the loss draws it)."""
        x0, x1, cond = self.batches.next(size, self.gen)
        if x0 is None and self.flow.source is not None:
            x0 = self.flow.draw_source(x1.shape[0], self.gen).to(self.dist.device)
        return x0, x1, cond

    def _stop_non_finite(self, loss_value: float, grad_norm: float) -> None:
        latest = latest_checkpoint(self.out / "checkpoints") if self.out is not None else None
        kept = (
            f"the last good checkpoint is {latest}" if latest else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: the loss became non-finite "
            f"(loss={loss_value}, grad_norm={grad_norm}); the update was not applied and {kept}"
        )

    def run(self) -> float:
        """Train to ``settings.steps``; returns the loss of the last logged window.

        Raises:
            Preempted: a stop signal or ``max_minutes`` ended training early, after a
                complete checkpoint of the step it stopped at.
            NonFiniteLossError: the loss or gradient became NaN/Inf.
        """
        s = self.settings
        if self.dist.is_main and self.out is not None:
            self.log = MetricsLog(
                self.out,
                step=self.step,
                tensorboard=s.tensorboard,
                loggers=s.loggers,
                hparams=s.hparams,
                wandb_project=s.wandb_project,
            )
        try:
            with self.stop.catching(enabled=self.out is not None), warnings.catch_warnings():
                if self.scaler.is_enabled():
                    # fp16: an update the scaler skips (the first ones, while it finds its
                    # scale) makes torch warn that the scheduler stepped before the optimizer
                    warnings.filterwarnings(
                        "ignore", "Detected call of `lr_scheduler.step", UserWarning
                    )
                return self._loop()
        finally:
            self.log.close()

    def release(self) -> None:
        """Drop the DistributedDataParallel wrapper, the loop's hold on the process group.

        Call it before :func:`flowmatch.train.distributed.cleanup`; the loop cannot train on
        more than one process afterwards.
        """
        self.net = self.flow

    def _loop(self) -> float:
        s, total, clip = self.settings, self.settings.steps, self.optim_settings.grad_clip
        params = list(self.flow.parameters())
        autocast = self._autocast()
        window_loss, window_n, last_loss = 0.0, 0, float("nan")
        start = time.perf_counter() - self.elapsed
        self.stop.start_clock()
        with progress_bar(s.progress and self.dist.is_main) as bar:
            task = bar.add_task("train", total=total, completed=self.step, loss=float("nan"))
            while self.step < total:
                x0, x1, cond = self._batch(s.batch_size)
                with autocast:
                    loss = self.loss_fn(self.net, x1, x0=x0, cond=cond, generator=self.gen)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()  # fp16: the loss scaled up (else as is)
                self.scaler.unscale_(self.opt)  # the gradient in true units, to clip and log
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, clip if clip is not None else float("inf")
                )
                loss_value, norm_value = loss.item(), grad_norm.item()
                # The gradient norm is the same on every rank after DDP's all-reduce, so all
                # ranks stop together; a NaN loss on any rank makes it non-finite. Under fp16
                # loss scaling an overflowed gradient is expected now and then: the scaler
                # skips that update and lowers the scale, so only the loss stops the run.
                grad_ok = math.isfinite(norm_value) or self.scaler.is_enabled()
                if not (math.isfinite(loss_value) and grad_ok):
                    self._stop_non_finite(loss_value, norm_value)
                self.scaler.step(self.opt)  # fp16: skipped when the gradient overflowed
                self.scaler.update()
                self.sched.step()
                self.ema.update(self.flow, self.step)
                self.step += 1
                window_loss += loss_value
                window_n += 1
                if self.step % s.log_every == 0 or self.step == total:
                    last_loss = distributed.all_reduce_mean(window_loss / window_n, self.dist)
                    self.elapsed = time.perf_counter() - start
                    lr = self.sched.get_last_lr()[0]
                    self.log.write(self.step, last_loss, lr, norm_value, self.elapsed)
                    window_loss, window_n = 0.0, 0
                    bar.update(task, completed=self.step, loss=last_loss)
                saved = self.out is not None and (
                    self.step % s.checkpoint_every == 0 or self.step == total
                )
                if saved:
                    self.elapsed = time.perf_counter() - start
                    self.checkpoint()
                if (
                    self.on_eval is not None
                    and s.eval_every is not None
                    and self.step % s.eval_every == 0
                    and self.step < total
                    and self.dist.is_main
                ):
                    self.on_eval(self.step)
                if self.out is not None:
                    reason = self.stop.reason()
                    if reason is not None:
                        self.elapsed = time.perf_counter() - start
                        if not saved:
                            self.checkpoint()
                        bar.stop()
                        raise Preempted(self.step, reason)
        self.elapsed = time.perf_counter() - start
        return last_loss
