"""What the manifold test modules share: dtypes and tolerances, the manifolds every geometric
check runs on, seeded generators, coordinate differences, a fixed random network field, and the
axial vMF oracle of S^2 with an exact sampler and its exact transport map.

A plain module (not collected): the test modules of tests/manifolds import it by name, pytest
putting their folder on sys.path (tests/ has no __init__.py files).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.manifolds import (
    SO3,
    AxialVMFFlow,
    Euclidean,
    FlatTorus,
    GeodesicPath,
    Manifold,
    ManifoldFlowModel,
    Product,
    Sphere,
    wrap,
)

F32, F64 = torch.float32, torch.float64
TOL = {F32: 1e-5, F64: 1e-10}
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]
ALL = [
    Sphere(2),
    Sphere(3),
    FlatTorus(1),
    FlatTorus(3),
    SO3(),
    Euclidean(2),
    Product(Sphere(2), FlatTorus(2)),
    Product(FlatTorus(2), SO3(), Euclidean(1)),
]
MANIFOLDS = [pytest.param(m, id=repr(m).replace(" ", "")) for m in ALL]
AXIAL = AxialVMFFlow([1.0, 2.0, 2.0], [3.0, 8.0], [1, -1], [0.6, 0.4])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coord_diff(m: Manifold, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """b - a in the coordinates, with torus angles wrapped (the short way round the seam)."""
    if isinstance(m, Product):
        return torch.cat(
            [coord_diff(f, a[:, s], b[:, s]) for f, s in zip(m.factors, m._slices, strict=True)], -1
        )
    if isinstance(m, FlatTorus):
        return wrap(b - a)
    return b - a


def make_model(
    m: Manifold,
    *,
    seed: int = 0,
    scale: float = 1.0,
    dtype: torch.dtype = F64,
    path: GeodesicPath | None = None,
) -> ManifoldFlowModel:
    """A fixed random smooth tangent field: a small seeded MLP (SiLU, slow time embedding)
    wrapped in a ManifoldFlowModel, its output layer scaled by ``scale``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = fm.models.MLP(
            dim=m.feature_dim,
            hidden=16,
            depth=2,
            time_embed_dim=8,
            time_frequency=2.0,
            out_dim=m.ambient_dim,
        )
    last = [mod for mod in net.modules() if isinstance(mod, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    return ManifoldFlowModel(net, m, path=path).to(dtype).eval()


def sample_axial_vmf(flow: AxialVMFFlow, n: int, g: torch.Generator) -> torch.Tensor:
    """Exact draws of the axial vMF mixture, independently of the flow: a component by its
    weight, z = <a, x> by inverting that component's CDF in closed form (kappa e^{kappa s z}
    / (2 sinh kappa) on [-1, 1]), and a uniform longitude."""
    comp = torch.multinomial(flow.weights, n, replacement=True, generator=g)
    k, s = flow.kappas[comp], flow.signs[comp]
    u = torch.rand(n, generator=g, dtype=F64)
    e = torch.exp(-2 * k)
    z_plus = 1 + torch.log(e + u * (1 - e)) / k  # C(z) = (e^{k(z-1)} - e^{-2k}) / (1 - e^{-2k})
    z_minus = -1 - torch.log(1 - u * (1 - e)) / k  # C(z) = (1 - e^{-k(z+1)}) / (1 - e^{-2k})
    z = torch.where(s > 0, z_plus, z_minus).clamp(-1, 1)
    a = flow.axis
    e1 = torch.linalg.cross(a, torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(a, e1)
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=F64)
    r = (1 - z**2).clamp_min(0).sqrt()
    return z[:, None] * a + r[:, None] * (
        torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2
    )


def axial_transport(flow: AxialVMFFlow, x0: torch.Tensor) -> torch.Tensor:
    """The exact time-1 map of the axial flow: z moves to the same quantile, C_1(z_1) =
    C_0(z_0) = (z_0 + 1) / 2 (bisection to float64 precision), the longitude is kept."""
    a = flow.axis
    z0 = (x0 @ a).clamp(-1, 1)
    target = (z0 + 1) / 2
    lo, hi = torch.full_like(z0, -1.0), torch.full_like(z0, 1.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = flow.z_cdf(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    z1 = (lo + hi) / 2
    perp = x0 - z0[:, None] * a
    perp = perp / perp.norm(dim=-1, keepdim=True)
    return z1[:, None] * a + (1 - z1**2).clamp_min(0).sqrt()[:, None] * perp
