"""Tests of the run-config schema: defaults, round trips, overrides and one-line errors; the
union sections (path, coupling, time, objective, model), old run configs and registered
models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from torch import nn

from flowmatch.models import registry
from flowmatch.train.config import (
    ConfigError,
    ConstantTimeConfig,
    CosinePathConfig,
    CustomModelConfig,
    DDPMPathConfig,
    DiscreteTimeConfig,
    FlowMatchingObjectiveConfig,
    IndependentCouplingConfig,
    LinearPathConfig,
    LogitNormalTimeConfig,
    MeanFlowObjectiveConfig,
    MinibatchOTConfig,
    MLPConfig,
    PolynomialPathConfig,
    RunConfig,
    SchrodingerBridgeConfig,
    ShiftedTimeConfig,
    UNetConfig,
    UniformTimeConfig,
    VEPathConfig,
    VPPathConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    with_absolute_paths,
)

SECTIONS = [
    "data",
    "model",
    "path",
    "coupling",
    "time",
    "objective",
    "optim",
    "train",
    "sample",
    "eval",
]
UNION_TAGS = {
    "model": "name",
    "path": "schedule",
    "coupling": "name",
    "time": "sampler",
    "objective": "name",
}


@registry.register("testnet")
class TinyNet(nn.Module):
    """A registered network that takes keys no built-in model has."""

    def __init__(self, dim: int = 2, width: int = 8, blocks: list[int] | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, t, cond=None):
        return self.net(x)


# Every key set to a value other than its default (data.pairs needs the independent coupling:
# VARIANT_YAMLS has it, and the keys of the variants not chosen here).
FULL_YAML = """\
data:
  name: moons
  source: {name: 8gaussians}
  num_train: 1234
  num_holdout: 321
  image_size: 16
  channels: 3
  text_mode: chunks
  max_length: 20
  chunk_length: 32
  too_long: drop
  holdout_share: 0.2
  units: radians
  workers: 2
  stream: true
model: {name: mlp, hidden: 64, depth: 2, activation: gelu, time_embed_dim: 32, time_frequency: 5.0,
        fourier_features: 16, fourier_scale: 3.0, init: runs/base}
path: {schedule: vp, beta_min: 0.2, beta_max: 10.0}
coupling: {name: minibatch_ot, method: sinkhorn, reg: 0.1}
time: {sampler: logit_normal, mean: -0.5, std: 1.5}
objective: {name: meanflow, ratio_distinct: 0.3, adaptive_p: 0.5, cond_dropout: 0.2,
            tangent: model, time_pairs: gap}
optim:
  lr: 3e-4
  weight_decay: 1.0e-2
  warmup_steps: 100
  grad_clip: null
  betas: [0.8, 0.95]
train:
  steps: 500
  batch_size: 128
  ema_decay: 0.99
  seed: 7
  checkpoint_every: 50
  eval_every: 250
  log_every: 10
  device: cpu
  precision: bf16
  compile: true
  tensorboard: true
  max_minutes: 90.5
  threads: 3
  loggers: [csv, wandb]
  wandb_project: fm-tests
sample: {steps: 4, method: rk4, eta: 0.5, noise: 0.7, guidance: 1.5, temperature: 0.9,
         corrector: 0.5}
eval: {steps: [1, 3], methods: [heun, dopri5], num_samples: 100, draws: 2,
       fit_training_time: false}
"""

# The other variants of the union sections, each key away from its default.
VARIANT_YAMLS = [
    "data: {name: digits}\n"
    "model: {name: unet, channels: 16, multipliers: [1, 2, 2], res_blocks: 2, attention: [4],\n"
    "        groups: 4, dropout: 0.1, time_embed_dim: 32, time_frequency: 5.0, init: runs/b}\n"
    "objective: {name: flow_matching, prediction: x1, cond_dropout: 0.2}\n",
    "path: {schedule: ddpm, timesteps: 500, betas: cosine, beta_start: 2.0e-4, beta_end: 0.03}\n"
    "time: {sampler: discrete}\n",
    "path: {schedule: ve, sigma_min: 0.02, sigma_max: 80.0}\n"
    "coupling: {name: schrodinger_bridge, sigma: 0.0}\n"
    "time: {sampler: shifted, shift: 3.0}\n",
    "path: {schedule: polynomial, n: 3.0}\n"
    "time: {sampler: constant, value: 0.5}\n"
    "data: {pairs: runs/reflow/pairs.safetensors}\n",
    "path: {schedule: cosine}\n",
    "data: {corpus: names}\n"
    "model: {name: transformer, dim: 32, depth: 2, heads: 2, mlp_ratio: 2.0, dropout: 0.1,\n"
    "        positions: rotary, init: runs/base}\n"
    "objective: {name: discrete, source: uniform, kappa: polynomial, n: 3.0, loss: gkl,\n"
    "            cond_dropout: 0.2}\n",
    "model: {name: testnet, width: 16, blocks: [1, 2], hidden: 256, init: runs/base}\n",
]

# `config.yaml` of runs written before the union sections: every key of every variant.
# Written by the flat config (git history) for the configs and overrides named.
LEGACY_DUMPS = {
    # the defaults
    "defaults": """\
data: {name: checkerboard, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: linear, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: independent, method: exact, reg: 0.05, sigma: 0.5}
time: {sampler: uniform, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: velocity, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.001, weight_decay: 0.0, warmup_steps: 0, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 20000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 2000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 16, method: midpoint, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [1, 2, 4, 8, 16], methods: [euler, midpoint], num_samples: 5000,
  draws: 5}
""",
    # configs/ddpm.yaml
    "ddpm": """\
data: {name: checkerboard, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: ddpm, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: independent, method: exact, reg: 0.05, sigma: 0.5}
time: {sampler: discrete, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: epsilon, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.001, weight_decay: 0.0, warmup_steps: 0, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 20000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 5000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 50, method: ddim, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [1, 2, 4, 8, 16, 32], methods: [ddim, ddpm], num_samples: 2000,
  draws: 5}
""",
    # configs/digits.yaml
    "digits": """\
data: {name: digits, path: null, images: null, labels: null, image_size: 32, channels: 1,
  pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: unet, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: linear, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: independent, method: exact, reg: 0.05, sigma: 0.5}
time: {sampler: uniform, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: velocity, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.002, weight_decay: 0.0, warmup_steps: 200, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 3000, batch_size: 128, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 1000000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 4, method: midpoint, eta: 0.0, noise: 1.0, guidance: 1.0}
eval: {steps: [1, 2, 4, 8], methods: [euler, midpoint], num_samples: 5000, draws: 2}
""",
    # configs/cosine_x1.yaml
    "cosine_x1": """\
