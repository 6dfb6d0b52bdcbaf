"""Streaming training batches: each batch is drawn, decoded, augmented and paired in
``DataLoader`` worker processes while the previous step trains.

Batch k of a run is a pure function of the run's seed, the process's rank and k:

1. ``batch_size`` indices drawn with replacement from the pool (its generator seeded from
   (seed, rank, k));
2. the items read from the pool: a uint8 tensor (images stay 0..255 in memory, a quarter of
   float32) or an :class:`ImageFiles` folder read lazily from disk, then mapped to [-1, 1];
3. with ``flip``, each image mirrored left-right with probability 1/2;
4. the source batch x0 drawn (N(0, I), or the run's toy source);
5. with a coupling (minibatch OT, Sinkhorn, Schrödinger bridge), x0 paired with x1 there, so
   the solve of batch k+1 runs in a worker while step k trains and leaves the critical path.

Because a batch depends only on (seed, rank, k), the batches are the same for any number of
workers (0 computes them in the training process itself, in the same order), and resuming at
step k restarts the stream at batch k: a resumed run sees exactly the batches an uninterrupted
one would. Compared with the in-process batch sources of :mod:`flowmatch.train.batches`, what
changes is which random numbers are drawn, not how: the indices, the source noise and the
coupling's draws come from the batch's own generator instead of the run's one batch generator
(which still draws the times and the label dropout), so a run with a pipeline is a different
(equally valid) random draw of the same training than one without.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

from flowmatch.couplings import Coupling, Independent
from flowmatch.errors import DataError
from flowmatch.evaluation import seeds
from flowmatch.sources import draw_source
from flowmatch.train.batches import Batches, Triple

__all__ = ["ImageFiles", "StreamBatches", "batch_seed", "streams", "take_coupling"]

MAX_WORKERS = 64
"""The most loader worker processes a stream starts."""


def batch_seed(seed: int, k: int, *, rank: int = 0) -> int:
    """The 63-bit seed of batch ``k`` of process ``rank`` of a run with seed ``seed``."""
    base = seeds.stream_seed(seed, "loader", rank=rank)
    state = np.random.SeedSequence([base, k]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class ImageFiles:
    """Image files read lazily: only the batch being assembled is decoded, in the worker.

    Args:
        files: the image files.
        size: the side images are resized to.
        channels: 1 (gray) or 3 (RGB).

    Indexing with a (B,) index tensor returns uint8 pixels (B, C, size, size); like a tensor
    of all the images it has ``shape`` (N, C, size, size), ``ndim`` 4 and ``dtype`` uint8.
    """

    ndim = 4
    dtype = torch.uint8

    def __init__(self, files: list[Path], *, size: int, channels: int) -> None:
        self.files, self.size, self.channels = list(files), size, channels
        self.shape = torch.Size((len(self.files), channels, size, size))

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, idx: Tensor) -> ImageFiles:
        """The files at ``idx`` (a (K,) index tensor), still unread."""
        files = [self.files[i] for i in idx.tolist()]
        return ImageFiles(files, size=self.size, channels=self.channels)

    def check(self) -> ImageFiles:
        """Check every file up front (headers and checksums, no decoding; see
        :func:`flowmatch.data.images.check_image`), so that a bad file is an error before
        training rather than in the middle of it; returns ``self``."""
        from flowmatch.data.images import check_image

        for path in self.files:
            check_image(path)
        return self

    def read(self) -> Tensor:
        """All the images, read now: uint8 (N, C, size, size)."""
        return self[torch.arange(len(self))]

    def __getitem__(self, idx: Tensor) -> Tensor:
        from flowmatch.data.images import read_image

        mode = "L" if self.channels == 1 else "RGB"
        arrays = [read_image(self.files[i], mode, self.size) for i in idx.tolist()]
        pixels = np.stack(arrays)
        pixels = pixels[:, None] if self.channels == 1 else pixels.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(pixels))


def _to_float(x: Tensor) -> Tensor:
    from flowmatch.data.images import unit_range

    x = unit_range(x)
    return x if x.is_floating_point() else x.float()


class _StepBatches(Dataset):
    """Item k is the whole batch k ``(x0, x1, cond)``, made as the module docstring says."""

    def __init__(self, stream: StreamBatches) -> None:
        self.s = stream

    def __len__(self) -> int:  # the DataLoader asks; the stream is as long as training
        return 2**62

    def __getitem__(self, k: int) -> tuple[Any, ...] | str:
        try:
            batch = self._make(k)
        except DataError as err:  # a file that cannot be read: one line, raised by next()
            return str(err)
        if get_worker_info() is not None:  # numpy crosses the pipe in one copy; a tensor
            return tuple(t.numpy() for t in batch)  # would need a shared-memory segment each
        return batch

    def _make(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        s = self.s
        g = torch.Generator().manual_seed(batch_seed(s.seed, k, rank=s.rank))
        idx = torch.randint(0, len(s.pool), (s.batch_size,), generator=g)
        x1 = _to_float(s.pool[idx])
        if s.flip:
            mirror = torch.rand(s.batch_size, generator=g) < 0.5
            x1[mirror] = x1[mirror].flip(-1)
        cond = s.labels[idx] if s.labels is not None else torch.empty(0)
        x0 = draw_source(s.source, s.batch_size, s.shape, g)
        if not isinstance(s.coupling, Independent):
            x0, x1, paired = s.coupling(x0, x1, cond if s.labels is not None else None, generator=g)
            if paired is not None:
                cond = paired
        return x0, x1, cond


def _as_is(batch: Any) -> Any:
    """The loader's collate function: the batch as the worker made it (no conversion)."""
    return batch


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # a worker is one core's worth of work


