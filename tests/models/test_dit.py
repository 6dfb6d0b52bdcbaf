"""The diffusion transformer (DiT): shapes, adaLN-Zero start, conditioning, arguments, files."""

import json

import pytest
import torch

import flowmatch as fm
from flowmatch.errors import ModelFileError
from flowmatch.models import registry
from flowmatch.models.dit import sincos_positions
from flowmatch.models.files import build_model
from flowmatch.models.netsize import estimate_parameters

DiT = fm.models.DiT

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_output(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every zero-initialised layer (the adaLN modulations and the output projection)
    random weights, so the output depends on the whole network."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("out.", "ada_out.")) or ".ada." in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize(
    ("channels", "size", "patch"),
    [(1, 8, 1), (1, 8, 2), (1, 8, 8), (3, 16, 4), (1, 28, 2), (1, 28, 7), (3, 12, 3)],
)
@pytest.mark.parametrize("positions", ["sincos", "learned"])
def test_shape_zero_init_and_dependence_on_x_and_t(channels, size, patch, positions):
    model = DiT(channels, size, patch=patch, dim=16, depth=2, heads=2, positions=positions)
    x, t = torch.randn(3, channels, size, size), torch.rand(3)
    out = model(x, t)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))  # adaLN-Zero: exactly zero at init
    randomise_output(model)
    out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x + 0.5 * torch.randn_like(x), t))
    assert not torch.allclose(out, model(x, 1.0 - t))


@pytest.mark.parametrize(("channels", "patch"), [(1, 2), (3, 4)])
def test_tokens_map_back_to_their_own_patch(channels, patch):
    # With the blocks at their zero start (identity) each output patch is a function of its
    # input patch alone: a pixel changes exactly the outputs of the patch that holds it.
    model = DiT(channels, 16, patch=patch, dim=16, depth=1, heads=2)
    with torch.no_grad():
        model.out.weight.normal_()
    x, t = torch.randn(1, channels, 16, 16), torch.rand(1)
    y = x.clone()
    y[0, -1, 5, 9] += 1.0
    changed = (model(y, t) - model(x, t)).abs().amax(dim=1)[0] > 0
    expected = torch.zeros(16, 16, dtype=torch.bool)
    r, c = 5 // patch * patch, 9 // patch * patch
    expected[r : r + patch, c : c + patch] = True
    assert torch.equal(changed, expected)


def test_sincos_positions():
    pos = sincos_positions(4, 8)
    assert pos.shape == (16, 8) and pos.dtype == torch.float32
    assert torch.equal(pos[0], torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]))
    # row-major tokens: position 5 is row 1, column 1; the row features lead, then the column's
    torch.testing.assert_close(pos[5, :4], pos[5, 4:])
    torch.testing.assert_close(pos[4, :4], pos[5, :4])  # same row 1
    assert len({tuple(p.tolist()) for p in pos}) == 16  # all different
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_positions(4, 6)
    model = DiT(1, 8, patch=2, dim=16, depth=1, heads=2)
    assert "pos_buffer" not in model.state_dict()  # fixed: rebuilt, not saved
    learned = DiT(1, 8, patch=2, dim=16, depth=1, heads=2, positions="learned")
    assert learned.state_dict()["pos_embed"].shape == (16, 16)


def test_every_parameter_learns_within_three_steps():
    # adaLN-Zero: the first step can only move the output layer (every other gradient passes
    # through its zero weights), the second the modulations, the third the blocks' attention
    # and MLPs; after three optimizer steps every parameter gets a gradient and has moved.
    torch.manual_seed(0)
    model = DiT(1, 8, patch=2, dim=16, depth=2, heads=2, num_classes=3, two_times=True)
    model.train()
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, t, cond = torch.randn(6, 1, 8, 8), torch.rand(6), torch.tensor([0, 1, 2, 0, 1, 3])
    t_end = torch.rand(6)
    moved_after = []
    for _ in range(4):
        opt.zero_grad()
        (model(x, t, cond=cond, t_end=t_end) - x).square().mean().backward()
        grads = {k: p.grad for k, p in model.named_parameters()}
        opt.step()
        moved_after.append({k for k, p in model.named_parameters() if not torch.equal(p, start[k])})
    assert moved_after[0] == {"out.weight", "out.bias"}
    everything = set(start)
    assert moved_after[2] == everything
    for name, grad in grads.items():  # the fourth step's gradients
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


