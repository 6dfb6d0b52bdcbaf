"""SequenceTransformer: shapes, adaLN-Zero start, conditioning, causality, padding, rotary
positions, argument checks and the registry."""

import pytest
import torch

import flowmatch as fm
from flowmatch.models import registry
from flowmatch.models.transformer import SequenceTransformer

SMALL = {"dim": 16, "depth": 2, "heads": 2, "time_embed_dim": 8}


def tokens(**kwargs) -> SequenceTransformer:
    return SequenceTransformer(8, vocab_size=6, **{**SMALL, **kwargs})


def vectors(**kwargs) -> SequenceTransformer:
    return SequenceTransformer(8, channels=3, **{**SMALL, **kwargs})


def perturb(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give the zero-initialised layers (adaLN modulations, output) random weights, so the
    output depends on the whole network."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ada." in name or name.startswith(("ada_out.", "out.")):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("n", [8, 5])
def test_token_mode_shapes_and_zero_start(positions, n):
    torch.manual_seed(0)
    model = SequenceTransformer(8, vocab_size=7, out_size=6, positions=positions, **SMALL)
    x, t = torch.randint(0, 7, (3, n)), torch.rand(3)
    out = model(x, t)
    assert out.shape == (3, n, 6) and out.dtype == torch.float32
    assert torch.equal(out, torch.zeros(3, n, 6))  # adaLN-Zero + zero output: uniform logits
    out = perturb(model)(x, t)
    assert out.shape == (3, n, 6) and torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("n", [8, 3])
def test_continuous_mode_shapes_and_zero_start(positions, n):
    torch.manual_seed(0)
    model = vectors(positions=positions)
    x, t = torch.randn(2, n, 3), torch.rand(2)
    assert torch.equal(fm.models.call_model(model, x, t), torch.zeros_like(x))
    assert perturb(model)(x, t).shape == x.shape
    wide = vectors(positions=positions, out_size=5)
    assert wide(x, t).shape == (2, n, 5)


def test_output_depends_on_x_t_and_cond_once_trained():
    torch.manual_seed(0)
    model = perturb(tokens(num_classes=3))
    assert model.num_classes == 3 and model.null_class == 3
    x, t = torch.randint(0, 6, (4, 8)), torch.rand(4)
    cond = torch.tensor([0, 1, 2, 3])
    out = model(x, t, cond)
    assert not torch.allclose(out, model(x, 1.0 - t, cond))
    assert not torch.allclose(out, model(x, t, torch.tensor([1, 2, 0, 0])))
    assert not torch.allclose(out, model((x + 1) % 6, t, cond))
    # cond=None is the null class
    assert torch.allclose(model(x, t), model(x, t, torch.full((4,), 3)))
    # keyword cond too (what call_model passes)
    assert torch.equal(out, model(x, t, cond=cond))


def test_t_none_means_no_time_conditioning():
    torch.manual_seed(0)
    model = perturb(tokens(causal=True, num_classes=2))
    x = torch.randint(0, 6, (2, 8))
    out = model(x, None)
    assert out.shape == (2, 8, 6) and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x, None, torch.tensor([0, 1])))


