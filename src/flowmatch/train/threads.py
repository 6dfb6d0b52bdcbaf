"""How many threads torch's CPU kernels use while training.

A small network's step on a CPU is too short to share between threads: on a 2-core machine a
3x256 MLP step took 4.09 ms with 1 thread and 4.28 ms with 2 when the machine was idle, and
3.7 ms vs 10.9 ms next to one other busy process (``benchmarks/threads.py``; figures in
``benchmarks/RESULTS.md``). So by default a run on the CPU whose network has fewer than
`SMALL_NETWORK` parameters uses 1 thread; larger networks keep torch's default. An explicit
``train.threads`` wins, and so do ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set by the user.
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
