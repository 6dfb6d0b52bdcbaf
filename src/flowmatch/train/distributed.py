"""Multi-process training on PyTorch's own engine: torchrun + DistributedDataParallel.

Launched as ``torchrun --nproc_per_node=N -m flowmatch train CONFIG`` (or with the
``flowmatch`` script), each process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment
that torchrun sets; without them training runs in one process. The backend is gloo on CPU and
nccl on CUDA. Only rank 0 writes files.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_mean", "barrier", "cleanup", "setup"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        """True when running under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and prints."""
        return self.rank == 0


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' was asked for but no CUDA device is available")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device: str = "auto") -> DistInfo:
    """Initialize the process group when launched by torchrun; pick this process's device.

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """The mean of a float over all processes (the value itself in one process)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.item() / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op in one process)."""
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Tear down the process group if this module set one up.

    Call it once every object that holds the group (a DistributedDataParallel wrapper) is
    dropped: the group's worker threads must stop while the interpreter is alive. A gloo
    group that is still referenced at interpreter exit aborts the process (SIGABRT,
    "terminate called without an active exception").
    """
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()
