import pytest
import torch

import flowmatch as fm
from flowmatch.models.files import build_model
from flowmatch.models.unet import _Attention

UNet = fm.models.UNet


def randomise_output(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give the zero-initialised last convolution random weights, so the output depends on the
    rest of the network."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.conv_out.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


MULTIPLIERS = {8: (1, 2), 16: (1, 2, 2), 32: (1, 2, 2), 64: (1, 1, 2, 2)}


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_zero_init_and_dependence_on_x_and_t(channels, size):
    model = UNet(channels, size, base=8, groups=4, multipliers=MULTIPLIERS[size])
    x, t = torch.randn(2, channels, size, size), torch.rand(2)
    out = model(x, t)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))  # the last conv starts at zero
    randomise_output(model)
    out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x + 0.5 * torch.randn_like(x), t))
    assert not torch.allclose(out, model(x, 1.0 - t))


def test_gradients_reach_every_parameter():
    model = UNet(
        1,
        8,
        base=16,
        multipliers=(1, 2),
        num_res_blocks=2,
        attention_resolutions=(8, 4),
        num_classes=3,
        two_times=True,
    )
    randomise_output(model)
    x, t = torch.randn(6, 1, 8, 8, requires_grad=True), torch.rand(6)
    cond = torch.tensor([0, 1, 2, 0, 1, 2])
    model(x, t, cond=cond, t_end=torch.rand(6)).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if name == "class_embed.weight":
            # Rows of the labels used get gradient; the unused null row gets none.
            assert (p.grad[:3].abs().sum(dim=1) > 0).all()
            assert torch.equal(p.grad[model.null_class], torch.zeros_like(p.grad[0]))
        else:
            assert p.grad.abs().sum() > 0, name


def test_class_conditioning():
    model = randomise_output(UNet(1, 8, base=16, num_classes=4))
    assert model.null_class == 4
    assert model.class_embed.num_embeddings == 5
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    outs = [model(x, t, cond=torch.full((3,), k)) for k in range(5)]
    for i in range(5):
        for j in range(i):
            assert not torch.allclose(outs[i], outs[j]), (i, j)
    torch.testing.assert_close(model(x, t), outs[4], rtol=0, atol=0)
    # Each sample sees only its own label: a mixed batch equals the per-label evaluations.
    mixed = model(x, t, cond=torch.tensor([0, 4, 2]))
    torch.testing.assert_close(mixed, torch.stack([outs[0][0], outs[4][1], outs[2][2]]))
    # Other integer dtypes are labels too.
    torch.testing.assert_close(model(x, t, cond=torch.full((3,), 2, dtype=torch.int32)), outs[2])


def test_two_times():
    model = randomise_output(UNet(1, 8, base=16, two_times=True))
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    out = model(x, t)
    torch.testing.assert_close(out, model(x, t, t_end=t.clone()), rtol=0, atol=0)
    assert not torch.allclose(out, model(x, t, t_end=torch.ones(4)))


@pytest.mark.parametrize("side", [8, 4])
def test_attention_runs_at_the_listed_resolution(side):
    torch.manual_seed(2)
    model = randomise_output(UNet(1, 8, base=16, multipliers=(1, 2), attention_resolutions=(side,)))
    blocks = [m for m in model.modules() if isinstance(m, _Attention)]
    # One per down block and two per up block at that side; the middle block at side 4 too.
    assert len(blocks) == (3 if side == 8 else 4)
    seen = []
    for block in blocks:
        block.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape[2:])))
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    out = model(x, t)
    assert seen == [(side, side)] * len(blocks)
    # With a zero output projection, attention is the identity: the network is then exactly the
    # same network without attention. With its random projection, the output differs.
    plain = UNet(1, 8, base=16, multipliers=(1, 2))
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected and all("attn" in k for k in unexpected)
    assert not torch.allclose(out, plain(x, t))
    with torch.no_grad():
        for block in blocks:
            block.proj.weight.zero_()
            block.proj.bias.zero_()
    torch.testing.assert_close(model(x, t), plain(x, t))


