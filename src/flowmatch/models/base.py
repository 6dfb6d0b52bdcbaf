"""How the library calls a model: ``model(x_t, t)`` or ``model(x_t, t, cond=cond)``."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["call_model"]


def call_model(model: nn.Module, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
    """Evaluate a model at points x (B, *D) and times t (B,), passing ``cond`` only when given.

    Models that take no conditioning need not accept a ``cond`` argument at all.

    Raises:
        ValueError: if the output does not have the shape of x.
    """
    out = model(x, t) if cond is None else model(x, t, cond=cond)
    if out.shape != x.shape:
        raise ValueError(
            f"the model returned shape {tuple(out.shape)} for input of shape {tuple(x.shape)}; "
            "it must return a tensor of the input's shape"
        )
    return out
