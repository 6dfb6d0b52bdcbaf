"""A tampered or stale model file (config.json, weights) is one ModelFileError line naming the
file and the key, before anything is built; through the CLI, exit code 2 and one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.cli import main
from flowmatch.data.tabular import Standardizer
from flowmatch.errors import ModelFileError
from flowmatch.models import registry
from flowmatch.models.files import save_model
from flowmatch.models.netsize import MAX_PARAMETERS, estimate_parameters


def _flow_dir(tmp_path):
    net = fm.models.MLP(dim=2, hidden=8, depth=1, time_embed_dim=4)
    std = Standardizer(
        mean=torch.zeros(2, dtype=torch.float64), std=torch.ones(2, dtype=torch.float64)
    )
    flow = fm.FlowModel(
        net, path=fm.AffinePath(fm.schedules.VP()), transform=std, shape=[2], info={"data": "x"}
    )
    flow.save_pretrained(tmp_path / "run" / "model")
    (tmp_path / "run" / "config.yaml").write_text("{}\n")  # a run of the defaults (for eval)
    return tmp_path / "run" / "model"


def _tamper(directory, change):
    cfg = directory / "config.json"
    spec = json.loads(cfg.read_text())
    change(spec)
    cfg.write_text(json.dumps(spec))
    return cfg


def _one_line_naming(err, cfg, key):
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"{cfg}: {key}"), text


CASES = {
    "prediction": (lambda s: s.update(prediction="foo"), "prediction: expected one of velocity"),
    "source_dict": (lambda s: s.update(source={"a": 1}), "source: expected one of"),
    "shape": (lambda s: s.update(shape=[3]), "shape: expected [2]"),
    "shape_type": (lambda s: s.update(shape="x"), "shape: expected a non-empty list"),
    "zero_std": (lambda s: s["standardizer"].update(std=[0.0, 1.0]), "standardizer.std"),
    "std_length": (lambda s: s["standardizer"].update(std=[1.0]), "standardizer.std"),
    "hidden": (lambda s: s["arch"].update(hidden=10**9), "arch.hidden: expected an integer"),
    "depth": (lambda s: s["arch"].update(depth=10**7), "arch.depth: expected an integer"),
    "too_big": (
        lambda s: s["arch"].update(hidden=60000, depth=1000),
        "arch: the 'mlp' network would have about",
    ),
    "arch_string": (lambda s: s["arch"].update(hidden="16"), "arch.hidden: expected an integer"),
    "arch_unknown_key": (lambda s: s["arch"].update(widht=3), "arch.widht: unknown key"),
    "arch_name": (lambda s: s["arch"].update(name="nope"), "arch.name: unknown model 'nope'"),
    "arch_not_mapping": (lambda s: s.update(arch="mlp"), "arch: expected a mapping"),
    "vp_missing": (lambda s: s.update(path={"schedule": "vp"}), "path: missing key 'beta_min'"),
    "vp_one_missing": (lambda s: s["path"].pop("eps"), "path: missing key 'eps'"),
    "path_extra": (lambda s: s["path"].update(beta=1.0), "path.beta: unknown key"),
    "path_no_schedule": (lambda s: s["path"].pop("schedule"), "path: missing key 'schedule'"),
    "path_schedule": (lambda s: s["path"].update(schedule="nope"), "path.schedule: expected"),
    "path_order": (lambda s: s["path"].update(beta_max=0.05), "path: VP: beta_max"),
    "two_times_type": (lambda s: s.update(two_times="yes"), "two_times: expected true or false"),
    "two_times_net": (lambda s: s.update(two_times=True), "two_times: expected false"),
    "num_classes": (lambda s: s.update(num_classes="x"), "num_classes: expected an integer"),
    "null_class": (lambda s: s.update(num_classes=2, null_class=5), "null_class: expected"),
    "misspelt": (lambda s: s.update(predictoin="x1"), "predictoin: unknown key (did you mean"),
    "missing": (lambda s: s.pop("prediction"), "missing key 'prediction'"),
    "version": (lambda s: s.update(format_version=2), "format_version: expected"),
    "nan_std": (lambda s: s["standardizer"].update(std=[1e400, 1.0]), "standardizer.std"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_config_is_one_line_naming_the_file_and_key(tmp_path, case):
    change, needle = CASES[case]
    cfg = _tamper(_flow_dir(tmp_path), change)
    with pytest.raises(ModelFileError) as err:
        fm.load(tmp_path / "run")
    key = needle.split(":")[0] if ":" in needle else ""
    _one_line_naming(err.value, cfg, key)
    assert needle in str(err.value)


@pytest.mark.parametrize("case", ["prediction", "hidden", "depth", "vp_missing", "shape"])
@pytest.mark.parametrize("command", ["sample", "likelihood", "eval"])
def test_the_cli_exits_2_with_one_line(tmp_path, capsys, case, command):
    change, needle = CASES[case]
    cfg = _tamper(_flow_dir(tmp_path), change)
    np.save(tmp_path / "d.npy", np.zeros((4, 2), np.float32))
    argv = {
        "sample": ["sample", str(cfg.parent), "--num", "4", "--out", str(tmp_path / "s.npy")],
        "likelihood": ["likelihood", str(cfg.parent), str(tmp_path / "d.npy")],
        "eval": ["eval", str(tmp_path / "run")],
    }[command]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and str(cfg) in err[0] and needle in err[0], err
    assert not (tmp_path / "s.npy").exists()


def test_a_good_model_still_loads_and_save_writes_every_schedule_parameter(tmp_path):
    directory = _flow_dir(tmp_path)
    model = fm.load(directory)
    assert model.flow_path.schedule == fm.schedules.VP() and model.shape == (2,)
    spec = {
        "arch": {"name": "mlp", "dim": 2, "hidden": 8, "depth": 1, "time_embed_dim": 4},
        "path": {"schedule": "vp", "beta_min": 0.2},  # by hand: the rest are the defaults
        "prediction": "velocity",
    }
    net = fm.models.MLP(dim=2, hidden=8, depth=1, time_embed_dim=4)
    save_model(tmp_path / "h", spec, net)
    written = json.loads((tmp_path / "h" / "config.json").read_text())["path"]
    assert written == {"schedule": "vp", "beta_min": 0.2, "beta_max": 20.0, "eps": 1e-05}
    assert fm.load(tmp_path / "h").flow_path.schedule == fm.schedules.VP(beta_min=0.2)


def test_save_refuses_what_load_would_refuse(tmp_path):
    net = fm.models.MLP(dim=2, hidden=8, depth=1, time_embed_dim=4)
    bad = {"arch": registry.architecture(net), "path": {"schedule": "linear"}, "prediction": "y"}
    with pytest.raises(ModelFileError, match=r"cannot save the model .*prediction"):
        save_model(tmp_path / "b", bad, net)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("weights", ["ema", "model"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_file_tensor_and_count(tmp_path, weights, bad):
    from safetensors.torch import load_file, save_file

    directory = _flow_dir(tmp_path)
    file = directory / f"{weights}.safetensors"
    state = load_file(str(file))
    name = "net.2.weight"
    state[name][0, :3] = bad
    save_file(state, str(file))
    with pytest.raises(ModelFileError) as err:
        fm.load(directory, weights=weights)
    text = str(err.value)
    assert text.startswith(f"{file}: tensor '{name}' holds 3 NaN/Inf values of 16")
    assert "\n" not in text


def test_non_finite_ema_weights_exit_2_through_sample(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    directory = _flow_dir(tmp_path)
    file = directory / "ema.safetensors"
    state = {k: torch.full_like(v, float("nan")) for k, v in load_file(str(file)).items()}
    save_file(state, str(file))
    with pytest.raises(SystemExit) as exc:
        main(["sample", str(directory), "--num", "10", "--out", str(tmp_path / "s.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "ema.safetensors" in err[0]
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("change", ["renamed", "reshaped"])
def test_weights_of_another_shape_or_name_are_one_line(tmp_path, change):
    from safetensors.torch import load_file, save_file

    directory = _flow_dir(tmp_path)
    file = directory / "ema.safetensors"
    state = load_file(str(file))
    if change == "renamed":
        state["net.9.weight"] = state.pop("net.2.weight")
    else:
        state["net.2.weight"] = torch.zeros(3, 3)
    save_file(state, str(file))
    with pytest.raises(ModelFileError, match="do not match the architecture") as err:
        fm.load(directory)
    assert str(err.value).startswith(str(file)) and "\n" not in str(err.value)


@registry.register("_test_fails_to_build")
class _FailsToBuild(nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        if width > 2:
            raise RuntimeError("out of cheese\nsecond line")
        self.lin = nn.Linear(width, width)

    def forward(self, x, t):
        return self.lin(x)


def test_a_registered_network_that_fails_to_build_is_named(tmp_path):
    fm.FlowModel(_FailsToBuild(), shape=[2]).save_pretrained(tmp_path / "m")
    cfg = _tamper(tmp_path / "m", lambda s: s["arch"].update(width=3))
    with pytest.raises(ModelFileError) as err:
        fm.load(tmp_path / "m")
    text = str(err.value)
    assert text.startswith(f"{cfg}: arch: building model '_test_fails_to_build' failed")
    assert "RuntimeError: out of cheese second line" in text


def test_a_registered_networks_arguments_are_its_own(tmp_path):
    fm.FlowModel(_FailsToBuild(), shape=[2]).save_pretrained(tmp_path / "m")
    _tamper(tmp_path / "m", lambda s: s["arch"].update(height=3))
    with pytest.raises(ModelFileError, match=r"config\.json: arch: model '_test_fails_to_build'"):
        fm.load(tmp_path / "m")


def test_deeply_nested_json_is_one_line(tmp_path):
    directory = _flow_dir(tmp_path)
    (directory / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="not a valid JSON model config"):
        fm.load(directory)


# ------------------------------------------------------------------ other kinds of model


def _discrete_dir(tmp_path):
    import flowmatch.discrete as fd
    from flowmatch.models.transformer import SequenceTransformer

    net = SequenceTransformer(4, vocab_size=6, out_size=5, dim=8, depth=1, heads=2)
    fd.DiscreteFlowModel(net, fd.MixturePath(5), length=4).save_pretrained(tmp_path / "d")
    return tmp_path / "d"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            lambda s: s["path"].update(kappa={"schedule": "polynomial"}),
            "path.kappa: missing key 'n'",
        ),
        (lambda s: s["path"]["kappa"].update(k=1), "path.kappa.k: unknown key"),
        (lambda s: s["path"].update(extra=1), "path.extra: unknown key"),
        (lambda s: s.update(length=5), "length: expected 4 (arch.length)"),
        (lambda s: s["arch"].update(depth=10**6), "arch.depth"),
    ],
)
def test_a_tampered_discrete_model_file(tmp_path, change, needle):
    cfg = _tamper(_discrete_dir(tmp_path), change)
    with pytest.raises(ModelFileError) as err:
        fm.load(cfg.parent)
    assert str(err.value).startswith(f"{cfg}: {needle}"), str(err.value)


def test_a_tampered_mixed_model_file(tmp_path):
    import flowmatch.discrete as fd
    from flowmatch.models.mixed_mlp import MixedMLP

    std = Standardizer(
        mean=torch.zeros(2, dtype=torch.float64), std=torch.ones(2, dtype=torch.float64)
    )
    model = fd.MixedFlowModel(MixedMLP(2, [3], hidden=8, depth=1), num_continuous=2,
                              vocab_sizes=[3], standardizer=std)  # fmt: skip
    model.save_pretrained(tmp_path / "x")
    for change, needle in [
        (lambda s: s["kappa"].update(schedule="vp"), "kappa: missing key 'beta_min'"),
        (lambda s: s["standardizer"].update(mean=[0.0], std=[1.0]), "standardizer.mean"),
        (lambda s: s.update(vocab_sizes=[4]), "vocab_sizes: expected [3]"),
    ]:
        model.save_pretrained(tmp_path / "x")
        cfg = _tamper(tmp_path / "x", change)
        with pytest.raises(ModelFileError) as err:
            fm.load(tmp_path / "x")
        assert str(err.value).startswith(f"{cfg}: {needle}"), str(err.value)


def test_a_tampered_manifold_model_file(tmp_path):
    from flowmatch.manifolds import ManifoldFlowModel, Sphere

    sphere = Sphere(2)
    net = fm.models.MLP(dim=sphere.feature_dim, out_dim=sphere.ambient_dim, hidden=8, depth=1)
    for change, needle in [
        (lambda s: s.update(path={"schedule": "polynomial"}), "path: missing key 'n'"),
        (lambda s: s.update(manifold={"name": "klein"}), "manifold: unknown manifold"),
        (lambda s: s["manifold"].update(dim=5), "arch.dim: expected"),
        (lambda s: s["arch"].update(hidden=-1), "arch.hidden"),
    ]:
        ManifoldFlowModel(net, sphere).save_pretrained(tmp_path / "s")
        cfg = _tamper(tmp_path / "s", change)
        with pytest.raises(ModelFileError) as err:
            fm.load(tmp_path / "s")
        assert str(err.value).startswith(f"{cfg}: {needle}"), str(err.value)


# ------------------------------------------------------------------ the size estimate


@pytest.mark.parametrize(
    "arch",
    [
        {"name": "mlp", "dim": 3, "fourier_features": 4, "two_times": True, "out_dim": 5},
        {"name": "mixed_mlp", "num_continuous": 2, "vocab_sizes": [3, 4]},
        {"name": "unet", "channels": 3, "size": 16, "base": 16, "multipliers": [1, 2],
         "num_res_blocks": 2, "attention_resolutions": [8], "num_classes": 4},
        {"name": "transformer", "length": 8, "vocab_size": 30, "dim": 16, "depth": 2},
    ],
)  # fmt: skip
def test_the_parameter_estimate_is_close_to_the_built_network(arch):
    net = registry.build(arch)
    actual = sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers())
    assert abs(estimate_parameters(arch) - actual) <= 0.02 * actual
    assert MAX_PARAMETERS == 2**31
