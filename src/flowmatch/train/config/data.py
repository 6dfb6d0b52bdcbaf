"""The ``data`` section of a run config: what the model learns to generate (t = 1) and from
what (t = 0), and how training batches are read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from flowmatch.train.config.types import (
    DATA_SUFFIXES,
    MANIFOLD_DATASETS,
    MAX_LIST,
    MAX_POINTS,
    MAX_WIDTH,
    DataName,
    ManifoldName,
    PathStr,
    ToyName,
    Width,
    _FieldProblem,
    _Int,
    _Section,
)

__all__ = ["MAX_WORKERS", "DataConfig", "SourceConfig"]

MAX_WORKERS = 64
"""The most loader worker processes (``data.workers``)."""


class SourceConfig(_Section):
    """The source distribution (t = 0) when it is not N(0, I).

    Attributes:
        name: a toy 2-D set, one of `TOY_DATASETS`.
    """

    name: ToyName


class DataConfig(_Section):
    """The data (t = 1): a toy set or image set by name, a file of points, image files, or
    text; exactly one of ``name``, ``path``, ``images``, ``text`` and ``corpus``.

    Attributes:
        name: a toy 2-D set, one of `TOY_DATASETS`, ``digits`` (scikit-learn's 8x8 digits,
            10 classes, fixed train/test split) or ``fashion`` (Fashion-MNIST, 28x28, 10
            classes, its published 60k/10k split, from the Debian package
            dataset-fashion-mnist); "checkerboard" when nothing else is given.
        path: a ``.csv`` or ``.npy`` file of points, one per row, as written (a relative path is
            relative to the working directory of the run).
        images: image data with class labels: a folder of class sub-folders of PNG/JPEG files,
            or an MNIST IDX images file (gzip or not) with ``labels``.
        labels: the IDX labels file of an IDX ``images`` file.
        image_size: the side images of a folder are resized to.
        channels: 1 (gray) or 3 (RGB) for folder images.
        source: the source distribution; None (the default) is the standard normal.
        num_train: points drawn for training (toy sets; the pool an epoch draws from).
        num_holdout: held-out points used for evaluation (at least 4: two halves of two).
        pairs: a ``.safetensors`` file of fixed (x0, x1) training pairs (written by
            ``flowmatch reflow``); training draws from the pairs, while name/path still
            define the held-out data of the evaluation.
        text: a UTF-8 text file of token data, read character by character (discrete flow
            matching; the vocabulary is the training split's characters).
        corpus: a text corpus that ships in a package: names (US census surnames), smiles
            (RDKit's NCI molecules) or pydoc (Python's help texts, in chunks).
        text_mode: lines (one item per non-empty line: names, words, SMILES) | chunks
            (consecutive pieces of chunk_length characters of a long text).
        max_length: lines mode: the most characters of an item (None: the longest); items
            end with a pad/end token.
        chunk_length: chunks mode: characters per item.
        too_long: lines mode, items over max_length: error | truncate | drop.
        holdout_share: text: the share of items held out for evaluation, in (0, 1).
        categorical: a CSV ``path``: its categorical columns, by name (the others must be
            numbers); None: detected (a column none of whose values is a number). A
            table with categorical columns is learnt by one model: flow matching for the
            numbers, discrete flow matching for the categories.
        manifold: a CSV ``path`` of points on a manifold: ``sphere`` (latitude and
            longitude) or ``torus`` (angles); the manifold sets ``airports``, ``quakes``
            (sphere), ``backbone`` (torus), ``frames`` (SO(3)) and ``residues`` (torus x
            SO(3)) name their own.
        columns: the CSV columns of a manifold ``path`` (sphere: latitude then longitude).
        units: degrees | radians, of the angles of a manifold CSV; samples are written back
            in them.
        workers: loader worker processes that draw, decode, augment and pair (with the
            run's coupling) each training batch while the previous step trains; 0 (the
            default) makes them in the training process. The batches are the same for any
            number of workers (see :mod:`flowmatch.train.pipeline`).
        flip: mirror training images left-right with probability 1/2 (images only).
        stream: make batches with the streaming pipeline even with no workers and no flip
            (it is always used for Fashion-MNIST, IDX files and image folders, whose pools
            stay uint8 or on disk).
        latent: an autoencoder run (``objective.name: autoencoder``) whose latents of the
            images (``name``: digits or fashion, or ``images``) the flow learns; its samples
            are decoded to images (see `flowmatch.train.latent`).
    """

    name: DataName | None = None
    path: PathStr | None = None
    images: PathStr | None = None
    labels: PathStr | None = None
    image_size: Annotated[_Int, Field(ge=8, le=64)] = 32
    channels: Literal[1, 3] = 1
    pairs: PathStr | None = None
    source: SourceConfig | None = None
    num_train: Annotated[_Int, Field(gt=0, le=MAX_POINTS)] = 100_000
    num_holdout: Annotated[_Int, Field(ge=4, le=MAX_POINTS)] = 5_000
    text: PathStr | None = None
    corpus: Literal["names", "smiles", "pydoc"] | None = None
    text_mode: Literal["lines", "chunks"] = "lines"
    max_length: Width | None = None
    chunk_length: Width = 64
    too_long: Literal["error", "truncate", "drop"] = "error"
    holdout_share: Annotated[float, Field(gt=0, lt=1)] = 0.1
    categorical: Annotated[list[str], Field(max_length=MAX_WIDTH)] | None = None
    manifold: ManifoldName | None = None
    columns: Annotated[list[str], Field(max_length=MAX_LIST)] | None = None
    units: Literal["degrees", "radians"] = "degrees"
    workers: Annotated[_Int, Field(ge=0, le=MAX_WORKERS)] = 0
    flip: bool = False
    stream: bool = False
    latent: PathStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if data is None:
            data = {}
        kinds = ("name", "path", "images", "text", "corpus")
        if isinstance(data, dict) and all(data.get(k) is None for k in kinds):
            data = {**data, "name": "checkerboard"}
        return data

    @property
    def is_image(self) -> bool:
        """Whether the data are images (digits, fashion or ``images``) rather than points."""
        return self.name in ("digits", "fashion") or self.images is not None

    @property
    def is_manifold(self) -> bool:
        """Whether the points live on a manifold (a manifold set, or ``manifold`` + ``path``)."""
        return self.manifold is not None or self.name in MANIFOLD_DATASETS

    @property
    def is_text(self) -> bool:
        """Whether the data are token sequences (``text`` or ``corpus``)."""
        return self.text is not None or self.corpus is not None

    @field_validator("path")
    @classmethod
    def _check_suffix(cls, value: str | None) -> str | None:
        if value is not None and Path(value).suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"expected a .csv or .npy file, got {value!r}")
        return value

    @field_validator("pairs")
    @classmethod
    def _check_pairs_suffix(cls, value: str | None) -> str | None:
        if value is not None and Path(value).suffix.lower() != ".safetensors":
            raise ValueError(f"expected a .safetensors file of pairs, got {value!r}")
        return value

    @model_validator(mode="after")
    def _name_xor_path(self) -> DataConfig:
        if self.name is not None and self.path is not None:
            raise _FieldProblem(
                "path",
                f"give either data.name or data.path, not both (got name {self.name!r} and "
                f"path {self.path!r}; set data.name=null to use the file)",
            )
        if self.images is not None and (self.name is not None or self.path is not None):
            raise _FieldProblem(
                "images",
                "give data.images alone, without data.name or data.path (set them to null)",
            )
        given = [k for k in ("name", "path", "images", "text", "corpus") if getattr(self, k)]
        if self.is_text and len(given) > 1:
            raise _FieldProblem(
                given[-1],
                f"give one kind of data, got {' and '.join('data.' + k for k in given)} (set "
                "the others to null)",
            )
        if self.is_text and (self.source is not None or self.pairs is not None):
            raise _FieldProblem("text", "text data take neither data.source nor data.pairs")
        if self.categorical is not None and (
            self.path is None or Path(self.path).suffix.lower() != ".csv"
        ):
            raise _FieldProblem("categorical", "data.categorical names columns of a .csv data.path")
        if self.manifold is not None and (
            self.path is None or Path(self.path).suffix.lower() != ".csv" or not self.columns
        ):
            raise _FieldProblem(
                "manifold", "data.manifold reads a .csv data.path with its data.columns"
            )
        if self.columns is not None and self.manifold is None:
            raise _FieldProblem("columns", "data.columns names the columns of a data.manifold CSV")
        if self.is_manifold and (self.source is not None or self.pairs is not None):
            raise _FieldProblem(
                "source", "manifold data flow from the uniform distribution: no data.source/pairs"
            )
        if self.labels is not None and self.images is None:
            raise _FieldProblem("labels", "data.labels is the IDX labels file of data.images")
        if self.flip and not self.is_image:
            raise _FieldProblem("flip", "data.flip mirrors images; these data are not images")
        if (self.workers or self.stream) and (self.is_text or self.pairs is not None):
            key = "workers" if self.workers else "stream"
            raise _FieldProblem(key, f"data.{key}: the streaming pipeline reads points and images")
        if self.is_image and self.source is not None:
            raise _FieldProblem(
                "source", "image data are generated from N(0, I) noise; remove data.source"
            )
        return self
