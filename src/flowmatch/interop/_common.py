"""What the peer wrappers share: time tensors of either shape, and lazy peer imports."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "TIME_MODES",
    "batch_time",
    "check_time_mode",
    "output_tensor",
    "peer",
    "store_model",
    "time_argument",
]

TIME_MODES: tuple[str, ...] = ("batch", "scalar")
"""How a wrapped peer model wants its time: ``batch``, a tensor of shape (B,); ``scalar``, a
0-dim tensor (what torchdiffeq, torchdyn and Meta's ``ODESolver`` pass)."""

_INSTALL = {
    "diffusers": "pip install diffusers",
    "torchcfm": "pip install --no-deps torchcfm",
    "flow_matching": "pip install --no-deps flow_matching",
}


def peer(name: str) -> ModuleType:
    """Import a peer library (or one of its modules) when it is first needed.

    Raises:
        ImportError: the library is not installed, with the command that installs it.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        top = name.split(".")[0]
        raise ImportError(
            f"{top} is needed for this conversion: {_INSTALL.get(top, f'pip install {top}')}"
        ) from err


def check_time_mode(time: str) -> str:
    """Check a ``time=`` argument of a wrapper (one of :data:`TIME_MODES`)."""
    if time not in TIME_MODES:
        raise ValueError(f"time must be one of {TIME_MODES}, got {time!r}")
    return time


def batch_time(t: Tensor | float, x: Tensor) -> Tensor:
    """A time given as a number, a 0-dim / one-element tensor or a (B,) tensor, as shape (B,)
    in x's dtype and device (B = x.shape[0]).

    Raises:
        ValueError: a time tensor of another size.
    """
    t = torch.as_tensor(t, device=x.device)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    t = t.to(x.dtype)
    if t.numel() == 1:
        return t.reshape(1).expand(x.shape[0])
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"time must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}"
        )
    return t


def time_argument(t: Tensor, mode: str) -> Tensor:
    """Our time (B,) as a peer model wants it: as it is (``batch``) or as the 0-dim tensor of
    its one value (``scalar``; every fixed-step solver calls with one time for the batch).

    Raises:
        ValueError: ``scalar`` asked for times that differ within the batch.
    """
    if mode == "batch":
        return t
    if t.numel() > 1 and not bool((t == t[0]).all()):
        raise ValueError("time='scalar': the batch's times differ; use time='batch'")
    return t.reshape(-1)[0]


def store_model(owner: nn.Module, model: Callable[..., Any]) -> None:
    """Keep a wrapped model on its wrapper: as a submodule when it is an ``nn.Module`` (so
    ``.to()``, ``.eval()`` and ``parameters()`` reach it), else as a plain attribute."""
    if isinstance(model, nn.Module):
        owner.model = model
    elif callable(model):
        object.__setattr__(owner, "model", model)
    else:
        raise ValueError(f"model must be callable, got {type(model).__name__}")


def output_tensor(out: Any) -> Tensor:
    """A model's output as a tensor: diffusers models return an output object with
    ``.sample`` (or a tuple with ``return_dict=False``)."""
    if isinstance(out, Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, tuple) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ValueError(f"the model returned {type(out).__name__}, not a tensor")
