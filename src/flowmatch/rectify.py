"""Reflow (rectified flow) and one-step distillation: straighten a trained flow.

Reflow (Liu et al. 2023, "Flow straight and fast"): draw noise x0, integrate the trained
k-rectified flow accurately to its sample x1 = Phi(x0), and train the (k+1)-rectified flow with
flow matching on those fixed pairs (:class:`Pairs`). The coupling of
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
from flowmatch.couplings import Coupling
from flowmatch.errors import DataError
from flowmatch.flow import as_flow
from flowmatch.metrics.straightness import straightness
from flowmatch.solvers import solve_ode

__all__ = ["Pairs", "load_pairs", "reflow_pairs", "save_pairs", "straightness"]

Triple = tuple[Tensor, Tensor, "Tensor | None"]


class Pairs(Coupling):
    """Fixed, precomputed (x0, x1) pairs, e.g. noise and the sample a flow maps it to (reflow).

    Draw training batches with :meth:`sample`; calling the coupling returns its arguments
    unchanged (the pairs are already coupled).

    Args:
        x0: source points, shape (N, *D).
        x1: their partners, shape (N, *D).
        cond: optional labels of the pairs, shape (N, ...).

    Raises:
        ValueError: x0, x1 (and cond) of different lengths or point shapes, or no pairs.
    """

    def __init__(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> None:
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(
                f"x0 and x1 must hold the same number of pairs, got x0 with {x0.shape[0]} "
                f"and x1 with {x1.shape[0]}"
            )
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if cond is not None and cond.shape[0] != x0.shape[0]:
            raise ValueError(
                f"cond must have one entry per pair ({x0.shape[0]}), got {tuple(cond.shape)}"
            )
        if x0.shape[0] == 0:
            raise ValueError("Pairs needs at least one pair, got 0")
        self.x0, self.x1, self.cond = x0, x1, cond

    def __len__(self) -> int:
        return self.x0.shape[0]

    def __repr__(self) -> str:
        return f"Pairs(n={len(self)}, shape={tuple(self.x0.shape[1:])})"

    def to(self, device: torch.device | str) -> Pairs:
        """The same pairs on another device."""
        cond = self.cond.to(device) if self.cond is not None else None
        return Pairs(self.x0.to(device), self.x1.to(device), cond)

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> Triple:
        """``batch_size`` pairs drawn uniformly with replacement: (x0, x1, cond)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        device = generator.device if generator is not None else self.x0.device
        idx = torch.randint(0, len(self), (batch_size,), generator=generator, device=device)
        idx = idx.to(self.x0.device)
        cond = self.cond[idx] if self.cond is not None else None
        return self.x0[idx], self.x1[idx], cond

    def partner_index(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor | None:
        return None  # the pairs are already coupled


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
        model: a trained model (a :class:`~flowmatch.flow.FlowModel`, whose prediction kind
            and path are honoured, or a velocity net) or a velocity callable ``v(x, t)``.
        x0: source points, shape (N, *D).
        method: solver; the adaptive dopri5 by default (accurate pairs matter: the next flow
            learns whatever map these pairs describe).
        steps: solver steps (fixed-step methods; dopri5 ignores it).
        atol: dopri5's absolute tolerance.
        rtol: dopri5's relative tolerance.
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
            velocity = as_flow(model).velocity_field(labels, guidance=guidance)
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
