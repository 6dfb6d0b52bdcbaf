"""Where a training step's batch comes from: a tensor, a ``Dataset``, a ``DataLoader`` or pairs.

Every source yields ``(x0, x1, cond)`` per step: data points x1 (B, *D), their labels (B,) or
None, and fixed source points x0 (reflow pairs) or None (the loss or the model's source
draws them). What resume guarantees depends on the source:

- **Tensors, Datasets and pairs** are drawn with replacement by indices from the run's seeded
  batch generator, whose state is in every checkpoint: a resumed run draws exactly the
  batches an uninterrupted one would, so on CPU it ends bit-identical.
- **A DataLoader** is iterated epoch by epoch as it is (its own batch size, workers,
  sampler, transforms). Its order is replayed on resume: each epoch's iteration starts under
  a seed derived from the run's seed and the epoch (the shuffling of ``shuffle=True`` and the
  workers' base seed draw from it), or from the state of the loader's own ``generator`` when
  it has one, which checkpoints save; a ``sampler`` with ``set_epoch`` (DistributedSampler)
  is told the epoch. Resuming re-creates the epoch's iterator and skips the batches already
  used, so the same batches follow, provided the loader's order depends only on those seeds
  (any randomness of a user's own sampler or dataset that draws from elsewhere is not
  restored).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from flowmatch.errors import DataError
from flowmatch.rectify import Pairs

__all__ = [
    "Batches",
    "DatasetBatches",
    "LoaderBatches",
    "PairBatches",
    "TensorBatches",
    "as_batches",
]

Triple = tuple["Tensor | None", Tensor, "Tensor | None"]


def _split_item(item: Any, where: str) -> tuple[Tensor, Tensor | None]:
    """(x, label) of a dataset item or a collated batch: ``x``, ``(x,)`` or ``(x, label)``."""
    if isinstance(item, Tensor):
        return item, None
    if isinstance(item, (tuple, list)) and len(item) == 1 and isinstance(item[0], Tensor):
        return item[0], None  # a TensorDataset of data alone
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Tensor):
        label = item[1]
        if not isinstance(label, Tensor):
            label = torch.as_tensor(label)
        return item[0], label
    raise DataError(
        f"{where}: expected a tensor x or a pair (x, label), got {type(item).__name__}"
        + (f" of {len(item)} items" if isinstance(item, (tuple, list)) else "")
    )


_INTEGER = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_x(x: Tensor, where: str) -> Tensor:
    """Floating-point points, or integer token ids (for a discrete model)."""
    if not (x.is_floating_point() or x.dtype in _INTEGER):
        raise DataError(
            f"{where}: data must be floating point (or integer token ids), got {x.dtype}"
        )
    return x


class Batches:
    """Base class: ``next(size, generator)`` -> ``(x0 or None, x1, cond or None)``."""

    shape: tuple[int, ...]
    labelled: bool
    dtype: torch.dtype = torch.float32

    def to(self, device: torch.device) -> Batches:
        """The same source with its tensors on ``device`` (a no-op for loaders)."""
        return self

    def next(self, size: int, generator: torch.Generator) -> Triple:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume the stream (beyond the batch generator)."""
        return {}

    def close(self) -> None:
        """Release what the source holds open (worker processes); a no-op by default."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class TensorBatches(Batches):
    """Batches drawn with replacement from an in-memory pool (N, *D) and its labels (N,)."""

    def __init__(self, data: Tensor, labels: Tensor | None = None) -> None:
        if not isinstance(data, Tensor) or data.ndim < 2 or data.shape[0] < 1:
            raise DataError(f"data: expected a tensor of shape (N, *D), got {_describe(data)}")
        self.dtype = _check_x(data, "data").dtype
        if labels is not None and (labels.ndim != 1 or labels.shape[0] != data.shape[0]):
            raise DataError(
                f"labels: expected shape ({data.shape[0]},), one per point, got "
                f"{tuple(labels.shape)}"
            )
        self.data, self.labels = data, labels
        self.shape = tuple(data.shape[1:])
        self.labelled = labels is not None

    def to(self, device: torch.device) -> TensorBatches:
        labels = self.labels.to(device) if self.labels is not None else None
        return TensorBatches(self.data.to(device), labels)

    def next(self, size: int, generator: torch.Generator) -> Triple:
        idx = torch.randint(
            0, self.data.shape[0], (size,), generator=generator, device=generator.device
        )
        cond = self.labels[idx] if self.labels is not None else None
        return None, self.data[idx], cond


class PairBatches(Batches):
    """Fixed (x0, x1[, cond]) pairs (reflow), drawn with replacement."""

    def __init__(self, pairs: Pairs) -> None:
        self.pairs = pairs
        self.shape = tuple(pairs.x0.shape[1:])
        self.labelled = pairs.cond is not None

    def to(self, device: torch.device) -> PairBatches:
        return PairBatches(self.pairs.to(device))

    def next(self, size: int, generator: torch.Generator) -> Triple:
        return self.pairs.sample(size, generator=generator)


class DatasetBatches(Batches):
    """Items of a map-style ``Dataset`` (``x`` or ``(x, label)``) drawn with replacement and
    stacked; read in this process (give a ``DataLoader`` for worker processes)."""

    def __init__(self, dataset: Dataset) -> None:
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise DataError(
                "data: a Dataset needs __len__ (a map-style dataset); wrap an iterable one in "
                "a DataLoader"
            ) from None
        if n < 1:
            raise DataError("data: the Dataset is empty")
        x, label = _split_item(dataset[0], "data[0]")
        self.dataset, self.n, self.device = dataset, n, torch.device("cpu")
        self.shape = tuple(_check_x(x, "data[0]").shape)
        self.dtype = x.dtype
        self.labelled = label is not None

    def to(self, device: torch.device) -> DatasetBatches:
        moved = DatasetBatches.__new__(DatasetBatches)
        moved.__dict__.update(self.__dict__, device=device)
        return moved

    def next(self, size: int, generator: torch.Generator) -> Triple:
        idx = torch.randint(0, self.n, (size,), generator=generator, device=generator.device)
        batch = default_collate([self.dataset[i] for i in idx.tolist()])
        x, cond = _split_item(batch, "a batch of the Dataset")
        if tuple(x.shape[1:]) != self.shape:
            raise DataError(f"data: items of shape {tuple(x.shape[1:])} and {self.shape} differ")
        return None, x.to(self.device), (cond.to(self.device) if cond is not None else None)


class LoaderBatches(Batches):
    """The batches of a ``DataLoader``, epoch after epoch (see the module docstring)."""

    def __init__(self, loader: DataLoader, *, seed: int = 0) -> None:
        self.loader, self.seed, self.device = loader, seed, torch.device("cpu")
        self.epoch, self.position = 0, 0
        self._own_state: Tensor | None = None  # the loader's generator at the epoch's start
        self._it: Iterator[Any] | None = None
        self._first: Any = None
        own = loader.generator.get_state() if loader.generator is not None else None
        with torch.random.fork_rng(devices=[]):  # a peek at one batch draws nothing of ours
            first = next(iter(loader), None)
        if own is not None:
            loader.generator.set_state(own)
        if first is None:
            raise DataError("data: the DataLoader yields no batches")
        x, label = _split_item(first, "a batch of the DataLoader")
        self.shape = tuple(_check_x(x, "a batch of the DataLoader").shape[1:])
        self.dtype = x.dtype
        self.labelled = label is not None

    def to(self, device: torch.device) -> LoaderBatches:
        self.device = device
        return self

    def _start_epoch(self) -> None:
        """A new iterator over the loader for ``self.epoch``, its first batch fetched (a lazy
        sampler draws its shuffling seed then), under the epoch's seed."""
        sampler = getattr(self.loader, "sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        own = self.loader.generator
        if own is not None:  # the loader's own generator, from its state at the epoch's start
            if self._own_state is None:
                self._own_state = own.get_state()
            own.set_state(self._own_state)
            seeded: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        else:  # torch's global RNG, forked so that the run's other draws are not disturbed
            seeded = torch.random.fork_rng(devices=[])
        with seeded:
            if own is None:
                torch.manual_seed(self.seed * 1_000_003 + self.epoch)
            self._it = iter(self.loader)
            self._first = next(self._it, None)

    def _next_batch(self) -> Any:
        if self._it is None:
            self._start_epoch()
            for _ in range(self.position):  # resume: skip what this epoch already gave
                self._pull()
        return self._pull()

    def _pull(self) -> Any:
        assert self._it is not None
        if self._first is not None:
            batch, self._first = self._first, None
        else:
            batch = next(self._it, None)
        if batch is None:  # end of the epoch
            self.epoch, self.position, self._own_state = self.epoch + 1, 0, None
            self._start_epoch()
            if self._first is None:
                raise DataError("data: the DataLoader yields no batches")
            batch, self._first = self._first, None
        return batch

    def next(self, size: int, generator: torch.Generator) -> Triple:
        x, cond = _split_item(self._next_batch(), "a batch of the DataLoader")
        self.position += 1
        return None, x.to(self.device), (cond.to(self.device) if cond is not None else None)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": self.epoch, "position": self.position}
        if self._own_state is not None:
            state["generator"] = self._own_state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._own_state = state.get("generator")
        self._it = None


def _describe(data: Any) -> str:
    if isinstance(data, Tensor):
        return f"a tensor of shape {tuple(data.shape)}"
    return type(data).__name__


def as_batches(data: Any, *, labels: Tensor | None = None, seed: int = 0) -> Batches:
    """The batch source of ``data``: a Tensor (N, *D) (with ``labels`` (N,)), a map-style
    ``Dataset`` of ``x`` or ``(x, label)``, a ``DataLoader``, :class:`~flowmatch.rectify.Pairs`
    or a :class:`Batches` itself.

    Raises:
        DataError: anything else, or data of the wrong kind; one line.
    """
    if isinstance(data, Batches):
        return data
    if labels is not None and not isinstance(data, Tensor):
        raise DataError("labels: give labels with a data tensor; a Dataset yields its own")
    if isinstance(data, Tensor):
        return TensorBatches(data, labels)
    if isinstance(data, Pairs):
        return PairBatches(data)
    if isinstance(data, DataLoader):
        return LoaderBatches(data, seed=seed)
    if isinstance(data, Dataset):
        return DatasetBatches(data)
    raise DataError(
        "data: expected a tensor (N, *D), a torch Dataset, a DataLoader or Pairs, got "
        f"{_describe(data)}"
    )
