"""Interpolation between data points through a flow's noise space (encode, slerp, decode).

Time runs from t=0 (noise) to t=1 (data).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch.paths import AffinePath, BrownianBridgePath

__all__ = ["interpolate", "slerp"]


def slerp(z0: Tensor, z1: Tensor, alpha: Tensor) -> Tensor:
    """Spherical interpolation between noise vectors (keeps Gaussian noise at its typical norm).

    Args:
        z0: the first endpoint, shape (*D) (flattened for the angle).
        z1: the second endpoint, shape (*D).
        alpha: interpolation weights in [0, 1], shape (K,).

    Returns:
        The interpolants, shape (K, *D); ``alpha=0`` gives z0 and ``alpha=1`` gives z1. Falls
        back to linear interpolation when z0 and z1 are (anti)parallel.
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {z0.shape} and {z1.shape}")
    a, b = z0.flatten().double(), z1.flatten().double()
    cos = (a @ b) / (a.norm() * b.norm()).clamp_min(1e-300)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    w = alpha.double().reshape(-1, 1)
    if torch.sin(theta) < 1e-6:
        out = (1 - w) * a + w * b
    else:
        out = (torch.sin((1 - w) * theta) * a + torch.sin(w * theta) * b) / torch.sin(theta)
    return out.to(z0.dtype).reshape(alpha.shape[0], *z0.shape)


@torch.no_grad()
def interpolate(
    model: nn.Module,
    x_a: Tensor,
    x_b: Tensor,
    *,
    num: int = 8,
    steps: int | None = 16,
    method: str = "midpoint",
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
    cond: Tensor | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Tensor:
    """Interpolate between two data points through the model's noise space.

    Both points are encoded to noise (dopri5, t=1 -> 0), the noise is interpolated with
    :func:`slerp`, and every interpolant is decoded with the given sampler (t=0 -> 1). The
    first and last outputs reproduce x_a and x_b up to the solvers' error.

    Args:
        model: a trained model.
        x_a: the first data point, shape (*D).
        x_b: the second data point, shape (*D).
        num: number of outputs (>= 2), endpoints included.
        steps: the decoding sampler's steps (see :func:`sample`).
        method: the decoding sampler (see :func:`sample`).
        path: see :func:`model_velocity`.
        prediction: see :func:`model_velocity`.
        cond: conditioning of one point, shape (...), used for every output.
        atol: dopri5's absolute tolerance of the encoding (and of a dopri5 decoding).
        rtol: dopri5's relative tolerance, likewise.

    Returns:
        The interpolated data, shape (num, *D).
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    if x_a.shape != x_b.shape:
        raise ValueError(f"x_a and x_b must have the same shape, got {x_a.shape} and {x_b.shape}")
    from flowmatch.sampling import encode, sample

    pair_cond = None if cond is None else cond.unsqueeze(0).expand(2, *cond.shape)
    z = encode(
        model,
        torch.stack([x_a, x_b]),
        path=path,
        prediction=prediction,
        cond=pair_cond,
        atol=atol,
        rtol=rtol,
    )
    alpha = torch.linspace(0.0, 1.0, num, dtype=torch.float64)
    noise = slerp(z[0], z[1], alpha)
    all_cond = None if cond is None else cond.unsqueeze(0).expand(num, *cond.shape)
    return sample(
        model,
        noise,
        steps=steps,
        method=method,
        path=path,
        prediction=prediction,
        cond=all_cond,
        atol=atol,
        rtol=rtol,
    )
