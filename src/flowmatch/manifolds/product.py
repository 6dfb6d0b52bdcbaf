"""Products of manifolds over concatenated coordinates."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from flowmatch.manifolds.base import Manifold

__all__ = ["Product"]


class Product(Manifold):
    """M_1 x ... x M_k: a point is the concatenation of its factors' coordinates (B, sum n_i).

    Every operation acts factor by factor on its slice of the coordinates; the metric is the
    sum of the factors' (so dist^2 is the sum of the squared distances) and the volume the
    product of theirs. The base of a flow is the product of the factors' bases (uniform on a
    compact factor, N(0, I) on a Euclidean one). Example: a residue's backbone angles and its
    frame, ``Product(FlatTorus(2), SO3())``, 11 coordinates, dimension 5.
    """

    name = "product"

    def __init__(self, *factors: Manifold) -> None:
        if not factors:
            raise ValueError("a product needs at least one factor")
        for f in factors:
            if not isinstance(f, Manifold):
                raise ValueError(f"every factor must be a Manifold, got {type(f).__name__}")
        self.factors = tuple(factors)
        self.dim = sum(f.dim for f in factors)
        self.ambient_dim = sum(f.ambient_dim for f in factors)
        self.feature_dim = sum(f.feature_dim for f in factors)
        self.compact = all(f.compact for f in factors)
        bounds = [0]
        for f in factors:
            bounds.append(bounds[-1] + f.ambient_dim)
        self._slices = [slice(a, b) for a, b in itertools.pairwise(bounds)]

    def _split(self, x: Tensor) -> list[Tensor]:
        return [x[..., s] for s in self._slices]

    def _map(self, fn: str, *args: Tensor) -> Tensor:
        parts = zip(self.factors, *(self._split(a) for a in args), strict=True)
        return torch.cat([getattr(f, fn)(*xs) for f, *xs in parts], dim=-1)

    def _sum(self, fn: str, *args: Tensor) -> Tensor:
        parts = zip(self.factors, *(self._split(a) for a in args), strict=True)
        return torch.stack([getattr(f, fn)(*xs) for f, *xs in parts], 0).sum(0)

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        return self._map("exp", x, u)

    def geodesic(self, x: Tensor, u: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        parts = zip(self.factors, self._split(x), self._split(u), strict=True)
        outs = [f.geodesic(a, b, s) for f, a, b in parts]
        return torch.cat([o[0] for o in outs], -1), torch.cat([o[1] for o in outs], -1)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return self._map("log", x, y)

    def proj_point(self, x: Tensor) -> Tensor:
        return self._map("proj_point", x)

    def proj_tangent(self, x: Tensor, v: Tensor) -> Tensor:
        return self._map("proj_tangent", x, v)

    def features(self, x: Tensor) -> Tensor:
        return self._map("features", x)

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        return self._sum("inner", x, u, v)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        parts = zip(self.factors, self._split(x), self._split(y), strict=True)
        return torch.stack([f.dist(a, b) ** 2 for f, a, b in parts], 0).sum(0).sqrt()

    def point_error(self, x: Tensor) -> Tensor:
        parts = zip(self.factors, self._split(x), strict=True)
        return torch.stack([f.point_error(a) for f, a in parts], 0).amax(0)

    @property
    def log_volume(self) -> float:
        return sum(f.log_volume for f in self.factors)

    def random_uniform(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        return torch.cat(
            [f.random_uniform(n, generator=generator, dtype=dtype) for f in self.factors], -1
        )

    def random_base(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        return torch.cat(
            [f.random_base(n, generator=generator, dtype=dtype) for f in self.factors], -1
        )

    def base_log_prob(self, x: Tensor) -> Tensor:
        return self._sum("base_log_prob", x)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "factors": [f.to_dict() for f in self.factors]}

    def __repr__(self) -> str:
        return f"Product({', '.join(repr(f) for f in self.factors)})"