data: {name: spirals, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: cosine, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: independent, method: exact, reg: 0.05, sigma: 0.5}
time: {sampler: uniform, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: x1, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.002, weight_decay: 0.0, warmup_steps: 200, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 10000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 5000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 16, method: midpoint, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [2, 4, 8, 16], methods: [midpoint], num_samples: 2000, draws: 5}
""",
    # the defaults --set objective.name=meanflow
    "meanflow": """\
data: {name: checkerboard, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: linear, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: independent, method: exact, reg: 0.05, sigma: 0.5}
time: {sampler: uniform, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: meanflow, prediction: velocity, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.001, weight_decay: 0.0, warmup_steps: 0, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 20000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 2000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 16, method: midpoint, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [1, 2, 4, 8, 16], methods: [euler, midpoint], num_samples: 5000,
  draws: 5}
""",
    # the defaults --set coupling.name=minibatch_ot --set coupling.method=sinkhorn
    "minibatch_ot": """\
data: {name: checkerboard, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: linear, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: minibatch_ot, method: sinkhorn, reg: 0.05, sigma: 0.5}
time: {sampler: uniform, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: velocity, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.001, weight_decay: 0.0, warmup_steps: 0, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 20000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 2000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 16, method: midpoint, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [1, 2, 4, 8, 16], methods: [euler, midpoint], num_samples: 5000,
  draws: 5}
""",
    # the defaults --set coupling.name=schrodinger_bridge --set coupling.sigma=0.2
    "schrodinger_bridge": """\
data: {name: checkerboard, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: linear, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: schrodinger_bridge, method: exact, reg: 0.05, sigma: 0.2}
time: {sampler: uniform, mean: 0.0, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: velocity, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.001, weight_decay: 0.0, warmup_steps: 0, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 20000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 2000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 16, method: midpoint, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [1, 2, 4, 8, 16], methods: [euler, midpoint], num_samples: 5000,
  draws: 5}
""",
    # the defaults --set time.sampler=logit_normal --set time.mean=-0.5
    "logit_normal": """\
data: {name: checkerboard, path: null, images: null, labels: null, image_size: 32,
  channels: 1, pairs: null, source: null, num_train: 100000, num_holdout: 5000}
model: {name: mlp, hidden: 256, depth: 3, activation: silu, time_embed_dim: 64,
  time_frequency: null, init: null, channels: 32, multipliers: [1, 2], res_blocks: 1,
  attention: [], groups: 8, dropout: 0.0}
path: {schedule: linear, beta_min: 0.1, beta_max: 20.0, sigma_min: 0.01, sigma_max: 50.0,
  n: 2.0, timesteps: 1000, betas: linear, beta_start: 0.0001, beta_end: 0.02}
coupling: {name: independent, method: exact, reg: 0.05, sigma: 0.5}
time: {sampler: logit_normal, mean: -0.5, std: 1.0, shift: 1.0, value: 0.0}
objective: {name: flow_matching, prediction: velocity, cond_dropout: 0.1, ratio_distinct: 0.5,
  adaptive_p: 0.0, tangent: conditional, time_pairs: ordered}
optim: {lr: 0.001, weight_decay: 0.0, warmup_steps: 0, grad_clip: 1.0, betas: [
  0.9, 0.999]}
train: {steps: 20000, batch_size: 256, ema_decay: 0.999, seed: 0, checkpoint_every: 1000,
  eval_every: 2000, log_every: 100, device: auto, precision: fp32, compile: false,
  tensorboard: false}
sample: {steps: 16, method: midpoint, eta: 0.0, noise: 1.0, guidance: null}
eval: {steps: [1, 2, 4, 8, 16], methods: [euler, midpoint], num_samples: 5000,
  draws: 5}
