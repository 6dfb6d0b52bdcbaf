"""Closed-form densities on the sphere S^2 and the torus T^d, with exact samplers.

Conventions: points of S^2 are unit vectors in R^3, tensors (N, 3); points of T^d are angles in
radians in [-pi, pi), tensors (N, d). Densities are with respect to the Riemannian volume (area
on S^2, total 4 pi; Lebesgue measure on [-pi, pi)^d, total (2 pi)^d), log-densities in nats.
Everything is computed in float64 and returned in the dtype of the input (log_prob) or of the
parameters (sample).

What is exact: every density and normalizer here is closed-form (up to float64 rounding), and
both samplers are exact: the von Mises-Fisher sampler inverts the closed-form CDF of
w = x . mu on S^2, the von Mises sampler is the rejection algorithm of Best & Fisher (1979),
"Efficient simulation of the von Mises distribution", Appl. Statist. 28(2). What is
approximate: the maximum-likelihood fits (EM, in :mod:`flowmatch.manifolds.fitting`), which
solve for kappa numerically and clip it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "VMFMixture",
    "VonMisesFisher",
    "VonMisesMixture",
    "uniform_sphere_log_prob",
    "uniform_torus_log_prob",
    "vmf_log_normalizer",
    "wrap_angle",
]

F64 = torch.float64
LOG_2PI = math.log(2.0 * math.pi)
LOG_4PI = math.log(4.0 * math.pi)
_SERIES_BELOW = 1e-3  # kappa below which the vMF normalizer uses its Taylor series
_UNIFORM_BELOW = 1e-12  # von Mises kappa below which the sampler draws uniform angles

ArrayLike = Tensor | Sequence | float


def _tensor(value: ArrayLike, name: str, shape: tuple[int | None, ...]) -> Tensor:
    """``value`` as a finite float64 tensor of ``shape`` (None: any size), else ValueError."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from err
    if t.ndim != len(shape) or any(
        s is not None and s != n for s, n in zip(shape, t.shape, strict=False)
    ):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real, got {t.dtype}")
    t = t.to(F64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t


def _dtype_of(x: Tensor) -> torch.dtype:
    """The dtype of the log densities of points x: their own if floating, else torch's default."""
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def _out_dtype(value: ArrayLike, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.dtype
    return torch.get_default_dtype()


def _kappa(value: ArrayLike, name: str, shape: tuple[int | None, ...]) -> Tensor:
    k = _tensor(value, name, shape)
    if (k < 0).any():
        raise ValueError(f"{name} must be >= 0, got min {k.min().item():.6g}")
    return k


def _unit(value: ArrayLike, name: str, shape: tuple[int | None, ...]) -> Tensor:
    """Unit vectors along the last axis (norms within 1e-4 of 1, renormalized in float64)."""
    v = _tensor(value, name, shape)
    norm = v.norm(dim=-1, keepdim=True)
    if ((norm - 1).abs() > 1e-4).any():
        raise ValueError(
            f"{name} must be unit vectors, got norms in [{norm.min():.4g}, {norm.max():.4g}]"
        )
    return v / norm


def _weights(value: ArrayLike, k: int) -> Tensor:
    w = _tensor(value, "weights", (k,))
    if (w < 0).any() or abs(w.sum().item() - 1.0) > 1e-4:
        raise ValueError(
            f"weights must be >= 0 and sum to 1, got sum {w.sum().item():.6g} and "
            f"min {w.min().item():.6g}"
        )
    return w / w.sum()


def _points(x: Tensor, dim: int | None, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, {dim or 'd'}), got {shape}")
    return x.to(F64)


def _count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return n


def wrap_angle(theta: Tensor) -> Tensor:
    """Angles wrapped into [-pi, pi) (also after rounding at pi)."""
    y = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
    return torch.where(y >= math.pi, y - 2 * math.pi, y)


def _log_c_plus_kappa(kappa: Tensor) -> Tensor:
    """log C(kappa) + kappa, stable for every kappa >= 0 (float64)."""
    small = kappa < _SERIES_BELOW
    k = torch.where(small, torch.ones_like(kappa), kappa)
    exact = torch.log(k) - LOG_2PI - torch.log(-torch.expm1(-2 * k))
    series = -LOG_4PI - kappa**2 / 6 + kappa**4 / 180 + kappa
    return torch.where(small, series, exact)


def vmf_log_normalizer(kappa: Tensor | float) -> Tensor:
    """log C(kappa) of the von Mises-Fisher density C(kappa) exp(kappa mu . x) on S^2.

    C(kappa) = kappa / (4 pi sinh kappa), so log C = log kappa - log(2 pi) - kappa
    - log1p(-exp(-2 kappa)); below kappa = 1e-3 the series -log(4 pi) - kappa^2/6
    + kappa^4/180 (error O(kappa^6)) is used, which equals -log(4 pi) at kappa = 0.

    Args:
        kappa: concentrations >= 0, any shape.

    Returns:
        log C(kappa), float64, the shape of ``kappa``.
    """
    k = _kappa(kappa, "kappa", tuple(None for _ in torch.as_tensor(kappa).shape))
    return _log_c_plus_kappa(k) - k


def uniform_sphere_log_prob(x: Tensor) -> Tensor:
    """log density of the uniform distribution on S^2: -log(4 pi) for each of x (N, 3) -> (N,)."""
    _points(x, 3)
    return torch.full((x.shape[0],), -LOG_4PI, dtype=_dtype_of(x), device=x.device)


def uniform_torus_log_prob(x: Tensor) -> Tensor:
    """log density of the uniform distribution on T^d: -d log(2 pi) for x (N, d) -> (N,)."""
    _points(x, None)
    return torch.full((x.shape[0],), -x.shape[1] * LOG_2PI, dtype=_dtype_of(x), device=x.device)


def _sample_vmf(mu: Tensor, kappa: Tensor, generator: torch.Generator | None) -> Tensor:
    """One exact vMF draw per row of mu (n, 3) with concentration kappa (n,), float64.

    w = x . mu has CDF (exp(kappa (w - 1)) - exp(-2 kappa)) / (1 - exp(-2 kappa)); with v
    uniform, 1 - w = -log1p(v expm1(-2 kappa)) / kappa inverts it (kappa = 0: w = 2v - 1).
    The azimuth around mu is uniform.
    """
    n = mu.shape[0]
    v = torch.rand(n, generator=generator, dtype=F64, device=mu.device)
    phi = 2 * math.pi * torch.rand(n, generator=generator, dtype=F64, device=mu.device)
    pos = kappa > 0
    k = torch.where(pos, kappa, torch.ones_like(kappa))
    one_minus_w = torch.where(pos, -torch.log1p(v * torch.expm1(-2 * k)) / k, 2 - 2 * v)
    one_minus_w = one_minus_w.clamp(0.0, 2.0)
    w = 1 - one_minus_w
    sin = torch.sqrt(one_minus_w * (2 - one_minus_w))
    a = torch.nn.functional.one_hot(mu.abs().argmin(dim=1), 3).to(mu)
    e1 = a - (a * mu).sum(1, keepdim=True) * mu
    e1 = e1 / e1.norm(dim=1, keepdim=True)
    e2 = torch.linalg.cross(mu, e1, dim=1)
    tangent = torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2
    return w[:, None] * mu + sin[:, None] * tangent


def _sample_von_mises(kappa: Tensor, generator: torch.Generator | None) -> Tensor:
    """Exact von Mises draws centred at 0, one per entry of kappa (flat, float64).

    Best & Fisher (1979): tau = 1 + sqrt(1 + 4 kappa^2), rho = 2 kappa / (tau + sqrt(2 tau))
    (the cancellation-free form of (tau - sqrt(2 tau)) / (2 kappa)), r = (1 + rho^2) / (2 rho);
    propose z = cos(pi u1), f = (1 + r z) / (r + z), c = kappa (r - f), accept when
    c (2 - c) > u2 or log(c / u2) + 1 - c >= 0; the angle is +-arccos(f). The acceptance rate
    is at least about 0.66, so the vectorized loop ends after a few rounds.
    """
    out = torch.empty_like(kappa)
    flat = kappa < _UNIFORM_BELOW
    u = torch.rand(kappa.shape, generator=generator, dtype=F64, device=kappa.device)
    out[flat] = (2 * math.pi * u - math.pi)[flat]
    k = torch.where(flat, torch.ones_like(kappa), kappa)
    tau = 1 + torch.sqrt(1 + 4 * k**2)
    rho = 2 * k / (tau + torch.sqrt(2 * tau))
    r = (1 + rho**2) / (2 * rho)
    todo = torch.nonzero(~flat).squeeze(1)
    for _ in range(10_000):
        if todo.numel() == 0:
            return out
        u1, u2, u3 = torch.rand(
            3, todo.numel(), generator=generator, dtype=F64, device=kappa.device
        )
        z = torch.cos(math.pi * u1)
        rr = r[todo]
        f = (1 + rr * z) / (rr + z)
        c = k[todo] * (rr - f)
        ok = (c * (2 - c) - u2 > 0) | (torch.log(c / u2) + 1 - c >= 0)
        theta = torch.where(u3 < 0.5, -1.0, 1.0) * torch.acos(f.clamp(-1.0, 1.0))
        out[todo[ok]] = theta[ok]
        todo = todo[~ok]
    raise RuntimeError("von Mises rejection sampler did not finish")  # pragma: no cover


class VonMisesFisher:
    """The von Mises-Fisher distribution on S^2: p(x) = C(kappa) exp(kappa mu . x).

    Args:
        mean: mean direction mu, shape (3,), a unit vector (norm within 1e-4 of 1).
        kappa: concentration >= 0 (0 is the uniform distribution), float or 0-d tensor.
        dtype: dtype of samples; default the dtype of ``mean`` (float tensors) or torch's.

    Attributes:
        mean: (3,) float64; kappa: 0-d float64.
    """

    def __init__(self, mean: ArrayLike, kappa: ArrayLike, *, dtype: torch.dtype | None = None):
        self.mean = _unit(mean, "mean", (3,))
        self.kappa = _kappa(kappa, "kappa", ())
        self.dtype = _out_dtype(mean, dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density of points x (N, 3) -> (N,), in the dtype of x."""
        x64 = _points(x, 3).to(self.mean.device)
        w = x64 @ self.mean
        out = _log_c_plus_kappa(self.kappa) + self.kappa * (w - 1)
        return out.to(_dtype_of(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws (inverse CDF of w = x . mu, uniform azimuth), shape (n, 3)."""
        n = _count(n)
        mu = self.mean.expand(n, 3)
        return _sample_vmf(mu, self.kappa.expand(n), generator).to(self.dtype)


class _Mixture:
    """What the two mixtures share: the weights (K,), the mixture's log density from the
    subclass's ``component_log_prob`` (N, K), and sampling a component by its weight before the
    subclass's ``_draw`` from it."""

    weights: Tensor
    dtype: torch.dtype

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    def component_log_prob(self, x: Tensor) -> Tensor:  # pragma: no cover - every subclass has it
        raise NotImplementedError

    def _locations(self) -> Tensor:  # pragma: no cover - every subclass has it
        """The component locations (K, dim): their dim and device are those of the draws."""
        raise NotImplementedError

    def _draw(self, comp: Tensor, generator: torch.Generator | None) -> Tensor:  # pragma: no cover
        """One exact draw from each component of ``comp`` (n,), shape (n, dim), dtype ``dtype``."""
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density (logsumexp over components) of x (N, 3) on S^2 or angles (N, d) on
        T^d -> (N,), in the dtype of x."""
        return torch.logsumexp(self.component_log_prob(x), dim=1).to(_dtype_of(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws, shape (n, 3) on S^2 or (n, d) in [-pi, pi)^d: a component by its
        weight, then an exact draw from it (a vMF draw by inverse CDF; Best-Fisher rejection per
        angle for von Mises)."""
        loc = self._locations()
        if _count(n) == 0:
            return torch.empty(0, loc.shape[1], dtype=self.dtype, device=loc.device)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self._draw(comp, generator)


class VMFMixture(_Mixture):
    """A mixture sum_k w_k vMF(mu_k, kappa_k) on S^2.

    Args:
        means: (K, 3) unit vectors.
        kappas: (K,) concentrations >= 0.
        weights: (K,) >= 0, summing to 1 (within 1e-4; renormalized).
        dtype: dtype of samples; default the dtype of ``means``.
    """

    def __init__(
        self,
        means: ArrayLike,
        kappas: ArrayLike,
        weights: ArrayLike,
        *,
        dtype: torch.dtype | None = None,
    ):
        self.means = _unit(means, "means", (None, 3))
        k = self.means.shape[0]
        if k < 1:
            raise ValueError("means must hold at least one component")
        self.kappas = _kappa(kappas, "kappas", (k,))
        self.weights = _weights(weights, k)
        self.dtype = _out_dtype(means, dtype)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """log w_k + log vMF_k(x) for x (N, 3) -> (N, K), float64."""
        x64 = _points(x, 3).to(self.means.device)
        w = x64 @ self.means.T
        return torch.log(self.weights) + _log_c_plus_kappa(self.kappas) + self.kappas * (w - 1)

    def _locations(self) -> Tensor:
        return self.means

    def _draw(self, comp: Tensor, generator: torch.Generator | None) -> Tensor:
        return _sample_vmf(self.means[comp], self.kappas[comp], generator).to(self.dtype)

    @classmethod
    def fit(cls, x: Tensor, k: int, **kwargs) -> VMFMixture:
        """EM fit of k components to unit vectors x (N, 3).

        Keywords (all optional): iters=200, tol=1e-6, generator=None, init="kmeans++",
        kappa_max=1e4, min_weight=1e-6; see :func:`flowmatch.manifolds.fitting.fit_vmf_mixture`.
        """
        from flowmatch.manifolds.fitting import fit_vmf_mixture

        return fit_vmf_mixture(x, k, **kwargs)


class VonMisesMixture(_Mixture):
    """A mixture on T^d whose components are products of d independent von Mises densities.

    p(x) = sum_k w_k prod_j exp(kappa_kj cos(x_j - mu_kj)) / (2 pi I0(kappa_kj)), with
    log I0(kappa) = log i0e(kappa) + kappa (``torch.special.i0e``, stable for large kappa).

    Args:
        mu: (K, d) component locations in radians (wrapped into [-pi, pi)).
        kappa: (K, d) concentrations >= 0.
        weights: (K,) >= 0, summing to 1 (within 1e-4; renormalized).
        dtype: dtype of samples; default the dtype of ``mu``.
    """

    def __init__(
        self,
        mu: ArrayLike,
        kappa: ArrayLike,
        weights: ArrayLike,
        *,
        dtype: torch.dtype | None = None,
    ):
        self.mu = wrap_angle(_tensor(mu, "mu", (None, None)))
        k, d = self.mu.shape
        if k < 1 or d < 1:
            raise ValueError(f"mu must have shape (K, d) with K, d >= 1, got {(k, d)}")
        self.kappa = _kappa(kappa, "kappa", (k, d))
        self.weights = _weights(weights, k)
        self.dtype = _out_dtype(mu, dtype)

    @property
    def dim(self) -> int:
        return self.mu.shape[1]

    def component_log_prob(self, x: Tensor) -> Tensor:
        """log w_k + log p_k(x) for x (N, d) -> (N, K), float64."""
        x64 = _points(x, self.dim).to(self.mu.device)
        cos = torch.cos(x64[:, None, :] - self.mu)  # (N, K, d)
        log_norm = LOG_2PI + torch.log(torch.special.i0e(self.kappa))  # log(2 pi I0) - kappa
        return torch.log(self.weights) + (self.kappa * (cos - 1) - log_norm).sum(-1)

    def _locations(self) -> Tensor:
        return self.mu

    def _draw(self, comp: Tensor, generator: torch.Generator | None) -> Tensor:
        kappa = self.kappa[comp]
        theta = _sample_von_mises(kappa.reshape(-1), generator).reshape(kappa.shape)
        return wrap_angle(wrap_angle(theta + self.mu[comp]).to(self.dtype))

    @classmethod
    def fit(cls, x: Tensor, k: int, **kwargs) -> VonMisesMixture:
        """EM fit of k components to angles x (N, d).

        Keywords as :meth:`VMFMixture.fit`; see
        :func:`flowmatch.manifolds.fitting.fit_von_mises_mixture`.
        """
        from flowmatch.manifolds.fitting import fit_von_mises_mixture

        return fit_von_mises_mixture(x, k, **kwargs)
