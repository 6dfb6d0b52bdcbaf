"""The sections of a run config that are plain mappings, and `RunConfig`, the whole run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from flowmatch.train.config.choices import (
    CouplingConfig,
    FlowMatchingObjectiveConfig,
    IndependentCouplingConfig,
    LinearPathConfig,
    ObjectiveConfig,
    PathConfig,
    TimeConfig,
    UniformTimeConfig,
)
from flowmatch.train.config.models import (
    MLPConfig,
    ModelConfig,
)
from flowmatch.train.config.types import (
    DATA_SUFFIXES,
    MANIFOLD_DATASETS,
    MAX_BATCH,
    MAX_LIST,
    MAX_POINTS,
    MAX_SAMPLES,
    MAX_SCALE,
    MAX_WIDTH,
    DataName,
    ManifoldName,
    NonNegativeFloat,
    NonNegativeInt,
    PathStr,
    PositiveFloat,
    PositiveInt,
    Probability,
    SamplerName,
    Seed,
    SolverSteps,
    SolverStepsList,
    ToyName,
    UnitFloat,
    Width,
    _as_list,
    _FieldProblem,
    _Float,
    _Int,
    _Section,
)


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
        if self.is_image and self.source is not None:
            raise _FieldProblem(
                "source", "image data are generated from N(0, I) noise; remove data.source"
            )
        return self


class OptimConfig(_Section):
    """AdamW and its learning-rate warmup.

    Attributes:
        lr: peak learning rate.
        weight_decay: decoupled weight decay.
        warmup_steps: steps of linear warmup from 0 to lr.
        grad_clip: maximum global gradient norm; null for no clipping.
        betas: Adam's (beta1, beta2), each in [0, 1).
    """

    lr: Annotated[_Float, Field(gt=0, le=MAX_SCALE)] = 1e-3
    weight_decay: Annotated[_Float, Field(ge=0, le=10)] = 0.0
    warmup_steps: NonNegativeInt = 0
    grad_clip: PositiveFloat | None = 1.0
    betas: tuple[UnitFloat, UnitFloat] = (0.9, 0.999)


class TrainConfig(_Section):
    """The training loop.

    Attributes:
        steps: optimiser steps.
        batch_size: points per step.
        ema_decay: decay of the weight EMA, in [0, 1).
        seed: seed of every random draw of the run.
        checkpoint_every: steps between checkpoints.
        eval_every: steps between evaluations.
        log_every: steps between log lines.
        device: auto | cpu | cuda; auto picks cuda when available.
        precision: fp32 | bf16 | fp16 autocast.
        compile: wrap the model in torch.compile.
        tensorboard: also log to TensorBoard (an alias of adding tensorboard to loggers).
        threads: torch's CPU threads while training; null: 1 for networks under a million
            parameters on the CPU (faster there, see `flowmatch.train.threads`), else
            torch's default; OMP_NUM_THREADS, when set, is respected.
        max_minutes: wall-clock minutes this process may train; then it writes a checkpoint
            and exits with code 75, to be continued with ``--resume`` (for jobs with a time
            limit); null: no limit.
        loggers: csv, tensorboard, wandb; csv (metrics.csv) is always written.
        wandb_project: the Weights & Biases project of the wandb logger (null: flowmatch).
    """

    steps: PositiveInt = 20_000
    batch_size: Annotated[_Int, Field(gt=0, le=MAX_BATCH)] = 256
    ema_decay: UnitFloat = 0.999
    seed: Seed = 0
    checkpoint_every: PositiveInt = 1_000
    eval_every: PositiveInt = 2_000
    log_every: PositiveInt = 100
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    tensorboard: bool = False
    max_minutes: Annotated[_Float, Field(gt=0, le=10**7)] | None = None
    threads: Annotated[_Int, Field(ge=1, le=1024)] | None = None
    loggers: Annotated[
        list[Literal["csv", "tensorboard", "wandb"]], BeforeValidator(_as_list), Field(max_length=3)
    ] = Field(default_factory=lambda: ["csv"])  # type: ignore[arg-type]  # a list of Literal
    wandb_project: Annotated[str, Field(max_length=128, pattern=r"^[^/\\#?%:]+$")] | None = None


class SampleConfig(_Section):
    """The default sampler of the trained model.

    Attributes:
        steps: solver steps (ignored by the adaptive dopri5).
        method: one of `SAMPLER_METHODS`: an ODE solver, sde (Euler-Maruyama on the flow's
            SDE), ddpm (ancestral) or ddim.
        eta: DDIM's stochasticity, in [0, 1] (0: deterministic).
        noise: the SDE's noise scale: g(t) = noise * sigma_t.
        guidance: classifier-free guidance scale of labelled runs (1: the conditional model;
            null: no guidance).
        temperature: text: divides the posterior's logits (< 1 sharper, > 1 more diverse).
        corrector: text, mask source: strength of the corrector that re-masks tokens (0: off).
    """

    steps: SolverSteps = 16
    method: SamplerName = "midpoint"
    eta: Probability = 0.0
    noise: NonNegativeFloat = 1.0
    guidance: NonNegativeFloat | None = None
    temperature: PositiveFloat = 1.0
    corrector: NonNegativeFloat = 0.0


class EvalConfig(_Section):
    """Sample quality against held-out data, per solver and step count.

    Attributes:
        steps: step counts to evaluate; a list or a comma-separated string ("1,2,4").
        methods: samplers to evaluate (`SAMPLER_METHODS`; ddim and sde with the eta and noise
            of the ``sample`` section); a list or a comma-separated string.
        num_samples: samples per draw.
        draws: independent draws, for the mean and spread of each metric.
        fit_training_time: points data: scale num_samples and then draws down so that the
            final evaluation takes about the training time (at least a minute), saying so in
            eval.txt (`flowmatch.train.eval_budget`); false: always the full sizes.
    """

    steps: SolverStepsList = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    methods: Annotated[
        list[SamplerName], BeforeValidator(_as_list), Field(min_length=1, max_length=MAX_LIST)
    ] = Field(default_factory=lambda: ["euler", "midpoint"])
    num_samples: Annotated[_Int, Field(gt=0, le=MAX_SAMPLES)] = 5_000
    draws: Annotated[_Int, Field(gt=0, le=1000)] = 5
    fit_training_time: bool = True


class RunConfig(_Section):
    """A whole run; the sections and keys of the YAML file, all with defaults.

    The rules between sections are checked here: ``time.sampler: discrete`` needs a ``ddpm``
    path, fixed pairs (``data.pairs``) need the ``independent`` coupling, and the ``mlp`` and
    ``unet`` models take points and images respectively (a registered model takes either).
    """

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=MLPConfig)
    path: PathConfig = Field(default_factory=LinearPathConfig)
    coupling: CouplingConfig = Field(default_factory=IndependentCouplingConfig)
    time: TimeConfig = Field(default_factory=UniformTimeConfig)
    objective: ObjectiveConfig = Field(default_factory=FlowMatchingObjectiveConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _text_defaults(cls, data: Any) -> Any:
        """Text data default to the discrete objective and the transformer."""
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            return data
        if data["data"].get("text") is None and data["data"].get("corpus") is None:
            return data
        data = dict(data)
        for section, default in (("objective", "discrete"), ("model", "transformer")):
            if data.get(section) is None:
                data[section] = {"name": default}
            elif isinstance(data[section], dict) and "name" not in data[section]:
                data[section] = {**data[section], "name": default}
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> RunConfig:
        if self.data.pairs is not None and self.coupling.name != "independent":
            raise _FieldProblem(
                "coupling.name",
                "fixed pairs (data.pairs) are already coupled; use 'independent', got "
                f"{self.coupling.name!r}",
            )
        if self.time.sampler == "discrete" and self.path.schedule != "ddpm":
            raise _FieldProblem(
                "time.sampler",
                "discrete draws the timesteps of a ddpm path; set path.schedule=ddpm, got "
                f"{self.path.schedule!r}",
            )
        discrete = self.objective.name == "discrete"
        if self.data.is_text != discrete:
            raise _FieldProblem(
                "objective.name",
                "text data (data.text, data.corpus) are learnt by objective.name=discrete, and "
                f"only they are; got objective {self.objective.name!r} for "
                f"{'text' if self.data.is_text else 'points or images'}",
            )
        if self.data.is_text and self.model.name in ("mlp", "unet"):
            raise _FieldProblem(
                "model.name", f"text data need model.name=transformer, got {self.model.name!r}"
            )
        if self.model.name == "transformer" and not self.data.is_text:
            raise _FieldProblem(
                "model.name", "the transformer takes text data (data.text or data.corpus)"
            )
        builtin = self.model.name in ("mlp", "unet")
        if builtin and self.data.is_image != (self.model.name == "unet"):
            wanted = "unet" if self.data.is_image else "mlp"
            what = "image data" if self.data.is_image else "points (toy sets, tables)"
            raise _FieldProblem(
                "model.name", f"{what} need model.name={wanted}, got {self.model.name!r}"
            )
        return self
