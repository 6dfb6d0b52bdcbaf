"""Tests of the run-config schema: defaults, round trips, overrides and one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flowmatch.train.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
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

# Every key set to a value other than its default.
FULL_YAML = """\
data:
  name: moons
  source: {name: 8gaussians}
  num_train: 1234
  num_holdout: 321
  pairs: runs/reflow/pairs.safetensors
  image_size: 16
  channels: 3
model: {name: mlp, hidden: 64, depth: 2, activation: gelu, time_embed_dim: 32, time_frequency: 5.0,
        init: runs/base, channels: 16, multipliers: [1, 2, 2], res_blocks: 2, attention: [4],
        groups: 4, dropout: 0.1}
path: {schedule: vp, beta_min: 0.2, beta_max: 10.0, sigma_min: 0.02, sigma_max: 80.0, n: 3.0,
       timesteps: 500, betas: cosine, beta_start: 2.0e-4, beta_end: 0.03}
coupling: {name: minibatch_ot, method: sinkhorn, reg: 0.1, sigma: 0.0}
time: {sampler: logit_normal, mean: -0.5, std: 1.5, shift: 3.0, value: 0.5}
objective: {name: meanflow, prediction: x1, ratio_distinct: 0.3, adaptive_p: 0.5,
            cond_dropout: 0.2, tangent: model, time_pairs: gap}
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
sample: {steps: 4, method: rk4, eta: 0.5, noise: 0.7, guidance: 1.5}
eval: {steps: [1, 3], methods: [heun, dopri5], num_samples: 100, draws: 2}
"""


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
    assert (cfg.model.name, cfg.model.hidden, cfg.model.depth) == ("mlp", 256, 3)
    assert (cfg.model.activation, cfg.model.time_embed_dim) == ("silu", 64)
    assert cfg.path.schedule == "linear"
    assert (cfg.path.beta_min, cfg.path.beta_max, cfg.path.n) == (0.1, 20.0, 2.0)
    assert (cfg.path.sigma_min, cfg.path.sigma_max) == (0.01, 50.0)
    assert (cfg.coupling.name, cfg.coupling.method) == ("independent", "exact")
    assert (cfg.coupling.reg, cfg.coupling.sigma) == (0.05, 0.5)
    assert (cfg.time.sampler, cfg.time.mean, cfg.time.std, cfg.time.shift) == (
        "uniform",
        0.0,
        1.0,
        1.0,
    )
    assert cfg.objective.prediction == "velocity"
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
        for key, value in got[section].items():
            # data.name, data.path and data.images exclude each other (data.labels goes
            # with images); model.name picks which of the model keys apply
            if (section, key) not in {
                ("data", "path"),
                ("data", "images"),
                ("data", "labels"),
                ("model", "name"),
            }:
                assert value != defaults[section][key], f"{section}.{key} kept its default"
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
        ("train.steps=1e3", "train", "steps", 1000),
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
        (" time.mean = -1.5", "time", "mean", -1.5),
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
                "time_frequency, init, channels"
            ],
        ),
        ("train: {step: 3}\n", (), "train.step", ["unknown key", "did you mean 'steps'?"]),
        ("data: {source: {name: moons, size: 3}}\n", (), "data.source.size", ["unknown key"]),
        (None, ("model.widht=3",), "model.widht", ["unknown key", "valid keys: name, hidden"]),
        (None, ("foo.bar=1",), "foo", ["unknown key", "valid keys: data"]),
        (None, ("train.steps.x=1",), "train.steps.x", ["unknown key", "train.steps is a value"]),
        # wrong types
        (None, ("train.steps=abc",), "train.steps", ["expected an integer > 0, got 'abc'"]),
        (None, ("train.steps=true",), "train.steps", ["expected an integer > 0, got true"]),
        (None, ("train.steps=1.5",), "train.steps", ["expected an integer > 0, got 1.5"]),
        (None, ("optim.lr=fast",), "optim.lr", ["expected a number > 0, got 'fast'"]),
        (None, ("model.time_frequency=0",), "model.time_frequency", ["expected a number > 0"]),
        (None, ("train.compile=3",), "train.compile", ["expected true or false, got 3"]),
        ("train: 5\n", (), "train", ["expected a mapping (keys: steps, batch_size"]),
        (None, ("data.source=moons",), "data.source", ["expected a mapping (keys: name) or null"]),
        (None, ("data.path=3",), "data.path", ["expected a string or null, got 3"]),
        (None, ("eval.steps=[1, x]",), "eval.steps[1]", ["expected an integer > 0, got 'x'"]),
        ("train: 5\n", ("train.steps=3",), "train", ["expected a mapping", "got 5"]),
        # out of range
        ("train: {steps: -5}\n", (), "train.steps", ["expected an integer > 0, got -5"]),
        (None, ("train.seed=-1",), "train.seed", ["expected an integer >= 0, got -1"]),
        (None, ("train.ema_decay=1.0",), "train.ema_decay", ["expected a number in [0, 1)"]),
        (None, ("optim.lr=0",), "optim.lr", ["expected a number > 0, got 0"]),
        (None, ("optim.lr=.inf",), "optim.lr", ["expected a number > 0, got inf"]),
        (None, ("optim.grad_clip=-1",), "optim.grad_clip", ["> 0 or null, got -1"]),
        (None, ("optim.betas=[0.9, 1]",), "optim.betas[1]", ["a number in [0, 1), got 1"]),
        (None, ("optim.betas=[0.9]",), "optim.betas", ["a list of 2 numbers in [0, 1)"]),
        (None, ("model.depth=0",), "model.depth", ["expected an integer > 0, got 0"]),
        (None, ("model.time_embed_dim=63",), "model.time_embed_dim", ["an even integer"]),
        (None, ("path.beta_max=0.05",), "path.beta_max", ["> path.beta_min (0.1), got 0.05"]),
        (None, ("path.sigma_min=60",), "path.sigma_max", ["> path.sigma_min (60), got 50"]),
        (None, ("eval.steps=[1, -2]",), "eval.steps[1]", ["expected an integer > 0, got -2"]),
        (None, ("eval.steps=[]",), "eval.steps", ["expected a non-empty list of integers > 0"]),
        (None, ("eval.draws=0",), "eval.draws", ["expected an integer > 0, got 0"]),
        # unknown names
        (None, ("path.schedule=foo",), "path.schedule", ["one of linear, cosine, vp, ve"]),
        (None, ("model.name=vit",), "model.name", ["expected one of mlp, unet, got 'vit'"]),
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
    assert "model.depth: expected an integer > 0, got 'x'" in message
    assert "train.steps: expected an integer > 0, got 0" in message
    assert "train.batch_size: expected an integer > 0, got -1" in message
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
    with pytest.raises(ConfigError, match=r"^config: optim\.lr: expected a number > 0, got -1$"):
        config_from_dict({"optim": {"lr": -1}})
    assert config_from_dict({}) == config_from_dict(None) == RunConfig()
    assert issubclass(ConfigError, ValueError)


def test_config_sampler_names_are_the_library_samplers() -> None:
    """The config's (torch-free) sampler names and flowmatch.sampling's list are one list."""
    from flowmatch.sampling import SAMPLE_METHODS
    from flowmatch.train.config import SAMPLER_METHODS

    assert SAMPLER_METHODS == SAMPLE_METHODS
