"""Reflow (rectified flow) and one-step distillation: straighten a trained flow.

Reflow (Liu et al. 2023, "Flow straight and fast"): draw noise x0, integrate the trained
k-rectified flow accurately to its sample x1 = Phi(x0), and train the (k+1)-rectified flow with
flow matching on those fixed pairs (:class:`~flowmatch.couplings.Pairs`). The coupling of
the new pairs is deterministic, so the paths of the new flow cross less and are straighter:
:func:`~flowmatch.metrics.straightness` measures it. Distillation regresses a one-step map
``x0 + model(x0, 0) ~ x1`` on the same kind of pairs (flow matching at t = 0 only; see
:class:`~flowmatch.time.Constant`). Time runs from t = 0 (source) to t = 1 (data).

Pair files are safetensors holding ``x0`` and ``x1`` (and ``cond`` when present), written
atomically; nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from flowmatch.atomic import atomic_path
from flowmatch.couplings import Pairs
from flowmatch.data.tabular import DataError
from flowmatch.metrics.straightness import straightness
from flowmatch.sampling import model_velocity
from flowmatch.solvers import solve_ode

__all__ = ["load_pairs", "reflow_pairs", "save_pairs", "straightness"]


@torch.no_grad()
def reflow_pairs(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    method: str = "dopri5",
    steps: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    batch_size: int = 10_000,
    cond: Tensor | None = None,
    guidance: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[Pairs, int]:
    """Integrate a flow from each x0 to its sample x1 and return the pairs.

    Args:
        model: a trained model (its prediction kind and path are honoured, see
            :func:`~flowmatch.sampling.model_velocity`) or a velocity callable ``v(x, t)``.
        x0: source points, shape (N, *D).
        method: solver; the adaptive dopri5 by default (accurate pairs matter: the next flow
            learns whatever map these pairs describe).
        steps: solver steps (fixed-step methods; dopri5 ignores it).
        atol, rtol: dopri5 tolerances.
        batch_size: points integrated at once.
        cond: labels of a conditional model, one per source point, shape (N, ...); the pairs
            keep them (the next flow learns the conditional maps).
        guidance: classifier-free guidance scale with ``cond`` (None: the conditional model).
        on_batch: called with the number of points finished after each batch (progress).

    Returns:
        ``(pairs, nfe)``: the (x0, x1) pairs and the total number of velocity evaluations.
    """
    if cond is not None and cond.shape[0] != x0.shape[0]:
        raise ValueError(
            f"cond must have one entry per source point ({x0.shape[0]}), got {tuple(cond.shape)}"
        )
    if cond is not None and not isinstance(model, nn.Module):
        raise ValueError("cond needs a model (a velocity callable takes no labels)")
    outs, nfe = [], 0
    for start in range(0, x0.shape[0], batch_size):
        chunk = x0[start : start + batch_size]
        if isinstance(model, nn.Module):
            labels = cond[start : start + batch_size] if cond is not None else None
            velocity = model_velocity(model, cond=labels, guidance=guidance)
        else:
            velocity = model
        if method == "dopri5":
            res = solve_ode(velocity, chunk, method="dopri5", atol=atol, rtol=rtol)
        else:
            res = solve_ode(velocity, chunk, method=method, steps=steps or 100)
        outs.append(res.x)
        nfe += res.nfe
        if on_batch is not None:
            on_batch(start + chunk.shape[0])
    return Pairs(x0, torch.cat(outs), cond), nfe


def save_pairs(path: str | Path, pairs: Pairs, metadata: dict[str, str] | None = None) -> Path:
    """Write pairs to a ``.safetensors`` file atomically (tensors ``x0``, ``x1``, ``cond``)."""
    from safetensors.torch import save_file

    path = Path(path)
    named = {"x0": pairs.x0, "x1": pairs.x1, "cond": pairs.cond}
    tensors = {k: v.detach().cpu().contiguous() for k, v in named.items() if v is not None}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_pairs(path: str | Path) -> Pairs:
    """Read a pairs file written by :func:`save_pairs`.

    Raises:
        DataError: a missing or unreadable file, missing tensors, or mismatched shapes (the
            message names the file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError) as err:
        raise DataError(f"{path}: cannot read pairs ({err})") from None
    missing = [k for k in ("x0", "x1") if k not in tensors]
    if missing:
        raise DataError(f"{path}: expected tensors x0 and x1, missing {', '.join(missing)}")
    x0, x1 = tensors["x0"], tensors["x1"]
    if x0.ndim < 2 or not (x0.is_floating_point() and x1.is_floating_point()):
        raise DataError(f"{path}: x0 and x1 must be float arrays of shape (N, *D)")
    if not (torch.isfinite(x0).all() and torch.isfinite(x1).all()):
        raise DataError(f"{path}: the pairs contain NaN or Inf")
    try:
        return Pairs(x0, x1, tensors.get("cond"))
    except ValueError as err:
        raise DataError(f"{path}: {err}") from None
