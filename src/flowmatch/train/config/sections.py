"""The sections of a run config that are plain mappings, and `RunConfig`, the whole run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

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
from flowmatch.train.config.data import DataConfig
from flowmatch.train.config.models import (
    MLPConfig,
    ModelConfig,
)
from flowmatch.train.config.types import (
    MAX_BATCH,
    MAX_LIST,
    MAX_SAMPLES,
    MAX_SCALE,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    SamplerName,
    Seed,
    SolverSteps,
    SolverStepsList,
    UnitFloat,
    _as_list,
    _FieldProblem,
    _Float,
    _Int,
    _Section,
)


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
    path, fixed pairs (``data.pairs``) need the ``independent`` coupling, the ``mlp`` model takes
    points and the ``unet`` and ``dit`` images (a registered model takes either).
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
        name, image_nets = self.model.name, ("unet", "dit")
        if self.data.is_text and name in ("mlp", *image_nets):
            raise _FieldProblem(
                "model.name", f"text data need model.name=transformer, got {name!r}"
            )
        if name == "transformer" and not self.data.is_text:
            raise _FieldProblem(
                "model.name", "the transformer takes text data (data.text or data.corpus)"
            )
        if name in ("mlp", *image_nets) and self.data.is_image != (name in image_nets):
            wanted = "unet or dit" if self.data.is_image else "mlp"
            what = "image data" if self.data.is_image else "points (toy sets, tables)"
            raise _FieldProblem("model.name", f"{what} need model.name={wanted}, got {name!r}")
        return self
