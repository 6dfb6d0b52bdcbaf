"""Preemption: SIGTERM/SIGINT or a time limit asks training to stop after its current step.

SLURM and Kubernetes send SIGTERM before they kill a job; Ctrl-C sends SIGINT. While
:class:`StopRequests` catches them, the first signal only records the request: the training
loop finishes its step, writes a complete checkpoint and raises
:class:`~flowmatch.errors.Preempted` (``flowmatch train`` exits 75). A second signal
interrupts at once (KeyboardInterrupt). Under torchrun the ranks agree on the stop step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from flowmatch.errors import Preempted
from flowmatch.train import distributed

__all__ = ["STOP_SIGNALS", "StopRequests", "stop_outside_training"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals on which training finishes its step, checkpoints and stops."""


class StopRequests:
    """The requests to stop training after the current step: a stop signal while
    :meth:`catching`, or ``max_minutes`` of training since :meth:`start_clock`.

    Args:
        max_minutes: wall-clock minutes of training before a stop (None: no limit).
        dist: the process's place; with several processes :meth:`reason` is collective.
    """

    def __init__(self, max_minutes: float | None, dist: distributed.DistInfo) -> None:
        self.max_minutes, self.dist = max_minutes, dist
        self.signal_name: str | None = None
        self._started = time.monotonic()

    def start_clock(self) -> None:
        """Start counting ``max_minutes`` (at the first step of this process)."""
        self._started = time.monotonic()

    @contextlib.contextmanager
    def catching(self, *, enabled: bool = True) -> Iterator[None]:
        """Catch SIGTERM/SIGINT as "stop after this step" (in the main thread only, where
        Python runs signal handlers); the previous handlers come back afterwards."""
        self.signal_name = None
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: Any) -> None:
            if self.signal_name is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(signum).name

        with _handling(handler):
            yield

    def reason(self) -> str | None:
        """Why training should stop after this step (a signal's name, ``max_minutes``), agreed
        by every rank (a collective call under torchrun); None to go on."""
        reason = self.signal_name
        limit = self.max_minutes
        if reason is None and limit is not None and time.monotonic() - self._started > 60 * limit:
            reason = "max_minutes"
        if self.dist.enabled:
            import torch.distributed as tdist

            flag = torch.tensor([0.0 if reason is None else 1.0], device=self.dist.device)
            tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
            if flag.item() > 0 and reason is None:
                reason = "a stop on another rank"
        return reason


@contextlib.contextmanager
def stop_outside_training(step: Callable[[], int]) -> Iterator[None]:
    """Around a whole training command: a stop signal that comes while no step is training
    (loading data, building the model, restoring, the final evaluation) raises
    :class:`~flowmatch.errors.Preempted` at once, so the command exits 75 like a stop
    during training; the newest checkpoint is complete, nothing is lost. While the loop
    trains, its own :meth:`StopRequests.catching` takes over."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Preempted(
            step(),
            signal.Signals(signum).name,
            detail="no step was training; the newest checkpoint is complete",
        )

    with _handling(handler):
        yield


@contextlib.contextmanager
def _handling(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for the stop signals inside the block; the previous handlers afterwards."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
