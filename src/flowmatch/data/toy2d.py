"""Built-in 2-D toy datasets for flow matching benchmarks.

Every set is written directly in torch and draws all of its randomness from the
``torch.Generator`` it is given (torch's global RNG when ``generator=None``), so a fixed seed
reproduces a draw exactly. Points are i.i.d.: each sample first picks its component (square,
mode, moon, circle, arm, ring) at random, then its position. All sets lie roughly in
``[-4, 4]^2`` like the usual benchmarks (FFJORD, Grathwohl et al. 2019; TorchCFM; Meta's
flow_matching examples).

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> x1 = sample_toy("checkerboard", 1024, generator=g)
    >>> x1.shape
    torch.Size([1024, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CHECKERBOARD_LOG_DENSITY",
    "TOY_DATASETS",
    "ToyDataset",
    "checkerboard_log_prob",
    "eight_gaussians_params",
    "list_toy",
    "sample_toy",
]

Sampler = Callable[[int, torch.Generator | None, torch.dtype], Tensor]

# --- checkerboard ---------------------------------------------------------------------------

#: Log-density inside a black square: the density is uniform on 8 squares of side 2 (area 32).
CHECKERBOARD_LOG_DENSITY: float = -math.log(32.0)

_BOARD_HALF_WIDTH = 4.0  # the board is [-4, 4]^2
_SQUARE_SIDE = 2.0  # a 4x4 board of squares of side 2
# Lower-left corners of the 8 black squares: square (i, j) is black when i + j is even, where
# i, j in {0, 1, 2, 3} index the columns (x) and rows (y) from the lower-left corner (-4, -4).
_BLACK_SQUARES = [(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]


def _checkerboard(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    corners = torch.tensor(_BLACK_SQUARES, dtype=dtype) * _SQUARE_SIDE - _BOARD_HALF_WIDTH
    square = torch.randint(0, len(_BLACK_SQUARES), (n,), generator=generator)
    offset = torch.rand(n, 2, generator=generator, dtype=dtype) * _SQUARE_SIDE
    return corners[square] + offset


def checkerboard_log_prob(x: Tensor) -> Tensor:
    """Exact log-density of the ``checkerboard`` toy set.

    The density is uniform on the 8 black squares of side 2 of a 4x4 board on ``[-4, 4]^2``
    (total area 32): ``-log(32)`` inside a black square, ``-inf`` elsewhere (white squares,
    outside the board, NaN). Squares are half-open ``[a, a + 2)`` like the sampler, except that
    the board's outer edge at 4 is included.

    Args:
        x: points, shape (B, 2).

    Returns:
        Log-density in nats, shape (B,), dtype of ``x`` (float32 for integer input).
    """
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x: expected shape (B, 2), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    inside = ((x >= -_BOARD_HALF_WIDTH) & (x <= _BOARD_HALF_WIDTH)).all(dim=1)
    index = torch.floor((x + _BOARD_HALF_WIDTH) / _SQUARE_SIDE).clamp(0, 3).to(torch.long)
    black = (index.sum(dim=1) % 2) == 0
    return torch.where(
        inside & black,
        torch.full_like(x[:, 0], CHECKERBOARD_LOG_DENSITY),
        torch.full_like(x[:, 0], -math.inf),
    )


# --- 8 gaussians ----------------------------------------------------------------------------

# FFJORD's convention with an exact sqrt(2): centers at radius 4 / sqrt(2) = 2 sqrt(2) ~ 2.83,
# std 0.5 / sqrt(2) ~ 0.354, so the whole mixture stays inside about [-4, 4]^2.
_EIGHT_RADIUS = 2.0 * math.sqrt(2.0)
_EIGHT_STD = 0.5 / math.sqrt(2.0)


def eight_gaussians_params(*, dtype: torch.dtype = torch.float32) -> tuple[Tensor, float, Tensor]:
    """Exact parameters of the ``8gaussians`` mixture.

    Eight isotropic Gaussians with equal weights, centered at angles ``k * pi / 4``
    (k = 0..7, counter-clockwise from the positive x axis) on the circle of radius
    ``2 * sqrt(2)`` (~2.83), each with standard deviation ``sqrt(2) / 4`` (~0.354) per
    coordinate. This is FFJORD's mixture (radius 4, std 0.5, then divided by sqrt(2)).

    Args:
        dtype: floating dtype of the returned tensors.

    Returns:
        ``(means, std, weights)``: means of shape (8, 2), the per-coordinate standard deviation
        shared by all components, and weights of shape (8,) summing to 1.
    """
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4.0)
    means = _EIGHT_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    weights = torch.full((8,), 1.0 / 8.0, dtype=torch.float64)
    return means.to(dtype), _EIGHT_STD, weights.to(dtype)


def _eight_gaussians(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    means, std, _ = eight_gaussians_params(dtype=dtype)
    mode = torch.randint(0, 8, (n,), generator=generator)
    return means[mode] + std * torch.randn(n, 2, generator=generator, dtype=dtype)


# --- moons, circles, spirals, rings ---------------------------------------------------------

_MOONS_NOISE = 0.2
_CIRCLES_RADII = (1.5, 3.0)
_CIRCLES_NOISE = 0.1
_SPIRAL_TURNS = 1.5  # the arm angle runs over [0, 3 pi]
_SPIRAL_NOISE = 0.1
_RINGS_RADII = (0.75, 1.5, 2.25, 3.0)
_RINGS_NOISE = 0.08


def _moons(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # sklearn's make_moons shapes, centered at (0.5, 0.25) and scaled by 2: the upper moon is
    # (2 cos a - 1, 2 sin a - 0.5), a in [0, pi]; the lower moon is its mirror image through 0.
    sign = torch.randint(0, 2, (n,), generator=generator).to(dtype) * 2.0 - 1.0
    angle = torch.rand(n, generator=generator, dtype=dtype) * math.pi
    arc = torch.stack([2.0 * torch.cos(angle) - 1.0, 2.0 * torch.sin(angle) - 0.5], dim=1)
    noise = torch.randn(n, 2, generator=generator, dtype=dtype)
    return sign[:, None] * arc + _MOONS_NOISE * noise


def _on_circles(
    radii: tuple[float, ...],
    noise_std: float,
    n: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> Tensor:
    """Equal-weight mixture of circles centered at 0, with isotropic Gaussian noise."""
    ring = torch.randint(0, len(radii), (n,), generator=generator)
    radius = torch.tensor(radii, dtype=dtype)[ring]
    angle = torch.rand(n, generator=generator, dtype=dtype) * (2.0 * math.pi)
    circle = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return circle + noise_std * torch.randn(n, 2, generator=generator, dtype=dtype)


def _circles(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    return _on_circles(_CIRCLES_RADII, _CIRCLES_NOISE, n, generator, dtype)


def _rings(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    return _on_circles(_RINGS_RADII, _RINGS_NOISE, n, generator, dtype)


def _spirals(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # Archimedean arms r = a / 3 at angle a in [0, 3 pi] (FFJORD's "2spirals" scale); drawing
    # a = 3 pi sqrt(u) spreads points roughly evenly along the arc. The second arm is the first
    # rotated by pi.
    sign = torch.randint(0, 2, (n,), generator=generator).to(dtype) * 2.0 - 1.0
    angle = torch.sqrt(torch.rand(n, generator=generator, dtype=dtype)) * (
        2.0 * math.pi * _SPIRAL_TURNS
    )
    radius = angle / 3.0
    arm = torch.stack([-radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    noise = torch.randn(n, 2, generator=generator, dtype=dtype)
    return sign[:, None] * arm + _SPIRAL_NOISE * noise


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyDataset:
    """A registered 2-D toy dataset.

    Attributes:
        name: registry key, as used in configs (``data: {name: ...}``).
        description: one line for ``flowmatch datasets``.
        sampler: ``sampler(n, generator, dtype)`` returning i.i.d. points of shape (n, 2).
    """

    name: str
    description: str
    sampler: Sampler


TOY_DATASETS: dict[str, ToyDataset] = {
    d.name: d
    for d in (
        ToyDataset(
            "checkerboard",
            "uniform on the 8 black squares (side 2) of a 4x4 board on [-4, 4]^2; exact "
            "log-density -log 32",
            _checkerboard,
        ),
        ToyDataset(
            "8gaussians",
            "8 equal-weight Gaussians (std 0.354) on a circle of radius 2.83",
            _eight_gaussians,
        ),
        ToyDataset(
            "moons",
            "two interleaving half circles of radius 2 in [-3, 3] x [-1.5, 1.5], noise std 0.2",
            _moons,
        ),
        ToyDataset(
            "circles",
            "two concentric circles of radii 1.5 and 3, equal weights, noise std 0.1",
            _circles,
        ),
        ToyDataset(
            "spirals",
            "two interleaved Archimedean spiral arms (1.5 turns, radius up to pi), noise std 0.1",
            _spirals,
        ),
        ToyDataset(
            "rings",
            "four concentric rings of radii 0.75, 1.5, 2.25, 3, equal weights, noise std 0.08",
            _rings,
        ),
    )
}


def list_toy() -> list[str]:
    """Names of the built-in 2-D toy datasets, in registry order."""
    return list(TOY_DATASETS)


def sample_toy(
    name: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw i.i.d. points from a built-in 2-D toy dataset (the data side, t=1).

    Args:
        name: one of :func:`list_toy` (``checkerboard``, ``8gaussians``, ``moons``,
            ``circles``, ``spirals``, ``rings``).
        n: number of points, at least 1.
        generator: CPU torch generator supplying all randomness; torch's global RNG when None.
            The same seed gives exactly the same points (for a given dtype).
        dtype: floating dtype of the result.

    Returns:
        Points of shape (n, 2) on the CPU.

    Raises:
        ValueError: unknown ``name``, ``n < 1`` or a non-floating ``dtype``.
        TypeError: ``n`` is not an integer.
    """
    dataset = TOY_DATASETS.get(name)
    if dataset is None:
        valid = ", ".join(TOY_DATASETS)
        raise ValueError(f"name: unknown toy dataset {name!r}; valid names: {valid}")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected at least 1 point, got {n}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating dtype, got {dtype}")
    return dataset.sampler(n, generator, dtype)
