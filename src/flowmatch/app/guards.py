"""Guards of the commands that write samples: a size check before any allocation, and a
finiteness check before any write (NaN/Inf samples are a numerical stop, exit code 3)."""

from __future__ import annotations

import math
from typing import Any

import torch

from flowmatch.errors import NumericalError

__all__ = ["MAX_VALUES", "check_finite", "check_num", "widest"]

MAX_VALUES = 2**28
"""The most values the widest tensor of one sampling call may hold (1 GiB as float32; the
sampler and the network keep several such tensors at once)."""


def widest(model: Any) -> int:
    """The size of the widest per-sample tensor a model makes while sampling: its points, or
    the activations of its (built-in) network, whichever is larger."""
    from flowmatch.models import registry

    sizes = [math.prod(getattr(model, "shape", None) or (1,))]
    for attr in ("length",):  # a text model: a sequence of logits
        if isinstance(getattr(model, attr, None), int):
            sizes.append(getattr(model, attr) * getattr(model.path, "vocab_size", 1))
    try:
        arch = registry.architecture(model.net)
    except (AttributeError, ValueError):
        return max(sizes)
    ints = {k: v for k, v in arch.items() if isinstance(v, int) and not isinstance(v, bool)}
    if "hidden" in ints:
        sizes.append(ints["hidden"])
    if arch.get("name") == "unet":
        mult = max(arch.get("multipliers") or [1])
        sizes.append(ints.get("base", 32) * mult * ints.get("size", 8) ** 2)
    if arch.get("name") == "transformer":
        width = max(ints.get("dim", 128), ints.get("vocab_size", 1), ints.get("out_size", 1))
        sizes.append(ints.get("length", 1) * width)
    if arch.get("name") == "dit":  # tokens x the MLP's width, or the attention's weights
        tokens = (ints.get("size", 8) // max(ints.get("patch", 2), 1)) ** 2
        hidden = ints.get("dim", 128) * max(float(arch.get("mlp_ratio") or 4.0), 1.0)
        sizes.append(int(tokens * max(hidden, ints.get("heads", 4) * tokens)))
    return max(sizes)


def check_num(model: Any, num: int, *, flag: str = "--num") -> None:
    """Refuse, before anything is allocated, a number of samples whose widest tensor would
    hold more than :data:`MAX_VALUES` values.

    Raises:
        UsageError: naming the flag, the size asked for and the limit.
    """
    from flowmatch.app.options import UsageError

    per_sample = widest(model)
    values = num * per_sample
    if values > MAX_VALUES:
        most = MAX_VALUES // per_sample
        raise UsageError(
            f"{flag}: {num} samples would need tensors of {values:.3g} values "
            f"({4 * values / 2**30:.3g} GiB as float32, {per_sample} per sample); at most "
            f"{most} samples per call (2**28 values): draw them in several calls"
        )


def check_finite(x: torch.Tensor, *, what: str = "sample", items: str = "samples") -> None:
    """Refuse values holding NaN or Inf (before anything is written).

    Raises:
        NumericalError: how many of the rows (first dimension) hold non-finite values.
    """
    if x.is_floating_point() or x.is_complex():
        finite = torch.isfinite(x.reshape(x.shape[0], -1)) if x.ndim else torch.isfinite(x)
        bad = int((~finite.all(dim=-1)).sum()) if x.ndim else int(not bool(finite))
        if bad:
            total = x.shape[0] if x.ndim else 1
            raise NumericalError(
                f"{what}: {bad} of {total} {items} hold NaN/Inf values; nothing was written "
                "(the model or sampler diverged)"
            )
