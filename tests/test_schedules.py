import math

import pytest
import torch

import flowmatch as fm
from flowmatch.schedules import SCHEDULES

ALL = [
    fm.schedules.Linear(),
    fm.schedules.Cosine(),
    fm.schedules.Polynomial(2.0),
    fm.schedules.Polynomial(0.5),
    fm.schedules.VP(),
    fm.schedules.VP(beta_min=0.5, beta_max=10.0),
    fm.schedules.VE(),
    fm.schedules.VE(sigma_min=0.002, sigma_max=80.0),
]


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_derivatives_match_autograd(sched):
    # float64 autograd vs the closed-form derivatives; 1e-9 relative leaves room for rounding.
    t = torch.linspace(0.01, 0.99, 97, dtype=torch.float64, requires_grad=True)
    out = sched(t)
    for value, deriv in ((out.alpha_t, out.d_alpha_t), (out.sigma_t, out.d_sigma_t)):
        (grad,) = torch.autograd.grad(value.sum(), t, retain_graph=True)
        torch.testing.assert_close(deriv.detach(), grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "sched", [fm.schedules.Linear(), fm.schedules.Cosine(), fm.schedules.Polynomial(3.0)], ids=repr
)
def test_exact_boundaries(sched):
    out = sched(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.alpha_t, torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.sigma_t, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_vp_boundaries_and_variance_preservation():
    vp = fm.schedules.VP(beta_min=0.1, beta_max=20.0)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    out = vp(t)
    torch.testing.assert_close(out.alpha_t**2 + out.sigma_t**2, torch.ones_like(t))
    # Song et al. 2021 (eq. 33): log alpha = -s^2 (b_max - b_min) / 4 - s b_min / 2 at s = 1.
    assert out.alpha_t[0].item() == pytest.approx(math.exp(-19.9 / 4 - 0.05), rel=1e-9)
    assert out.alpha_t[0].item() < 0.01
    # Documented: sigma(1) = sqrt(1 - exp(-B(eps))) ~ 1e-3 with eps = 1e-5.
    big_b = 0.1 * 1e-5 + 0.5 * 19.9 * 1e-10
    assert out.sigma_t[-1].item() == pytest.approx(math.sqrt(-math.expm1(-big_b)), rel=1e-6)
    assert out.alpha_t[-1].item() == pytest.approx(1.0, abs=1e-6)


def test_cosine_preserves_variance():
    out = fm.schedules.Cosine()(torch.rand(100, dtype=torch.float64))
    torch.testing.assert_close(
        out.alpha_t**2 + out.sigma_t**2, torch.ones(100, dtype=torch.float64)
    )


def test_ve_noise_to_signal_ratio_is_song_noise_level():
    ve = fm.schedules.VE(sigma_min=0.01, sigma_max=50.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    out = ve(t)
    expected = 0.01 * (50.0 / 0.01) ** (1 - t)  # SMLD noise level sigma(s) at s = 1 - t
    torch.testing.assert_close(out.sigma_t / out.alpha_t, expected)
    assert out.alpha_t[0].item() == pytest.approx(1 / math.sqrt(1 + 50.0**2))
    assert out.sigma_t[-1].item() == pytest.approx(0.01, rel=1e-3)


@pytest.mark.parametrize("sched", ALL, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_everywhere_including_edges(sched, dtype):
    t = torch.cat([torch.tensor([0.0, 1e-7, 1 - 1e-7, 1.0]), torch.rand(50)]).to(dtype)
    for value in sched(t):
        assert value.dtype == dtype
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_alpha_increases_sigma_decreases(sched):
    out = sched(torch.linspace(0, 1, 201, dtype=torch.float64))
    assert (out.alpha_t.diff() > 0).all()
    assert (out.sigma_t.diff() < 0).all()


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: fm.schedules.Polynomial(0), "n"),
        (lambda: fm.schedules.Polynomial(float("nan")), "n"),
        (lambda: fm.schedules.VP(beta_min=-1.0), "beta_min"),
        (lambda: fm.schedules.VP(beta_min=1.0, beta_max=0.5), "beta_max"),
        (lambda: fm.schedules.VP(eps=0.0), "eps"),
        (lambda: fm.schedules.VE(sigma_min=0.0), "sigma_min"),
        (lambda: fm.schedules.VE(sigma_min=1.0, sigma_max=1.0), "sigma_max"),
    ],
)
def test_invalid_parameters_name_the_argument(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


def test_registry_names_and_equality():
    assert set(SCHEDULES) == {"linear", "cosine", "polynomial", "vp", "ve", "ddpm"}
    assert fm.schedules.VP() == fm.schedules.VP()
    assert fm.schedules.VP() != fm.schedules.VP(beta_max=10.0)
    assert "beta_max=20.0" in repr(fm.schedules.VP())