def test_class_conditioning_and_the_null_class():
    model = randomise_output(DiT(1, 8, patch=2, dim=16, depth=2, heads=2, num_classes=4))
    assert model.null_class == 4 and model.class_embed.num_embeddings == 5
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    outs = [model(x, t, cond=torch.full((3,), k)) for k in range(5)]
    for i in range(5):
        for j in range(i):
            assert not torch.allclose(outs[i], outs[j]), (i, j)
    torch.testing.assert_close(model(x, t), outs[4], rtol=0, atol=0)  # None = the null class
    mixed = model(x, t, cond=torch.tensor([0, 4, 2]))
    torch.testing.assert_close(mixed, torch.stack([outs[0][0], outs[4][1], outs[2][2]]))


def test_two_times():
    model = randomise_output(DiT(1, 8, patch=2, dim=16, depth=1, heads=2, two_times=True))
    assert model.time_frequency == 10.0  # the two-time default, as the U-Net's
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    out = model(x, t)
    torch.testing.assert_close(out, model(x, t, t_end=t.clone()), rtol=0, atol=0)
    assert not torch.allclose(out, model(x, t, t_end=torch.ones(4)))


def test_dropout_only_in_training():
    model = randomise_output(DiT(1, 8, patch=2, dim=16, depth=2, heads=2, dropout=0.5))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    model.eval()
    torch.testing.assert_close(model(x, t), model(x, t), rtol=0, atol=0)
    model.train()
    assert not torch.allclose(model(x, t), model(x, t))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0}, "channels must be an integer >= 1"),
        ({"size": 7}, r"size must be an integer in \[8, 64\]"),
        ({"size": 65}, "size"),
        ({"size": 28, "patch": 3},
         r"patch=3 must divide the image side size=28 \(one of \[1, 2, 4, 7, 14, 28\]\)"),
        ({"patch": 16}, "patch=16 must divide"),
        ({"patch": 0}, "patch must be an integer >= 1"),
        ({"patch": 2.0}, "patch"),
        ({"dim": 30, "heads": 4}, "dim=30 must be divisible by heads=4"),
        ({"dim": 18, "heads": 3}, "positions='sincos' needs dim divisible by 4"),
        ({"depth": 0}, "depth"),
        ({"heads": 0}, "heads"),
        ({"positions": "rotary"}, "positions must be one of"),
        ({"mlp_ratio": 0}, "mlp_ratio"),
        ({"mlp_ratio": float("nan")}, "mlp_ratio"),
        ({"dropout": 1.0}, "dropout"),
        ({"time_embed_dim": 7}, "time_embed_dim"),
        ({"time_frequency": 0.0}, "time_frequency"),
        ({"num_classes": 0}, "num_classes"),
        ({"two_times": 1}, "two_times must be a bool"),
    ],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    args = {"channels": 1, "size": 8, "dim": 16, "heads": 2, **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        DiT(**args)
    assert "\n" not in str(err.value)


def test_positions_learned_allows_any_dim_divisible_by_heads():
    model = DiT(1, 8, patch=4, dim=18, heads=3, depth=1, positions="learned")
    assert model(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)


def test_bad_inputs():
    model = DiT(1, 8, patch=2, dim=16, depth=1, heads=2)
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    for bad_x in (torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 10), torch.randn(1, 8, 8)):
        with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
            model(bad_x, t)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        model(x, torch.rand(2, 1))
    with pytest.raises(ValueError, match="cond needs a class-conditional model"):
        model(x, t, cond=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"t_end needs a two_times model \(DiT"):
        model(x, t, t_end=torch.rand(2))
    labelled = DiT(1, 8, patch=2, dim=16, depth=1, heads=2, num_classes=3)
    with pytest.raises(ValueError, match=r"cond labels must be in \[0, 3\]"):
        labelled(x, t, cond=torch.tensor([0, 4]))
    two = DiT(1, 8, patch=2, dim=16, depth=1, heads=2, two_times=True)
    with pytest.raises(ValueError, match=r"t_end must have shape \(2,\)"):
        two(x, t, t_end=torch.rand(3))


def test_registered_and_built_from_json():
    assert registry.lookup("dit") is DiT
    arch = {"name": "dit", "channels": 3, "size": 16, "patch": 4, "dim": 32, "depth": 2,
            "heads": 4, "num_classes": 5, "positions": "learned"}  # fmt: skip
    torch.manual_seed(3)
    net = build_model(arch)
    torch.manual_seed(3)
    direct = DiT(3, 16, patch=4, dim=32, depth=2, heads=4, num_classes=5, positions="learned")
    a, b = net.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = registry.architecture(net)
    assert saved["name"] == "dit" and saved["patch"] == 4 and saved["mlp_ratio"] == 4.0