class StreamBatches(Batches):
    """Batches made by :class:`_StepBatches` (see the module docstring), in ``workers``
    ``DataLoader`` processes (0: in this process), ``prefetch`` batches ahead per worker.

    Args:
        pool: the training points: a tensor (N, *D) (uint8 images 0..255 are mapped to
            [-1, 1] batch by batch; float points are used as they are) or :class:`ImageFiles`.
        labels: their classes (N,) int64, or None.
        batch_size: points per batch.
        seed: the run's seed.
        workers: loader processes, 0..64.
        flip: mirror images left-right with probability 1/2 (images (C, H, W) only).
        coupling: pairs x0 with x1 in the loader; the loss must then not pair again (see
            :func:`take_coupling`).
        source: the toy source's name, or None for N(0, I).
        prefetch: batches each worker prepares ahead.
    """

    def __init__(
        self,
        pool: Tensor | ImageFiles,
        labels: Tensor | None = None,
        *,
        batch_size: int,
        seed: int = 0,
        workers: int = 0,
        flip: bool = False,
        coupling: Coupling | None = None,
        source: str | None = None,
        prefetch: int = 2,
    ) -> None:
        if len(pool) < 1:
            raise DataError("data: the training pool is empty")
        if labels is not None and (labels.ndim != 1 or labels.shape[0] != len(pool)):
            raise DataError(f"labels: expected shape ({len(pool)},), got {tuple(labels.shape)}")
        if not 0 <= workers <= MAX_WORKERS:
            raise DataError(f"data.workers: expected an int in [0, {MAX_WORKERS}], got {workers}")
        self.shape = tuple(pool.shape[1:])
        if flip and len(self.shape) != 3:
            raise DataError(f"data.flip: mirrors images (C, H, W), not points of {self.shape}")
        self.pool, self.labels = pool, labels
        self.labelled = labels is not None
        self.batch_size, self.seed, self.workers = int(batch_size), int(seed), int(workers)
        self.flip, self.source, self.prefetch = bool(flip), source, int(prefetch)
        self.coupling: Coupling = coupling if coupling is not None else Independent()
        self.rank, self.device = 0, torch.device("cpu")
        self.step = 0  # the number of the next batch
        self._it: Iterator[Any] | None = None

    def to(self, device: torch.device) -> StreamBatches:
        self.device = device
        return self

    def for_rank(self, rank: int) -> StreamBatches:
        """Draw the batches of process ``rank`` (each process of a DDP run its own)."""
        self.rank, self._it = int(rank), None
        return self

    def _start(self) -> Iterator[Any]:
        steps = range(self.step, 2**62)
        if self.workers == 0:
            items = _StepBatches(self)
            return (items[k] for k in steps)
        loader = DataLoader(
            _StepBatches(self),
            batch_size=None,
            sampler=steps,
            num_workers=self.workers,
            prefetch_factor=self.prefetch,
            worker_init_fn=_worker_init,
            collate_fn=_as_is,
            pin_memory=self.device.type == "cuda",
        )
        return iter(loader)

    def next(self, size: int, generator: torch.Generator) -> Triple:
        if size != self.batch_size:
            raise DataError(f"data: the stream makes batches of {self.batch_size}, asked {size}")
        if self._it is None:
            self._it = self._start()
        item = next(self._it)
        if isinstance(item, str):
            self.close()
            raise DataError(item)
        x0, x1, cond = (torch.from_numpy(t) if isinstance(t, np.ndarray) else t for t in item)
        self.step += 1
        dev, blocking = self.device, self.device.type != "cuda"
        return (
            x0.to(dev, non_blocking=not blocking),
            x1.to(dev, non_blocking=not blocking),
            cond.to(dev) if self.labelled else None,
        )

    def close(self) -> None:
        """Stop the worker processes (a new iterator starts on the next batch)."""
        shutdown = getattr(self._it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        self._it = None

    def state_dict(self) -> dict[str, Any]:
        return {"stream_step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "stream_step" in state:
            self.step = int(state["stream_step"])
            self._it = None


def take_coupling(loss: Any) -> Coupling | None:
    """Move the coupling of ``loss`` out of it (for a :class:`StreamBatches` to pair in its
    workers): the loss is left pairing nothing (:class:`~flowmatch.couplings.Independent`),
    its path unchanged (a Schrödinger bridge keeps its Brownian bridge). None when the loss
    has no coupling or an independent one."""
    coupling = getattr(loss, "coupling", None)
    if not isinstance(coupling, Coupling) or isinstance(coupling, Independent):
        return None
    loss.coupling = Independent()
    return coupling


def streams(cfg: Any, data: Any) -> bool:
    """Whether a run's batches come from a :class:`StreamBatches`: asked for (``data.workers``,
    ``data.flip``, ``data.stream``), or a pool that is uint8 or on disk (Fashion-MNIST, IDX
    files, image folders).

    Raises:
        ConfigError: streaming asked for data it does not read (tables with categories,
            points on a manifold, text); one line naming the key.
    """
    from flowmatch.errors import ConfigError

    asked = cfg.workers > 0 or cfg.flip or cfg.stream
    if asked and (data.is_mixed or data.is_manifold or data.is_text):
        key = "workers" if cfg.workers else "flip" if cfg.flip else "stream"
        raise ConfigError(
            f"config: data.{key}: the streaming pipeline reads images and points of R^D, not "
            f"{data.name}",
            key=f"data.{key}",
        )
    pool = data.train
    return asked or isinstance(pool, ImageFiles) or pool.dtype == torch.uint8
