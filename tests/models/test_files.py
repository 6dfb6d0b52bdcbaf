import json

import pytest
import torch

import flowmatch as fm
from flowmatch.models.files import ModelFileError, save_model

SPEC = {
    "arch": {
        "name": "mlp",
        "dim": 2,
        "hidden": 16,
        "depth": 2,
        "activation": "silu",
        "time_embed_dim": 8,
    },
    "path": {"schedule": "vp", "beta_min": 0.1, "beta_max": 20.0},
    "prediction": "epsilon",
}


def _saved(tmp_path):
    model = fm.models.MLP(dim=2, hidden=16, depth=2, time_embed_dim=8)
    ema = fm.models.MLP(dim=2, hidden=16, depth=2, time_embed_dim=8)
    save_model(tmp_path / "model", SPEC, model, ema)
    return model, ema


def test_save_load_gives_identical_outputs(tmp_path):
    model, ema = _saved(tmp_path)
    x, t = torch.randn(5, 2), torch.rand(5)
    loaded = fm.load(tmp_path)  # a run dir holding model/
    torch.testing.assert_close(loaded(x, t), ema(x, t), rtol=0, atol=0)
    raw = fm.load(tmp_path / "model", weights="model")
    torch.testing.assert_close(raw(x, t), model(x, t), rtol=0, atol=0)
    assert loaded.prediction == "epsilon"
    assert loaded.flow_path.schedule == fm.schedules.VP(0.1, 20.0)
    assert not loaded.training


def test_corrupted_weights_are_named(tmp_path):
    _saved(tmp_path)
    (tmp_path / "model" / "ema.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelFileError, match=r"ema\.safetensors"):
        fm.load(tmp_path)


def test_mismatched_architecture_is_named(tmp_path):
    _saved(tmp_path)
    cfg = tmp_path / "model" / "config.json"
    spec = json.loads(cfg.read_text())
    spec["arch"]["hidden"] = 32
    cfg.write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        fm.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not a valid JSON"),
        ('{"format_version": 99}', "format_version"),
        ('{"format_version": 1, "arch": {}}', "missing key"),
    ],
)
def test_bad_config_json_is_named(tmp_path, content, needle):
    _saved(tmp_path)
    (tmp_path / "model" / "config.json").write_text(content)
    with pytest.raises(ModelFileError, match=needle):
        fm.load(tmp_path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not a run or model directory"):
        fm.load(tmp_path)
    with pytest.raises(ValueError, match="weights"):
        fm.load(tmp_path, weights="best")


def test_files_without_time_frequency_load_with_the_old_embedding(tmp_path):
    """A model file written before time_frequency existed (its arch has no such key) was
    trained with the 1000-rad embedding, two-time models included: it loads with that one."""
    spec = {**SPEC, "arch": {**SPEC["arch"], "two_times": True}}
    old = fm.models.MLP(
        dim=2, hidden=16, depth=2, time_embed_dim=8, two_times=True, time_frequency=1000.0
    )
    save_model(tmp_path / "model", spec, old, old)
    loaded = fm.load(tmp_path)
    assert isinstance(loaded, fm.FlowModel) and loaded.two_times
    assert loaded.net.time_frequency == 1000.0
    x, t = torch.randn(5, 2), torch.rand(5)
    torch.testing.assert_close(loaded(x, t, t_end=t + 0.2), old(x, t, t_end=t + 0.2))
