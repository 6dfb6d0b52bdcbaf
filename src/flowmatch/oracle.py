"""Analytic ground truth: Gaussian mixtures with exact densities and exact marginal velocities.

For a data distribution q(x1) = sum_k w_k N(mu_k, s_k^2 I), a source N(0, I) and the affine
path x_t = alpha_t x1 + sigma_t x0, given the component k the point x_t is Gaussian,
N(alpha_t mu_k, v_k I) with v_k = alpha_t^2 s_k^2 + sigma_t^2, and

    E[x1 | x_t, k] = mu_k + (alpha_t s_k^2 / v_k) (x_t - alpha_t mu_k)
    E[x0 | x_t, k] = (sigma_t / v_k) (x_t - alpha_t mu_k).

The marginal velocity (Lipman et al. 2023, eq. 8) is the posterior average of the conditional
one: v(x, t) = sum_k p(k | x_t) (alpha_t' E[x1 | x_t, k] + sigma_t' E[x0 | x_t, k]), with the
posterior computed in log space (softmax of log w_k + log N(x_t; alpha_t mu_k, v_k I)).
Time runs from t=0 (noise) to t=1 (data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowmatch.paths import AffinePath, check_time

__all__ = ["GaussianMixture"]


def _as_tensor(
    value: Tensor | Sequence[Sequence[float]] | Sequence[float] | float, name: str
) -> Tensor:
    try:
        out = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numeric, got {value!r}") from err
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite")
    return out


class GaussianMixture:
    """A mixture of isotropic Gaussians in any dimension, with exact marginal velocities.

    Args:
        means: component means, shape (K, D).
        stds: component standard deviations, shape (K,) or a scalar, each > 0.
        weights: mixture weights, shape (K,), >= 0 (normalized here); uniform when None.

    Computations run in float64 and return the dtype of their input.

    Example:
        >>> gm = GaussianMixture([[-2.0, 0.0], [2.0, 0.0]], 0.3)
        >>> x1 = fm.solve_ode(gm.velocity(fm.AffinePath()), torch.randn(1000, 2),
        ...                   method="dopri5").x
    """

    def __init__(
        self,
        means: Tensor | Sequence[Sequence[float]],
        stds: Tensor | Sequence[float] | float,
        weights: Tensor | Sequence[float] | None = None,
    ) -> None:
        mu = _as_tensor(means, "means")
        if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D), got {tuple(mu.shape)}")
        k = mu.shape[0]
        std = _as_tensor(stds, "stds")
        if std.ndim == 0:
            std = std.expand(k).clone()
        if std.shape != (k,):
            raise ValueError(f"stds must be a scalar or have shape ({k},), got {tuple(std.shape)}")
        if not (std > 0).all():
            raise ValueError("stds must all be > 0")
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else None
        if w is None:
            assert weights is not None  # w is None only when weights are given
            w = _as_tensor(weights, "weights")
            if w.shape != (k,):
                raise ValueError(f"weights must have shape ({k},), got {tuple(w.shape)}")
            if (w < 0).any() or w.sum() <= 0:
                raise ValueError("weights must be >= 0 with a positive sum")
            w = w / w.sum()
        self.means = mu
        self.stds = std
        self.weights = w

    @property
    def dim(self) -> int:
        """The dimension D of the data."""
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        """The number of components K."""
        return self.means.shape[0]

    def _check_points(self, x: Tensor, name: str = "x") -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}), got {tuple(x.shape)}")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw n points, shape (n, D), float32 (use ``sample_with_labels`` for components)."""
        return self.sample_with_labels(n, generator=generator)[0]

    def sample_with_labels(
        self, n: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw n points (n, D) float32 and the index of the component of each, (n,) int64."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        x = self.means[labels] + self.stds[labels, None] * z
        return x.float(), labels

    def _log_joint(self, x: Tensor, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log w_k + log N(x; a mu_k, (a^2 s_k^2 + s^2) I) for x (N, D) float64, a and s (N, 1).

        Returns the log-joint (N, K), the variances (N, K) and x - a mu_k (N, K, D).
        """
        var = a * a * self.stds**2 + s * s
        diff = x[:, None, :] - a[:, :, None] * self.means[None]
        sq = (diff**2).sum(-1)
        log_joint = (
            torch.log(self.weights) - 0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        )
        return log_joint, var, diff

    def _data_log_joint(self, x: Tensor) -> Tensor:
        self._check_points(x)
        one = torch.ones(x.shape[0], 1, dtype=torch.float64)
        return self._log_joint(x.to(torch.float64), one, 0.0 * one)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density of points x (N, D); returns (N,) in x's dtype."""
        return torch.logsumexp(self._data_log_joint(x), dim=1).to(x.dtype)

    def assign(self, x: Tensor) -> Tensor:
        """The most probable component of each point x (N, D); (N,) int64."""
        return self._data_log_joint(x).argmax(dim=1)

    def _posterior_moments(
        self, path: AffinePath, x: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Posterior p(k|x_t) (N, K) and E[x1|x_t], E[x0|x_t] (N, D), plus the coefficients."""
        a, s, da, ds = (c[:, None] for c in path.schedule(t.to(torch.float64)))  # (N, 1)
        logits, var, diff = self._log_joint(x.to(torch.float64), a, s)
        post = torch.softmax(logits, dim=1)  # (N, K)
        gain1 = (a * self.stds**2 / var)[..., None]  # (N, K, 1)
        gain0 = (s / var)[..., None]
        e_x1 = (post[..., None] * (self.means[None] + gain1 * diff)).sum(1)
        e_x0 = (post[..., None] * (gain0 * diff)).sum(1)
        return post, e_x1, e_x0, torch.cat([da, ds], dim=1)

    def velocity(self, path: AffinePath | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """The exact marginal velocity field v(x, t) of ``path`` from N(0, I) to this mixture.

        Args:
            path: the affine path; ``AffinePath()`` (linear) by default.

        Returns:
            A callable ``v(x, t)`` with x (N, D) and t (N,), returning (N, D) in x's dtype.
        """
        path = path if path is not None else AffinePath()

        def v(x: Tensor, t: Tensor) -> Tensor:
            self._check_points(x)
            check_time(t, x)
            _, e_x1, e_x0, d = self._posterior_moments(path, x, t)
            return (d[:, :1] * e_x1 + d[:, 1:] * e_x0).to(x.dtype)

        return v

    def posterior_mean(self, path: AffinePath, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """E[x1 | x_t = x] and E[x0 | x_t = x], each (N, D) in x's dtype, for x (N, D), t (N,)."""
        self._check_points(x)
        check_time(t, x)
        _, e_x1, e_x0, _ = self._posterior_moments(path, x, t)
        return e_x1.to(x.dtype), e_x0.to(x.dtype)

    def log_prob_t(self, path: AffinePath, x: Tensor, t: Tensor) -> Tensor:
        """Exact log-density of the path's marginal p_t at points x (N, D), times t (N,)."""
        self._check_points(x)
        check_time(t, x)
        a, s = (c[:, None] for c in path.schedule(t.to(torch.float64))[:2])
        log_joint = self._log_joint(x.to(torch.float64), a, s)[0]
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)
