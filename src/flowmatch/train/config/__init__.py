"""The run config of `flowmatch train CONFIG.yaml [--set key=value ...]`.

A run config is a YAML mapping of sections (``data``, ``model``, ``path``, ``coupling``,
``time``, ``objective``, ``optim``, ``train``, ``sample``, ``eval``); every key has a default, so
an empty file is a valid run. Unknown keys, wrong types and out-of-range values are errors,
reported as a one-line `ConfigError` that names the dotted key::

    config: train.steps: expected an integer in (0, 1000000000], got -5

Five sections choose one of several options, each with its own keys (discriminated unions,
in `choices`): ``path`` by ``schedule``, ``coupling`` by ``name``, ``time`` by ``sampler``,
``objective`` by ``name`` and ``model`` by ``name`` (mlp, unet, dit, transformer, or a network
registered with `flowmatch.models.register`, whose keys are its constructor's arguments)::

    path: {schedule: vp, beta_min: 0.1, beta_max: 20.0}

A key of another option is an error (``path.beta_max: not a parameter of schedule 'linear' (a
parameter of vp)``), except at its default value: the ``config.yaml`` of older runs, which
held every key of every option, still loads. Each option's `params()` are its keys but the
tag, as plain JSON types.

Example:
    >>> cfg = load_config("run.yaml", ["train.steps=500", "optim.lr=1e-3"])
    >>> cfg.train.steps, cfg.optim.lr
    (500, 0.001)

YAML is read with a `yaml.SafeLoader` that also reads YAML 1.2 floats without a dot
(``1e-3`` is the number 0.001, not a string as in plain PyYAML) and rejects duplicate keys.

Modules: `types` (value types), `choices` (the union sections), `sections` (the others and
`RunConfig`), `messages` (pydantic errors as one line), `io` (YAML, overrides, dumps).
"""

from __future__ import annotations

from flowmatch.errors import ConfigError
from flowmatch.train.config.choices import (
    ConstantTimeConfig,
    CosinePathConfig,
    CouplingConfig,
    DDPMPathConfig,
    DiscreteObjectiveConfig,
    DiscreteTimeConfig,
    FlowMatchingObjectiveConfig,
    IndependentCouplingConfig,
    LinearPathConfig,
    LogitNormalTimeConfig,
    MeanFlowObjectiveConfig,
    MinibatchOTConfig,
    ObjectiveConfig,
    PathConfig,
    PolynomialPathConfig,
    SchrodingerBridgeConfig,
    ShiftedTimeConfig,
    TimeConfig,
    UniformTimeConfig,
    VEPathConfig,
    VPPathConfig,
)
from flowmatch.train.config.data import DataConfig, SourceConfig
from flowmatch.train.config.io import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    with_absolute_paths,
)
from flowmatch.train.config.models import (
    CustomModelConfig,
    DiTConfig,
    MLPConfig,
    ModelConfig,
    TransformerConfig,
    UNetConfig,
)
from flowmatch.train.config.sections import (
    EvalConfig,
    OptimConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
)
from flowmatch.train.config.types import (
    ACTIVATIONS,
    SAMPLER_METHODS,
    SOLVER_METHODS,
    TOY_DATASETS,
)

__all__ = [
    "ACTIVATIONS",
    "SAMPLER_METHODS",
    "SOLVER_METHODS",
    "TOY_DATASETS",
    "ConfigError",
    "ConstantTimeConfig",
    "CosinePathConfig",
    "CouplingConfig",
    "CustomModelConfig",
    "DDPMPathConfig",
    "DataConfig",
    "DiTConfig",
    "DiscreteObjectiveConfig",
    "DiscreteTimeConfig",
    "EvalConfig",
    "FlowMatchingObjectiveConfig",
    "IndependentCouplingConfig",
    "LinearPathConfig",
    "LogitNormalTimeConfig",
    "MLPConfig",
    "MeanFlowObjectiveConfig",
    "MinibatchOTConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "PathConfig",
    "PolynomialPathConfig",
    "RunConfig",
    "SampleConfig",
    "SchrodingerBridgeConfig",
    "ShiftedTimeConfig",
    "SourceConfig",
    "TimeConfig",
    "TrainConfig",
    "TransformerConfig",
    "UNetConfig",
    "UniformTimeConfig",
    "VEPathConfig",
    "VPPathConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "with_absolute_paths",
]
