"""Shared test fixtures: fixed seeds and closed-form Gaussian flows."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

import flowmatch as fm


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@contextlib.contextmanager
def benchmark_module(script: str) -> Iterator[ModuleType]:
    """Import ``benchmarks/<script>.py`` as a module for the duration of a test; torch's
    thread count (which the benchmarks set) is restored afterwards."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    name = f"_flowmatch_bench_{script}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tiny models and Sinkhorn's many small iterations are as
    fast on one, and immune to the stalls of torch's threads waiting on a busy machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class GaussianFlow:
    """The exact flow of an affine path from N(0, I) to N(mu, std^2 I), written independently.

    The marginal at t is N(alpha mu, var_t I) with var_t = alpha^2 std^2 + sigma^2, so the flow
    map is x_t = alpha mu + sqrt(var_t) z and its velocity is
    v(x, t) = alpha' mu + var_t' / (2 var_t) (x - alpha mu).
    """

    def __init__(self, schedule: fm.schedules.Schedule, mu: torch.Tensor, std: float) -> None:
        self.schedule, self.mu, self.std = schedule, mu, std

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s, da, ds = (c[:, None] for c in self.schedule(t))
        var = a * a * self.std**2 + s * s
        dvar = 2 * a * da * self.std**2 + 2 * s * ds
        return da * self.mu + dvar / (2 * var) * (x - a * self.mu)

    def state(self, z: torch.Tensor, t: float) -> torch.Tensor:
        a, s = (c.item() for c in self.schedule(torch.tensor([t], dtype=torch.float64))[:2])
        return a * self.mu.to(z.dtype) + math.sqrt(a * a * self.std**2 + s * s) * z


@pytest.fixture
def gaussian_flow():
    return GaussianFlow
