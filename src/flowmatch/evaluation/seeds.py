"""Named random streams of a run, all derived from its one seed (``train.seed``).

Each consumer of randomness draws from its own ``torch.Generator``, seeded from the run's
seed and the stream's name, so adding draws to one (more evaluation points, say) never shifts
another (the training batches). The values reproduce the streams of earlier flowmatch
versions, so a run trained again gives the same numbers.
"""

from __future__ import annotations

import torch

__all__ = ["STREAMS", "generator", "stream_seed"]

STREAMS: dict[str, tuple[int, int]] = {
    # data: drawn once when the run's data is built
    "pool": (1000, 1),  # the training pool of a toy set
    "holdout": (1000, 2),  # its held-out set
    "split": (1000, 3),  # the train/held-out split of a table or image set
    "batches": (1000, 10),  # training batches, noise and times (+ the process's rank)
    "loader": (1000, 500),  # the streaming pipeline's batches (+ rank; then the batch number)
    # evaluation: the same draws for every method and step count
    "eval": (1, 7),  # source noise, reference sets, sampler noise of the evaluation
    "plots": (1, 11),  # the samples and trajectories of the plots
    "straightness": (1, 13),  # the source points of the straightness figure
}
"""Stream name -> (multiplier, offset): the stream's seed is ``seed * multiplier + offset``."""


def stream_seed(seed: int, stream: str, *, rank: int = 0) -> int:
    """The seed of a named stream of a run with seed ``seed`` (``rank``: of a process)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {tuple(STREAMS)}, got {stream!r}")
    multiplier, offset = STREAMS[stream]
    return seed * multiplier + offset + rank


def generator(
    seed: int, stream: str, *, rank: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded for the named stream."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, rank=rank))
