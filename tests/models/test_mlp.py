import pytest
import torch

import flowmatch as fm
from flowmatch.models import MLP, UNet


@pytest.mark.parametrize("activation", ["silu", "gelu", "relu", "tanh"])
@pytest.mark.parametrize(("dim", "depth"), [(2, 1), (5, 3)])
def test_shapes_and_gradients(activation, dim, depth):
    model = fm.models.MLP(dim=dim, hidden=32, depth=depth, activation=activation)
    x, t = torch.randn(7, dim, requires_grad=True), torch.rand(7)
    out = model(x, t)
    assert out.shape == (7, dim)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert n_linear == depth + 1


def test_output_depends_on_time_and_init_is_seeded():
    torch.manual_seed(0)
    a = fm.models.MLP(dim=2, hidden=16, depth=2)
    torch.manual_seed(0)
    b = fm.models.MLP(dim=2, hidden=16, depth=2)
    x = torch.randn(4, 2)
    t0, t1 = torch.zeros(4), torch.full((4,), 0.5)
    torch.testing.assert_close(a(x, t0), b(x, t0))
    assert not torch.allclose(a(x, t0), a(x, t1))


def test_time_embedding_distinguishes_nearby_times():
    emb = fm.models.SinusoidalTimeEmbedding(64)
    e = emb(torch.tensor([0.0, 0.001, 0.5, 1.0]))
    assert e.shape == (4, 64)
    # Features of t and t + 1e-3 differ (highest frequency 1000 rad per unit time).
    assert (e[0] - e[1]).abs().max() > 0.5
    with pytest.raises(ValueError, match="dim"):
        fm.models.SinusoidalTimeEmbedding(3)


def test_bad_input():
    with pytest.raises(ValueError, match="activation"):
        fm.models.MLP(dim=2, activation="swish")
    with pytest.raises(ValueError, match="depth"):
        fm.models.MLP(dim=2, depth=0)
    model = fm.models.MLP(dim=2, hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        model(torch.randn(3, 3), torch.rand(3))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        model(torch.randn(3, 2), torch.rand(3, 1))


@pytest.mark.parametrize(
    ("build", "one_time"),
    [
        (lambda **kw: MLP(dim=2, hidden=8, depth=1, **kw), 1000.0),
        (lambda **kw: UNet(1, 8, base=8, groups=4, **kw), 1000.0),
    ],
    ids=["mlp", "unet"],
)
def test_time_frequency_defaults_and_choice(build, one_time):
    """The embedding's top frequency: 1000 rad for one-time models, 10 for two-time (MeanFlow)
    models, or the value given; anything but a finite number > 0 is refused by name."""
    assert build().time_frequency == one_time
    assert build().time_embed.freqs.max().item() == pytest.approx(one_time)
    assert build(two_times=True).time_frequency == 10.0
    model = build(two_times=True, time_frequency=3.0)
    assert model.time_frequency == 3.0
    assert model.time_embed.freqs.max().item() == pytest.approx(3.0)
    for bad in (0, -1.0, float("nan"), True, "10"):
        with pytest.raises(ValueError, match="time_frequency"):
            build(time_frequency=bad)
