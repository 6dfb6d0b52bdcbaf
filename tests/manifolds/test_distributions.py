"""Closed-form densities on S^2 and T^d (von Mises-Fisher, von Mises products): normalization
by quadrature, exact samplers against closed-form moments and CDFs, EM recovery of known
mixtures, model selection, and the errors raised for bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from flowmatch.manifolds.distributions import (
    VMFMixture,
    VonMisesFisher,
    VonMisesMixture,
    uniform_sphere_log_prob,
    uniform_torus_log_prob,
    vmf_log_normalizer,
)
from flowmatch.manifolds.fitting import (
    select_mixture,
    vmf_kappa_from_resultant,
    von_mises_kappa_from_resultant,
)

F64 = torch.float64
MU = torch.tensor([0.3, -0.5, 0.8], dtype=F64) / math.sqrt(0.98)  # tilted: not on a grid axis


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _langevin(k: float) -> float:
    """E[x . mu] under vMF(kappa) on S^2: coth(kappa) - 1/kappa (its series below 0.01, where
    the difference cancels)."""
    return k / 3 - k**3 / 45 + 2 * k**5 / 945 if k < 0.01 else 1 / math.tanh(k) - 1 / k


def _sphere_integral(log_prob, n_z: int = 400, n_phi: int = 512) -> float:
    """Integral over S^2 of exp(log_prob): Gauss-Legendre in z = cos(theta) times the periodic
    trapezoid rule in the azimuth (area element dz dphi)."""
    z, wz = np.polynomial.legendre.leggauss(n_z)
    z, wz = torch.tensor(z, dtype=F64), torch.tensor(wz, dtype=F64)
    phi = 2 * math.pi * torch.arange(n_phi, dtype=F64) / n_phi
    zz, pp = torch.meshgrid(z, phi, indexing="ij")
    s = torch.sqrt(1 - zz**2)
    pts = torch.stack([s * torch.cos(pp), s * torch.sin(pp), zz], dim=-1).reshape(-1, 3)
    vals = torch.exp(log_prob(pts)).reshape(n_z, n_phi)
    return float((vals.sum(1) * (2 * math.pi / n_phi) * wz).sum())


def _mixture3() -> VMFMixture:
    means = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.0, 0.0, -1.0]], dtype=F64)
    return VMFMixture(means, torch.tensor([5.0, 20.0, 50.0]), torch.tensor([0.5, 0.3, 0.2]))


def _torus2() -> VonMisesMixture:
    mu = torch.tensor([[1.0, -2.0], [-2.5, 3.0]], dtype=F64)  # the second one straddles +-pi
    kappa = torch.tensor([[4.0, 10.0], [20.0, 2.0]], dtype=F64)
    return VonMisesMixture(mu, kappa, torch.tensor([0.6, 0.4]))


# ---- densities -------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [0.0, 1e-6, 1.0, 10.0, 200.0])
def test_vmf_integrates_to_one(kappa):
    # 1e-10 (float64): the integrand is analytic, so Gauss-Legendre x periodic trapezoid on
    # 400 x 512 nodes converge spectrally, even for the kappa = 200 peak (angular width ~0.07
    # rad); observed errors are ~1e-14. A wrong normalizer (or series branch) is off far more.
    total = _sphere_integral(VonMisesFisher(MU, kappa).log_prob)
    assert abs(total - 1) < 1e-10


def test_vmf_normalizer_closed_form_and_small_kappa_branch():
    # 1e-12: both are float64 evaluations of the same closed form, log(kappa / (4 pi sinh)).
    for k in (0.01, 0.5, 3.0, 30.0):
        exact = math.log(k / (4 * math.pi * math.sinh(k)))
        assert abs(vmf_log_normalizer(k).item() - exact) < 1e-12
    assert vmf_log_normalizer(0.0).item() == pytest.approx(-math.log(4 * math.pi), abs=1e-15)
    # the series (below 1e-3) and the exact branch meet: both sides of the switch within 1e-12
    below, above = vmf_log_normalizer(torch.tensor([1e-3 - 1e-12, 1e-3], dtype=F64))
    assert abs(below - above) < 1e-12
    # kappa = 1e4 is finite: at the mean, log p = log(kappa / 2 pi) up to exp(-2e4)
    lp = VonMisesFisher(MU, 1e4).log_prob(MU[None])
    assert abs(lp.item() - math.log(1e4 / (2 * math.pi))) < 1e-10


def test_mixture_integrates_to_one_on_the_sphere_and_the_torus():
    # 1e-10 on S^2, as for one vMF (largest kappa 50; observed ~2e-13).
    assert abs(_sphere_integral(_mixture3().log_prob) - 1) < 1e-10
    # Torus: the periodic trapezoid rule on 256^2 nodes is exact up to the Fourier coefficients
    # of order 256 of exp(kappa cos), I_256(20) / I_0(20) ~ 1e-200: 1e-10 leaves float64 room.
    n = 256
    a = -math.pi + 2 * math.pi * torch.arange(n, dtype=F64) / n
    grid = torch.stack(torch.meshgrid(a, a, indexing="ij"), dim=-1).reshape(-1, 2)
    total = torch.exp(_torus2().log_prob(grid)).sum().item() * (2 * math.pi / n) ** 2
    assert abs(total - 1) < 1e-10


def test_torus_log_prob_matches_scipy_products():
    # 1e-10: scipy's von Mises log-pdf is an independent float64 evaluation of the same formula.
    m = _torus2()
    x = m.sample(50, _gen(3)).to(F64)
    mu, kappa, w = m.mu.numpy(), m.kappa.numpy(), m.weights.numpy()
    comps = [
        np.log(w[k])
        + sum(scipy.stats.vonmises.logpdf(x[:, j].numpy(), kappa[k, j], mu[k, j]) for j in range(2))
        for k in range(2)
    ]
    expected = scipy.special.logsumexp(np.stack(comps, 1), axis=1)
    assert np.abs(m.log_prob(x).numpy() - expected).max() < 1e-10


def test_uniform_log_probs():
    x = torch.randn(5, 3, dtype=torch.float32)
    assert torch.equal(uniform_sphere_log_prob(x), torch.full((5,), -math.log(4 * math.pi)))
    t = torch.zeros(7, 4, dtype=F64)
    out = uniform_torus_log_prob(t)
    assert out.dtype == F64 and torch.allclose(
        out, torch.full((7,), -4 * math.log(2 * math.pi), dtype=F64)
    )


def test_float32_in_float32_out():
    # 1e-5: float32 rounding of values of size ~10 (the computation itself runs in float64).
    vmf = VonMisesFisher(MU.float(), 30.0)
    x = vmf.sample(1000, _gen(0))
    assert x.dtype == torch.float32 and (x.norm(dim=1) - 1).abs().max() < 1e-6
    lp32 = vmf.log_prob(x)
    assert lp32.dtype == torch.float32
    assert torch.allclose(lp32.double(), vmf.log_prob(x.double()), atol=1e-5)
    t = _torus2().sample(10, _gen(0))
    assert (
        t.dtype == F64
        and VonMisesMixture(t[:1].float(), torch.ones(1, 2), [1.0]).sample(3).dtype == torch.float32
    )


# ---- samplers -------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [0.0, 1.0, 10.0, 200.0])
def test_vmf_sampler_moments_and_ks(kappa):
    n = 20_000
    x = VonMisesFisher(MU, kappa).sample(n, _gen(1))
    assert x.shape == (n, 3) and (x.norm(dim=1) - 1).abs().max() < 1e-12
    # E[x] = A(kappa) mu (this also checks the rotation to the mean): 4 standard errors.
    se = x.std(0) / math.sqrt(n)
    assert ((x.mean(0) - _langevin(kappa) * MU).abs() <= 4 * se).all()
    w = (x @ MU).numpy()

    def cdf(t):  # closed-form CDF of w = x . mu
        if kappa == 0:
            return (t + 1) / 2
        return (np.exp(kappa * (t - 1)) - np.exp(-2 * kappa)) / -np.expm1(-2 * kappa)

    # p > 1e-3 at a fixed seed: an exact sampler fails this one time in a thousand seeds.
    assert scipy.stats.kstest(w, cdf).pvalue > 1e-3


@pytest.mark.parametrize("kappa", [0.0, 0.5, 4.0, 50.0])
def test_von_mises_sampler_moments_and_ks(kappa):
    n = 20_000
    mu = 2.9  # near +pi, so wrapping matters
    theta = VonMisesMixture([[mu]], [[kappa]], [1.0]).sample(n, _gen(2))[:, 0].to(F64)
    assert theta.min() >= -math.pi and theta.max() < math.pi
    d = torch.remainder(theta - mu + math.pi, 2 * math.pi) - math.pi
    r_true = scipy.special.i1e(kappa) / scipy.special.i0e(kappa)
    # cos and sin of the offset: means A1(kappa) and 0, within 4 standard errors each.
    for f, target in ((torch.cos, r_true), (torch.sin, 0.0)):
        v = f(d)
        assert abs(v.mean().item() - target) <= 4 * v.std().item() / math.sqrt(n)
    cdf = (lambda t: (t + np.pi) / (2 * np.pi)) if kappa == 0 else scipy.stats.vonmises(kappa).cdf
    assert scipy.stats.kstest(d.numpy(), cdf).pvalue > 1e-3  # as in the vMF test


def test_samplers_are_deterministic_given_a_generator():
    m, t = _mixture3(), _torus2()
    assert torch.equal(m.sample(100, _gen(5)), m.sample(100, _gen(5)))
    assert torch.equal(t.sample(100, _gen(5)), t.sample(100, _gen(5)))
    assert m.sample(0).shape == (0, 3) and t.sample(0).shape == (0, 2)


# ---- fitting --------------------------------------------------------------------------------


def test_kappa_from_resultant_inverts_the_mean_resultant_length():
    # 1e-9 relative: three Newton steps from the approximation reach float64 precision.
    for k in (1e-4, 0.1, 1.0, 10.0, 100.0, 1000.0):
        got = vmf_kappa_from_resultant(_langevin(k)).item()
        assert abs(got - k) <= 1e-9 * k
        r = scipy.special.i1e(k) / scipy.special.i0e(k)
        assert abs(von_mises_kappa_from_resultant(r).item() - k) <= 1e-9 * k
    assert vmf_kappa_from_resultant(0.0).item() == 0.0
    assert vmf_kappa_from_resultant(1.0).item() == 1e4  # clipped at kappa_max


def _match(true_loc, fit_loc, dist):
    """The permutation of fitted components closest to the true ones."""
    k = true_loc.shape[0]
    return min(
        itertools.permutations(range(k)),
        key=lambda p: sum(dist(true_loc[i], fit_loc[p[i]]) for i in range(k)),
    )


def test_em_recovers_a_vmf_mixture():
    true = _mixture3()
    x, held_out = true.sample(20_000, _gen(10)), true.sample(20_000, _gen(11))
    fit = VMFMixture.fit(x, 3, generator=_gen(0))
    assert fit.fit_info["converged"]
    p = _match(true.means, fit.means, lambda a, b: -(a @ b).item())
    for i, j in enumerate(p):
        angle = math.acos(min(1.0, (true.means[i] @ fit.means[j]).item()))
        assert angle < 0.05  # rad; the sampling error is ~1/sqrt(kappa n_k) < 0.01
        assert abs(fit.kappas[j] / true.kappas[i] - 1) < 0.15  # std error ~1/sqrt(n_k) < 2%
        assert abs(fit.weights[j] - true.weights[i]) < 0.03  # std error ~0.004
    # held-out log-likelihood within 0.02 nats of the true model's (~15 parameters on 20k
    # points cost ~4e-4 nats)
    gap = (true.log_prob(held_out) - fit.log_prob(held_out)).mean().item()
    assert abs(gap) < 0.02
    again = VMFMixture.fit(x, 3, generator=_gen(0))
    assert torch.equal(again.means, fit.means) and torch.equal(again.kappas, fit.kappas)


def test_em_recovers_a_torus_mixture():
    true = _torus2()
    x, held_out = true.sample(20_000, _gen(12)), true.sample(20_000, _gen(13))
    fit = VonMisesMixture.fit(x.float(), 2, generator=_gen(0))  # float32 data work too

    def dist(a, b):
        return (torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi).abs().max().item()

    p = _match(true.mu, fit.mu, dist)
    for i, j in enumerate(p):
        assert dist(true.mu[i], fit.mu[j]) < 0.05  # rad, as for the vMF mixture
        assert ((fit.kappa[j] / true.kappa[i] - 1).abs() < 0.15).all()
        assert abs(fit.weights[j] - true.weights[i]) < 0.03
    gap = (true.log_prob(held_out) - fit.log_prob(held_out)).mean().item()
    assert abs(gap) < 0.02


def test_select_mixture_prefers_several_components_when_the_data_have_them():
    true = _mixture3()
    train, valid = true.sample(3000, _gen(20)), true.sample(3000, _gen(21))
    best, table = select_mixture(VMFMixture, train, valid, ks=(1, 2, 4, 8), generator=_gen(0))
    assert [k for k, _ in table] == [1, 2, 4, 8]
    scores = dict(table)
    k_best = best.n_components
    assert scores[k_best] == max(scores.values()) and k_best >= 2
    # three well-separated clusters: one component is far worse (margin 0.3 nats; the gap is
    # about 1 nat here, far beyond the ~0.02 nat noise of a 3000-point validation mean)
    assert scores[k_best] >= scores[1] + 0.3
    t_true = _torus2()
    best_t, table_t = select_mixture(
        VonMisesMixture, t_true.sample(2000, _gen(22)), t_true.sample(2000, _gen(23)), ks=(1, 2, 3)
    )
    assert best_t.n_components >= 2 and dict(table_t)[best_t.n_components] >= table_t[0][1] + 0.3


# ---- bad input ------------------------------------------------------------------------------

_X3 = torch.nn.functional.normalize(torch.randn(10, 3, generator=_gen(0)), dim=1)

BAD = {
    "mean shape": lambda: VonMisesFisher(torch.ones(2) / math.sqrt(2), 1.0),
    "mean not unit": lambda: VonMisesFisher(torch.ones(3), 1.0),
    "negative kappa": lambda: VonMisesFisher(MU, -1.0),
    "kappa not scalar": lambda: VonMisesFisher(MU, [1.0, 2.0]),
    "weights sum": lambda: VMFMixture(_X3[:2], [1.0, 1.0], [0.5, 0.4]),
    "negative weight": lambda: VMFMixture(_X3[:2], [1.0, 1.0], [1.5, -0.5]),
    "kappas shape": lambda: VMFMixture(_X3[:2], [1.0], [0.5, 0.5]),
    "log_prob shape": lambda: VonMisesFisher(MU, 1.0).log_prob(torch.zeros(4, 2)),
    "torus kappa negative": lambda: VonMisesMixture([[0.0, 0.0]], [[1.0, -1.0]], [1.0]),
    "torus kappa shape": lambda: VonMisesMixture([[0.0, 0.0]], [[1.0]], [1.0]),
    "torus log_prob dim": lambda: _torus2().log_prob(torch.zeros(4, 3)),
    "k < 1": lambda: VMFMixture.fit(_X3, 0),
    "k > n": lambda: VonMisesMixture.fit(torch.zeros(3, 2), 4),
    "fit off the sphere": lambda: VMFMixture.fit(2 * _X3, 2),
    "negative n": lambda: _torus2().sample(-1),
    "nan mu": lambda: VonMisesMixture([[float("nan")]], [[1.0]], [1.0]),
    "no ks": lambda: select_mixture(VMFMixture, _X3, _X3, ks=()),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_a_one_line_value_error(case):
    with pytest.raises(ValueError) as err:
        BAD[case]()
    assert "\n" not in str(err.value) and str(err.value)
