"""The run config of `flowmatch train CONFIG.yaml [--set key=value ...]`.

A run config is a YAML mapping of sections (``data``, ``model``, ``path``, ``coupling``,
``time``, ``objective``, ``optim``, ``train``, ``sample``, ``eval``); every key has a default, so
an empty file is a valid run. Unknown keys, wrong types and out-of-range values are errors,
reported as a one-line `ConfigError` that names the dotted key::

    config: train.steps: expected an integer > 0, got -5

Example:
    >>> cfg = load_config("run.yaml", ["train.steps=500", "optim.lr=1e-3"])
    >>> cfg.train.steps, cfg.optim.lr
    (500, 0.001)

YAML is read with a `yaml.SafeLoader` that also reads YAML 1.2 floats without a dot
(``1e-3`` is the number 0.001, not a string as in plain PyYAML) and rejects duplicate keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "ACTIVATIONS",
    "SAMPLER_METHODS",
    "SOLVER_METHODS",
    "TOY_DATASETS",
    "ConfigError",
    "CouplingConfig",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "PathConfig",
    "RunConfig",
    "SampleConfig",
    "SourceConfig",
    "TimeConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
]

ToyName = Literal["checkerboard", "8gaussians", "moons", "circles", "spirals", "rings"]
DataName = Literal["checkerboard", "8gaussians", "moons", "circles", "spirals", "rings", "digits"]
SolverName = Literal["euler", "midpoint", "heun", "rk4", "dopri5"]
SamplerName = Literal["euler", "midpoint", "heun", "rk4", "dopri5", "sde", "ddpm", "ddim"]
Activation = Literal["silu", "gelu", "relu", "tanh"]

TOY_DATASETS: tuple[str, ...] = get_args(ToyName)
SOLVER_METHODS: tuple[str, ...] = get_args(SolverName)
SAMPLER_METHODS: tuple[str, ...] = get_args(SamplerName)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
DATA_SUFFIXES = (".csv", ".npy")


class ConfigError(ValueError):
    """A run config that cannot be used; ``str(err)`` is one line naming the key or file.

    Attributes:
        key: the dotted key (``"train.steps"``) or file the first problem is about, or None.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever went in
        self.key = key


# ---------------------------------------------------------------------------------------------
# Value types


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode reads True as 1; in a config that is always a mistake.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number")
    return value


def _as_list(value: Any) -> Any:
    # lets `--set eval.steps=1,2,4` mean `--set eval.steps=[1,2,4]`, and `eval.steps=8` mean [8]
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


_Int = Annotated[int, BeforeValidator(_reject_bool)]
_Float = Annotated[float, BeforeValidator(_reject_bool)]
PositiveInt = Annotated[_Int, Field(gt=0)]
NonNegativeInt = Annotated[_Int, Field(ge=0)]
PositiveFloat = Annotated[_Float, Field(gt=0)]
NonNegativeFloat = Annotated[_Float, Field(ge=0)]
UnitFloat = Annotated[_Float, Field(ge=0, lt=1)]  # in [0, 1)