def test_a_few_gradient_steps_make_the_output_depend_on_t():
    # plain SGD by hand: the first torch.optim optimizer of a process takes a second to import
    torch.manual_seed(0)
    model = vectors()
    x, t = torch.randn(8, 8, 3), torch.rand(8)
    for _ in range(3):
        model.zero_grad()
        (model(x, t) - t[:, None, None] * x).square().mean().backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    assert not torch.allclose(model(x, t), model(x, 1.0 - t))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_causal_outputs_ignore_the_future_and_bidirectional_ones_do_not(positions):
    torch.manual_seed(0)
    causal = perturb(tokens(causal=True, positions=positions))
    both = perturb(tokens(positions=positions))
    x, t = torch.randint(0, 6, (2, 8)), torch.rand(2)
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 6
    a, b = causal(x, t), causal(changed, t)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    assert not torch.allclose(both(x, t)[:, :5], both(changed, t)[:, :5])
    # with a padding mask of all True, the causal mask is still applied
    ones = torch.ones(2, 8, dtype=torch.bool)
    assert torch.allclose(causal(x, t, mask=ones), a, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_padding_does_not_reach_real_positions(causal, positions):
    torch.manual_seed(0)
    model = perturb(vectors(causal=causal, positions=positions))
    x, t = torch.randn(3, 8, 3), torch.rand(3)
    mask = torch.rand(3, 8) < 0.6
    mask[:, 0] = False  # a padded first position: a causal query 0 has no real key
    mask[2] = False  # a row of padding only
    other = torch.where(mask[..., None], x, torch.randn_like(x))
    a, b = model(x, t, mask=mask), model(other, t, mask=mask)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert torch.allclose(a[mask], b[mask], atol=1e-5)
    # without the mask the padding content does matter
    assert not torch.allclose(model(x, t)[mask], model(other, t)[mask])


def test_rotary_positions_are_relative():
    """Left-padding shifts every real position by one; with rotary positions (relative) the
    real outputs are unchanged, with learned ones (absolute) they are not."""
    torch.manual_seed(0)
    x, t = torch.randint(1, 6, (2, 7)), torch.rand(2)
    padded = torch.cat([torch.zeros(2, 1, dtype=torch.long), x], dim=1)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 0] = False
    rotary = perturb(tokens(positions="rotary"))
    assert torch.allclose(rotary(x, t), rotary(padded, t, mask=mask)[:, 1:], atol=1e-5)
    learned = perturb(tokens(positions="learned"))
    assert not torch.allclose(learned(x, t), learned(padded, t, mask=mask)[:, 1:], atol=1e-3)
    assert learned.pos_embed is not None and rotary.pos_embed is None


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    fresh = tokens()
    x, t = torch.randint(0, 6, (4, 8)), torch.rand(4)
    logits = fresh(x, t)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 6), x.reshape(-1)).backward()
    # the output layer (and the final modulation) learn from the first step
    assert fresh.out.weight.grad.abs().sum() > 0 and fresh.out.bias.grad.abs().sum() > 0
    assert all(p.grad is not None for p in fresh.parameters())
    model = perturb(tokens(num_classes=2, dropout=0.1, positions="rotary"))
    model.train()
    cond = torch.tensor([0, 1, 2, 0])
    model(x, t, cond).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    cont = perturb(vectors())
    xc = torch.randn(2, 8, 3, requires_grad=True)
    cont(xc, torch.rand(2)).square().sum().backward()
    assert xc.grad is not None and xc.grad.abs().sum() > 0
    assert all(p.grad is not None for p in cont.parameters())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"length": 0, "vocab_size": 4}, "length"),
        ({"length": 8}, "vocab_size"),
        ({"length": 8, "vocab_size": 4, "channels": 2}, "channels"),
        ({"length": 8, "vocab_size": 0}, "vocab_size"),
        ({"length": 8, "channels": 2.0}, "channels"),
        ({"length": 8, "vocab_size": 4, "out_size": 0}, "out_size"),
        ({"length": 8, "vocab_size": 4, "dim": 0}, "dim"),
        ({"length": 8, "vocab_size": 4, "depth": 0}, "depth"),
        ({"length": 8, "vocab_size": 4, "heads": True}, "heads"),
        ({"length": 8, "vocab_size": 4, "dim": 10, "heads": 3}, "heads"),
        ({"length": 8, "vocab_size": 4, "mlp_ratio": 0}, "mlp_ratio"),
        ({"length": 8, "vocab_size": 4, "dropout": 1.0}, "dropout"),
        ({"length": 8, "vocab_size": 4, "positions": "sinusoidal"}, "positions"),
        ({"length": 8, "vocab_size": 4, "dim": 6, "heads": 2, "positions": "rotary"}, "rotary"),
        ({"length": 8, "vocab_size": 4, "num_classes": 0}, "num_classes"),
        ({"length": 8, "vocab_size": 4, "causal": 1}, "causal"),
        ({"length": 8, "vocab_size": 4, "time_embed_dim": 7}, "time_embed_dim"),
        ({"length": 8, "vocab_size": 4, "time_frequency": -1.0}, "time_frequency"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        SequenceTransformer(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_inputs_are_named():
    model = tokens()
    t = torch.rand(2)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        model(torch.full((2, 4), 6), t)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        model(torch.full((2, 4), -1), t)
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(2, 4), t)
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        model(torch.zeros(2, 4, 1, dtype=torch.long), t)
    with pytest.raises(ValueError, match="length"):
        model(torch.zeros(2, 9, dtype=torch.long), t)
    with pytest.raises(ValueError, match="length"):
        tokens(positions="rotary")(torch.zeros(2, 9, dtype=torch.long), t)
    with pytest.raises(ValueError, match="t must have shape"):
        model(torch.zeros(2, 4, dtype=torch.long), torch.rand(3))
    with pytest.raises(ValueError, match="num_classes"):
        model(torch.zeros(2, 4, dtype=torch.long), t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="mask"):
        model(torch.zeros(2, 4, dtype=torch.long), t, mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="mask"):
        model(torch.zeros(2, 4, dtype=torch.long), t, mask=torch.ones(2, 5, dtype=torch.bool))
    cond_model = tokens(num_classes=2)
    with pytest.raises(ValueError, match=r"cond labels must be in \[0, 2\]"):
        cond_model(torch.zeros(2, 4, dtype=torch.long), t, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="cond must hold integer"):
        cond_model(torch.zeros(2, 4, dtype=torch.long), t, torch.tensor([0.0, 1.0]))
    cont = vectors()
    with pytest.raises(ValueError, match=r"shape \(B, L, 3\)"):
        cont(torch.randn(2, 4, 2), t)
    with pytest.raises(ValueError, match="floating-point"):
        cont(torch.zeros(2, 4, 3, dtype=torch.long), t)


def test_registry_round_trip_and_public_name():
    assert fm.models.SequenceTransformer is SequenceTransformer
    model = SequenceTransformer(
        12, vocab_size=5, out_size=4, positions="rotary", num_classes=3, causal=True, **SMALL
    )
    arch = registry.architecture(model)
    assert arch["name"] == "transformer" and arch["length"] == 12 and arch["vocab_size"] == 5
    assert arch["mlp_ratio"] == 4.0 and arch["time_frequency"] is None
    rebuilt = registry.build(arch)
    assert isinstance(rebuilt, SequenceTransformer)
    assert registry.architecture(rebuilt) == arch
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.causal and rebuilt.null_class == 3 and rebuilt.out_size == 4
    with pytest.raises(ValueError, match="model 'transformer': dim=10 must be divisible"):
        registry.build({"name": "transformer", "length": 4, "vocab_size": 3, "dim": 10})