""",
}


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    return file


def config_error(tmp_path: Path, text: str | None, overrides: tuple[str, ...] = ()) -> ConfigError:
    """Load and return the ConfigError raised, after checking it is one clean line."""
    file = write(tmp_path, text) if text is not None else None
    with pytest.raises(ConfigError) as info:
        load_config(file, overrides)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith("config: ")
    assert "Traceback" not in message and "pydantic" not in message
    return info.value


# ---------------------------------------------------------------------------------------------
# Defaults


@pytest.mark.parametrize("text", ["", "# nothing here\n", "---\n", "train:\n"])
def test_empty_file_gives_all_defaults(tmp_path: Path, text: str) -> None:
    cfg = load_config(write(tmp_path, text))
    assert cfg == RunConfig() == load_config(None)
    assert list(config_to_dict(cfg)) == SECTIONS
    assert cfg.data.name == "checkerboard" and cfg.data.path is None and cfg.data.source is None
    assert (cfg.data.num_train, cfg.data.num_holdout) == (100_000, 5_000)
    assert cfg.model == MLPConfig() and (cfg.model.name, cfg.model.hidden) == ("mlp", 256)
    assert (cfg.model.depth, cfg.model.activation, cfg.model.time_embed_dim) == (3, "silu", 64)
    assert cfg.path == LinearPathConfig() and cfg.path.schedule == "linear"
    assert cfg.coupling == IndependentCouplingConfig() and cfg.coupling.name == "independent"
    assert cfg.time == UniformTimeConfig() and cfg.time.sampler == "uniform"
    assert cfg.objective == FlowMatchingObjectiveConfig()
    assert (cfg.objective.name, cfg.objective.prediction) == ("flow_matching", "velocity")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.warmup_steps) == (1e-3, 0.0, 0)
    assert cfg.optim.grad_clip == 1.0 and cfg.optim.betas == (0.9, 0.999)
    train = cfg.train
    assert (train.steps, train.batch_size, train.ema_decay, train.seed) == (20_000, 256, 0.999, 0)
    assert (train.checkpoint_every, train.eval_every, train.log_every) == (1000, 2000, 100)
    assert (train.device, train.precision, train.compile, train.tensorboard) == (
        "auto",
        "fp32",
        False,
        False,
    )
    assert (cfg.sample.steps, cfg.sample.method) == (16, "midpoint")
    assert cfg.eval.steps == [1, 2, 4, 8, 16] and cfg.eval.methods == ["euler", "midpoint"]
    assert (cfg.eval.num_samples, cfg.eval.draws) == (5000, 5)


def test_data_path_alone_clears_the_default_name(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "data: {path: points.npy}\n"))
    assert cfg.data.path == "points.npy" and cfg.data.name is None


def test_config_is_immutable() -> None:
    cfg = RunConfig()
    with pytest.raises(ValidationError):
        cfg.train.steps = 5  # type: ignore[misc]
    assert cfg.train.steps == 20_000


# ---------------------------------------------------------------------------------------------
# Round trips


def test_full_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL_YAML))
    assert config_to_dict(cfg) != config_to_dict(RunConfig())
    # every key of the file was read, with YAML 1.2 floats ("3e-4") as numbers
    defaults = config_to_dict(RunConfig())
    got = config_to_dict(cfg)
    for section in SECTIONS:
        # a union section's keys against its variant's defaults, its tag against the default's
        base = type(getattr(cfg, section))().model_dump(mode="json")
        if section in UNION_TAGS:
            base[UNION_TAGS[section]] = defaults[section][UNION_TAGS[section]]
        for key, value in got[section].items():
            # data.name, data.path and data.images exclude each other (data.labels goes
            # with images); data.pairs needs the independent coupling, and points the mlp
            if (section, key) not in {
                ("data", "path"),
                ("data", "images"),
                ("data", "labels"),
                ("data", "pairs"),
                ("data", "text"),
                ("data", "corpus"),
                ("data", "categorical"),
                ("data", "manifold"),
                ("data", "columns"),
                ("data", "flip"),  # images only
                ("data", "latent"),  # an autoencoder run
                ("model", "name"),
            }:
                assert value != base[key], f"{section}.{key} kept its default"
    assert cfg.optim.lr == 3e-4 and cfg.optim.betas == (0.8, 0.95)

    out = tmp_path / "out" / "config.yaml"
    out.parent.mkdir()
    dump_config(cfg, out)
    assert load_config(out) == cfg
    assert yaml.safe_load(out.read_text()) == got  # plain YAML, the same key names
    assert os.listdir(out.parent) == ["config.yaml"]  # no temp file left behind

    dump_config(cfg, out)  # overwriting works too
    assert load_config(out) == cfg


@pytest.mark.parametrize(
    "overrides",
    [(), ("data.path=pts.csv", "data.name=null"), ("optim.lr=1.5e-7", "optim.betas=[0, 0.5]")],
)
def test_dict_round_trip(overrides: tuple[str, ...]) -> None:
    cfg = load_config(None, overrides)
    d = config_to_dict(cfg)
    json.dumps(d)  # plain types only
    assert config_from_dict(d) == cfg
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(d))) == cfg


def test_failed_dump_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "config.yaml"
    dump_config(RunConfig(), out)
    before = out.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        dump_config(load_config(None, ["train.steps=1"]), out)
    assert out.read_text() == before
    assert os.listdir(tmp_path) == ["config.yaml"]


# ---------------------------------------------------------------------------------------------
# Overrides


@pytest.mark.parametrize(
    ("override", "section", "key", "expected"),
    [
        ("optim.lr=1e-3", "optim", "lr", 0.001),
        ("optim.lr=2E-4", "optim", "lr", 2e-4),
        ("optim.lr=.5", "optim", "lr", 0.5),
        ("train.steps=500", "train", "steps", 500),
        ("train.ema_decay=0", "train", "ema_decay", 0.0),
        ("train.compile=true", "train", "compile", True),
        ("train.tensorboard=false", "train", "tensorboard", False),
        ("train.device=cuda", "train", "device", "cuda"),
        ("optim.grad_clip=null", "optim", "grad_clip", None),
        ("optim.grad_clip=", "optim", "grad_clip", None),
        ("optim.betas=[0.5, 0.6]", "optim", "betas", (0.5, 0.6)),
        ("eval.steps=[1,2,4]", "eval", "steps", [1, 2, 4]),
        ("eval.steps=1,2,4", "eval", "steps", [1, 2, 4]),
        ("eval.steps=8", "eval", "steps", [8]),
        ("eval.methods=[rk4, heun]", "eval", "methods", ["rk4", "heun"]),
        ("eval.methods=euler", "eval", "methods", ["euler"]),
        ("path.schedule=cosine", "path", "schedule", "cosine"),
        ("objective.cond_dropout=0.5", "objective", "cond_dropout", 0.5),
        (" train.seed = 3", "train", "seed", 3),
    ],
)
def test_override_values(override: str, section: str, key: str, expected: object) -> None:
    cfg = load_config(None, [override])
    value = getattr(getattr(cfg, section), key)
    assert value == expected
    assert type(value) is type(expected)
    # nothing else changed
    changed = config_to_dict(cfg)
    defaults = config_to_dict(RunConfig())
    changed[section].pop(key)
    defaults[section].pop(key)
    assert changed == defaults


def test_overrides_merge_with_file_and_reach_absent_sections(tmp_path: Path) -> None:
    file = write(tmp_path, "train: {steps: 10, seed: 3}\n")
    cfg = load_config(
        file, ["train.steps=20", "model.hidden=64", "data.source.name=moons", "sample={steps: 2}"]
    )
    assert (cfg.train.steps, cfg.train.seed) == (20, 3)
    assert cfg.model.hidden == 64
    assert cfg.data.source is not None and cfg.data.source.name == "moons"
    assert cfg.sample.steps == 2 and cfg.sample.method == "midpoint"


def test_overrides_apply_in_order_and_over_null_sections(tmp_path: Path) -> None:
    file = write(tmp_path, "train:\ndata:\n  source:\n")
    cfg = load_config(file, ["train.steps=1", "train.steps=2", "data.source.name=rings"])
    assert cfg.train.steps == 2
    assert cfg.data.source is not None and cfg.data.source.name == "rings"


def test_override_switches_data_to_a_file(tmp_path: Path) -> None:
    file = write(tmp_path, "data: {name: moons}\n")
    cfg = load_config(file, ["data.name=null", "data.path=x.npy"])
    assert (cfg.data.name, cfg.data.path) == (None, "x.npy")


def test_apply_overrides_returns_a_new_config() -> None:
    base = RunConfig()
    new = apply_overrides(base, ["train.steps=5", "optim.lr=1e-4"])
    assert (new.train.steps, new.optim.lr) == (5, 1e-4)
    assert base == RunConfig()
    with pytest.raises(ConfigError, match=r"^config: train\.steps: "):
        apply_overrides(base, ["train.steps=0"])


# ---------------------------------------------------------------------------------------------
# Errors: one line, naming the dotted key


@pytest.mark.parametrize(
    ("text", "overrides", "key", "fragments"),
    [
        # unknown keys
        ("foo: 1\n", (), "foo", ["unknown key", "valid keys: data, model, path"]),
        (
            "model: {widht: 3}\n",
            (),
            "model.widht",
            [
                "unknown key (valid keys: name, hidden, depth, activation, time_embed_dim, "
                "time_frequency, fourier_features, fourier_scale, init)"
            ],
        ),
        ("train: {step: 3}\n", (), "train.step", ["unknown key", "did you mean 'steps'?"]),
        ("data: {source: {name: moons, size: 3}}\n", (), "data.source.size", ["unknown key"]),
        (None, ("model.widht=3",), "model.widht", ["unknown key", "valid keys: name, hidden"]),
        (None, ("foo.bar=1",), "foo", ["unknown key", "valid keys: data"]),
        (None, ("train.steps.x=1",), "train.steps.x", ["unknown key", "train.steps is a value"]),
        # wrong types
        (None, ("train.steps=abc",), "train.steps", ["expected an integer in (0, ", "got 'abc'"]),
        (None, ("train.steps=true",), "train.steps", ["expected an integer in (0, ", "got true"]),
        (None, ("train.steps=1.5",), "train.steps", ["expected an integer in (0, ", "got 1.5"]),
        (None, ("optim.lr=fast",), "optim.lr", ["expected a number in (0, ", "got 'fast'"]),
        (
            None,
            ("model.time_frequency=0",),
            "model.time_frequency",
            ["expected a number in (0, 1000000] or null, got 0"],
        ),
        (None, ("train.compile=3",), "train.compile", ["expected true or false, got 3"]),
        ("train: 5\n", (), "train", ["expected a mapping (keys: steps, batch_size"]),
        (None, ("data.source=moons",), "data.source", ["expected a mapping (keys: name) or null"]),
        (None, ("data.path=3",), "data.path", ["expected a string or null, got 3"]),
        (None, ("eval.steps=[1, x]",), "eval.steps[1]", ["expected an integer in (0, ", "got 'x'"]),
        ("train: 5\n", ("train.steps=3",), "train", ["expected a mapping", "got 5"]),
        # out of range
        ("train: {steps: -5}\n", (), "train.steps", ["expected an integer in (0, ", "got -5"]),
        (None, ("train.seed=-1",), "train.seed", ["expected an integer in [0, ", "got -1"]),
        (None, ("train.ema_decay=1.0",), "train.ema_decay", ["expected a number in [0, 1)"]),
        (None, ("optim.lr=0",), "optim.lr", ["expected a number in (0, ", "got 0"]),
        (None, ("optim.lr=.inf",), "optim.lr", ["expected a number in (0, ", "got inf"]),
        (None, ("optim.grad_clip=-1",), "optim.grad_clip", ["] or null, got -1"]),
        (None, ("optim.betas=[0.9, 1]",), "optim.betas[1]", ["a number in [0, 1), got 1"]),
        (None, ("optim.betas=[0.9]",), "optim.betas", ["a list of 2 numbers in [0, 1)"]),
        (None, ("model.depth=0",), "model.depth", ["expected an integer in (0, ", "got 0"]),
        (None, ("model.time_embed_dim=63",), "model.time_embed_dim", ["an even integer"]),
        (
            None,
            ("path.schedule=vp", "path.beta_max=0.05"),
            "path.beta_max",
            ["> path.beta_min (0.1), got 0.05"],
        ),
        (
            None,
            ("path.schedule=ve", "path.sigma_min=60"),
            "path.sigma_max",
            ["> path.sigma_min (60), got 50"],
        ),
        (
            "path: {schedule: ddpm, beta_start: 0.05}\n",
            (),
            "path.beta_end",
            ["> path.beta_start (0.05), got 0.02"],
        ),
        (
            None,
            ("path.schedule=ddpm", "path.timesteps=1"),
            "path.timesteps",
            ["in [2, 100000], got 1"],
        ),
        (None, ("path.schedule=polynomial", "path.n=0"), "path.n", ["a number in (0, ", "got 0"]),
        (None, ("time.sampler=constant", "time.value=1.5"), "time.value", ["in [0, 1], got 1.5"]),
        (
            "data: {name: digits}\nmodel: {name: unet, multipliers: ' 1,x'}\n",
            (),
            "model.multipliers[1]",
            ["expected an integer in (0, ", "got 'x'"],
        ),
        (None, ("eval.steps=[1, -2]",), "eval.steps[1]", ["expected an integer in (0, ", "got -2"]),
        (
            None,
            ("eval.steps=[]",),
            "eval.steps",
            ["expected a non-empty list of integers in (0, 100000]"],
        ),
        (None, ("eval.draws=0",), "eval.draws", ["expected an integer in (0, ", "got 0"]),
        # unknown names
        (
            None,
            ("path.schedule=foo",),
            "path.schedule",
            ["one of linear, cosine, polynomial, vp, ve, ddpm, got 'foo'"],
        ),
        (None, ("model.name=vit",), "model.name", ["unknown model 'vit' (registered: "]),
        (None, ("train.device=tpu",), "train.device", ["one of auto, cpu, cuda, got 'tpu'"]),
        (None, ("sample.method=rk5",), "sample.method", ["one of euler, midpoint, heun, rk4"]),
        (
            None,
            ("eval.methods=[euler, x]",),
            "eval.methods[1]",
            ["one of euler, midpoint"],
        ),
        (None, ("data.name=mnist",), "data.name", ["one of checkerboard, 8gaussians, moons"]),
        (None, ("data.source={}",), "data.source.name", ["missing required key"]),
        # data: exactly one of name and path
        ("data: {name: moons, path: x.csv}\n", (), "data.path", ["not both", "data.name=null"]),
        ("data: {name: moons}\n", ("data.path=x.csv",), "data.path", ["not both"]),
        (None, ("data.path=x.txt",), "data.path", ["expected a .csv or .npy file, got 'x.txt'"]),
    ],
)
def test_invalid_values(
    tmp_path: Path, text: str | None, overrides: tuple[str, ...], key: str, fragments: list[str]
) -> None:
    err = config_error(tmp_path, text, overrides)
    assert err.key == key
    assert str(err).startswith(f"config: {key}: ")
    for fragment in fragments:
        assert fragment in str(err)


def test_several_errors_join_on_one_line(tmp_path: Path) -> None:
    err = config_error(tmp_path, "train: {steps: 0, batch_size: -1}\nmodel: {depth: x}\n")
    message = str(err)
    assert "model.depth: expected an integer in (0, 1024], got 'x'" in message
    assert "train.steps: expected an integer in (0, 1000000000], got 0" in message
    assert "train.batch_size: expected an integer in (0, 1048576], got -1" in message
    assert message.count("; ") == 2


@pytest.mark.parametrize(
    "override", ["train.steps", "=5", " =5", "train..steps=5", ".steps=1", "train.=1", "steps"]
)
def test_malformed_override(tmp_path: Path, override: str) -> None:
    err = config_error(tmp_path, None, (override,))
    assert f"override {override!r}" in str(err)
    assert "expected KEY=VALUE" in str(err)


def test_override_with_invalid_yaml_value(tmp_path: Path) -> None:
    err = config_error(tmp_path, None, ("eval.steps=[1, 2",))
    assert err.key == "eval.steps"
    assert "override 'eval.steps=[1, 2'" in str(err) and "invalid YAML" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"config: {missing}: file not found"
    assert info.value.key == str(missing)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"config: {tmp_path}: cannot read")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("train:\n  steps: 5\n bad: [\n", 3, "invalid YAML"),
        ("model:\n  hidden: 64\noptim: {lr: 1e-3\n", 4, "invalid YAML"),
        ("train:\n  steps: 5\n  seed: 1\n  steps: 6\n", 4, "duplicate key 'steps'"),
        ("a: b: c\n", 1, "invalid YAML"),
    ],
)
def test_yaml_syntax_error_names_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    file = write(tmp_path, text)
    err = config_error(tmp_path, text)
    assert err.key == str(file)
    assert str(err).startswith(f"config: {file}: line {line}, column ")
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("text", "kind"), [("- 1\n- 2\n", "list"), ("just text\n", "str"), ("42\n", "int")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    err = config_error(tmp_path, text)
    assert f"expected a mapping of sections at the top level (data, model, ...), got {kind}" in (
        str(err)
    )


def test_non_string_top_level_key(tmp_path: Path) -> None:
    err = config_error(tmp_path, "1: 2\n")
    assert "keys must be strings, got 1" in str(err)


def test_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_bytes(b"train: {steps: \xff}\n")
    with pytest.raises(ConfigError, match=r"^config: .*run\.yaml: cannot read"):
        load_config(file)


def test_config_from_dict_errors() -> None:
    with pytest.raises(ConfigError, match=r"^config: expected a mapping of sections"):
        config_from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"^config: optim\.lr: expected a number in \(0, 1000000\], got -1$"
    ):
        config_from_dict({"optim": {"lr": -1}})
    assert config_from_dict({}) == config_from_dict(None) == RunConfig()
    assert issubclass(ConfigError, ValueError)


def test_config_sampler_names_are_the_library_samplers() -> None:
    """The config's sampler names are built from flowmatch.sampling's list: one list."""
    from flowmatch.sampling import SAMPLE_METHODS
    from flowmatch.train.config import SAMPLER_METHODS

    assert SAMPLER_METHODS == SAMPLE_METHODS


# ---------------------------------------------------------------------------------------------
# Union sections: the tag picks the variant, whose keys are its own


@pytest.mark.parametrize(
    "text",
    [
        "",
        "path:\ncoupling:\ntime:\nobjective:\nmodel:\n",
        "path: {}\ncoupling: {}\ntime: {}\nobjective: {}\nmodel: {}\n",
        "objective: {cond_dropout: 0.1}\nmodel: {hidden: 256}\n",
    ],
)
def test_union_sections_default_to_their_default_variant(tmp_path: Path, text: str) -> None:
    cfg = load_config(write(tmp_path, text))
    assert type(cfg.path) is LinearPathConfig
    assert type(cfg.coupling) is IndependentCouplingConfig
    assert type(cfg.time) is UniformTimeConfig
    assert type(cfg.objective) is FlowMatchingObjectiveConfig
    assert type(cfg.model) is MLPConfig
    assert cfg == RunConfig()
    # a dump holds the chosen variant's keys only
    dumped = config_to_dict(cfg)
    assert dumped["path"] == {"schedule": "linear"}
    assert dumped["coupling"] == {"name": "independent"}
    assert dumped["time"] == {"sampler": "uniform"}
    assert dumped["objective"] == {
        "name": "flow_matching",
        "prediction": "velocity",
        "cond_dropout": 0.1,
    }
    assert set(dumped["model"]) == set(MLPConfig.model_fields)


def test_variant_defaults_are_the_flat_configs() -> None:
    """A tag alone gives its variant with the defaults the flat config had."""

    def variant(*overrides: str) -> object:
        cfg = load_config(None, overrides)
        return {"path": cfg.path, "coupling": cfg.coupling, "time": cfg.time}[
            overrides[0].split(".")[0]
        ]

    assert variant("path.schedule=cosine") == CosinePathConfig()
    assert variant("path.schedule=polynomial") == PolynomialPathConfig(n=2.0)
    assert variant("path.schedule=vp") == VPPathConfig(beta_min=0.1, beta_max=20.0)
    assert variant("path.schedule=ve") == VEPathConfig(sigma_min=0.01, sigma_max=50.0)
    assert variant("path.schedule=ddpm") == DDPMPathConfig(
        timesteps=1000, betas="linear", beta_start=1e-4, beta_end=0.02
    )
    assert variant("coupling.name=minibatch_ot") == MinibatchOTConfig(method="exact", reg=0.05)
    assert variant("coupling.name=schrodinger_bridge") == SchrodingerBridgeConfig(sigma=0.5)
    assert variant("time.sampler=logit_normal") == LogitNormalTimeConfig(mean=0.0, std=1.0)
    assert variant("time.sampler=shifted") == ShiftedTimeConfig(shift=1.0)
    assert variant("time.sampler=constant") == ConstantTimeConfig(value=0.0)
    assert load_config(None, ["time.sampler=discrete", "path.schedule=ddpm"]).time == (
        DiscreteTimeConfig()
    )
    meanflow = load_config(None, ["objective.name=meanflow"]).objective
    assert meanflow == MeanFlowObjectiveConfig()
    assert (meanflow.cond_dropout, meanflow.ratio_distinct, meanflow.adaptive_p) == (0.1, 0.5, 0.0)
    assert (meanflow.tangent, meanflow.time_pairs) == ("conditional", "ordered")
    assert not hasattr(meanflow, "prediction")
    unet = load_config(None, ["model.name=unet", "data.name=digits"]).model
    assert unet == UNetConfig()
    assert (unet.channels, unet.multipliers, unet.res_blocks, unet.attention) == (32, [1, 2], 1, [])
    assert (unet.groups, unet.dropout, unet.time_embed_dim, unet.time_frequency) == (
        8,
        0.0,
        64,
        None,
    )
    assert unet.init is None


@pytest.mark.parametrize("text", VARIANT_YAMLS)
def test_variant_round_trip(tmp_path: Path, text: str) -> None:
    """yaml -> config -> dump -> config; the dump holds the chosen variants' keys only."""
    cfg = load_config(write(tmp_path, text))
    raw = yaml.safe_load(text)
    dumped = config_to_dict(cfg)
    for section, values in raw.items():
        for key, value in values.items():
            assert dumped[section][key] == value, f"{section}.{key}"
    for section in UNION_TAGS:
        variant = getattr(cfg, section)
        assert set(dumped[section]) == set(type(variant).model_fields) | set(
            variant.model_extra or {}
        )
    out = tmp_path / "config.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg
    assert config_from_dict(json.loads(json.dumps(dumped))) == cfg


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (
            ("path.schedule=cosinee",),
            "path.schedule",
            "expected one of linear, cosine, polynomial, vp, ve, ddpm, got 'cosinee'",
        ),
        (
            ("coupling.name=ot",),
            "coupling.name",
            "expected one of independent, minibatch_ot, schrodinger_bridge, got 'ot'",
        ),
        (
            ("time.sampler=normal",),
            "time.sampler",
            "expected one of uniform, logit_normal, shifted, constant, discrete, got 'normal'",
        ),
        (
            ("objective.name=meanflo",),
            "objective.name",
            "expected one of flow_matching, meanflow, discrete, autoencoder, got 'meanflo'",
        ),
        (("path.schedule=3",), "path.schedule", "expected one of linear, cosine, polynomial, "),
        (
            ("path.schedule=null",),
            "path.schedule",
            "expected one of linear, cosine, polynomial, vp, ve, ddpm, got null",
        ),
        (
            ("model.name=5",),
            "model.name",
            "expected one of mlp, unet, dit, transformer or a registered model name",
        ),
        (("path=5",), "path", "expected a mapping (schedule: one of linear, cosine, polynomial"),
        (
            ("model=[1]",),
            "model",
            "expected a mapping (name: one of mlp, unet, dit, transformer or a registered",
        ),
    ],
)
def test_unknown_tag(overrides: tuple[str, ...], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert info.value.key == key
    assert str(info.value).startswith(f"config: {key}: {message}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "overrides", "key", "message"),
    [
        (None, ("path.beta_max=30",), "path.beta_max", "schedule 'linear' (a parameter of vp)"),
        (
            "path: {schedule: cosine, n: 3}\n",
            (),
            "path.n",
            "schedule 'cosine' (a parameter of polynomial)",
        ),
        (
            None,
            ("path.schedule=ddpm", "path.sigma_max=80"),
            "path.sigma_max",
            "schedule 'ddpm' (a parameter of ve)",
        ),
        (
            None,
            ("coupling.sigma=0.1",),
            "coupling.sigma",
            "coupling 'independent' (a parameter of schrodinger_bridge)",
        ),
        (
            "coupling: {name: schrodinger_bridge, method: sinkhorn}\n",
            (),
            "coupling.method",
            "coupling 'schrodinger_bridge' (a parameter of minibatch_ot)",
        ),
        (None, ("time.mean=1",), "time.mean", "sampler 'uniform' (a parameter of logit_normal)"),
        (
            None,
            ("objective.name=meanflow", "objective.prediction=x1"),
            "objective.prediction",
            "objective 'meanflow' (a parameter of flow_matching)",
        ),
        (
            None,
            ("objective.tangent=model",),
            "objective.tangent",
            "objective 'flow_matching' (a parameter of meanflow)",
        ),
        (None, ("model.channels=16",), "model.channels", "model 'mlp' (a parameter of unet)"),
        (
            "data: {name: digits}\nmodel: {name: unet, hidden: 64}\n",
            (),
            "model.hidden",
            "model 'unet' (a parameter of mlp)",
        ),
    ],
)
def test_key_of_another_variant(
    tmp_path: Path, text: str | None, overrides: tuple[str, ...], key: str, message: str
) -> None:
    """At a value other than its default, a key of another variant is an error that names it
    and the variant it belongs to."""
    err = config_error(tmp_path, text, overrides)
    assert err.key == key
    assert str(err) == f"config: {key}: not a parameter of {message}"


def test_key_of_no_variant_is_an_unknown_key(tmp_path: Path) -> None:
    err = config_error(tmp_path, "path: {schedule: linear, beta_mx: 3}\n")
    assert err.key == "path.beta_mx"
    assert str(err) == (
        "config: path.beta_mx: unknown key (did you mean 'beta_max' (a parameter of vp)? "
        "valid keys: schedule)"
    )
    err = config_error(tmp_path, "path: {schedule: vp, beta_mx: 3}\n")
    assert "unknown key (did you mean 'beta_max'? valid keys: schedule, beta_min, beta_max)" in (
        str(err)
    )
    # an override is checked against the keys of every variant of the section
    err = config_error(tmp_path, None, ("path.nope=1",))
    assert err.key == "path.nope"
    assert "unknown key (valid keys: schedule, n, beta_min, beta_max, sigma_min" in str(err)
    err = config_error(tmp_path, None, ("time.mean.x=1",))
    assert err.key == "time.mean.x" and "time.mean is a value, not a section" in str(err)


def test_params_are_the_variant_keys_but_the_tag() -> None:
    assert LinearPathConfig().params() == {}
    assert VPPathConfig(beta_max=30.0).params() == {"beta_min": 0.1, "beta_max": 30.0}
    assert DDPMPathConfig().params() == {
        "timesteps": 1000,
        "betas": "linear",
        "beta_start": 1e-4,
        "beta_end": 0.02,
    }
    assert MinibatchOTConfig(method="sinkhorn").params() == {"method": "sinkhorn", "reg": 0.05}
    assert SchrodingerBridgeConfig().params() == {"sigma": 0.5}
    assert LogitNormalTimeConfig(mean=-0.5).params() == {"mean": -0.5, "std": 1.0}
    assert DiscreteTimeConfig().params() == {}
    assert FlowMatchingObjectiveConfig().params() == {"prediction": "velocity", "cond_dropout": 0.1}
    assert MeanFlowObjectiveConfig().params() == {
        "cond_dropout": 0.1,
        "ratio_distinct": 0.5,
        "adaptive_p": 0.0,
        "tangent": "conditional",
        "time_pairs": "ordered",
    }
    # init is where the weights come from, not a parameter of the network
    assert MLPConfig(hidden=64, init="runs/a").params() == {
        "hidden": 64,
        "depth": 3,
        "activation": "silu",
        "time_embed_dim": 64,
        "time_frequency": None,
        "fourier_features": 0,
        "fourier_scale": 1.0,
    }
    unet = UNetConfig(multipliers=[1, 2, 2], attention=[4]).params()
    assert unet["multipliers"] == [1, 2, 2] and unet["attention"] == [4]
    assert "name" not in unet and "init" not in unet
    json.dumps(unet)


# ---------------------------------------------------------------------------------------------
# Old run directories: config.yaml written by the flat config


LEGACY_VARIANTS = {
    "defaults": (MLPConfig, LinearPathConfig, IndependentCouplingConfig, UniformTimeConfig),
    "ddpm": (MLPConfig, DDPMPathConfig, IndependentCouplingConfig, DiscreteTimeConfig),
    "digits": (UNetConfig, LinearPathConfig, IndependentCouplingConfig, UniformTimeConfig),
    "cosine_x1": (MLPConfig, CosinePathConfig, IndependentCouplingConfig, UniformTimeConfig),
    "meanflow": (MLPConfig, LinearPathConfig, IndependentCouplingConfig, UniformTimeConfig),
    "minibatch_ot": (MLPConfig, LinearPathConfig, MinibatchOTConfig, UniformTimeConfig),
    "schrodinger_bridge": (MLPConfig, LinearPathConfig, SchrodingerBridgeConfig, UniformTimeConfig),
    "logit_normal": (MLPConfig, LinearPathConfig, IndependentCouplingConfig, LogitNormalTimeConfig),
}


@pytest.mark.parametrize("name", list(LEGACY_DUMPS))
def test_old_run_configs_still_load(tmp_path: Path, name: str) -> None:
    """Every key that means something keeps its value; the others (keys of other variants,
    all at their defaults) are dropped."""
    old = yaml.safe_load(LEGACY_DUMPS[name])
    cfg = load_config(write(tmp_path, LEGACY_DUMPS[name]))
    assert (type(cfg.model), type(cfg.path), type(cfg.coupling), type(cfg.time)) == (
        LEGACY_VARIANTS[name]
    )
    objective = MeanFlowObjectiveConfig if name == "meanflow" else FlowMatchingObjectiveConfig
    assert type(cfg.objective) is objective
    new = config_to_dict(cfg)
    assert list(new) == list(old)
    defaults = config_to_dict(RunConfig())
    for section, values in new.items():
        for key, value in values.items():
            if key not in old[section]:  # a key added since (text data): at its default
                assert value == defaults[section][key], f"{section}.{key}"
                continue
            assert value == old[section][key], f"{section}.{key}"
        dropped = set(old[section]) - set(values)
        if section in UNION_TAGS:
            assert not dropped & set(type(getattr(cfg, section)).model_fields)
        else:
            assert not dropped, section
    assert config_from_dict(new) == cfg
    # the run directory's config, with an override on top (as `flowmatch train --resume`)
    assert load_config(write(tmp_path, LEGACY_DUMPS[name]), ["train.steps=7"]).train.steps == 7


def test_old_run_config_values() -> None:
    ddpm = config_from_dict(yaml.safe_load(LEGACY_DUMPS["ddpm"]))
    assert ddpm.path == DDPMPathConfig() and ddpm.objective.prediction == "epsilon"
    assert (ddpm.sample.method, ddpm.sample.steps) == ("ddim", 50)
    digits = config_from_dict(yaml.safe_load(LEGACY_DUMPS["digits"]))
    assert digits.model == UNetConfig() and digits.data.name == "digits"
    assert digits.sample.guidance == 1.0
    ot = config_from_dict(yaml.safe_load(LEGACY_DUMPS["minibatch_ot"]))
    assert ot.coupling == MinibatchOTConfig(method="sinkhorn")
    bridge = config_from_dict(yaml.safe_load(LEGACY_DUMPS["schrodinger_bridge"]))
    assert bridge.coupling == SchrodingerBridgeConfig(sigma=0.2)
    times = config_from_dict(yaml.safe_load(LEGACY_DUMPS["logit_normal"]))
    assert times.time == LogitNormalTimeConfig(mean=-0.5)
    x1 = config_from_dict(yaml.safe_load(LEGACY_DUMPS["cosine_x1"]))
    assert x1.objective == FlowMatchingObjectiveConfig(prediction="x1")
    assert x1.data.name == "spirals"


def test_override_switches_the_variant(tmp_path: Path) -> None:
    """Setting a tag drops the old variant's keys that are at their defaults."""
    old = write(tmp_path, LEGACY_DUMPS["defaults"])
    assert load_config(old, ["path.schedule=vp"]).path == VPPathConfig()
    cfg = load_config(old, ["path.schedule=vp", "path.beta_max=30"])
    assert cfg.path == VPPathConfig(beta_max=30.0)
    assert load_config(old, ["path.beta_max=30", "path.schedule=vp"]).path == cfg.path
    digits = load_config(old, ["data.name=digits", "model.name=unet", "model.channels=16"])
    assert digits.model == UNetConfig(channels=16)
    assert apply_overrides(RunConfig(), ["coupling.name=minibatch_ot"]).coupling == (
        MinibatchOTConfig()
    )
    back = apply_overrides(
        apply_overrides(RunConfig(), ["path.schedule=vp"]), ["path.schedule=linear"]
    )
    assert back.path == LinearPathConfig()
    # a key the old variant set away from its default is kept, and then refused
    with pytest.raises(ConfigError, match=r"^config: model\.hidden: not a parameter of model"):
        apply_overrides(
            load_config(None, ["model.hidden=64"]), ["model.name=unet", "data.name=digits"]
        )
    # a registered model gets the keys it is given, not the mlp's defaults
    custom = apply_overrides(RunConfig(), ["model.name=testnet", "model.width=4"])
    assert custom.model.params() == {"width": 4}
    assert load_config(old, ["model.name=testnet"]).model.params() == {}


# ---------------------------------------------------------------------------------------------
# Registered models


def test_registered_model_keeps_its_keys(tmp_path: Path) -> None:
    text = "model: {name: testnet, width: 16, blocks: [1, 2], hidden: 256, init: runs/base}\n"
    cfg = load_config(write(tmp_path, text))
    assert isinstance(cfg.model, CustomModelConfig)
    assert (cfg.model.name, cfg.model.init) == ("testnet", "runs/base")
    assert cfg.model.width == 16  # type: ignore[union-attr]
    # every key as given, an mlp key at the mlp default included: they are its own
    params = {"width": 16, "blocks": [1, 2], "hidden": 256}
    assert cfg.model.params() == params
    assert config_to_dict(cfg)["model"] == {"name": "testnet", "init": "runs/base", **params}
    net = registry.build("testnet", **{k: v for k, v in params.items() if k != "hidden"})
    assert isinstance(net, TinyNet)
    # any key may be set by override; a registered model takes points or images
    cfg = load_config(None, ["model.name=testnet", "model.width=4", "model.extra.deep=1"])
    assert cfg.model.params() == {"width": 4, "extra": {"deep": 1}}
    assert load_config(None, ["model.name=testnet", "data.name=digits"]).data.is_image
    with pytest.raises(ConfigError, match=r"^config: model\.init: expected a string or null"):
        load_config(None, ["model.name=testnet", "model.init=5"])


def test_unregistered_model_name(tmp_path: Path) -> None:
    err = config_error(tmp_path, "model: {name: nonet, width: 3}\n")
    assert err.key == "model.name"
    message = str(err)
    assert message.startswith("config: model.name: unknown model 'nonet' (registered: ")
    assert "testnet" in message and "mlp" in message and "unet" in message
    assert "@flowmatch.models.register(name)" in message and "--plugin" in message


# ---------------------------------------------------------------------------------------------
# Rules between sections


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (
            ("time.sampler=discrete",),
            "time.sampler",
            "discrete draws the timesteps of a ddpm path; set path.schedule=ddpm, got 'linear'",
        ),
        (
            ("data.pairs=p.safetensors", "coupling.name=minibatch_ot"),
            "coupling.name",
            "fixed pairs (data.pairs) are already coupled; use 'independent', got 'minibatch_ot'",
        ),
        (
            ("data.name=digits",),
            "model.name",
            "image data need model.name=unet or dit, got 'mlp'",
        ),
        (
            ("data.name=null", "data.images=imgs", "model.name=mlp"),
            "model.name",
            "image data need model.name=unet or dit, got 'mlp'",
        ),
        (
            ("model.name=unet",),
            "model.name",
            "points (toy sets, tables) need model.name=mlp, got 'unet'",
        ),
    ],
)
def test_rules_between_sections(overrides: tuple[str, ...], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert info.value.key == key
    assert str(info.value) == f"config: {key}: {message}"


def test_rules_between_sections_hold_when_met() -> None:
    load_config(None, ["time.sampler=discrete", "path.schedule=ddpm"])
    load_config(None, ["data.pairs=p.safetensors", "coupling.name=independent"])
    load_config(None, ["data.name=digits", "model.name=unet"])
    load_config(None, ["data.name=null", "data.images=imgs", "model.name=unet"])
    load_config(None, ["data.name=digits", "model.name=testnet"])


# ---------------------------------------------------------------------------------------------
# with_absolute_paths


def test_with_absolute_paths(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        ["data.name=null", "data.path=pts.csv", "data.pairs=p.safetensors", "model.init=runs/a"],
    )
    out = with_absolute_paths(cfg, tmp_path)
    assert out.data.path == str((tmp_path / "pts.csv").resolve())
    assert out.data.pairs == str((tmp_path / "p.safetensors").resolve())
    assert out.model.init == str((tmp_path / "runs" / "a").resolve())
    assert (out.train, out.path) == (cfg.train, cfg.path)
    assert with_absolute_paths(out, tmp_path / "elsewhere") is out  # nothing relative left
    base = RunConfig()
    assert with_absolute_paths(base, tmp_path) is base
    images = load_config(
        None, ["data.name=null", "data.images=imgs", "data.labels=lab.gz", "model.name=unet"]
    )
    images = with_absolute_paths(images, tmp_path)
    assert images.data.images == str((tmp_path / "imgs").resolve())
    assert images.data.labels == str((tmp_path / "lab.gz").resolve())
    custom = load_config(None, ["model.name=testnet", "model.width=4", "model.init=runs/b"])
    custom = with_absolute_paths(custom, tmp_path)
    assert custom.model.init == str((tmp_path / "runs" / "b").resolve())
    assert custom.model.params() == {"width": 4}


# ---------------------------------------------------------------------------------------------
# Strict types and bounds


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.steps='5'", "train.steps", "expected an integer in (0, 1000000000], got '5'"),
        ("train.steps=5.0", "train.steps", "got 5.0"),
        ("train.steps=1e3", "train.steps", "got 1000.0"),
        ("optim.lr='1e-3'", "optim.lr", "expected a number in (0, 1000000], got '1e-3'"),
        ("train.steps=1000000001", "train.steps", "expected an integer in (0, 1000000000]"),
        (
            "train.seed=9223372036854775808",
            "train.seed",
            "expected an integer in [0, 9223372036854775807]",
        ),
        ("train.seed=100000000000000000000000000000", "train.seed", "expected an integer"),
        ("model.hidden=1000000000", "model.hidden", "expected an integer in (0, 65536]"),
        ("model.depth=10000000", "model.depth", "expected an integer in (0, 1024]"),
        ("eval.draws=100000000", "eval.draws", "expected an integer in (0, 1000]"),
        ("eval.steps=[1000000000]", "eval.steps[0]", "expected an integer in (0, 100000]"),
        ("eval.num_samples=10000000", "eval.num_samples", "(0, 1000000]"),
        ("data.num_holdout=1000000000", "data.num_holdout", "[4, 100000000]"),
        ("train.batch_size=10000000", "train.batch_size", "(0, 1048576]"),
        ("sample.steps=1000000000", "sample.steps", "(0, 100000]"),
        ("coupling={name: minibatch_ot, method: sinkhorn, reg: 1e-300}", "coupling.reg", "[0.001"),
        ("optim.lr=1e9", "optim.lr", "(0, 1000000]"),
        ("train.batch_size=true", "train.batch_size", "got true"),
    ],
)
def test_numbers_are_strict_and_bounded(override: str, key: str, expected: str) -> None:
    # '5', 5.0 and 1e3 are not silently read as integers; every number has an upper bound
    # stated in the message, so a typo cannot ask for a network or an allocation no machine has
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config: {key}: "), message
    assert expected in message, message


