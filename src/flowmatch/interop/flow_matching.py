"""Meta's ``flow_matching`` library (Lipman et al. 2024) models in our convention.

Its time runs as ours (t=0 source noise, t=1 data) and its velocity has our sign. Its models
are ``flow_matching.utils.ModelWrapper`` modules called with keywords, ``model(x=x, t=t,
**extras)``; its ``ODESolver`` passes a 0-dim t (torchdiffeq's), its training code a t of
shape (B,). Ours are called ``net(x, t)`` with t of shape (B,) and ``cond=`` for labels.

* :func:`from_flow_matching`: a ``ModelWrapper`` (or any callable with those keywords) as our
  net, for ``fm.sample`` and ``fm.log_likelihood``;
* :func:`to_flow_matching`: our net as a ``ModelWrapper``, for their ``ODESolver``.

flow_matching is imported only by :func:`to_flow_matching` (``pip install --no-deps
flow_matching``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from flowmatch.interop._common import (
    batch_time,
    check_time_mode,
    output_tensor,
    peer,
    store_model,
    time_argument,
)

__all__ = ["FromFlowMatching", "from_flow_matching", "to_flow_matching"]


class FromFlowMatching(nn.Module):
    """A ``flow_matching`` model as our net ``net(x, t)``; see :func:`from_flow_matching`."""

    model: Callable[..., Any]  # set by store_model

    def __init__(
        self,
        model: Callable[..., Any],
        time: str = "batch",
        cond_name: str = "cond",
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        store_model(self, model)
        self.time = check_time_mode(time)
        self.cond_name = cond_name
        self.extras = dict(extras or {})

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """The velocity at x (B, *D), times t (B,): ``model(x=x, t=t, **extras)`` (B, *D), t as
        (B,) or, with ``time="scalar"``, 0-dim; ``cond`` joins the extras as ``cond_name``."""
        extras = self.extras if cond is None else {**self.extras, self.cond_name: cond}
        t_arg = time_argument(batch_time(t, x), self.time)
        return output_tensor(self.model(x=x, t=t_arg, **extras))


def from_flow_matching(
    model: Callable[..., Any],
    *,
    time: str = "batch",
    cond_name: str = "cond",
    extras: Mapping[str, Any] | None = None,
) -> FromFlowMatching:
    """Wrap a ``flow_matching.utils.ModelWrapper`` as our net ``net(x, t)``.

    Args:
        model: called as ``model(x=x, t=t, **extras)`` with x (B, *D), returning the velocity
            (B, *D) in our convention (t=0 noise, t=1 data; no sign change).
        time: ``batch`` (t of shape (B,), as their training passes it) or ``scalar`` (0-dim,
            as their ``ODESolver`` passes it).
        cond_name: the extra under which our ``cond`` reaches the model.
        extras: fixed extras passed on every call (e.g. a text embedding).

    Returns:
        An ``nn.Module`` net for ``fm.FlowModel``, ``fm.sample`` and ``fm.log_likelihood``.
    """
    return FromFlowMatching(model, time, cond_name, extras)


def to_flow_matching(net: Callable[..., Any], *, cond_name: str = "cond") -> nn.Module:
    """Wrap our velocity net ``net(x, t)`` as a ``flow_matching.utils.ModelWrapper``.

    Its ``forward(x, t, **extras)`` takes t as a number, a 0-dim or a (B,) tensor (expanded
    to (B,) for the net); the extra ``cond_name`` (if given) reaches the net as ``cond``,
    other extras as keywords. ``flow_matching.solver.ODESolver(velocity_model=...)`` samples
    and scores it. The inverse of :func:`from_flow_matching`.

    Raises:
        ImportError: flow_matching is not installed.
    """
    model_wrapper = peer("flow_matching.utils").ModelWrapper

    class FlowmatchVelocity(model_wrapper):  # type: ignore[misc, valid-type]
        """Our net ``net(x, t)`` (t (B,), t=0 noise) behind flow_matching's interface."""

        def forward(self, x: Tensor, t: Tensor | float, **extras: Any) -> Tensor:
            if cond_name in extras:
                extras["cond"] = extras.pop(cond_name)
            return self.model(x, batch_time(t, x), **extras)

    if not callable(net):
        raise ValueError(f"net must be callable, got {type(net).__name__}")
    if not isinstance(net, nn.Module):
        raise ValueError("net must be an nn.Module (ModelWrapper keeps it as a submodule)")
    return FlowmatchVelocity(net)
