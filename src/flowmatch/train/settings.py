"""The settings of the training loop: how long and how to train, and the optimizer with its
learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoopSettings", "OptimSettings", "lr_lambda"]


@dataclass(frozen=True)
class OptimSettings:
    """AdamW and its learning-rate schedule (linear warmup, then cosine decay to 0).

    Attributes:
        lr: peak learning rate.
        weight_decay: decoupled weight decay.
        warmup_steps: steps of linear warmup from 0 to lr.
        grad_clip: maximum global gradient norm; None for no clipping.
        betas: Adam's (beta1, beta2).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class LoopSettings:
    """How long and how to train.

    Attributes:
        steps: optimiser steps.
        batch_size: points per step and process (a DataLoader's own batches are used as
            they come).
        ema_decay: decay of the weight EMA, in [0, 1).
        seed: the run's seed (the batch generator's stream derives from it).
        checkpoint_every: steps between checkpoints (with an output directory).
        log_every: steps between ``metrics.csv`` rows.
        eval_every: steps between calls of the periodic evaluation (None: never).
        precision: fp32 | bf16 | fp16 autocast.
        compile: wrap the model in ``torch.compile``.
        tensorboard: also log to TensorBoard (the same as adding it to ``loggers``).
        progress: show a progress bar (rank 0).
        max_minutes: wall-clock minutes this process may train before it checkpoints and
            stops with :class:`~flowmatch.errors.Preempted` (None: no limit); for jobs with a
            time limit.
        loggers: where the metrics go besides ``metrics.csv`` (always written): any of
            ``csv``, ``tensorboard``, ``wandb`` (:mod:`flowmatch.train.loggers`).
        wandb_project: the Weights & Biases project (None: ``flowmatch``).
        hparams: the run's hyperparameters (the resolved config), recorded by the loggers.
    """

    steps: int
    batch_size: int = 256
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 100
    eval_every: int | None = None
    precision: str = "fp32"
    compile: bool = False
    tensorboard: bool = False
    progress: bool = True
    max_minutes: float | None = None
    loggers: tuple[str, ...] = ("csv",)
    wandb_project: str | None = None
    hparams: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup from 0 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