def test_deterministic_given_seed_and_dropout_only_in_training():
    def make(seed):
        torch.manual_seed(seed)
        return randomise_output(UNet(3, 16, base=8, multipliers=(1, 2), num_classes=2, dropout=0.5))

    a, b, c = make(3), make(3), make(4)
    x, t, cond = torch.randn(2, 3, 16, 16), torch.rand(2), torch.tensor([0, 1])
    a.eval(), b.eval(), c.eval()
    torch.testing.assert_close(a(x, t, cond=cond), b(x, t, cond=cond), rtol=0, atol=0)
    assert not torch.allclose(a(x, t, cond=cond), c(x, t, cond=cond))
    a.train()
    assert not torch.allclose(a(x, t, cond=cond), a(x, t, cond=cond))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0}, "channels"),
        ({"channels": 1.0}, "channels"),
        ({"size": 7}, "size"),
        ({"size": 65}, "size"),
        ({"size": 12, "multipliers": (1, 2, 2, 2)}, "size 12 must be divisible"),
        ({"base": 0}, "base"),
        ({"multipliers": ()}, "multipliers"),
        ({"multipliers": (1, 0)}, "multipliers"),
        ({"multipliers": "12"}, "multipliers"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"attention_resolutions": (16,)}, "attention_resolutions"),
        ({"attention_resolutions": (2,)}, "attention_resolutions"),
        ({"attention_resolutions": 8}, "attention_resolutions"),
        ({"groups": 5}, "groups"),
        ({"groups": 0}, "groups"),
        ({"base": 12, "groups": 8}, "groups"),
        ({"time_embed_dim": 7}, "time_embed_dim"),
        ({"num_classes": 0}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"two_times": "yes"}, "two_times"),
        ({"time_frequency": 0.0}, "time_frequency"),
        ({"time_frequency": float("inf")}, "time_frequency"),
        ({"time_frequency": "10"}, "time_frequency"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"channels": 1, "size": 8, "base": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        UNet(**args)


def test_bad_inputs():
    model = UNet(1, 8, base=16)
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    for bad_x in (torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 9), torch.randn(1, 8, 8)):
        with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
            model(bad_x, t)
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        model(x, torch.rand(2, 1))
    with pytest.raises(ValueError, match="cond needs a class-conditional model"):
        model(x, t, cond=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="t_end needs a two_times model"):
        model(x, t, t_end=torch.rand(2))

    cond_model = UNet(1, 8, base=16, num_classes=3)
    for labels in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"cond labels must be in \[0, 3\]"):
            cond_model(x, t, cond=torch.tensor(labels))
    with pytest.raises(ValueError, match="cond must hold integer class labels"):
        cond_model(x, t, cond=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"cond must have shape \(2,\)"):
        cond_model(x, t, cond=torch.tensor([[0], [1]]))

    two = UNet(1, 8, base=16, two_times=True)
    with pytest.raises(ValueError, match=r"t_end must have shape \(2,\)"):
        two(x, t, t_end=torch.rand(3))


def test_build_model_from_a_json_config():
    model = build_model({"name": "unet", "channels": 1, "size": 8, "base": 16})
    assert isinstance(model, UNet)
    assert model(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)
    # JSON turns tuples into lists; both build the same network.
    torch.manual_seed(5)
    from_json = build_model(
        {"name": "unet", "size": 8, "base": 16, "multipliers": [1, 2], "attention_resolutions": [4]}
    )
    torch.manual_seed(5)
    direct = UNet(1, 8, base=16, multipliers=(1, 2), attention_resolutions=(4,))
    assert any(isinstance(m, _Attention) for m in from_json.modules())
    a, b = from_json.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_flow_matching_training_reduces_the_loss(one_thread):
    gen = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, 2, (4, 1, 8, 8), generator=gen).float() * 2 - 1
    model = UNet(1, 8, base=16)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    loss_fn = fm.FlowMatchingLoss()
    losses = []
    for _ in range(60):
        x1 = patterns[torch.randint(0, 4, (32,), generator=gen)]
        loss = loss_fn(model, x1, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert first > 1.5  # an untrained model predicts 0; E|x1 - x0|^2 per pixel is 2
    assert last < 0.7 * first, (first, last)
