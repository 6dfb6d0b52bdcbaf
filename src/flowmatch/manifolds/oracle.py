"""A flow on S^2 known in closed form: uniform (t = 0) to an axial von Mises-Fisher mixture
(t = 1), for testing samplers and likelihoods on the sphere against exact answers.

Let a be a unit axis and z = <a, x>. An axial vMF mixture has components centred at +a or -a:

    p_1(x) = f_1(z) / (2 pi),   f_1(z) = sum_k w_k kappa_k exp(kappa_k s_k z) / (2 sinh kappa_k),

s_k = +1 or -1, and f_1 is the density of z (the uniform distribution has f_0 = 1/2 on [-1, 1],
Archimedes). The mixture path f_t = (1 - t) f_0 + t f_1 is carried by the flux
j_t(z) = C_0(z) - C_1(z) (C the CDFs: d f_t/dt + d j/dz = 0, j = 0 at both poles), so z moves
with speed g = j / f_t and x along its meridian, keeping its longitude:

    v(x, t) = g(z, t) (a - z x) / (1 - z^2),

smooth on the whole sphere (at the poles j vanishes like 1 - z^2). Its marginal at time t has
density f_t(<a, x>) / (2 pi) exactly, so a sampler's output can be compared with p_1 and a
likelihood computed by integrating the divergence of v with log p_1 in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["AxialVMFFlow"]


class AxialVMFFlow:
    """The closed-form flow from uniform on S^2 to an axial vMF mixture (module docstring).

    Args:
        axis: the axis a, a 3-vector (normalized here).
        kappas: the concentrations kappa_k > 0.
        signs: +1 (centred at a) or -1 (centred at -a) per component.
        weights: the mixture weights (positive, summing to 1).
    """

    def __init__(
        self,
        axis: Sequence[float] | Tensor,
        kappas: Sequence[float],
        signs: Sequence[int],
        weights: Sequence[float],
    ) -> None:
        a = torch.as_tensor(axis, dtype=torch.float64)
        if a.shape != (3,) or not a.norm() > 0:
            raise ValueError(f"axis must be a non-zero 3-vector, got {axis!r}")
        if not (len(kappas) == len(signs) == len(weights) >= 1):
            raise ValueError("kappas, signs and weights must have the same length >= 1")
        if any(k <= 0 for k in kappas) or any(s not in (1, -1) for s in signs):
            raise ValueError("kappas must be > 0 and signs +1 or -1")
        if any(w <= 0 for w in weights) or abs(sum(weights) - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {weights!r}")
        self.axis = a / a.norm()
        self.kappas = torch.tensor(kappas, dtype=torch.float64)
        self.signs = torch.tensor(signs, dtype=torch.float64)
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def _z(self, x: Tensor) -> Tensor:
        return (x.double() @ self.axis.to(x.device)).clamp(-1.0, 1.0)

    def _parts(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """f_1(z) and C_1(z), in a form that does not overflow for large kappa."""
        k, s, w = (p.to(z.device) for p in (self.kappas, self.signs, self.weights))
        zz = z[:, None]
        norm = -torch.expm1(-2 * k)  # 1 - exp(-2 kappa)
        # s = +1: f = k e^{k(z-1)} / norm, C = (e^{k(z-1)} - e^{-2k}) / norm
        # s = -1: f = k e^{-k(z+1)} / norm, C = (1 - e^{-k(z+1)}) / norm
        e = torch.where(s > 0, torch.exp(k * (zz - 1)), torch.exp(-k * (zz + 1)))
        f = (w * k * e / norm).sum(1)
        cdf = torch.where(s > 0, e - torch.exp(-2 * k), 1 - e) / norm
        return f, (w * cdf).sum(1)

    def log_prob(self, x: Tensor, t: float = 1.0) -> Tensor:
        """log p_t(x) w.r.t. the area of S^2, x (B, 3) unit vectors -> (B,) (float64)."""
        f1, _ = self._parts(self._z(x))
        return torch.log((1 - t) * 0.5 + t * f1) - math.log(2 * math.pi)

    def z_cdf(self, z: Tensor) -> Tensor:
        """C_1(z), the CDF of z = <a, x> under p_1 (for a KS test of samples)."""
        return self._parts(z.double())[1]

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """v(x, t), x (B, 3) on S^2, t (B,) -> (B, 3), tangent at x (in x's dtype)."""
        xd = x.double()
        z = self._z(xd)
        f1, c1 = self._parts(z)
        td = t.double()
        f_t = (1 - td) * 0.5 + td * f1
        flux = (z + 1) / 2 - c1
        one_minus = (1 - z * z).clamp_min(1e-300)
        speed = flux / (f_t * one_minus)
        a = self.axis.to(x.device)
        return (speed[:, None] * (a - z[:, None] * xd)).to(x.dtype)
