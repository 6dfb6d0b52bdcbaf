"""A multilayer perceptron velocity network for vector data (points, tables)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.embeddings import time_frequency as _frequency
from flowmatch.models.registry import register

__all__ = ["ACTIVATIONS", "MLP"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


@register("mlp")
class MLP(nn.Module):
    """An MLP taking (x_t, t) to a prediction of the shape of x_t.

    The input is [x_t, embedding(t)]; ``depth`` hidden layers of width ``hidden`` with the
    chosen activation; a linear output layer of size ``out_dim`` (``dim`` by default).

    Args:
        dim: data dimension D (the input's size).
        hidden: width of the hidden layers.
        depth: number of hidden layers, >= 1.
        activation: silu, gelu, relu or tanh.
        time_embed_dim: size of the sinusoidal time embedding (even).
        time_frequency: highest angular frequency of that embedding (rad per unit time);
            None: 1000, or 10 for a two-time model (MeanFlow's loss differentiates the
            network in time, which high frequencies blow up).
        fourier_features: F > 0 adds sin and cos of F random projections of x to the input,
            [sin(x B), cos(x B)] with B (dim, F) drawn once from N(0, fourier_scale^2) by a
            fixed seed (a buffer, saved with the weights): random Fourier features (Tancik et
            al. 2020), which let a small MLP resolve sharp densities (e.g. cities on a globe).
        fourier_scale: the standard deviation of B (radians per unit of x).
        out_dim: the output's size; None: ``dim``. A manifold model feeds the net features
            of its points (e.g. cos and sin of torus angles, 2d numbers) and reads an ambient
            vector of another size (d angles).
        two_times: also embed the length ``t_end - t`` of an averaging interval (MeanFlow
            models: ``model(x, t, t_end=e)`` is the average velocity from time t, where x is,
            to time e; ``t_end=None`` means e = t, the instantaneous velocity).

    Shapes:
        x (B, D), t (B,) [, t_end (B,)] -> (B, out_dim).

    Example:
        >>> model = MLP(dim=2, hidden=256, depth=3)
        >>> model(torch.randn(8, 2), torch.rand(8)).shape
        torch.Size([8, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        *,
        activation: str = "silu",
        time_embed_dim: int = 64,
        time_frequency: float | None = None,
        two_times: bool = False,
        out_dim: int | None = None,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
    ) -> None:
        super().__init__()
        out_dim = dim if out_dim is None else out_dim
        for name, value in (
            ("dim", dim),
            ("hidden", hidden),
            ("depth", depth),
            ("out_dim", out_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        if isinstance(fourier_features, bool) or not isinstance(fourier_features, int):
            raise ValueError(f"fourier_features must be an integer >= 0, got {fourier_features!r}")
        if fourier_features < 0 or not (fourier_scale > 0 and fourier_scale < float("inf")):
            raise ValueError(
                f"fourier_features must be >= 0 and fourier_scale a finite number > 0, got "
                f"{fourier_features!r} and {fourier_scale!r}"
            )
        self.dim = dim
        b = None
        if fourier_features:
            g = torch.Generator().manual_seed(0)
            b = torch.randn(dim, fourier_features, generator=g) * float(fourier_scale)
        self.fourier: Tensor | None
        self.register_buffer("fourier", b)
        self.two_times = bool(two_times)
        self.time_frequency = _frequency(time_frequency, two_times=self.two_times)
        self.time_embed = SinusoidalTimeEmbedding(time_embed_dim, max_frequency=self.time_frequency)
        layers: list[nn.Module] = []
        width = dim + 2 * fourier_features + time_embed_dim * (2 if two_times else 1)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, *, t_end: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        parts = [x, self.time_embed(t).to(x.dtype)]
        if self.fourier is not None:
            proj = x @ self.fourier.to(x.dtype)
            parts += [torch.sin(proj), torch.cos(proj)]
        if self.two_times:
            gap = torch.zeros_like(t) if t_end is None else t_end - t
            parts.append(self.time_embed(gap).to(x.dtype))
        elif t_end is not None:
            raise ValueError("t_end needs a two_times model (MLP(..., two_times=True))")
        return self.net(torch.cat(parts, dim=1))
