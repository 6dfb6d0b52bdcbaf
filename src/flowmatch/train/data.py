"""The data of a run: training pool, held-out points, source sampler and standardization.

Toy sets are drawn once from the run's seed (a pool of ``num_train`` points and a separate
held-out set); a table file is standardized with statistics fitted on its training rows (and
stored in the run, so samples are mapped back to data units) and split into training and
held-out rows by a seeded permutation. Images (``digits`` with its fixed split; a folder or
MNIST IDX files split like a table) come with class labels. Batches are drawn with
replacement from the pool with a ``torch.Generator`` whose state is part of every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch.data.tabular import DataError, Standardizer, load_table
from flowmatch.data.toy2d import sample_toy
from flowmatch.evaluation import seeds
from flowmatch.sources import draw_source
from flowmatch.train.config import DataConfig

__all__ = ["RunData", "draw_source", "load_run_data"]


@dataclass
class RunData:
    """Everything the trainer and the evaluation need to know about the data.

    Attributes:
        train: training points (standardized for tables), shape (N, D), or images
            (N, C, H, W) in [-1, 1], or uint8 0..255 (Fashion-MNIST: the pool stays uint8
            and is mapped to [-1, 1] batch by batch; see
            :func:`flowmatch.data.images.unit_range`).
        holdout: held-out points in the same units, shape (M, D) or (M, C, H, W).
        source: toy set name of the source, or None for N(0, I).
        standardizer: the table standardization, or None for toy sets.
        name: a short description (toy name or file name).
        columns: the table's column names, or None for toy sets.
        labels: class labels of ``train``, (N,) int64, or None (unlabelled data).
        holdout_labels: class labels of ``holdout``, (M,), or None.
        class_names: the name of each class, or None.
    """

    train: Tensor
    holdout: Tensor
    source: str | None
    standardizer: Standardizer | None
    name: str
    columns: list[str] | None = None
    labels: Tensor | None = None
    holdout_labels: Tensor | None = None
    class_names: list[str] | None = None
    text: Any = None  # a flowmatch.data.text.TextData for token data
    mixed: Any = None  # a flowmatch.data.mixed.MixedTable for a table with categorical columns
    manifold: Any = None  # a flowmatch.manifolds.Manifold the points live on
    units: str | None = None  # degrees | radians: the angles of a manifold CSV

    @property
    def is_manifold(self) -> bool:
        """Whether the points live on a manifold (flat coordinates, see fm.manifolds)."""
        return self.manifold is not None

    @property
    def is_mixed(self) -> bool:
        """Whether the rows are continuous values then categorical codes (as floats)."""
        return self.mixed is not None

    @property
    def is_text(self) -> bool:
        """Whether the points are token sequences (N, L) of a vocabulary."""
        return self.text is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one data point: (D,) or (C, H, W)."""
        return tuple(self.train.shape[1:])

    @property
    def is_image(self) -> bool:
        """Whether the points are images (C, H, W)."""
        return self.train.ndim == 4

    @property
    def num_classes(self) -> int | None:
        """The number of classes of labelled data, else None."""
        return len(self.class_names) if self.class_names is not None else None

    @property
    def dim(self) -> int:
        """Data dimension D (the number of values of one point)."""
        return int(torch.Size(self.shape).numel())

    def draw_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n source points (N(0, I) or the toy source), shape (n, *shape)."""
        return draw_source(self.source, n, self.shape, generator)

    @property
    def is_toy(self) -> bool:
        """Whether the data is a toy set, of which fresh true samples can be drawn."""
        return self.standardizer is None and not (
            self.is_image or self.is_text or self.is_mixed or self.is_manifold
        )

    def reference(self) -> Tensor | Callable[[int, torch.Generator], Tensor]:
        """What samples are compared with: fresh true draws (toy set) or the held-out rows."""
        if not self.is_toy:
            return self.holdout
        name = self.name
        return lambda n, g: sample_toy(name, n, generator=g)

    def max_eval_points(self, wanted: int) -> int:
        """Points per evaluation set: held-out rows split in two halves cap it (tables, images)."""
        return wanted if self.is_toy else min(wanted, self.holdout.shape[0] // 2)


MIN_HOLDOUT = 4
"""The fewest held-out points a run evaluates on: two halves of two points each (the
evaluation compares a half with samples and the halves with each other)."""


def load_run_data(cfg: DataConfig, *, seed: int, base_dir: str | Path = ".") -> RunData:
    """Build the run's data from its ``data`` config section.

    Args:
        cfg: the ``data`` section.
        seed: ``train.seed``; pool, held-out set and split are drawn from streams derived
            from it, so a run is reproducible.
        base_dir: directory a relative ``data.path`` is resolved against.

    Raises:
        DataError: an unreadable file, or a table too small for the held-out split.
    """
    source = cfg.source.name if cfg.source is not None else None
    if cfg.is_text:
        return _load_text(cfg, seed=seed, base_dir=base_dir)
    if cfg.is_image:
        return _load_images(cfg, seed=seed, base_dir=base_dir)
    if cfg.is_manifold:
        return _load_manifold(cfg, seed=seed, base_dir=base_dir)
    if cfg.path is None:
        name = cfg.name or "checkerboard"
        pool = sample_toy(name, cfg.num_train, generator=seeds.generator(seed, "pool"))
        holdout = sample_toy(name, cfg.num_holdout, generator=seeds.generator(seed, "holdout"))
        return RunData(pool, holdout, source, None, name)
    path = _resolve(cfg.path, base_dir)
    if path.suffix.lower() == ".csv":
        mixed = _load_mixed(path, cfg, seed=seed)
        if mixed is not None:
            return mixed
    table = load_table(path)
    train, hold = _split(table.data.shape[0], cfg, path, seed)
    if source is not None and table.data.shape[1] != 2:
        raise DataError(
            f"{path}: data.source {source!r} is 2-D but the table has {table.data.shape[1]} columns"
        )
    train_raw, holdout_raw = table.data[train], table.data[hold]
    standardizer = Standardizer.fit(train_raw)
    return RunData(
        standardizer.transform(train_raw).float(),
        standardizer.transform(holdout_raw).float(),
        source,
        standardizer,
        path.name,
        table.columns,
    )


def _split(n: int, cfg: DataConfig, path: Path, seed: int) -> tuple[Tensor, Tensor]:
    """Training and held-out row indices of a table of n rows (20% held out at most)."""
    n_holdout = min(cfg.num_holdout, n // 5)
    if n_holdout < MIN_HOLDOUT or n - n_holdout < 2:
        raise DataError(
            f"{path}: expected at least {5 * MIN_HOLDOUT} rows to hold out 20% (at least "
            f"{MIN_HOLDOUT}) for evaluation, got {n}"
        )
    perm = torch.randperm(n, generator=seeds.generator(seed, "split"))
    return perm[n_holdout:], perm[:n_holdout]


def _load_mixed(path: Path, cfg: DataConfig, *, seed: int) -> RunData | None:
    """A CSV with categorical columns (declared in ``data.categorical``, or detected: a column
    with a value that is not a number); None when every column is numeric."""
    from flowmatch.data.mixed import load_mixed_table

    table = load_mixed_table(path, categorical=cfg.categorical)
    if not table.categorical_columns:
        return None
    if cfg.source is not None:
        raise DataError(f"{path}: a table with categorical columns takes no data.source")
    train, hold = _split(table.continuous.shape[0], cfg, path, seed)
    dc = table.continuous.shape[1]
    standardizer = Standardizer.fit(table.continuous[train]) if dc else None

    def rows(idx: Tensor) -> Tensor:
        cont = table.continuous[idx]
        cont = standardizer.transform(cont).float() if standardizer is not None else cont
        return torch.cat([cont, table.categorical[idx].float()], dim=1)

    return RunData(
        rows(train), rows(hold), None, standardizer, path.name, table.columns, mixed=table
    )


def _load_images(cfg: DataConfig, *, seed: int, base_dir: str | Path) -> RunData:
    """digits (its fixed split), or a folder / IDX files split 80/20 by a seeded permutation."""
    from flowmatch.data.images import list_image_folder, load_digits, load_mnist_idx, unit_range
    from flowmatch.train.pipeline import ImageFiles

    if cfg.name == "fashion":
        from flowmatch.data.fashion import load_fashion_mnist

        f = load_fashion_mnist(uint8=True)  # the training pool stays uint8 (47 MB)
        return RunData(
            f.train,
            unit_range(f.test),
            None,
            None,
            "fashion",
            None,
            f.train_labels,
            f.test_labels,
            f.class_names,
        )
    if cfg.name == "digits":
        d = load_digits()
        return RunData(
            d.train,
            d.test,
            None,
            None,
            "digits",
            None,
            d.train_labels,
            d.test_labels,
            d.class_names,
        )
    assert cfg.images is not None
    path = _resolve(cfg.images, base_dir)
    images: Tensor | ImageFiles
    if path.is_dir():  # the training images stay on disk, read batch by batch
        files, labels, names = list_image_folder(path, size=cfg.image_size, channels=cfg.channels)
        images = ImageFiles(files, size=cfg.image_size, channels=cfg.channels).check()
    else:
        labels_path = _resolve(cfg.labels, base_dir) if cfg.labels is not None else None
        images, idx_labels = load_mnist_idx(path, labels_path, uint8=True)
        if idx_labels is None:
            raise DataError(f"{path}: an IDX images file needs its labels file (data.labels)")
        labels = idx_labels
        names = [str(k) for k in range(int(labels.max()) + 1)]
    n = images.shape[0]
    n_holdout = min(cfg.num_holdout, n // 5)
    if n_holdout < MIN_HOLDOUT:
        raise DataError(
            f"{path}: expected at least {5 * MIN_HOLDOUT} images to hold out 20% (at least "
            f"{MIN_HOLDOUT}) for evaluation, got {n}"
        )
    perm = torch.randperm(n, generator=seeds.generator(seed, "split"))
    train, hold = perm[n_holdout:], perm[:n_holdout]
    if isinstance(images, ImageFiles):
        pool: Tensor | ImageFiles = images.subset(train)
        held = unit_range(images.subset(hold).read())
    else:
        pool, held = images[train], unit_range(images[hold])
    return RunData(
        pool,  # type: ignore[arg-type]  # uint8 or ImageFiles: read batch by batch
        held,
        None,
        None,
        path.name,
        None,
        labels[train],
        labels[hold],
        names,
    )


def _load_text(cfg: DataConfig, *, seed: int, base_dir: str | Path) -> RunData:
    """A text file or a corpus, encoded character by character and split by a seeded
    permutation (``holdout_share`` held out); the vocabulary is the training split's."""
    from flowmatch.data.corpora import load_corpus
    from flowmatch.data.text import load_text

    options: dict[str, Any] = {
        "max_length": cfg.max_length,
        "holdout": cfg.holdout_share,
        "seed": seeds.stream_seed(seed, "split"),
        "too_long": cfg.too_long,
    }
    if cfg.corpus is not None:
        if cfg.corpus == "pydoc":
            options.pop("max_length")
        text = load_corpus(cfg.corpus, chunk_length=cfg.chunk_length, **options)
    else:
        assert cfg.text is not None
        path = _resolve(cfg.text, base_dir)
        text = load_text(path, mode=cfg.text_mode, chunk_length=cfg.chunk_length, **options)
    if text.test.shape[0] < 2:
        raise DataError(
            f"{text.name}: expected at least 2 held-out items, got {text.test.shape[0]}"
        )
    return RunData(text.train, text.test, None, None, text.name, text=text)


