"""EM fits of von Mises-Fisher mixtures on S^2 and von Mises product mixtures on T^d, and the
choice of the number of components on held-out data.

EM (soft assignments) from a k-means++-style seeding on the data points (Arthur & Vassilvitskii
2007, with the chordal distance). The M-step is exact for the weights and mean directions; kappa
solves A(kappa) = r for the weighted mean resultant length r:

- on S^2, A(kappa) = coth(kappa) - 1/kappa; the start is the approximation of Banerjee et al.
  (2005), "Clustering on the unit hypersphere using von Mises-Fisher distributions", JMLR 6,
  kappa = r (p - r^2) / (1 - r^2) with p = 3, followed by Newton steps;
- on T^d, per angle, A(kappa) = I1(kappa) / I0(kappa) (computed as i1e / i0e), the same start
  with p = 2, then Newton steps with A'(kappa) = 1 - A / kappa - A^2.

What is approximate: EM finds a local maximum of the likelihood; kappa is clipped to
``kappa_max`` and weights are floored at ``min_weight`` (then renormalized) so that no
component dies, which makes the result a slightly regularized maximum-likelihood estimate.
The fit is deterministic for a given generator (which is used only by the seeding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from flowmatch.manifolds.distributions import (
    F64,
    VMFMixture,
    VonMisesMixture,
    _points,
    wrap_angle,
)

__all__ = [
    "fit_vmf_mixture",
    "fit_von_mises_mixture",
    "select_mixture",
    "vmf_kappa_from_resultant",
    "von_mises_kappa_from_resultant",
]

_SMALL = 1e-3  # kappa below which A and A' use their Taylor series


def _langevin(k: Tensor) -> tuple[Tensor, Tensor]:
    """A(k) = coth k - 1/k and A'(k) = 1/k^2 - 1/sinh^2 k (series below 1e-3)."""
    small = k < _SMALL
    ks = torch.where(small, torch.ones_like(k), k)
    a = torch.where(small, k / 3 - k**3 / 45, 1 / torch.tanh(ks) - 1 / ks)
    da = torch.where(small, 1 / 3 - k**2 / 15, 1 / ks**2 - 1 / torch.sinh(ks) ** 2)
    return a, da


def _bessel_ratio(k: Tensor) -> tuple[Tensor, Tensor]:
    """A1(k) = I1(k)/I0(k) and A1'(k) = 1 - A1/k - A1^2 (series below 1e-3)."""
    small = k < _SMALL
    ks = torch.where(small, torch.ones_like(k), k)
    ratio = torch.special.i1e(ks) / torch.special.i0e(ks)
    a = torch.where(small, k / 2 - k**3 / 16, ratio)
    da = torch.where(small, 1 / 2 - 3 * k**2 / 16, 1 - ratio / ks - ratio**2)
    return a, da


def _solve_kappa(r, p, fn, kappa_max, newton_steps):
    r = torch.as_tensor(r, dtype=F64).clamp(0.0, 1.0)
    rc = r.clamp(max=1 - 1e-12)
    k = (rc * (p - rc**2) / (1 - rc**2)).clamp(max=kappa_max)
    for _ in range(newton_steps):
        a, da = fn(k)
        step = (a - r) / da.clamp_min(1e-300)
        k = torch.maximum(k - step, k / 10).clamp(max=kappa_max)  # stays >= 0
    return k


def vmf_kappa_from_resultant(
    r: Tensor | float, *, kappa_max: float = 1e4, newton_steps: int = 3
) -> Tensor:
    """kappa with coth(kappa) - 1/kappa = r on S^2 (Banerjee et al. 2005 start + Newton).

    Args:
        r: mean resultant lengths in [0, 1], any shape.
        kappa_max: upper clip of kappa.
        newton_steps: Newton iterations after the approximation (3 reach float64 precision
            except near the clip).

    Returns:
        kappa >= 0, float64, the shape of ``r``.
    """
    return _solve_kappa(r, 3.0, _langevin, kappa_max, newton_steps)


def von_mises_kappa_from_resultant(
    r: Tensor | float, *, kappa_max: float = 1e4, newton_steps: int = 3
) -> Tensor:
    """kappa with I1(kappa)/I0(kappa) = r on the circle (approximation with p = 2 + Newton).

    Args and returns as :func:`vmf_kappa_from_resultant`.
    """
    return _solve_kappa(r, 2.0, _bessel_ratio, kappa_max, newton_steps)


