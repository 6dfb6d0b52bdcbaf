"""The same task trained and sampled through the peer libraries, for side-by-side rows.

* ``torchcfm`` (Tong et al.): ``ConditionalFlowMatcher(sigma=0)`` and
  ``ExactOptimalTransportConditionalFlowMatcher(sigma=0)`` build (t, x_t, u_t); sampled with
  ``torchdiffeq.odeint`` on a fixed grid (torchcfm's own examples use torchdyn's NeuralODE,
  which wraps the same fixed-step solvers).
* ``flow_matching`` (Meta): ``AffineProbPath(CondOTScheduler())`` builds (x_t, dx_t), sampled
  with its ``ODESolver``.

Both train our MLP (3 x 256, SiLU: the same network as every other row) with the same
optimiser as our Trainer (AdamW, cosine decay, grad clip 1.0, EMA 0.999 with the same
warm-up) on batches from the same training pool; only the construction of the regression
pairs and the sampler are theirs.

Install them without their dependencies, which pull a CUDA build of torch through torchdyn
and torchvision (their flow-matching code needs only torch, numpy and POT, already here):
``pip install --no-deps torchcfm flow_matching``.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import flowmatch as fm
from flowmatch.train.ema import EMA

PEERS: tuple[str, ...] = ("torchcfm", "torchcfm-ot", "flow_matching")
_MODULE = {"torchcfm": "torchcfm", "torchcfm-ot": "torchcfm", "flow_matching": "flow_matching"}


def available() -> list[str]:
    """The peer models whose library is importable here."""
    return [p for p in PEERS if importlib.util.find_spec(_MODULE[p]) is not None]


def _pairs_fn(name: str) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """(x0, x1) -> (t, x_t, target velocity), built by the peer library."""
    if name.startswith("torchcfm"):
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )

        cls = ExactOptimalTransportConditionalFlowMatcher if name == "torchcfm-ot" else None
        matcher = (cls or ConditionalFlowMatcher)(sigma=0.0)

        def pairs(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            return t, xt, ut

        return pairs
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    path = AffineProbPath(scheduler=CondOTScheduler())

    def pairs(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.rand(x1.shape[0])
        s = path.sample(t=t, x_0=x0, x_1=x1)
        return t, s.x_t, s.dx_t

    return pairs


def train_peer(name: str, pool: Tensor, *, steps: int, seed: int) -> tuple[nn.Module, dict]:
    """Train our MLP on ``pool`` (N, 2) through a peer library; returns (EMA model, facts)."""
    torch.manual_seed(seed)
    model = fm.models.MLP(dim=pool.shape[1], hidden=256, depth=3)
    ema = EMA(model, 0.999)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(1.0, k / steps)))
    )
    pairs = _pairs_fn(name)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for k in range(steps):
        x1 = pool[torch.randint(0, pool.shape[0], (256,), generator=g)]
        x0 = torch.randn(x1.shape, generator=g)
        t, xt, ut = pairs(x0, x1)
        loss = torch.nn.functional.mse_loss(model(xt, t), ut)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(model, k)
    wall = time.perf_counter() - start
    return ema.module, {"total_steps": steps, "train_s": wall, "ms_per_step": 1e3 * wall / steps}


def sampler(name: str, model: nn.Module, method: str) -> Callable[[Tensor, int], Tensor]:
    """``sample(x0, steps)``: the peer library's (or its solver's) fixed-step integration."""
    if name.startswith("torchcfm"):
        from torchdiffeq import odeint

        def velocity(t: Tensor, x: Tensor) -> Tensor:
            return model(x, t.expand(x.shape[0]))

        @torch.no_grad()
        def sample(x0: Tensor, steps: int) -> Tensor:
            grid = torch.linspace(0.0, 1.0, steps + 1)
            return odeint(velocity, x0, grid, method=method)[-1]

        return sample
    from flow_matching.solver import ODESolver

    class Wrapped(nn.Module):
        def forward(self, x: Tensor, t: Tensor, **_: Any) -> Tensor:
            return model(x, t.reshape(-1).expand(x.shape[0]))

    solver = ODESolver(velocity_model=Wrapped())

    @torch.no_grad()
    def sample(x0: Tensor, steps: int) -> Tensor:
        return solver.sample(x_init=x0, step_size=1.0 / steps, method=method)

    return sample