class _FieldProblem(ValueError):
    """Raised by a cross-field check to point the error at one key of the section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Section(BaseModel):
    # frozen: a config is a value; change one with `apply_overrides` or `config_from_dict`,
    # which validate, rather than by assignment, which could leave it inconsistent.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        # `train:` with nothing under it (YAML null) means "all defaults"
        return {} if data is None else data


# ---------------------------------------------------------------------------------------------
# Sections


class SourceConfig(_Section):
    """The source distribution (t = 0) when it is not N(0, I).

    Attributes:
        name: a toy 2-D set, one of `TOY_DATASETS`.
    """

    name: ToyName


class DataConfig(_Section):
    """The data (t = 1): a toy set or image set by name, a file of points, or image files;
    exactly one of ``name``, ``path`` and ``images``.

    Attributes:
        name: a toy 2-D set, one of `TOY_DATASETS`, or ``digits`` (scikit-learn's 8x8 digits,
            10 classes, fixed train/test split); "checkerboard" when nothing else is given.
        path: a ``.csv`` or ``.npy`` file of points, one per row, as written (a relative path is
            relative to the working directory of the run).
        images: image data with class labels: a folder of class sub-folders of PNG/JPEG files,
            or an MNIST IDX images file (gzip or not) with ``labels``.
        labels: the IDX labels file of an IDX ``images`` file.
        image_size: the side images of a folder are resized to.
        channels: 1 (gray) or 3 (RGB) for folder images.
        source: the source distribution; None (the default) is the standard normal.
        num_train: points drawn for training (toy sets; the pool an epoch draws from).
        num_holdout: held-out points used for evaluation.
        pairs: a ``.safetensors`` file of fixed (x0, x1) training pairs (written by
            ``flowmatch reflow``); training draws from the pairs, while name/path still
            define the held-out data of the evaluation.
    """

    name: DataName | None = None
    path: str | None = None
    images: str | None = None
    labels: str | None = None
    image_size: Annotated[_Int, Field(ge=8, le=64)] = 32
    channels: Literal[1, 3] = 1
    pairs: str | None = None
    source: SourceConfig | None = None
    num_train: PositiveInt = 100_000
    num_holdout: PositiveInt = 5_000

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if isinstance(data, dict) and all(data.get(k) is None for k in ("name", "path", "images")):
            data = {**data, "name": "checkerboard"}
        return data

    @property
    def is_image(self) -> bool:
        """Whether the data are images (digits or ``images``) rather than points."""
        return self.name == "digits" or self.images is not None

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
        if self.labels is not None and self.images is None:
            raise _FieldProblem("labels", "data.labels is the IDX labels file of data.images")
        if self.is_image and self.source is not None:
            raise _FieldProblem(
                "source", "image data are generated from N(0, I) noise; remove data.source"
            )
        return self


class ModelConfig(_Section):
    """The network: an MLP for points, a U-Net for images.

    Attributes:
        name: mlp | unet.
        hidden: MLP: width of the hidden layers.
        depth: MLP: number of hidden layers.
        activation: MLP: one of `ACTIVATIONS`.
        time_embed_dim: size of the sinusoidal time embedding; even.
        time_frequency: highest angular frequency of that embedding (rad per unit time); None:
            1000 for flow matching, 10 for meanflow, whose loss differentiates the network in
            time (high frequencies made it diverge; see `flowmatch.models.embeddings`).
        init: a run (or model) directory whose EMA weights initialise the network (warm start,
            e.g. reflow); its architecture must match.
        channels: U-Net: channels of the first level.
        multipliers: U-Net: channel multiplier of each level (a level per entry; the image
            is halved between levels).
        res_blocks: U-Net: residual blocks per level.
        attention: U-Net: feature-map sides with self-attention (e.g. [8]).
        groups: U-Net: GroupNorm groups.
        dropout: U-Net: dropout in the residual blocks.
    """

    name: Literal["mlp", "unet"] = "mlp"
    hidden: PositiveInt = 256
    depth: PositiveInt = 3
    activation: Activation = "silu"
    time_embed_dim: PositiveInt = 64
    time_frequency: PositiveFloat | None = None
    init: str | None = None
    channels: PositiveInt = 32
    multipliers: Annotated[list[PositiveInt], BeforeValidator(_as_list), Field(min_length=1)] = (
        Field(default_factory=lambda: [1, 2])
    )
    res_blocks: PositiveInt = 1
    attention: Annotated[list[PositiveInt], BeforeValidator(_as_list)] = Field(default_factory=list)
    groups: PositiveInt = 8
    dropout: Annotated[_Float, Field(ge=0, lt=1)] = 0.0

    @field_validator("time_embed_dim")
    @classmethod
    def _check_even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"expected an even integer > 0, got {value}")
        return value


class PathConfig(_Section):
    """The probability path x_t = alpha(t) x1 + sigma(t) x0 (see `flowmatch.schedules`).

    Attributes:
        schedule: linear | cosine | vp | ve | polynomial | ddpm.
        beta_min: VP noise rate at the data end.
        beta_max: VP noise rate at the source end; > beta_min.
        sigma_min: VE noise scale at the data end.
        sigma_max: VE noise scale at the source end; > sigma_min.
        n: exponent of the polynomial schedule.
        timesteps: DDPM's number of diffusion steps T.
        betas: DDPM's beta schedule, linear | cosine.
        beta_start: DDPM's first beta (linear betas).
        beta_end: DDPM's last beta (linear betas); in (beta_start, 1).
    """

    schedule: Literal["linear", "cosine", "vp", "ve", "polynomial", "ddpm"] = "linear"
    beta_min: PositiveFloat = 0.1
    beta_max: PositiveFloat = 20.0
    sigma_min: PositiveFloat = 0.01
    sigma_max: PositiveFloat = 50.0
    n: PositiveFloat = 2.0
    timesteps: Annotated[_Int, Field(ge=2)] = 1000
    betas: Literal["linear", "cosine"] = "linear"
    beta_start: PositiveFloat = 1e-4
    beta_end: Annotated[_Float, Field(gt=0, lt=1)] = 0.02

    @model_validator(mode="after")
    def _check_order(self) -> PathConfig:
        if self.beta_max <= self.beta_min:
            raise _FieldProblem(
                "beta_max",
                f"expected a number > path.beta_min ({self.beta_min:g}), got {self.beta_max:g}",
            )
        if self.sigma_max <= self.sigma_min:
            raise _FieldProblem(
                "sigma_max",
                f"expected a number > path.sigma_min ({self.sigma_min:g}), got {self.sigma_max:g}",
            )
        if self.beta_end <= self.beta_start:
            raise _FieldProblem(
                "beta_end",
                f"expected a number > path.beta_start ({self.beta_start:g}), got {self.beta_end:g}",
            )
        return self


class CouplingConfig(_Section):
    """How source and data points are paired in a batch (see `flowmatch.couplings`).

    Attributes:
        name: independent | minibatch_ot | schrodinger_bridge.
        method: exact | sinkhorn, the OT solver of minibatch_ot.
        reg: entropic regularisation of minibatch_ot sinkhorn, relative to the mean cost.
        sigma: noise level of the Schrödinger bridge (its plan has reg 2 sigma^2, absolute).
    """

    name: Literal["independent", "minibatch_ot", "schrodinger_bridge"] = "independent"
    method: Literal["exact", "sinkhorn"] = "exact"
    reg: PositiveFloat = 0.05
    sigma: NonNegativeFloat = 0.5


class TimeConfig(_Section):
    """How training times t are drawn (see `flowmatch.time`).

    Attributes:
        sampler: uniform | logit_normal | shifted.
        mean: mean of the logit-normal's normal.
        std: standard deviation of the logit-normal's normal.
        shift: shift factor of the shifted sampler.
        value: the time of the constant sampler, in [0, 1] (0 on reflow pairs: distillation).

    ``discrete`` draws the timesteps of a ``ddpm`` path uniformly (DDPM's training).
    """

    sampler: Literal["uniform", "logit_normal", "shifted", "constant", "discrete"] = "uniform"
    mean: _Float = 0.0
    std: PositiveFloat = 1.0
    shift: PositiveFloat = 1.0
    value: Annotated[_Float, Field(ge=0, le=1)] = 0.0


class ObjectiveConfig(_Section):
    """What the network learns.

    Attributes:
        name: flow_matching (the CFM regression) | meanflow (the average velocity of
            `flowmatch.meanflow`, sampled in one or a few jumps; velocity prediction, linear
            path; independent or minibatch_ot coupling).
        prediction: velocity | x1 | x0 | epsilon.
        ratio_distinct: meanflow: fraction of points with two distinct times, in [0, 1].
        adaptive_p: meanflow: power of the adaptive loss weight (0: plain squared error).
        tangent: meanflow: the velocity that moves the point in the target's time derivative,
            conditional (x1 - x0, the paper's) | model (the network's own instantaneous
            velocity: lower variance; measured better on long runs, worse on short ones).
        time_pairs: meanflow: ordered (two time draws, sorted) | gap (one draw is the
            interval length t - r; measured better with minibatch_ot).
            The meanflow defaults are `flowmatch.meanflow.MeanFlowLoss`'s.
        cond_dropout: labelled data (images): probability of training a label as the null
            class, which makes the model usable with classifier-free guidance.
    """

    name: Literal["flow_matching", "meanflow"] = "flow_matching"
    prediction: Literal["velocity", "x1", "x0", "epsilon"] = "velocity"
    cond_dropout: Annotated[_Float, Field(ge=0, lt=1)] = 0.1
    ratio_distinct: Annotated[_Float, Field(ge=0, le=1)] = 0.5
    adaptive_p: Annotated[_Float, Field(ge=0)] = 0.0
    tangent: Literal["conditional", "model"] = "conditional"
    time_pairs: Literal["ordered", "gap"] = "ordered"


class OptimConfig(_Section):
    """AdamW and its learning-rate warmup.

    Attributes:
        lr: peak learning rate.
        weight_decay: decoupled weight decay.
        warmup_steps: steps of linear warmup from 0 to lr.
        grad_clip: maximum global gradient norm; null for no clipping.
        betas: Adam's (beta1, beta2), each in [0, 1).
    """

    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
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
        tensorboard: also log to TensorBoard.
    """

    steps: PositiveInt = 20_000
    batch_size: PositiveInt = 256
    ema_decay: UnitFloat = 0.999
    seed: NonNegativeInt = 0
    checkpoint_every: PositiveInt = 1_000
    eval_every: PositiveInt = 2_000
    log_every: PositiveInt = 100
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    tensorboard: bool = False


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
    """

    steps: PositiveInt = 16
    method: SamplerName = "midpoint"
    eta: Annotated[_Float, Field(ge=0, le=1)] = 0.0
    noise: NonNegativeFloat = 1.0
    guidance: NonNegativeFloat | None = None


class EvalConfig(_Section):
    """Sample quality against held-out data, per solver and step count.

    Attributes:
        steps: step counts to evaluate; a list or a comma-separated string ("1,2,4").
        methods: samplers to evaluate (`SAMPLER_METHODS`; ddim and sde with the eta and noise
            of the ``sample`` section); a list or a comma-separated string.
        num_samples: samples per draw.
        draws: independent draws, for the mean and spread of each metric.
    """

    steps: Annotated[list[PositiveInt], BeforeValidator(_as_list), Field(min_length=1)] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16]
    )
    methods: Annotated[list[SamplerName], BeforeValidator(_as_list), Field(min_length=1)] = Field(
        default_factory=lambda: ["euler", "midpoint"]
    )
    num_samples: PositiveInt = 5_000
    draws: PositiveInt = 5


class RunConfig(_Section):
    """A whole run; the sections and keys of the YAML file, all with defaults."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    path: PathConfig = Field(default_factory=PathConfig)
    coupling: CouplingConfig = Field(default_factory=CouplingConfig)
    time: TimeConfig = Field(default_factory=TimeConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


# ---------------------------------------------------------------------------------------------
# Error messages: describe what a key expects, from its type


def _unwrap(tp: Any, meta: list[Any]) -> tuple[Any, list[Any], bool]:
    """Strip Annotated and Optional from a type; return (type, constraints, nullable)."""
    nullable = False
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            args = get_args(tp)
            tp, meta = args[0], [*meta, *args[1:]]
        elif origin is Union or type(tp).__name__ == "UnionType":
            args = [a for a in get_args(tp) if a is not type(None)]
            nullable = nullable or len(args) < len(get_args(tp))
            if len(args) != 1:
                return tp, meta, nullable
            tp = args[0]
        else:
            return tp, meta, nullable


def _constraints(meta: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in meta:
        for name in ("gt", "ge", "lt", "le", "min_length"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
        found.update(_constraints(list(getattr(item, "metadata", None) or [])))
    return found


def _range(bounds: dict[str, Any]) -> str:
    lo = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    hi = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if lo and hi:
        return f" in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
    if lo:
        return f" {'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    if hi:
        return f" {'<=' if hi[0] == ']' else '<'} {hi[1]:g}"
    return ""


def _describe(tp: Any, meta: Sequence[Any] = (), *, plural: bool = False) -> str:
    tp, meta, nullable = _unwrap(tp, list(meta))
    bounds = _constraints(meta)
    origin = get_origin(tp)
    if origin is Literal:
        names = ", ".join(str(a) for a in get_args(tp))
        text = f"names among {names}" if plural else f"one of {names}"
    elif tp is bool:
        text = "booleans" if plural else "true or false"
    elif tp is int:
        text = ("integers" if plural else "an integer") + _range(bounds)
    elif tp is float:
        text = ("numbers" if plural else "a number") + _range(bounds)
    elif tp is str:
        text = "strings" if plural else "a string"
    elif origin is list:
        empty = "non-empty " if bounds.get("min_length", 0) > 0 else ""
        text = f"a {empty}list of {_describe(get_args(tp)[0], plural=True)}"
    elif origin is tuple:
        args = get_args(tp)
        text = f"a list of {len(args)} {_describe(args[0], plural=True)}"
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        text = f"a mapping (keys: {', '.join(tp.model_fields)})"
    else:
        text = f"a value of type {getattr(tp, '__name__', tp)}"
    return f"{text} or null" if nullable and not plural else text


def _type_at(loc: Sequence[Any]) -> tuple[Any, list[Any]] | None:
    """The declared type and constraints of the config entry at a pydantic error location."""
    tp: Any = RunConfig
    meta: list[Any] = []
    for part in loc:
        tp, meta, _ = _unwrap(tp, meta)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp, meta = field.annotation, list(field.metadata)
        elif isinstance(part, int) and get_origin(tp) in (list, tuple):
            args = get_args(tp)
            if get_origin(tp) is tuple and part >= len(args):
                return None
            tp, meta = args[0] if get_origin(tp) is list else args[part], []
        else:
            return None
    return tp, meta


def _section_at(parts: Sequence[str]) -> type[BaseModel] | None:
    found = _type_at(parts)
    if found is None:
        return None
    tp, _, _ = _unwrap(*found)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _dotted(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    if isinstance(value, (str, float)):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_key(section: type[BaseModel], key: str) -> str:
    valid = list(section.model_fields)
    close = get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}valid keys: {', '.join(valid)})"


def _error_text(err: Mapping[str, Any]) -> tuple[str, str]:
    """(dotted key, what is wrong) for one pydantic error."""
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "value_error":
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldProblem):
            return _dotted((*loc, cause.key)), str(cause)
        return _dotted(loc), str(cause) if cause is not None else err["msg"]
    if kind == "extra_forbidden":
        section = _section_at(loc[:-1])
        if section is not None:
            return _dotted(loc), _unknown_key(section, str(loc[-1]))
        return _dotted(loc), "unknown key"
    if kind == "invalid_key":
        return _dotted(loc[:-1]), f"keys must be strings, got {_show(err.get('input'))}"
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a too-short tuple
        found = _type_at(loc[:-1])
        expected = _describe(*found) if found is not None else err["msg"]
        return _dotted(loc[:-1]), f"expected {expected}, item {loc[-1]} is missing"
    found = _type_at(loc)
    expected = _describe(*found) if found is not None else err["msg"]
    if kind == "missing":
        return _dotted(loc), f"missing required key (expected {expected})"
    return _dotted(loc), f"expected {expected}, got {_show(err.get('input'))}"


def _from_validation_error(exc: ValidationError) -> ConfigError:
    problems = [_error_text(err) for err in exc.errors()]
    shown = [f"{key or '(top level)'}: {what}" for key, what in problems[:5]]
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return ConfigError("config: " + "; ".join(shown) + more, key=problems[0][0] or None)


# ---------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2) and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: let SafeLoader report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}invalid YAML: {problem}"


# ---------------------------------------------------------------------------------------------
# Public functions


def config_from_dict(data: Mapping[str, Any] | None) -> RunConfig:
    """Validate a mapping of sections (as read from YAML) into a `RunConfig`.

    Args:
        data: ``{"train": {"steps": 500}, ...}``; None or ``{}`` is the all-defaults run.

    Raises:
        ConfigError: on an unknown key, a wrong type or an out-of-range value.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config: expected a mapping of sections at the top level, got {_show(data)}"
        )
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise _from_validation_error(exc) from None


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(parts):
        raise ConfigError(
            f"config: override {override!r}: expected KEY=VALUE with a dotted key, "
            "e.g. train.steps=500",
            key=key or None,
        )
    section: type[BaseModel] = RunConfig
    for i, part in enumerate(parts):
        dotted = ".".join(parts[: i + 1])
        if part not in section.model_fields:
            raise ConfigError(f"config: {dotted}: {_unknown_key(section, part)}", key=dotted)
        if i < len(parts) - 1:
            sub = _section_at(parts[: i + 1])
            if sub is None:
                raise ConfigError(
                    f"config: {key}: unknown key ({dotted} is a value, not a section)", key=key
                )
            section = sub
    try:
        value = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config: {key}: override {override!r}: {_yaml_problem(exc)}", key=key
        ) from None
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            dotted = ".".join(parts[: i + 1])
            found = _type_at(parts[: i + 1])
            expected = _describe(*found) if found is not None else "a mapping"
            raise ConfigError(
                f"config: {dotted}: expected {expected}, got {_show(child)}", key=dotted
            )
        node = child
    node[parts[-1]] = value


def apply_overrides(cfg: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """A copy of ``cfg`` with ``--set`` style overrides applied and validated.

    Args:
        cfg: the config to start from; it is not changed.
        overrides: ``"section.key=value"`` strings, as for `load_config`.

    Raises:
        ConfigError: an override is malformed, names an unknown key or sets an invalid value.
    """
    raw = config_to_dict(cfg)
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config from YAML and apply ``--set`` overrides.

    Args:
        path: the YAML file; None starts from the defaults.
        overrides: ``"section.key=value"`` strings applied in order; the value is read as YAML
            (``500``, ``1e-3``, ``true``, ``null``, ``[1, 2, 4]``, ``{name: moons}``). An override
            may set a key of a section the file leaves out.

    Returns:
        The validated `RunConfig`.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, is not a mapping,
            an override is malformed or names an unknown key, or a value is invalid.
    """
    raw: Any = {}
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config: {file}: file not found", key=str(file)) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"config: {file}: cannot read ({reason})", key=str(file)) from None
        try:
            raw = _parse_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {file}: {_yaml_problem(exc)}", key=str(file)) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"config: {file}: expected a mapping of sections at the top level "
                f"(data, model, ...), got {type(raw).__name__} {_show(raw)}",
                key=str(file),
            )
    for override in overrides:
        _apply_override(raw, override)
    return config_from_dict(raw)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain JSON/YAML types (lists, not tuples), keyed as in the YAML file."""
    return cfg.model_dump(mode="json", by_alias=True)


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the config as YAML, atomically: a reader sees the old file or the whole new one.

    Args:
        cfg: the config to write.
        path: the destination; its directory must exist.
    """
    from flowmatch.atomic import atomic_path

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