@pytest.mark.parametrize(
    "arch",
    [
        {"name": "dit", "channels": 3, "size": 16, "patch": 4, "dim": 32, "depth": 2,
         "num_classes": 4, "two_times": True},
        {"name": "dit", "size": 28, "patch": 2, "positions": "learned"},
        {"name": "dit", "size": 28, "patch": 7, "dim": 64, "mlp_ratio": 2.5},
    ],
)  # fmt: skip
def test_the_parameter_estimate_is_close_to_the_built_network(arch):
    net = registry.build(arch)
    actual = sum(p.numel() for p in net.parameters()) + sum(b.numel() for b in net.buffers())
    assert abs(estimate_parameters(arch) - actual) <= 0.02 * actual


def _saved(tmp_path, **kwargs):
    net = randomise_output(DiT(1, 8, patch=2, dim=16, depth=2, heads=2, num_classes=10, **kwargs))
    flow = fm.FlowModel(net, path=fm.AffinePath(fm.schedules.Linear()), num_classes=10,
                        shape=[1, 8, 8], two_times=net.two_times)  # fmt: skip
    flow.save_pretrained(tmp_path / "m")
    return flow, tmp_path / "m"


@pytest.mark.parametrize("kwargs", [{}, {"positions": "learned", "two_times": True}])
def test_save_and_load_round_trip(tmp_path, kwargs):
    flow, directory = _saved(tmp_path, **kwargs)
    loaded = fm.load(directory)
    assert isinstance(loaded.net, DiT) and loaded.null_class == 10
    assert loaded.two_times == flow.two_times and loaded.shape == (1, 8, 8)
    x, t, cond = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 3, 9, 10])
    flow.net.eval()
    torch.testing.assert_close(loaded.net(x, t, cond=cond), flow.net(x, t, cond=cond))
    x0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    guidance = None if flow.two_times else 2.0  # MeanFlow jumps take no guidance
    a = fm.sample(loaded, x0, steps=2, cond=cond.clamp(max=9), guidance=guidance)
    b = fm.sample(flow, x0, steps=2, cond=cond.clamp(max=9), guidance=guidance)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda a: a.update(patch=3), "arch: model 'dit': patch=3 must divide the image side"),
        (lambda a: a.update(patch=0), "arch.patch: expected an integer"),
        (lambda a: a.update(patch="2"), "arch.patch: expected an integer"),
        (lambda a: a.update(heads=3), "arch: model 'dit': dim=16 must be divisible by heads=3"),
        (lambda a: a.update(positions="rotary"), "arch.positions: expected one of"),
        (lambda a: a.update(mlp_ratio=-1.0), "arch.mlp_ratio"),
        (lambda a: a.update(dropout=1.5), "arch.dropout"),
        (lambda a: a.update(size=128), "arch.size"),
        (lambda a: a.update(base=32), "arch.base: unknown key"),
        (lambda a: a.update(dim=65536, depth=1024), "arch: the 'dit' network would have about"),
        (
            lambda a: a.update(two_times=True),
            "two_times: expected true (arch.two_times), got false",
        ),
    ],
)
def test_the_model_file_schema_refuses_bad_dit_fields(tmp_path, change, needle):
    _, directory = _saved(tmp_path)
    cfg = directory / "config.json"
    spec = json.loads(cfg.read_text())
    change(spec["arch"])
    cfg.write_text(json.dumps(spec))
    with pytest.raises(ModelFileError) as err:
        fm.load(directory)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{cfg}: {needle}"), text


def test_the_model_file_shape_must_match_the_dit(tmp_path):
    _, directory = _saved(tmp_path)
    cfg = directory / "config.json"
    spec = json.loads(cfg.read_text())
    spec["shape"] = [1, 16, 16]
    cfg.write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match=r"shape: expected \[1, 8, 8\]"):
        fm.load(directory)


def test_flow_matching_training_reduces_the_loss():
    gen = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, 2, (4, 1, 8, 8), generator=gen).float() * 2 - 1
    model = DiT(1, 8, patch=2, dim=32, depth=2, heads=4)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = fm.FlowMatchingLoss()
    losses = []
    for _ in range(150):  # measured: the last 10 losses at 0.74x the first 10 after 60 steps
        x1 = patterns[torch.randint(0, 4, (32,), generator=gen)]
        loss = loss_fn(model, x1, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 1.5  # an untrained model predicts 0; E|x1 - x0|^2 per pixel is 2
    assert last < 0.7 * first, (first, last)
