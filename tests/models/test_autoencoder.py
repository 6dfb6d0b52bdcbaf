"""The autoencoder of latent flow matching: shapes, its loss, the latent scale, its files."""

import json

import pytest
import torch

import flowmatch as fm
from flowmatch.errors import ModelFileError
from flowmatch.models.autoencoder import AutoEncoder, autoencoder_loss
from flowmatch.models.latent import LatentCodec


@pytest.fixture(scope="module")
def digits_images() -> torch.Tensor:
    """scikit-learn's 8x8 digits, (N, 1, 8, 8) in [-1, 1]."""
    from flowmatch.data.images import load_digits

    return load_digits().train


@pytest.mark.parametrize(
    ("channels", "size", "latent", "down", "side"),
    [(1, 28, 4, 1, 14), (1, 28, 2, 2, 7), (3, 8, 2, 0, 8), (1, 8, 1, 1, 4)],
)
def test_shapes(channels, size, latent, down, side):
    ae = AutoEncoder(channels, size, base=8, latent_channels=latent, downsample=down)
    x = torch.rand(3, channels, size, size) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (3, latent, side, side) == (3, *ae.latent_shape)
    assert ae.decode(z).shape == x.shape
    recon, mean, logvar = ae(x)
    assert recon.shape == x.shape and mean.shape == logvar.shape == z.shape
    assert ae.encode(x, sample=True, generator=torch.Generator().manual_seed(0)).shape == z.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 28, "downsample": 3}, "divisible by 2 \\*\\* downsample"),
        ({"downsample": 4}, "downsample must be an integer in \\[0, 3\\]"),
        ({"base": 12, "groups": 8}, "groups=8 must divide"),
        ({"latent_channels": 0}, "latent_channels must be"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoEncoder(1, **kwargs)


def test_wrong_input_shapes_are_refused():
    ae = AutoEncoder(1, 8, base=8, latent_channels=2, downsample=1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        ae.encode(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 2, 4, 4\)"):
        ae.decode(torch.zeros(2, 4, 4, 4))


@pytest.mark.parametrize(("kl_weight", "reconstruction"), [(1e-3, "mse"), (0.0, "l1")])
def test_loss_decreases_on_digits(digits_images, kl_weight, reconstruction):
    torch.manual_seed(0)
    ae = AutoEncoder(1, 8, base=16, latent_channels=2, downsample=1)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    x = digits_images[:300]
    gen = torch.Generator().manual_seed(0)

    def loss() -> torch.Tensor:
        return autoencoder_loss(
            ae, x, kl_weight=kl_weight, reconstruction=reconstruction, generator=gen
        )

    first = loss().item()
    for _ in range(60):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < 0.5 * first


def test_loss_refuses_an_unknown_reconstruction():
    ae = AutoEncoder(1, 8, base=8, latent_channels=1, downsample=0)
    with pytest.raises(ValueError, match="reconstruction must be one of"):
        autoencoder_loss(ae, torch.zeros(1, 1, 8, 8), reconstruction="l2")


def test_latent_scale_standardizes_the_latents_and_round_trips(tmp_path, digits_images):
    torch.manual_seed(0)
    ae = AutoEncoder(1, 8, base=8, latent_channels=2, downsample=1).eval()
    x = digits_images[:200]
    before = ae.decode(ae.encode(x))
    shift, scale = ae.fit_latent_scale(x, batch_size=64)
    z = ae.encode(x).double()
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-2
    assert scale != 1.0 and float(ae.latent_scale) == pytest.approx(scale)
    # the scale and shift are undone by decode: reconstructions do not change
    torch.testing.assert_close(ae.decode(ae.encode(x)), before, atol=1e-5, rtol=1e-5)
    ae.save_pretrained(tmp_path / "ae")
    spec = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert spec["kind"] == "autoencoder" and spec["latent_shape"] == [2, 4, 4]
    back = fm.load(tmp_path / "ae")
    assert isinstance(back, AutoEncoder)
    assert float(back.latent_scale) == float(ae.latent_scale)
    assert float(back.latent_shift) == float(ae.latent_shift) == pytest.approx(shift)
    assert torch.equal(back.encode(x), ae.encode(x))
    assert torch.equal(back.decode(z.float()), ae.decode(z.float()))


def test_uint8_images_are_mapped_to_unit_range():
    ae = AutoEncoder(1, 8, base=8, latent_channels=1, downsample=0).eval()
    u8 = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    codec = LatentCodec(ae)
    torch.testing.assert_close(codec.transform(u8), ae.encode(u8.float() / 127.5 - 1))


def test_a_file_with_a_wrong_latent_shape_is_refused(tmp_path):
    AutoEncoder(1, 8, base=8, latent_channels=2, downsample=1).save_pretrained(tmp_path)
    cfg = tmp_path / "config.json"
    spec = json.loads(cfg.read_text())
    spec["latent_shape"] = [2, 8, 8]
    cfg.write_text(json.dumps(spec))
    with pytest.raises(ModelFileError, match=r"latent_shape: expected \[2, 4, 4\]"):
        fm.load(tmp_path)
