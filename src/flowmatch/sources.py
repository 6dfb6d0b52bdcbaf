"""Source distributions (t = 0): the standard normal, or a built-in 2-D set by name.

A flow maps its source to the data. N(0, I) is the default; any toy 2-D set
(``8gaussians``, ``checkerboard``, ...) can be the source of a 2-D flow. These helpers draw
source points and give the source's log-density (for likelihoods), by the source's name
(``None`` is N(0, I)), which is how a :class:`~flowmatch.flow.FlowModel` records it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["check_source", "draw_source", "source_log_prob", "standard_normal_log_prob"]


def standard_normal_log_prob(x: Tensor) -> Tensor:
    """log N(x; 0, I) summed over the data dimensions: shape (B,) for x of shape (B, *D)."""
    flat = x.flatten(1)
    return -0.5 * (flat.pow(2).sum(1) + flat.shape[1] * math.log(2 * math.pi))


def check_source(source: str | None) -> str | None:
    """Return ``source`` if it is None (N(0, I)) or a built-in 2-D set; else raise ValueError."""
    from flowmatch.data.toy2d import TOY_DATASETS

    if source is not None and source not in TOY_DATASETS:
        raise ValueError(
            f"source must be None (N(0, I)) or one of {', '.join(TOY_DATASETS)}, got {source!r}"
        )
    return source


def draw_source(
    source: str | None,
    n: int,
    shape: int | tuple[int, ...],
    generator: torch.Generator | None = None,
) -> Tensor:
    """n points of a source: a toy set by name, or N(0, I) when ``source`` is None.

    Args:
        source: a toy set name, or None.
        n: number of points.
        shape: the shape of one point, or its dimension D.
        generator: torch RNG.

    Returns:
        (n, *shape), on the CPU.
    """
    from flowmatch.data.toy2d import sample_toy

    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if source is None:
        return torch.randn(n, *shape, generator=generator)
    if shape != (2,):
        raise ValueError(f"a toy source ({source!r}) needs 2-D data, got points of shape {shape}")
    return sample_toy(source, n, generator=generator)


def source_log_prob(source: str | None) -> Callable[[Tensor], Tensor]:
    """The log-density of a source: N(0, I) (None), ``8gaussians`` or ``checkerboard``.

    Raises:
        ValueError: a toy source without a closed-form density (moons, circles, ...).
    """
    from flowmatch.data.toy2d import checkerboard_log_prob, eight_gaussians_params
    from flowmatch.oracle import GaussianMixture

    if source is None:
        return standard_normal_log_prob
    if source == "checkerboard":
        return checkerboard_log_prob
    if source == "8gaussians":
        means, std, weights = eight_gaussians_params(dtype=torch.float64)
        mixture = GaussianMixture(means, std, weights)
        return lambda x: mixture.log_prob(x.double()).to(x.dtype)
    raise ValueError(
        f"the model's source {source!r} has no closed-form log-density; likelihoods need a "
        "source with one (N(0, I), 8gaussians or checkerboard)"
    )
