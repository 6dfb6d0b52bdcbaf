"""MeanFlow: train the average velocity of a flow, and sample in one or a few steps.

Reference: Geng et al. 2025, "Mean Flows for One-step Generative Modeling". Their time runs
from data (0) to noise (1); here, as everywhere in flowmatch, t=0 is the source (noise) and
t=1 the data, and the average velocity is anchored at the *start* of the interval:

    u(x_r, r, t) = 1 / (t - r) * integral_r^t v(x_s, s) ds,   so   x_t = x_r + (t - r) u(x_r, r, t)

for r <= t along a trajectory of dx/ds = v. Differentiating (t - r) u(x_r, r, t) in r gives
the **MeanFlow identity in this time direction**

    u(x_r, r, t) = v(x_r, r) + (t - r) d/dr u(x_r, r, t),
    d/dr u = v(x_r, r) . grad_x u + partial_r u,

a total derivative along the trajectory: the Jacobian-vector product of u with the tangent
(v, 1, 0) in (x, r, t). The loss regresses u_theta(x_r, r, t) on the stop-gradient target
v + (t - r) * JVP; at r = t it is plain flow matching. The first v is the conditional
velocity x1 - x0 of the linear path (its conditional mean is the marginal velocity the
identity needs), and so, in the paper, is the v that moves x_r inside the JVP. With
``tangent="model"`` that v is the network's own instantaneous velocity u_theta(x_r, r, r)
(Geng et al. 2025b, "Improved Mean Flows"): the target is linear in it, so x1 - x0 there is
unbiased too, but it multiplies the noise of x1 - x0 by the network's Jacobian. A model
takes both times as ``model(x, r, t_end=t)`` (e.g. ``fm.models.MLP(..., two_times=True)``);
``model(x, r)`` is then its instantaneous velocity.

The JVP differentiates the network in r, through its time embedding: with the usual
sinusoidal frequencies up to 1000 rad the targets carry derivatives of that size and training
diverged, so two-time models embed time up to 10 rad by default (``time_frequency``). A
coupling such as minibatch OT straightens the flow being averaged; with the model tangent and
interval lengths t - r drawn uniformly (``time_pairs="gap"``) it gave the best one-step
samples measured here (``benchmarks/meanflow_sweep.py``, ``benchmarks/onestep.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.couplings import Coupling, Independent, SchrodingerBridge
from flowmatch.loss import check_label_dropout, couple_batch, source_batch
from flowmatch.models.base import call_model
from flowmatch.paths import AffinePath
from flowmatch.samplers import Sampler, register_sampler, run_sampler
from flowmatch.schedules import Linear
from flowmatch.solvers import ODESolution, time_grid
from flowmatch.time import TimeSampler, Uniform

__all__ = ["MeanFlowLoss", "meanflow_target", "sample_average", "solve_average"]

TANGENTS = ("conditional", "model")
TIME_PAIRS = ("ordered", "gap")


def _take(cond: Tensor | None, idx: Tensor) -> Tensor | None:
    return None if cond is None else cond[idx]


def _sq_error(u: Tensor, target: Tensor) -> Tensor:
    """||u - target||^2 per point, shape (B,)."""
    return (u - target).flatten(1).pow(2).sum(1)


def _call(model: nn.Module, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
    return call_model(model, x, r, cond, t_end=t)


def meanflow_target(
    model: nn.Module,
    x_r: Tensor,
    r: Tensor,
    t: Tensor,
    tangent: Tensor,
    *,
    cond: Tensor | None = None,
    v: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The model's average velocity and its MeanFlow regression target.

    Args:
        model: called as ``model(x, r, t_end=t)`` (and ``cond=``), returning (B, *D).
        x_r: states at the start times, shape (B, *D).
        r: start times, shape (B,).
        t: end times, shape (B,), r <= t.
        tangent: the velocity at (x_r, r) that moves x_r in the total derivative, shape
            (B, *D).
        cond: conditioning, shape (B, ...).
        v: the velocity at (x_r, r) of the identity's first term, shape (B, *D); ``tangent``
            when None.

    Returns:
        ``(u, target)``: u_theta(x_r, r, t) (differentiable) and the detached target
        v + (t - r) d/dr u, with d/dr u = JVP of u along the tangent (tangent, 1, 0).
    """

    def fn(x: Tensor, rr: Tensor, tt: Tensor) -> Tensor:
        return _call(model, x, rr, tt, cond)

    out = torch.func.jvp(fn, (x_r, r, t), (tangent, torch.ones_like(r), torch.zeros_like(t)))
    u, du_dr = out[0], out[1]  # (output, JVP); a third item only with has_aux
    gap = (t - r).reshape((-1,) + (1,) * (x_r.ndim - 1))
    v = tangent if v is None else v
    return u, (v + gap * du_dr).detach()


