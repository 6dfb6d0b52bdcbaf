"""Exponential moving average of a model's weights (what sampling uses by default)."""

from __future__ import annotations

import copy
from typing import Generic, TypeVar

import torch
from torch import nn

__all__ = ["EMA"]

M = TypeVar("M", bound=nn.Module)


class EMA(Generic[M]):
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step.

    The decay used at update k (k = 0, 1, ...) is min(decay, (1 + k) / (10 + k)), the usual
    warm-up: early averages do not drag the random initial weights along for ~1/(1 - decay)
    steps, which matters for short runs.

    Args:
        model: the trained network; a deep copy of it holds the averaged weights.
        decay: in [0, 1); 0 copies the weights, 0.999 averages over ~1000 steps.

    Attributes:
        module: the network with the averaged weights (eval mode, no gradients).
    """

    def __init__(self, model: M, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module: M = copy.deepcopy(model).eval().requires_grad_(False)
        self._ema_params: list[torch.Tensor] = [p for p in self.module.parameters()]
        self._ema_buffers = [b for b in self.module.buffers()]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards the current weights of ``model`` (same architecture).

        Args:
            model: the trained network.
            step: the number of updates made before this one (for the warm-up).
        """
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        params = [p.detach() for p in model.parameters()]
        # lerp: ema + (1 - decay) * (p - ema), one fused kernel for all tensors.
        torch._foreach_lerp_(self._ema_params, params, 1.0 - decay)
        for ema_b, b in zip(self._ema_buffers, model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, as the module's state dict."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved by :meth:`state_dict`."""
        self.module.load_state_dict(state)
