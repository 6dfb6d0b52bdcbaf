"""How many threads torch's CPU kernels use while training.

A small network's step on a CPU is short, and sharing it between threads is fragile: on a
2-core machine (``benchmarks/threads.py``, figures in ``benchmarks/RESULTS.md``) a 3x256 MLP
step at batch 256 took 4.1-4.9 ms with 1 thread and 2.7-3.2 ms with 2 when the machine was
idle, but 4.4-5.3 ms vs 10.8-15.3 ms next to one other busy process (another run, a data
loader, the test suite), in three runs. One thread is never far from the best time; two can
be far from it. So by default a run on the CPU whose network has fewer than `SMALL_NETWORK`
parameters uses 1 thread; larger networks keep torch's default. An explicit ``train.threads``
wins (set 2 or more on a machine of your own), and so do ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``.
"""

from __future__ import annotations

import os

import torch

__all__ = ["SMALL_NETWORK", "apply_threads", "choose_threads"]

SMALL_NETWORK = 1_000_000
"""Networks with fewer parameters train with 1 CPU thread by default."""

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def choose_threads(requested: int | None, *, device: torch.device, parameters: int) -> int | None:
    """The number of intra-op threads to train with; None leaves torch's setting alone.

    Args:
        requested: ``train.threads`` (None: choose).
        device: the training device (threads only matter on the CPU).
        parameters: the network's parameter count.
    """
    if requested is not None:
        return requested
    if device.type != "cpu" or any(os.environ.get(name) for name in _ENV):
        return None
    return 1 if parameters < SMALL_NETWORK else None


def apply_threads(requested: int | None, *, device: torch.device, parameters: int) -> int:
    """Set torch's intra-op threads as :func:`choose_threads` says; returns the count in use."""
    chosen = choose_threads(requested, device=device, parameters=parameters)
    if chosen is not None and chosen != torch.get_num_threads():
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