def test_comma_lists_read_integers() -> None:
    # a comma-separated string is a list whose digit items are integers (the string says so)
    assert load_config(None, ["eval.steps=1, 2,16"]).eval.steps == [1, 2, 16]
    with pytest.raises(ConfigError, match=r"eval.steps\[1\]"):
        load_config(None, ["eval.steps=1,x"])


def test_long_path_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"data\.path: expected a string"):
        load_config(None, [f"data.path={'a' * 5000}.csv"])


# ---------------------------------------------------------------------------------------------
# YAML safety: bombs and deep nesting are refused before anything is built


def _laughs(levels: int) -> str:
    text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n"
    return text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (_laughs(9) + "eval: {steps: *l8}\n", "expands to more than 100000 values"),
        ("train: {steps: " + "[" * 50_000 + "]" * 50_000 + "}\n", "nested more than 64 levels"),
        ("train: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", "nested more than 64 levels"),
        ("eval: {steps: &a [1, *a]}\n", "a recursive alias"),
    ],
    ids=["billion-laughs", "deep-lists", "deep-mappings", "recursive-alias"],
)
def test_yaml_bombs_are_one_line_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_bomb_in_an_override_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"eval\.steps: .*nested more than 64 levels"):
        load_config(None, ["eval.steps=" + "[" * 100 + "]" * 100])
    with pytest.raises(ConfigError, match=r"eval\.steps: .*expands to more than 100000 values"):
        load_config(None, ["eval.steps={" + _laughs(9).replace("\n", ", ") + "}"])


def test_small_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text("train: {steps: &n 7, log_every: *n}\n")
    cfg = load_config(path)
    assert (cfg.train.steps, cfg.train.log_every) == (7, 7)
