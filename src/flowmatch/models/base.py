"""How the library calls a model: ``model(x_t, t)`` or ``model(x_t, t, cond=cond)``."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["call_model"]


def call_model(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    cond: Tensor | None = None,
    *,
    t_end: Tensor | None = None,
) -> Tensor:
    """Evaluate a model at points x (B, *D) and times t (B,), passing ``cond`` and ``t_end``
    (the end time (B,) of a two-time model's averaging interval) only when given.

    Models that take no conditioning (or one time) need not accept those arguments at all.

    Raises:
        ValueError: if the output does not have the shape of x.
    """
    kwargs = {} if t_end is None else {"t_end": t_end}
    if cond is not None:
        kwargs["cond"] = cond
    out = model(x, t, **kwargs)
    if out.shape != x.shape:
        raise ValueError(
            f"the model returned shape {tuple(out.shape)} for input of shape {tuple(x.shape)}; "
            "it must return a tensor of the input's shape"
        )
    return out
