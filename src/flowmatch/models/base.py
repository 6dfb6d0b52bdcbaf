"""How the library calls a model: ``model(x_t, t)`` or ``model(x_t, t, cond=cond)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn

__all__ = ["Pretrained", "call_model", "net_labels"]

T = TypeVar("T")


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


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for a model class with ``config()`` and a
    ``net`` (the discrete, mixed-table and manifold models): files as
    :func:`flowmatch.models.files.save_flow` writes them, read back by :func:`flowmatch.load`.
    """

    def save_pretrained(self, directory: str | Path, *, ema: nn.Module | None = None) -> Path:
        """Write ``config.json`` + safetensors weights (``ema``'s for ``ema.safetensors``)."""
        from flowmatch.models.files import save_flow

        return save_flow(directory, self, ema=ema)

    @classmethod
    def from_pretrained(cls: type[T], path: str | Path, **kwargs: Any) -> T:
        """Load a model directory (or run directory) of this class; see :func:`flowmatch.load`.

        Raises:
            ValueError: the directory holds another kind of model.
        """
        from flowmatch.models.files import load

        model = load(path, **kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{path}: not a {cls.__name__}")
        return model


def net_labels(
    net: nn.Module, num_classes: int | None, null_class: int | None
) -> tuple[int | None, int | None]:
    """A model's labels: the arguments given, else the net's ``num_classes`` / ``null_class``
    attributes; the null class ("no label", classifier-free guidance) defaults to K."""
    if num_classes is None:
        num_classes = getattr(net, "num_classes", None)
    if null_class is None:
        null_class = getattr(net, "null_class", None)
    return num_classes, num_classes if null_class is None else null_class