def _check_fit(n: int, k: int, iters: int, init: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (number of components) must be an int >= 1, got {k!r}")
    if k > n:
        raise ValueError(f"k = {k} components need at least {k} points, got {n}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}")
    if init not in ("kmeans++", "random"):
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")


def _seed(x: Tensor, k: int, dist2: Callable, generator, init: str) -> Tensor:
    """Indices of k seed points: k-means++ (D^2 sampling) or k distinct uniform points."""
    n = x.shape[0]
    if init == "random":
        return torch.randperm(n, generator=generator)[:k]
    idx = [int(torch.randint(n, (1,), generator=generator))]
    d2 = dist2(x, x[idx]).squeeze(1)
    for _ in range(k - 1):
        if d2.sum() > 0:
            nxt = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
        else:  # every point coincides with a seed
            nxt = int(torch.randint(n, (1,), generator=generator))
        idx.append(nxt)
        d2 = torch.minimum(d2, dist2(x, x[nxt : nxt + 1]).squeeze(1))
    return torch.tensor(idx)


class _Family(NamedTuple):
    """What sets one mixture family's EM fit apart, for :func:`_em`."""

    dist2: Callable  # (x, centres) -> (N, C) squared chordal distances, for the seeding
    resultant: Callable  # resp (N, K) -> new locations, resultant lengths (K,) or (K, d)
    solve: Callable  # mean resultant length -> kappa (keyword kappa_max)
    params: Callable  # model -> its (locations, kappas)
    build: Callable  # (locations, kappas, weights) -> model


def _em(x, k, family: _Family, iters, tol, generator, init, kappa_max, min_weight):
    """The EM loop of both fits, from hard assignments to the seeds of :func:`_seed`; it stops
    when the mean log-likelihood gains less than ``tol`` (or after ``iters`` steps).

    The E-step is the posterior over ``model.component_log_prob``. The M-step: the weights
    N_k / N, floored at ``min_weight`` and renormalized; each component's new location and
    weighted resultant length; kappa solving A(kappa) = length / N_k; a component left without
    points or with a zero resultant keeps its previous location and kappa.
    """

    def m_step(resp, prev):
        nk = resp.sum(0)
        w = (nk / resp.shape[0]).clamp_min(min_weight)
        loc, length = family.resultant(resp)
        per = nk.reshape(-1, *(1,) * (length.ndim - 1))  # N_k against length's shape
        alive = (per > 1e-10) & (length > 1e-12 * per.clamp_min(1e-300))
        kappa = family.solve(length / per.clamp_min(1e-300), kappa_max=kappa_max)
        if prev is not None:
            old_loc, old_kappa = family.params(prev)
            loc_alive = alive.reshape(*alive.shape, *(1,) * (loc.ndim - alive.ndim))
            loc = torch.where(loc_alive, loc, old_loc)
            kappa = torch.where(alive, kappa, old_kappa)
        return family.build(loc, kappa, w / w.sum())

    dist2 = family.dist2
    seeds = x[_seed(x, k, dist2, generator, init).to(x.device)]
    resp = torch.nn.functional.one_hot(dist2(x, seeds).argmin(1), k).to(F64)
    model, prev, steps, converged = m_step(resp, None), -math.inf, 0, False
    while True:
        joint = model.component_log_prob(x)
        ll_each = torch.logsumexp(joint, dim=1)
        ll = ll_each.mean().item()
        converged = ll - prev < tol
        if converged or steps == iters:
            break
        prev, steps = ll, steps + 1
        model = m_step(torch.exp(joint - ll_each[:, None]), model)
    model.fit_info = {"iterations": steps, "train_log_lik": ll, "converged": converged}
    return model


def fit_vmf_mixture(
    x: Tensor,
    k: int,
    *,
    iters: int = 200,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
    init: str = "kmeans++",
    kappa_max: float = 1e4,
    min_weight: float = 1e-6,
) -> VMFMixture:
    """Fit a K-component von Mises-Fisher mixture to points x (N, 3) on S^2 by EM.

    Args:
        x: (N, 3) unit vectors (norms within 1e-3 of 1; renormalized).
        k: number of components, 1 <= k <= N.
        iters: maximum number of EM iterations.
        tol: stop when the mean training log-likelihood (nats per point) gains less than this.
        generator: random generator of the seeding (the fit is deterministic given it).
        init: "kmeans++" (D^2 seeding from data points) or "random" (k distinct data points).
        kappa_max: upper clip of every kappa.
        min_weight: floor of every weight (then renormalized).

    Returns:
        The fitted :class:`VMFMixture` (samples in the dtype of x), with ``fit_info``
        (iterations, train_log_lik, converged).
    """
    x64 = _points(x, 3)
    _check_fit(x64.shape[0], k, iters, init)
    norm = x64.norm(dim=1, keepdim=True)
    if not torch.isfinite(x64).all() or ((norm - 1).abs() > 1e-3).any():
        raise ValueError("x must hold finite unit vectors (norms within 1e-3 of 1)")
    x64 = x64 / norm

    def resultant(resp):
        s = resp.T @ x64
        length = s.norm(dim=1)
        return s / length.clamp_min(1e-300)[:, None], length

    family = _Family(
        dist2=lambda a, b: (2 - 2 * a @ b.T).clamp_min(0),
        resultant=resultant,
        solve=vmf_kappa_from_resultant,
        params=lambda model: (model.means, model.kappas),
        build=lambda means, kappas, w: VMFMixture(means, kappas, w, dtype=x.dtype),
    )
    return _em(x64, k, family, iters, tol, generator, init, kappa_max, min_weight)


def fit_von_mises_mixture(
    x: Tensor,
    k: int,
    *,
    iters: int = 200,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
    init: str = "kmeans++",
    kappa_max: float = 1e4,
    min_weight: float = 1e-6,
) -> VonMisesMixture:
    """Fit a K-component mixture of products of von Mises densities to angles x (N, d) by EM.

    Per component and angle, mu = atan2(sum r sin x, sum r cos x) and kappa solves
    I1(kappa)/I0(kappa) = mean resultant length. Arguments as :func:`fit_vmf_mixture`, with x
    (N, d) angles in radians (any real values; they are wrapped). The seeding uses the chordal
    distance sum_j 2 - 2 cos(x_j - c_j).

    Returns:
        The fitted :class:`VonMisesMixture` (samples in the dtype of x), with ``fit_info``.
    """
    x64 = _points(x, None)
    _check_fit(x64.shape[0], k, iters, init)
    if not torch.isfinite(x64).all():
        raise ValueError("x must hold finite angles")
    x64 = wrap_angle(x64)
    cos, sin = torch.cos(x64), torch.sin(x64)

    def resultant(resp):
        c, s = resp.T @ cos, resp.T @ sin  # (K, d)
        return torch.atan2(s, c), torch.sqrt(c**2 + s**2)

    def dist2(a, b):
        return (2 - 2 * torch.cos(a[:, None, :] - b[None])).sum(-1)

    family = _Family(
        dist2=dist2,
        resultant=resultant,
        solve=von_mises_kappa_from_resultant,
        params=lambda model: (model.mu, model.kappa),
        build=lambda mu, kappa, w: VonMisesMixture(mu, kappa, w, dtype=x.dtype),
    )
    return _em(x64, k, family, iters, tol, generator, init, kappa_max, min_weight)


def select_mixture(
    cls: type[VMFMixture] | type[VonMisesMixture],
    train: Tensor,
    valid: Tensor,
    ks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    **fit_kwargs: Any,
) -> tuple[VMFMixture | VonMisesMixture, list[tuple[int, float]]]:
    """Fit ``cls`` (VMFMixture or VonMisesMixture) for each K in ks on ``train`` and keep the K
    with the best mean log-likelihood on ``valid`` (ties: the smaller K).

    Args:
        cls: a mixture class with ``fit(x, k, **kwargs)`` and ``log_prob``.
        train: training points, (N, 3) or (N, d).
        valid: validation points, same layout.
        ks: the numbers of components to try (each >= 1 and <= len(train)).
        **fit_kwargs: passed to ``cls.fit`` (iters, tol, generator, init, ...).

    Returns:
        (best model, [(k, mean validation log-likelihood in nats), ...] in the order of ks).
    """
    if not ks:
        raise ValueError("ks must name at least one number of components")
    best, best_ll, table = None, -math.inf, []
    for k in ks:
        model = cls.fit(train, k, **fit_kwargs)
        ll = model.log_prob(valid).to(F64).mean().item()
        table.append((k, ll))
        if best is None or ll > best_ll:
            best, best_ll = model, ll
    assert best is not None  # ks is not empty
    return best, table
