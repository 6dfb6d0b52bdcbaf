"""ODE solvers for dx/dt = velocity(x, t), and the registry every sampler of flowmatch is in.

Solvers take a plain callable ``velocity(x, t)`` with x of shape (B, *D) and t of shape (B,),
never a model (:class:`flowmatch.flow.FlowModel` is the adapter). Integration runs from t0
to t1 in either direction: t0=0, t1=1 takes noise to data, t0=1, t1=0 data to noise. Every
result carries the exact number of velocity evaluations (NFE).

Every sampler is registered in :mod:`flowmatch.samplers` (the ODE solvers below register
themselves there); the registry's names are re-exported here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch.samplers import SAMPLERS, Sampler, get_sampler, register_sampler, run_sampler
from flowmatch.time import check_shift, shift_times

__all__ = [
    "METHODS",
    "SAMPLERS",
    "AdaptiveOptions",
    "ODESolution",
    "RungeKutta",
    "Sampler",
    "get_sampler",
    "nfe_of",
    "register_sampler",
    "run_sampler",
    "solve_ode",
    "time_grid",
]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[int, Tensor], None]


@dataclass(frozen=True)
class RungeKutta:
    """An explicit Runge-Kutta method as its Butcher tableau.

    Attributes:
        order: the order of global convergence.
        c: stage times as fractions of the step, length S (c[0] = 0).
        a: lower-triangular stage weights, a[i] has i entries (stage i uses stages < i).
        b: final weights, length S.
    """

    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    @property
    def stages(self) -> int:
        """Velocity evaluations per step."""
        return len(self.b)


METHODS: dict[str, RungeKutta | None] = {
    "euler": RungeKutta(order=1, c=(0.0,), a=((),), b=(1.0,)),
    "midpoint": RungeKutta(order=2, c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0)),
    "heun": RungeKutta(order=2, c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5)),
    "rk4": RungeKutta(
        order=4,
        c=(0.0, 0.5, 0.5, 1.0),
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
    "dopri5": None,  # adaptive Dormand-Prince 5(4), through torchdiffeq
}
"""The ODE solvers by name; fixed-step ones as Butcher tableaus, ``dopri5`` adaptive."""


@dataclass
class ODESolution:
    """The result of a sampler.

    Attributes:
        x: the state at the final time, shape (B, *D).
        nfe: exact number of velocity evaluations.
        times: the times of the grid, shape (N+1,) (for dopri5: the output times).
        trajectory: states at ``times``, shape (N+1, B, *D), when asked for; else None.
    """

    x: Tensor
    nfe: int
    times: Tensor
    trajectory: Tensor | None = None


@dataclass(frozen=True)
class AdaptiveOptions:
    """Options of the adaptive dopri5 solver.

    Attributes:
        atol, rtol: error tolerances, > 0.
        error_norm: ``batch`` (the RMS error over the whole batch, torchdiffeq's default:
            cheapest, but a point's accuracy depends on the other points in its batch) or
            ``per_sample`` (the worst point's RMS: every point meets the tolerances, at the
            cost of more steps).
        max_steps: the most accepted-or-rejected steps before giving up with a
            :class:`~flowmatch.errors.NumericalError` (a stiff or diverging velocity would
            otherwise shrink the step without end); each step costs 6 evaluations.
    """

    atol: float = 1e-5
    rtol: float = 1e-5
    error_norm: str = "batch"
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        if not (self.atol > 0 and self.rtol > 0):
            raise ValueError(
                f"atol and rtol must be > 0, got atol={self.atol!r}, rtol={self.rtol!r}"
            )
        if self.error_norm not in ("batch", "per_sample"):
            raise ValueError(f"error_norm must be 'batch' or 'per_sample', got {self.error_norm!r}")
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise ValueError(f"max_steps must be an integer >= 1, got {self.max_steps!r}")


def time_grid(
    steps: int,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    shift: float = 1.0,
) -> Tensor:
    """The uniform grid of ``steps`` steps from t0 to t1 used by every sampler, or that grid
    with the time shift of Stable Diffusion 3.

    ``shift`` > 1 packs the steps towards the noise (t=0), where a latent or high-resolution
    flow does most of its work, as SD3 and Flux sample; pass the grid as ``times`` to
    :func:`~flowmatch.sample`: ``fm.sample(model, x0, times=fm.time_grid(8, shift=3.0))``.
    The shift is :func:`flowmatch.time.shift_times`, the map of the
    :class:`~flowmatch.time.Shifted` training times; a grid over part of [0, 1] is uniform
    in the unshifted times between the preimages of t0 and t1, then shifted.

    Args:
        steps: number of steps N >= 1.
        t0: start time, in [0, 1] when shifted.
        t1: end time (t1 < t0 integrates backwards), in [0, 1] when shifted.
        shift: the factor, > 0; 1: the uniform grid.

    Returns:
        Times of shape (N+1,), with grid[0] = t0 and grid[-1] = t1 exactly (float64 before the
        cast to ``dtype``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")
    check_shift(shift)
    if shift == 1.0:
        return torch.linspace(t0, t1, steps + 1, device=device, dtype=torch.float64).to(dtype)
    if not (0.0 <= min(t0, t1) and max(t0, t1) <= 1.0):
        raise ValueError(f"a shifted grid needs t0 and t1 in [0, 1], got {t0} and {t1}")
    # uniform in the unshifted times between the ends' preimages (shifts compose by
    # multiplying, so 1 / shift inverts), then shifted: the ends land back on t0 and t1
    ends = shift_times(torch.tensor([t0, t1], dtype=torch.float64), 1.0 / shift)
    grid = shift_times(
        torch.linspace(float(ends[0]), float(ends[1]), steps + 1, dtype=torch.float64), shift
    )
    grid[0], grid[-1] = t0, t1  # exact ends whatever the rounding
    return grid.to(device=device, dtype=dtype)


def nfe_of(method: str, steps: int) -> int:
    """The NFE a fixed-step method spends on ``steps`` steps (stages x steps)."""
    stages = get_sampler(method).stages
    if stages is None:
        raise ValueError(f"method {method!r} is adaptive: its NFE is known only after solving")
    return stages * steps


def _check_grid(times: Tensor) -> None:
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(
            f"times must be a 1-D tensor of at least 2 times, got {tuple(times.shape)}"
        )
    diffs = times[1:] - times[:-1]
    if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
        raise ValueError("times must be strictly increasing or strictly decreasing")


def solve_ode(
    velocity: VelocityFn,
    x_init: Tensor,
    *,
    steps: int | None = None,
    method: str = "midpoint",
    t0: float = 0.0,
    t1: float = 1.0,
    times: Tensor | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    return_trajectory: bool = False,
    error_norm: str = "batch",
) -> ODESolution:
    """Integrate dx/dt = velocity(x, t) from t0 to t1.

    Args:
        velocity: callable ``velocity(x, t)`` with x (B, *D) and t (B,), returning (B, *D).
        x_init: the state at the first time, shape (B, *D) (noise when integrating 0 -> 1).
        steps: number of uniform steps for fixed-step methods (or output intervals for
            dopri5, default 1). Mutually exclusive with ``times``.
        method: ``euler``, ``midpoint``, ``heun``, ``rk4`` (fixed step) or ``dopri5``.
        t0: start time of the uniform grid.
        t1: end time of the uniform grid; t1 < t0 integrates backwards.
        times: a custom strictly monotone grid (N+1,) instead of ``steps``/``t0``/``t1``.
        atol: absolute tolerance of dopri5 (ignored by fixed-step methods).
        rtol: relative tolerance of dopri5 (likewise).
        return_trajectory: also return the states at every grid time.
        error_norm: dopri5's error measure, ``batch`` or ``per_sample`` (see
            :class:`AdaptiveOptions`).

    Returns:
        :class:`ODESolution` with the final state, the exact NFE and optionally the trajectory.
        A fixed-step method spends exactly stages x steps evaluations (1, 2, 2, 4 per step).

    Example:
        >>> res = solve_ode(lambda x, t: -x, torch.ones(3, 2), steps=100, method="rk4")
        >>> res.x  # ~ exp(-1)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    adaptive = METHODS[method] is None
    if not isinstance(x_init, Tensor) or x_init.ndim < 1:
        raise ValueError("x_init must be a tensor of shape (B, *D)")
    if times is None:
        if steps is None and not adaptive:
            raise ValueError("steps is required for a fixed-step method (or give times=)")
        grid = time_grid(
            1 if steps is None else steps, t0=t0, t1=t1, device=x_init.device, dtype=x_init.dtype
        )
    else:
        if steps is not None:
            raise ValueError("give either steps or times, not both")
        grid = times.to(device=x_init.device, dtype=x_init.dtype)
        _check_grid(grid)
    if error_norm not in ("batch", "per_sample"):
        raise ValueError(f"error_norm must be 'batch' or 'per_sample', got {error_norm!r}")
    options = AdaptiveOptions(atol, rtol, error_norm) if adaptive else None
    return run_sampler(
        method, velocity, x_init, grid, options=options, return_trajectory=return_trajectory
    )


def _runge_kutta(tableau: RungeKutta) -> Callable[..., ODESolution]:
    """The ``run`` of a fixed-step method: explicit Runge-Kutta steps over the grid."""

    def run(
        velocity: VelocityFn,
        x: Tensor,
        times: Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        options: None = None,
    ) -> ODESolution:
        grid = times.to(device=x.device, dtype=x.dtype)
        batch = x.shape[0]
        nfe = 0
        for k, (t_n, t_next) in enumerate(itertools.pairwise(grid.tolist()), start=1):
            h = t_next - t_n
            ks: list[Tensor] = []
            for c_i, a_i in zip(tableau.c, tableau.a, strict=False):
                x_stage = x
                for a_ij, k_j in zip(a_i, ks, strict=False):
                    if a_ij != 0.0:
                        x_stage = x_stage.add(k_j, alpha=h * a_ij)
                t = torch.full((batch,), t_n + c_i * h, device=x.device, dtype=x.dtype)
                v = velocity(x_stage, t)
                if nfe == 0 and v.shape != x.shape:
                    raise ValueError(
                        f"velocity returned shape {tuple(v.shape)} for a state of shape "
                        f"{tuple(x.shape)}"
                    )
                nfe += 1
                ks.append(v)
            for b_i, k_i in zip(tableau.b, ks, strict=False):
                if b_i != 0.0:
                    x = x.add(k_i, alpha=h * b_i)
            if callback is not None:
                callback(k, x)
        return ODESolution(x=x, nfe=nfe, times=grid)

    return run


def _dopri5(
    velocity: VelocityFn,
    x: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    options: AdaptiveOptions | None = None,
) -> ODESolution:
    """Adaptive Dormand-Prince 5(4) through torchdiffeq; states at every grid time."""
    from torchdiffeq import odeint  # imported here: only the adaptive solver needs it

    opts = options if options is not None else AdaptiveOptions()
    grid = times.to(device=x.device, dtype=x.dtype)
    batch = x.shape[0]
    nfe = 0

    def rhs(t: Tensor, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        out = velocity(y, t.expand(batch).to(y.dtype))
        if out.shape != y.shape:
            raise ValueError(
                f"velocity returned shape {tuple(out.shape)} for a state of shape {tuple(y.shape)}"
            )
        return out

    # No stage may be evaluated outside the grid (a schedule need not be defined past t=1 or
    # before t=0): step_t makes the last step land on the end time, and a given first step
    # (1% of the span, then adapted) replaces torchdiffeq's initial-step probe, which can
    # evaluate far beyond the end.
    span = abs(float(grid[-1] - grid[0]))
    settings: dict[str, object] = {
        "step_t": grid[-1:],
        "first_step": 0.01 * span,
        "max_num_steps": opts.max_steps,
    }
    if opts.error_norm == "per_sample":
        settings["norm"] = lambda r: r.reshape(batch, -1).pow(2).mean(1).sqrt().max()
    try:
        ys = odeint(rhs, x, grid, method="dopri5", atol=opts.atol, rtol=opts.rtol, options=settings)
    except AssertionError as err:  # torchdiffeq states its failures with asserts
        from flowmatch.errors import NumericalError

        if "underflow in dt" in str(err):  # the step shrank to 0: a NaN/Inf velocity
            raise NumericalError(
                f"dopri5 failed ({' '.join(str(err).split())}): the velocity is not finite "
                "along the path (a diverged or damaged model)"
            ) from None
        if "max_num_steps" not in str(err):
            raise
        raise NumericalError(
            f"dopri5 took more than {opts.max_steps} steps ({nfe} velocity evaluations) "
            f"without reaching t={float(grid[-1]):g} at atol={opts.atol:g}, rtol={opts.rtol:g}: "
            "the velocity is stiff or diverging; use a fixed-step method or looser tolerances"
        ) from None
    if callback is not None:
        for k in range(1, ys.shape[0]):
            callback(k, ys[k])
    return ODESolution(x=ys[-1], nfe=nfe, times=grid)


for _name, _tableau in METHODS.items():
    if _tableau is None:
        register_sampler(Sampler(_name, _dopri5, options=AdaptiveOptions, stages=None))
    else:
        register_sampler(Sampler(_name, _runge_kutta(_tableau), stages=_tableau.stages))
