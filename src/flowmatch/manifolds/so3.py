"""The rotation group SO(3), as 3x3 rotation matrices (9 coordinates per point).

Why matrices and not unit quaternions: quaternions cover every rotation twice (q and -q), so
a density over them must be made symmetric and every log map must pick the nearer of two
representatives; a network fed quaternions sees a discontinuity wherever a canonical sign is
chosen. Matrices are one-to-one with rotations and their entries are a continuous feature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowmatch.manifolds.base import Manifold

__all__ = ["SO3", "hat", "so3_exp", "so3_log", "vee"]

_SMALL = 1e-3  # below this angle the Rodrigues coefficients use their Taylor series


def hat(w: Tensor) -> Tensor:
    """The skew matrix [w]_x with [w]_x v = w x v: (..., 3) -> (..., 3, 3)."""
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*w.shape[:-1], 3, 3)


def vee(m: Tensor) -> Tensor:
    """The vector of the skew part of m: (..., 3, 3) -> (..., 3) (the inverse of :func:`hat`)."""
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
        -1,
    )


def so3_exp(w: Tensor) -> Tensor:
    """The rotation by angle |w| about w/|w| (Rodrigues): (..., 3) -> (..., 3, 3)."""
    theta = w.norm(dim=-1)[..., None, None]
    t2 = theta**2
    small = theta < _SMALL
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - t2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(safe)) / safe**2)
    k = hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def so3_log(q: Tensor) -> Tensor:
    """The rotation vector w (angle |w| in [0, pi], axis w/|w|) of rotations q (..., 3, 3).

    The angle is atan2(|vee(q)|, (tr q - 1) / 2), accurate everywhere. Below pi/2 the axis is
    the skew part divided by sin(angle); from pi/2 on it is read from the symmetric part
    ((q + q^T)/2 - cos(angle) I = (1 - cos(angle)) a a^T, the column with the largest diagonal),
    with its sign from the skew part, which stays accurate as sin(angle) -> 0. **At exactly
    pi** both signs are the same rotation; the one returned is the one the skew part's
    round-off points to (or the positive one when that is zero).
    """
    s = vee(q)
    sin = s.norm(dim=-1)
    cos = ((q.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    theta = torch.atan2(sin, cos)
    # small angles: w = s * theta / sin(theta)
    ratio = torch.where(sin > 0, theta / torch.where(sin > 0, sin, torch.ones_like(sin)), 1.0)
    w_small = s * ratio[..., None]
    # large angles: the axis from the symmetric part
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    m = 0.5 * (q + q.transpose(-1, -2)) - cos[..., None, None] * eye
    j = m.diagonal(dim1=-2, dim2=-1).argmax(-1)
    col = torch.gather(m, -1, j[..., None, None].expand(*m.shape[:-1], 1)).squeeze(-1)
    axis = col / col.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    sign = torch.where((axis * s).sum(-1) < 0, -1.0, 1.0).to(q.dtype)
    w_large = axis * (sign * theta)[..., None]
    return torch.where((theta < math.pi / 2)[..., None], w_small, w_large)


class SO3(Manifold):
    """Rotations of R^3 as matrices R (R^T R = I, det R = 1), flattened row-major to (B, 9).

    Tangent vectors at R are R [w]_x (flattened); the metric is half the Frobenius inner
    product, <U, V>_R = tr(U^T V) / 2, so that |R [w]_x| = |w| and the geodesic distance is the
    angle of the relative rotation R^T S, in [0, pi]. The total volume is then 8 pi^2.
    exp(R, R [w]_x) = R Exp(w) (Rodrigues); log(R, S) = R [Log(R^T S)]_x.

    Numerical care:
        - **Angle pi**: two geodesics of length pi join R to S; :func:`so3_log` reads the axis
          from the symmetric part there (see its docstring) and returns one of them.
        - Small angles use the Taylor series of the Rodrigues coefficients.
        - :meth:`proj_point` is the nearest rotation (SVD with the determinant fixed), used by
          the samplers against round-off drift.
    """

    name = "so3"
    dim = 3
    ambient_dim = 9
    feature_dim = 9

    def __init__(self) -> None:
        pass

    @staticmethod
    def _m(x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], 3, 3)

    @staticmethod
    def _flat(m: Tensor) -> Tensor:
        return m.reshape(*m.shape[:-2], 9)

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        r = self._m(x)
        w = vee(r.transpose(-1, -2) @ self._m(u))
        return self._flat(r @ so3_exp(w))

    def geodesic(self, x: Tensor, u: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        r = self._m(x)
        w = vee(r.transpose(-1, -2) @ self._m(u))
        y = r @ so3_exp(s[:, None].to(x.dtype) * w)
        return self._flat(y), self._flat(y @ hat(w))

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        r = self._m(x)
        w = so3_log(r.transpose(-1, -2) @ self._m(y))
        return self._flat(r @ hat(w))

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return so3_log(self._m(x).transpose(-1, -2) @ self._m(y)).norm(dim=-1)

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        return 0.5 * (u * v).sum(-1)

    def proj_tangent(self, x: Tensor, v: Tensor) -> Tensor:
        r, a = self._m(x), self._m(v)
        rta = r.transpose(-1, -2) @ a
        return self._flat(r @ (0.5 * (rta - rta.transpose(-1, -2))))

    def proj_point(self, x: Tensor) -> Tensor:
        u, _, vh = torch.linalg.svd(self._m(x))
        d = torch.det(u @ vh)
        fix = torch.ones(*d.shape, 3, dtype=x.dtype, device=x.device)
        fix[..., 2] = torch.sign(d)
        return self._flat(u @ (fix[..., None] * vh))

    def point_error(self, x: Tensor) -> Tensor:
        r = self._m(x)
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        ortho = (r.transpose(-1, -2) @ r - eye).abs().flatten(-2).amax(-1)
        return torch.maximum(ortho, (torch.det(r) - 1).abs())

    @property
    def log_volume(self) -> float:
        return math.log(8 * math.pi**2)

    def random_uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Haar-uniform rotations: a uniform unit quaternion (a normalized 4-D Gaussian)."""
        q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
        w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
        m = torch.stack(
            [
                1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
            ],
            -1,
        )  # fmt: skip
        return m.to(dtype)

    def to_dict(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        return "SO3()"