class MeanFlowLoss:
    """The MeanFlow objective on the linear path x_r = r x1 + (1 - r) x0.

    Two times a, c are drawn per point from ``time_sampler``: ordered (r, t = min, max), or
    with ``time_pairs="gap"`` a is the interval length t - r and r = (1 - a) c, uniform over
    [0, 1 - a] for uniform times. For a fraction ``1 - ratio_distinct`` of the points t is set to r
    (plain flow matching, which anchors the instantaneous velocity); only the others pay for a
    JVP. The squared error ||u - target||^2 per point is weighted by
    1 / (||u - target||^2 + c)^p (stop-gradient), the adaptive weighting of the paper; p = 0
    is the plain mean squared error.

    The defaults are those measured best on the checkerboard (``benchmarks/meanflow_sweep.py``,
    RESULTS.md "MeanFlow settings"), not the paper's ImageNet ones (logit-normal times, 25%
    distinct, p = 1), which gave a one-step W2 of 0.73 there against 0.35.

    Args:
        time_sampler: draws the times; uniform by default.
        ratio_distinct: fraction of points with r != t, in [0, 1].
        adaptive_p: power p of the adaptive weight, >= 0.
        adaptive_c: its constant c, > 0.
        coupling: pairs x0 with x1 before the path is formed (e.g.
            :class:`~flowmatch.couplings.MinibatchOT`, which straightens the flow MeanFlow
            averages); independent by default. A Schrödinger bridge has no affine path and is
            refused.
        cond_dropout: probability of replacing a label by ``null_cond`` (classifier-free
            guidance training), in [0, 1).
        null_cond: the null label, needed when ``cond_dropout > 0``.
        tangent: the velocity that moves x_r in the JVP: "conditional" (x1 - x0, the paper's)
            or "model" (the network's instantaneous velocity, detached; lower variance, better
            after 20,000 steps on the checkerboard, worse after 1,500 on a 2-mode mixture).
        time_pairs: "ordered" (two draws, sorted) or "gap" (a draw is the interval length;
            better with minibatch OT, worse without it on the checkerboard).

    Example:
        >>> model = fm.models.MLP(dim=2, two_times=True, time_frequency=10.0)
        >>> loss = MeanFlowLoss()(model, x1)
    """

    def __init__(
        self,
        *,
        time_sampler: TimeSampler | None = None,
        ratio_distinct: float = 0.5,
        adaptive_p: float = 0.0,
        adaptive_c: float = 1e-3,
        coupling: Coupling | None = None,
        cond_dropout: float = 0.0,
        null_cond: int | None = None,
        tangent: str = "conditional",
        time_pairs: str = "ordered",
        path: AffinePath | None = None,
    ) -> None:
        if path is None:
            path = AffinePath()
        if not (isinstance(path, AffinePath) and type(path.schedule) is Linear):
            raise ValueError(
                f"path: MeanFlow (objective meanflow) averages the flow of the linear path, got "
                f"{path!r}; use "
                "AffinePath() (schedule linear)"
            )
        if tangent not in TANGENTS:
            raise ValueError(f"tangent must be one of {TANGENTS}, got {tangent!r}")
        if time_pairs not in TIME_PAIRS:
            raise ValueError(f"time_pairs must be one of {TIME_PAIRS}, got {time_pairs!r}")
        if not 0.0 <= ratio_distinct <= 1.0:
            raise ValueError(f"ratio_distinct must be in [0, 1], got {ratio_distinct!r}")
        if not adaptive_p >= 0.0:
            raise ValueError(f"adaptive_p must be >= 0, got {adaptive_p!r}")
        if not adaptive_c > 0.0:
            raise ValueError(f"adaptive_c must be > 0, got {adaptive_c!r}")
        coupling = coupling if coupling is not None else Independent()
        if not isinstance(coupling, Coupling):
            raise ValueError(f"coupling must be a Coupling, got {type(coupling).__name__}")
        if isinstance(coupling, SchrodingerBridge):
            raise ValueError(
                "coupling: MeanFlow (objective meanflow) needs the linear path; a "
                "SchrodingerBridge has its own (use independent or minibatch OT pairs)"
            )
        self.path = path
        self.prediction = "velocity"
        self.time_sampler = time_sampler if time_sampler is not None else Uniform()
        self.ratio_distinct = float(ratio_distinct)
        self.adaptive_p = float(adaptive_p)
        self.adaptive_c = float(adaptive_c)
        self.coupling = coupling
        self.cond_dropout = check_label_dropout(cond_dropout, null_cond)
        self.null_cond = null_cond
        self.tangent = tangent
        self.time_pairs = time_pairs

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss on one batch (a scalar); x0 ~ N(0, I) unless given, shape of x1."""
        x0 = source_batch(x1, x0, cond, generator)
        x0, x1, cond = couple_batch(
            self.coupling,
            x0,
            x1,
            cond,
            cond_dropout=self.cond_dropout,
            null_cond=self.null_cond,
            generator=generator,
        )
        b = x1.shape[0]
        kw: dict[str, Any] = {"device": x1.device, "dtype": x1.dtype, "generator": generator}
        a, c = self.time_sampler(b, **kw), self.time_sampler(b, **kw)
        if self.time_pairs == "gap":
            r, t = (1 - a) * c, (1 - a) * c + a
        else:
            r, t = torch.minimum(a, c), torch.maximum(a, c)
        same = torch.rand(b, **kw) >= self.ratio_distinct
        shape = (-1,) + (1,) * (x1.ndim - 1)
        x_r = r.reshape(shape) * x1 + (1 - r.reshape(shape)) * x0
        v = x1 - x0
        # Where r = t the target is v itself (the gap is 0): a plain forward, no JVP. The two
        # groups give the same loss as one JVP over the batch, for less (a 3x256 MLP step on
        # one CPU thread: 12.8 -> 9.6 ms, benchmarks/onestep.py).
        errs = []
        flat = same.nonzero()[:, 0]
        if flat.numel():
            u = _call(model, x_r[flat], r[flat], r[flat], _take(cond, flat))
            errs.append(_sq_error(u, v[flat]))
        jump = (~same).nonzero()[:, 0]
        if jump.numel():
            xs, rs, vs, cs = x_r[jump], r[jump], v[jump], _take(cond, jump)
            if self.tangent == "model":
                with torch.no_grad():
                    tangent = _call(model, xs, rs, rs, cs)
            else:
                tangent = vs
            u, target = meanflow_target(model, xs, rs, t[jump], tangent, cond=cs, v=vs)
            errs.append(_sq_error(u, target))
        err = torch.cat(errs)
        if self.adaptive_p > 0:
            err = err / (err.detach() + self.adaptive_c) ** self.adaptive_p
        return err.mean()


def _average_jumps(
    average: Callable[[Tensor, Tensor, Tensor], Tensor],
    x: Tensor,
    times: Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    options: None = None,
) -> ODESolution:
    """The ``run`` of the ``average`` sampler: x_{k+1} = x_k + (t_{k+1} - t_k) u(x_k, t_k,
    t_{k+1}) over the grid, one evaluation of the average velocity ``u(x, r, t)`` per step."""
    grid = times.to(device=x.device, dtype=x.dtype)
    steps = grid.shape[0] - 1
    for k in range(steps):
        r = grid[k].expand(x.shape[0])
        t = grid[k + 1].expand(x.shape[0])
        x = x + (grid[k + 1] - grid[k]) * average(x, r, t)
        if callback is not None:
            callback(k + 1, x)
    return ODESolution(x=x, nfe=steps, times=grid)


register_sampler(Sampler("average", _average_jumps, field="average"))


@torch.no_grad()
def solve_average(
    model: nn.Module,
    x0: Tensor,
    *,
    steps: int = 1,
    cond: Tensor | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    """Average-velocity jumps x_{k+1} = x_k + h u(x_k, t_k, t_{k+1}) on the uniform grid of
    :func:`~flowmatch.solvers.time_grid` from 0 to 1, as an
    :class:`~flowmatch.solvers.ODESolution` (NFE = steps)."""
    times = time_grid(steps, dtype=torch.float64)
    return run_sampler(
        "average",
        lambda x, r, t: _call(model, x, r, t, cond),
        x0,
        times,
        return_trajectory=return_trajectory,
    )


def sample_average(
    model: nn.Module, x0: Tensor, *, steps: int = 1, cond: Tensor | None = None
) -> Tensor:
    """Sample with the average velocity: x_{k+1} = x_k + h u(x_k, t_k, t_{k+1}), NFE = steps.

    Args:
        model: a MeanFlow model, ``model(x, r, t_end=t)``.
        x0: source points at t=0, shape (B, *D).
        steps: uniform steps from 0 to 1 (1 = one-step generation).
        cond: conditioning, shape (B, ...).

    Returns:
        Samples at t=1, shape (B, *D).
    """
    return solve_average(model, x0, steps=steps, cond=cond).x
