"""The architecture registry and FlowModel files: your own network, saved and rebuilt."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.errors import ModelFileError
from flowmatch.models import registry


@fm.models.register("test-ringnet")
class RingNet(nn.Module):
    def __init__(self, dim: int = 2, width: int = 16, *, scale: float = 1.0, **extra):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, dim))
        self.scale = scale

    def forward(self, x, t, cond=None):
        return self.scale * self.body(torch.cat([x, t[:, None]], 1))


@fm.models.register("test-factory")
def make_net(dim: int = 2, hidden: int = 8) -> nn.Module:
    return fm.models.MLP(dim=dim, hidden=hidden, depth=1)


def test_instances_remember_their_arguments_defaults_included():
    arch = fm.models.architecture(RingNet(3, width=8, tag="x"))
    assert arch == {"name": "test-ringnet", "dim": 3, "width": 8, "scale": 1.0, "tag": "x"}
    arch = fm.models.architecture(make_net(hidden=4))
    assert arch == {"name": "test-factory", "dim": 2, "hidden": 4}
    # the builtins too: a file says everything, whatever later defaults become
    mlp = fm.models.architecture(fm.models.MLP(dim=2))
    assert mlp["name"] == "mlp" and mlp["hidden"] == 256 and mlp["time_frequency"] is None


def test_build_rebuilds_the_same_architecture():
    net = fm.models.build({"name": "test-ringnet", "dim": 2, "width": 12})
    assert isinstance(net, RingNet) and net.body[0].out_features == 12
    assert fm.models.architecture(net)["width"] == 12
    assert isinstance(fm.models.build("test-factory", hidden=3), fm.models.MLP)


def test_registry_errors_are_one_line_and_named():
    with pytest.raises(ValueError, match=r"unknown model 'nope' \(registered: .*test-ringnet"):
        fm.models.build({"name": "nope"})
    with pytest.raises(ValueError, match=r"model 'test-factory': bad arguments \['width'\]"):
        fm.models.build({"name": "test-factory", "width": 3})
    with pytest.raises(ValueError, match="already registered"):
        fm.models.register("test-ringnet")(make_net)
    with pytest.raises(ValueError, match="not a registered architecture"):
        fm.models.architecture(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not JSON-serializable"):
        fm.models.architecture(RingNet(width=8, tag=object()))
    with pytest.raises(ValueError, match="name"):
        fm.models.register("bad name!")


def test_save_pretrained_round_trip_keeps_weights_and_meaning(tmp_path):
    net = RingNet(width=8, scale=0.5)
    flow = fm.FlowModel(
        net,
        path=fm.AffinePath(fm.schedules.Cosine()),
        prediction="x1",
        num_classes=3,
        shape=(2,),
        info={"data": "mine", "class_names": ["a", "b", "c"]},
    )
    flow.save_pretrained(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "config.json").read_text())
    assert spec["arch"]["name"] == "test-ringnet" and spec["path"] == {"schedule": "cosine"}
    back = fm.FlowModel.from_pretrained(tmp_path / "m")
    assert isinstance(back.net, RingNet) and back.net.scale == 0.5
    assert back.path == flow.path and back.prediction == "x1" and back.shape == (2,)
    assert (back.num_classes, back.null_class) == (3, 3) and back.info["data"] == "mine"
    x, t = torch.randn(5, 2), torch.rand(5)
    torch.testing.assert_close(back(x, t), flow(x, t), rtol=0, atol=0)
    torch.testing.assert_close(back.velocity(x, t), flow.velocity(x, t), rtol=0, atol=0)


def test_a_bridge_model_file_keeps_its_path(tmp_path):
    flow = fm.FlowModel(fm.models.MLP(dim=2, hidden=8, depth=1), path=fm.BrownianBridgePath(0.3))
    flow.save_pretrained(tmp_path)
    back = fm.load(tmp_path)
    assert back.path == fm.BrownianBridgePath(0.3)


def test_saving_an_unregistered_net_says_how_to_fix_it(tmp_path):
    flow = fm.FlowModel(nn.Linear(2, 2))
    with pytest.raises(ModelFileError, match=r"register"):
        flow.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "config.json").exists()


def test_loading_a_net_registered_elsewhere_names_the_plugin(tmp_path):
    """A fresh process without the defining module: a one-line error saying how to load it;
    with the module imported as a plugin, the model loads."""
    (tmp_path / "mynets.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            import flowmatch as fm

            @fm.models.register("tiny-plugin-net")
            class Tiny(nn.Module):
                def __init__(self, dim: int = 2):
                    super().__init__()
                    self.lin = nn.Linear(dim, dim)

                def forward(self, x, t, cond=None):
                    return self.lin(x)
            """
        )
    )
    save = "import mynets, flowmatch as fm; fm.FlowModel(mynets.Tiny()).save_pretrained('m')"
    subprocess.run([sys.executable, "-c", save], cwd=tmp_path, check=True)
    probe = "import flowmatch as fm; fm.load('m')"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True)
    assert done.returncode != 0
    assert "unknown model 'tiny-plugin-net'" in done.stderr.decode() and "--plugin" in (
        done.stderr.decode()
    )
    probe = (
        "import flowmatch as fm; fm.models.load_plugin('mynets.py'); "
        "print(type(fm.load('m').net).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0 and done.stdout.decode().strip() == "Tiny", done.stderr


def test_load_plugin_errors(tmp_path):
    with pytest.raises(ValueError, match="file not found"):
        registry.load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match="cannot import 'no_such_module_xyz'"):
        registry.load_plugin("no_such_module_xyz")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="boom"):
        registry.load_plugin(str(tmp_path / "broken.py"))


def test_entry_points_of_installed_packages_register_on_first_lookup(monkeypatch):
    """An installed package lists its module in the flowmatch.models entry-point group; the
    registry imports it the first time a name is looked up (a broken one only warns)."""
    loaded = []

    class EntryPoint:
        def __init__(self, name, fn):
            self.name, self.value, self.fn = name, f"pkg:{name}", fn

        def load(self):
            return self.fn()

    def good():
        loaded.append("good")
        fm.models.register("test-from-entry-point")(make_net.__wrapped__)

    def broken():
        raise ImportError("no such thing")

    points = [EntryPoint("test-from-entry-point", good), EntryPoint("broken", broken)]
    import importlib.metadata

    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: points if group == registry.ENTRY_POINT_GROUP else [],
    )
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        assert isinstance(fm.models.build({"name": "test-from-entry-point"}), fm.models.MLP)
        assert loaded == ["good"]
    finally:
        registry._REGISTRY.pop("test-from-entry-point", None)
