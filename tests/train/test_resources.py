"""Runs too large for the machine are refused before anything is allocated."""

from __future__ import annotations

import pytest
import torch

from flowmatch.errors import ConfigError
from flowmatch.train.build import check_trainable
from flowmatch.train.config import load_config
from flowmatch.train.trainer import Trainer


def test_network_larger_than_memory_is_refused_naming_the_size() -> None:
    arch = {"name": "mlp", "dim": 2, "hidden": 4096, "depth": 8}
    with pytest.raises(ConfigError) as info:
        check_trainable(arch, memory=2**30)  # a machine with 1 GiB
    message = str(info.value)
    assert message.startswith(
        "config: model: the 'mlp' network would have about 1.18e+08 parameters"
    )
    assert "needs about 2.19 GiB" in message and "this machine has 1 GiB" in message
    assert info.value.key == "model"
    check_trainable(arch, memory=2**36)  # 64 GiB: fine


def test_over_2_31_parameters_is_refused_whatever_the_memory() -> None:
    with pytest.raises(ConfigError, match="at most 2147483648 parameters"):
        check_trainable({"name": "mlp", "dim": 2, "hidden": 65536, "depth": 1024}, memory=2**60)


def test_trainer_refuses_before_building(tmp_path) -> None:
    # 60000 x 60000 x 100 would take minutes and terabytes to build; the refusal is instant
    cfg = load_config(None, ["model.hidden=60000", "model.depth=100"])
    with pytest.raises(ConfigError, match="config: model: the 'mlp' network"):
        Trainer(cfg, tmp_path / "run", progress=False, echo=lambda _m: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_a_missing_device_is_a_config_error(tmp_path) -> None:
    cfg = load_config(None, ["train.device=cuda"])
    with pytest.raises(ConfigError, match=r"^config: train\.device: 'cuda' was asked for but no"):
        Trainer(cfg, tmp_path / "run", progress=False, echo=lambda _m: None)
    assert not (tmp_path / "run").exists()
