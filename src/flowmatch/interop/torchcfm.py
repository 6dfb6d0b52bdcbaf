"""TorchCFM (Tong et al.) models and losses in our convention.

TorchCFM's time runs as ours (t=0 noise, t=1 data) and its velocity has our sign; only the
argument order differs: its models are called ``model(t, x)`` (torchdyn's ``NeuralODE`` calls
``f(t, x, args)``, usually with a 0-dim t), ours ``net(x, t)`` with t of shape (B,).

* :func:`from_torchcfm`: a ``(t, x)`` model as our net;
* :func:`to_torchcfm`: our net as a ``(t, x, *args)`` module for torchdyn / torchdiffeq;
* :func:`loss_from_torchcfm`: our :class:`~flowmatch.loss.FlowMatchingLoss` with the regression
  target of a ``ConditionalFlowMatcher`` / ``ExactOptimalTransportConditionalFlowMatcher``.

torchcfm is imported only by :func:`loss_from_torchcfm` (``pip install --no-deps torchcfm``:
its flow-matching code needs only torch, numpy and POT).
"""

from __future__ import annotations

from collections.abc import Callable
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
from flowmatch.loss import FlowMatchingLoss

__all__ = ["FromTorchCFM", "TorchCFMVelocity", "from_torchcfm", "loss_from_torchcfm", "to_torchcfm"]


class FromTorchCFM(nn.Module):
    """A TorchCFM ``(t, x)`` model as our net ``net(x, t)``; see :func:`from_torchcfm`."""

    model: Callable[..., Any]  # set by store_model

    def __init__(
        self, model: Callable[..., Any], time: str = "batch", cond_name: str = "y"
    ) -> None:
        super().__init__()
        store_model(self, model)
        self.time = check_time_mode(time)
        self.cond_name = cond_name

    def forward(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """The velocity at x (B, *D), times t (B,): ``model(t, x)`` (B, *D), t as (B,) or, with
        ``time="scalar"``, 0-dim; ``cond`` goes to the model as ``cond_name``."""
        kwargs = {} if cond is None else {self.cond_name: cond}
        return output_tensor(self.model(time_argument(batch_time(t, x), self.time), x, **kwargs))


class TorchCFMVelocity(nn.Module):
    """Our net as a TorchCFM / torchdyn ``(t, x, *args)`` module; see :func:`to_torchcfm`."""

    model: Callable[..., Any]  # set by store_model

    def __init__(self, net: Callable[..., Any]) -> None:
        super().__init__()
        store_model(self, net)

    def forward(self, t: Tensor | float, x: Tensor, *args: Any, y: Any = None) -> Tensor:
        """``net(x, t)`` at x (B, *D), t a number, 0-dim or (B,) tensor (expanded to (B,));
        torchdyn's extra positional ``args`` are ignored; ``y`` (labels, as TorchCFM's U-Net
        takes them) goes to the net as ``cond``."""
        t = batch_time(t, x)
        return self.model(x, t) if y is None else self.model(x, t, cond=y)


def from_torchcfm(
    model: Callable[..., Any], *, time: str = "batch", cond_name: str = "y"
) -> FromTorchCFM:
    """Wrap a TorchCFM velocity model ``model(t, x)`` as our net ``net(x, t)``.

    Args:
        model: called as ``model(t, x)`` with x (B, *D), returning the velocity (B, *D) in our
            convention (t=0 noise, t=1 data; no sign change). TorchCFM's ``UNetModelWrapper``
            takes t of shape (B,); its ``torch_wrapper`` (made for torchdyn) a 0-dim t.
        time: ``batch`` (t of shape (B,)) or ``scalar`` (0-dim t; every sampler of flowmatch
            calls with one time for the whole batch).
        cond_name: the keyword under which our ``cond`` reaches the model (TorchCFM's U-Net:
            ``y``).

    Returns:
        An ``nn.Module`` net for ``fm.FlowModel``, ``fm.sample`` and ``fm.log_likelihood``.
    """
    return FromTorchCFM(model, time, cond_name)


def to_torchcfm(net: Callable[..., Any]) -> TorchCFMVelocity:
    """Wrap our velocity net ``net(x, t)`` as a TorchCFM / torchdyn model ``f(t, x, *args)``
    (t a number, 0-dim or (B,); same time direction and sign). The inverse of
    :func:`from_torchcfm`; ``torchdyn.core.NeuralODE(to_torchcfm(net))`` and
    ``torchdiffeq.odeint(to_torchcfm(net), x0, times)`` integrate it."""
    return TorchCFMVelocity(net)


def loss_from_torchcfm(matcher: Any) -> FlowMatchingLoss:
    """Our loss with the regression target of a TorchCFM flow matcher.

    ``ConditionalFlowMatcher(sigma=0)`` regresses u = x1 - x0 at x_t = t x1 + (1 - t) x0,
    t ~ U[0, 1]: ``FlowMatchingLoss()`` (the linear path, independent pairs).
    ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)`` first pairs the batch by exact
    optimal transport: ``FlowMatchingLoss(coupling=MinibatchOT("exact"))``. TorchCFM draws
    its B pairs from the OT plan with replacement (a pair may repeat, another be left out);
    ours uses every pair of the plan once. Given the same pairs and t, the two targets are
    the same numbers.

    Raises:
        ValueError: another matcher, or sigma > 0 (a path with constant noise, not ours).
        ImportError: torchcfm is not installed.
    """
    from flowmatch.couplings import MinibatchOT

    cfm = peer("torchcfm.conditional_flow_matching")
    if type(matcher) not in (
        cfm.ConditionalFlowMatcher,
        cfm.ExactOptimalTransportConditionalFlowMatcher,
    ):
        raise ValueError(
            "only ConditionalFlowMatcher and ExactOptimalTransportConditionalFlowMatcher are "
            f"supported, got {type(matcher).__name__}"
        )
    if float(matcher.sigma) != 0.0:
        raise ValueError(f"only sigma=0 maps to our linear path, got sigma={matcher.sigma}")
    if isinstance(matcher, cfm.ExactOptimalTransportConditionalFlowMatcher):
        return FlowMatchingLoss(coupling=MinibatchOT("exact"))
    return FlowMatchingLoss()