def _load_manifold(cfg: DataConfig, *, seed: int, base_dir: str | Path) -> RunData:
    """A manifold set by name, or a CSV of points on ``data.manifold``, split by a seeded
    permutation (``holdout_share`` held out); points in the manifold's flat coordinates."""
    from flowmatch.data.manifold_sets import load_manifold_set, read_manifold_csv

    columns, units = None, None
    if cfg.manifold is None:
        assert cfg.name is not None
        kind, points = load_manifold_set(cfg.name)
        name: str = cfg.name
    else:
        assert cfg.path is not None and cfg.columns is not None
        path = _resolve(cfg.path, base_dir)
        kind, columns, units, name = cfg.manifold, list(cfg.columns), cfg.units, path.name
        points = read_manifold_csv(path, manifold=kind, columns=columns, units=units)
    manifold = manifold_of(kind, points)
    points = points.reshape(points.shape[0], -1).float()
    n = points.shape[0]
    n_holdout = round(cfg.holdout_share * n)
    if n_holdout < MIN_HOLDOUT or n - n_holdout < 2:
        raise DataError(
            f"{name}: expected at least 2 training and {MIN_HOLDOUT} held-out points "
            f"(data.holdout_share={cfg.holdout_share}), got {n}"
        )
    perm = torch.randperm(n, generator=seeds.generator(seed, "split"))
    train, hold = points[perm[n_holdout:]], points[perm[:n_holdout]]
    return RunData(train, hold, None, None, name, columns, manifold=manifold, units=units)


def manifold_of(kind: str, points: Tensor) -> Any:
    """The manifold of a data set's points: sphere S^2 for unit vectors (N, 3), the torus of
    as many angles as columns, SO(3) for (N, 3, 3) matrices, torus x SO(3) for residues
    (N, 11): two angles then a frame."""
    from flowmatch.manifolds import SO3, FlatTorus, Product, Sphere

    if kind == "sphere":
        return Sphere(points.shape[1] - 1)
    if kind == "torus":
        return FlatTorus(points.shape[1])
    if kind == "so3":
        return SO3()
    if kind == "torus_so3":
        return Product(FlatTorus(2), SO3())
    raise DataError(f"unknown manifold {kind!r}")


def _resolve(value: str, base_dir: str | Path) -> Path:
    """A config's file path: as given when absolute, else relative to ``base_dir``."""
    path = Path(value)
    return path if path.is_absolute() else Path(base_dir) / path
