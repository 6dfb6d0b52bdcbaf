"""The sampler registry: every sampler of flowmatch, ODE or not, under one signature.

A :class:`Sampler` is registered in :data:`SAMPLERS` by the module that implements it (the
ODE solvers in :mod:`flowmatch.solvers`, the SDE in :mod:`flowmatch.sde`, DDPM/DDIM in
:mod:`flowmatch.diffusion`, MeanFlow's jumps in :mod:`flowmatch.meanflow`), and is run as::

    run(field, x0, times, *, generator=None, callback=None, options=None) -> ODESolution

``field`` is the velocity callable ``v(x, t)`` (an average-velocity callable ``u(x, r, t)``
for MeanFlow's jumps), ``times`` the grid from :func:`~flowmatch.solvers.time_grid` (or the
timesteps of a DDPM schedule), ``options`` a small per-method dataclass, and
``callback(k, x)`` is called with the state after each step k = 1..N. :func:`run_sampler`
adds the trajectory. Time runs from t = 0 (source) to t = 1 (data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from flowmatch.solvers import ODESolution

__all__ = ["SAMPLERS", "Sampler", "get_sampler", "register_sampler", "run_sampler"]


@dataclass(frozen=True)
class Sampler:
    """A sampling method of the registry.

    Attributes:
        name: its name (``method=`` everywhere).
        run: ``run(field, x0, times, *, generator, callback, options) -> ODESolution``.
        options: the dataclass of its options, or None when it has none.
        stages: field evaluations per step (NFE = stages x steps); None when adaptive.
        field: what ``run`` integrates: ``velocity`` (v(x, t)) or ``average`` (MeanFlow's
            u(x, r, t)).
        needs_score: whether it uses the score of a Gaussian path (SDE, DDPM, DDIM): then the
            model's path must be Gaussian affine and its source N(0, I).
        grid: ``grid(steps, options) -> times`` (float64, from 0 to 1); None: :func:`time_grid`.
    """

    name: str
    run: Callable[..., ODESolution]
    options: type | None = None
    stages: int | None = 1
    field: str = "velocity"
    needs_score: bool = False
    grid: Callable[[int, Any], Tensor] | None = None

    def times(self, steps: int, options: Any = None) -> Tensor:
        """The float64 grid of ``steps`` steps from 0 (source) to 1 (data)."""
        if self.grid is not None:
            return self.grid(steps, options)
        from flowmatch.solvers import time_grid

        return time_grid(steps, dtype=torch.float64)

    def make_options(self, **settings: Any) -> Any:
        """Its options object from whichever of ``settings`` it has fields for; None when it
        takes no options. Raises ValueError for a bad value."""
        if self.options is None:
            return None
        names = {f.name for f in dataclasses.fields(self.options)}
        return self.options(**{k: v for k, v in settings.items() if k in names})


SAMPLERS: dict[str, Sampler] = {}
"""Every sampler by name, in order: the ODE solvers, then those of sde, diffusion, meanflow."""


def register_sampler(sampler: Sampler) -> Sampler:
    """Add a sampler to :data:`SAMPLERS` (an error if another one has its name)."""
    old = SAMPLERS.get(sampler.name)
    if old is not None and old.run is not sampler.run:
        raise ValueError(f"a sampler named {sampler.name!r} is already registered")
    SAMPLERS[sampler.name] = sampler
    return sampler


def _ensure_builtin() -> None:
    # The samplers of these modules register themselves when imported.
    import flowmatch.diffusion
    import flowmatch.meanflow
    import flowmatch.sde
    import flowmatch.solvers  # noqa: F401


def get_sampler(name: str) -> Sampler:
    """The registered sampler called ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if name not in SAMPLERS:
        _ensure_builtin()
    if name not in SAMPLERS:
        raise ValueError(f"method must be one of {tuple(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name]


def run_sampler(
    sampler: Sampler | str,
    field: Callable[..., Tensor],
    x0: Tensor,
    times: Tensor,
    *,
    options: Any = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    """Run a sampler over a grid, optionally keeping the states at every grid time.

    Args:
        sampler: a :class:`Sampler` or its name.
        field: what the sampler integrates (see :attr:`Sampler.field`).
        x0: the state at ``times[0]``, shape (B, *D).
        times: the grid, shape (N+1,).
        options: the sampler's options object.
        generator: torch RNG of stochastic samplers.
        return_trajectory: also return the states at ``times``, shape (N+1, B, *D).

    Returns:
        :class:`ODESolution` with the final state and the exact NFE.
    """
    sampler = get_sampler(sampler) if isinstance(sampler, str) else sampler
    states = [x0] if return_trajectory else None
    callback = (lambda _k, x: states.append(x)) if states is not None else None
    res = sampler.run(field, x0, times, generator=generator, callback=callback, options=options)
    if states is not None:
        res.trajectory = torch.stack(states)
    return res
