import itertools

import pytest
import torch

import flowmatch as fm
from flowmatch.solvers import METHODS, nfe_of

FIXED = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}  # method -> theoretical order
SMOOTH = [fm.schedules.Linear(), fm.schedules.Cosine(), fm.schedules.VP()]


def _flow(gaussian_flow, sched, dtype=torch.float64):
    return gaussian_flow(sched, torch.tensor([1.5, -0.5], dtype=dtype), 0.4)


def _z(dtype=torch.float64, n=32):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=dtype)


@pytest.mark.parametrize("sched", SMOOTH, ids=repr)
@pytest.mark.parametrize("method", list(FIXED))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_convergence_order(gaussian_flow, sched, method, direction):
    flow = _flow(gaussian_flow, sched)
    z = _z()
    t0, t1 = (0.0, 1.0) if direction == "forward" else (1.0, 0.0)
    start, exact = flow.state(z, t0), flow.state(z, t1)
    errors = []
    # rk4 reaches float64 round-off (~1e-9) beyond 32 steps on the smooth paths, so it is
    # measured on 8-32 steps there; VP is steep near the data and enters its asymptotic regime
    # from 16 steps.
    coarse_rk4 = method == "rk4" and not isinstance(sched, fm.schedules.VP)
    for steps in (8, 16, 32) if coarse_rk4 else (16, 32, 64):
        res = fm.solve_ode(flow.velocity, start, steps=steps, method=method, t0=t0, t1=t1)
        errors.append((res.x - exact).abs().max().item())
    order = FIXED[method]
    # Halving the step must divide the error by at least ~2^order (0.8 of it for the
    # pre-asymptotic regime); a method may do better on a particular flow.
    for coarse, fine in itertools.pairwise(errors):
        assert coarse / fine >= 0.8 * 2**order, (errors, order)


@pytest.mark.parametrize("sched", SMOOTH, ids=repr)
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("tol", [1e-6, 1e-8])
def test_dopri5_reaches_its_tolerance(gaussian_flow, sched, direction, tol):
    flow = _flow(gaussian_flow, sched)
    z = _z()
    t0, t1 = (0.0, 1.0) if direction == "forward" else (1.0, 0.0)
    res = fm.solve_ode(
        flow.velocity, flow.state(z, t0), method="dopri5", t0=t0, t1=t1, atol=tol, rtol=tol
    )
    # Local error control bounds each step by tol; the global error is a sum of local errors.
    # Measured here: 1-10x tol. We allow 20x.
    assert (res.x - flow.state(z, t1)).abs().max().item() < 20 * tol


@pytest.mark.parametrize("method", [*FIXED, "dopri5"])
def test_float32_matches_float64(gaussian_flow, method):
    sched = fm.schedules.Linear()
    f64, f32 = _flow(gaussian_flow, sched), _flow(gaussian_flow, sched, torch.float32)
    z = _z()
    kwargs = {"steps": 20} if method != "dopri5" else {}
    r64 = fm.solve_ode(f64.velocity, f64.state(z, 0.0), method=method, **kwargs)
    r32 = fm.solve_ode(f32.velocity, f32.state(z.float(), 0.0), method=method, **kwargs)
    assert r32.x.dtype == torch.float32
    # float32 rounding (~1e-7 relative per operation) over at most 80 evaluations.
    torch.testing.assert_close(r32.x.double(), r64.x, rtol=1e-4, atol=1e-4)


class Counter:
    def __init__(self, fn):
        self.fn, self.calls, self.times = fn, 0, []

    def __call__(self, x, t):
        self.calls += 1
        assert t.shape == (x.shape[0],)
        self.times.append(t[0].item())
        return self.fn(x, t)


@pytest.mark.parametrize("method", list(FIXED))
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_nfe_is_exact_for_fixed_steps(method, steps):
    v = Counter(lambda x, t: -x)
    res = fm.solve_ode(v, torch.ones(5, 2), steps=steps, method=method)
    assert res.nfe == v.calls == METHODS[method].stages * steps == nfe_of(method, steps)


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_nfe_is_exact_for_dopri5(tol):
    v = Counter(lambda x, t: torch.sin(4 * t)[:, None] * x)
    res = fm.solve_ode(v, torch.ones(5, 2), method="dopri5", atol=tol, rtol=tol)
    assert res.nfe == v.calls > 6
    # Every stage time stays inside [0, 1].
    assert min(v.times) >= 0.0 and max(v.times) <= 1.0
    with pytest.raises(ValueError, match="adaptive"):
        nfe_of("dopri5", 4)


def test_euler_evaluates_at_the_grid_times():
    v = Counter(lambda x, t: torch.zeros_like(x))
    grid = torch.tensor([0.0, 0.1, 0.5, 0.6, 1.0])
    fm.solve_ode(v, torch.zeros(2, 1), method="euler", times=grid)
    assert v.times == pytest.approx(grid[:-1].tolist())


@pytest.mark.parametrize("method", [*FIXED, "dopri5"])
def test_custom_grid_and_trajectory(gaussian_flow, method):
    flow = _flow(gaussian_flow, fm.schedules.Linear())
    z = _z()
    grid = torch.linspace(0, 1, 41, dtype=torch.float64) ** 2  # non-uniform
    res = fm.solve_ode(
        flow.velocity, flow.state(z, 0.0), method=method, times=grid, return_trajectory=True
    )
    assert res.trajectory.shape == (41, *z.shape)
    torch.testing.assert_close(res.trajectory[0], flow.state(z, 0.0))
    torch.testing.assert_close(res.trajectory[-1], res.x)
    # Every stored state lies on the exact flow (error budget of the coarsest method, Euler).
    tol = 0.1 if method == "euler" else 2e-3
    for k in (10, 25, 40):
        exact = flow.state(z, grid[k].item())
        assert (res.trajectory[k] - exact).abs().max().item() < tol


def test_time_grid():
    g = fm.time_grid(4)
    torch.testing.assert_close(g, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    g = fm.time_grid(3, t0=1.0, t1=0.0, dtype=torch.float64)
    assert g[0].item() == 1.0 and g[-1].item() == 0.0
    with pytest.raises(ValueError, match="steps"):
        fm.time_grid(0)
    with pytest.raises(ValueError, match="t0 and t1"):
        fm.time_grid(3, t0=0.5, t1=0.5)


def test_bad_input():
    x = torch.zeros(3, 2)
    f = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="method must be one of"):
        fm.solve_ode(f, x, steps=4, method="rk45")
    with pytest.raises(ValueError, match="steps must be an integer"):
        fm.solve_ode(f, x, steps=0, method="euler")
    with pytest.raises(ValueError, match="steps is required"):
        fm.solve_ode(f, x, method="euler")
    with pytest.raises(ValueError, match="either steps or times"):
        fm.solve_ode(f, x, steps=2, times=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="strictly increasing"):
        fm.solve_ode(f, x, times=torch.tensor([0.0, 0.6, 0.4, 1.0]))
    with pytest.raises(ValueError, match="velocity returned shape"):
        fm.solve_ode(lambda x, t: x[:, :1], x, steps=2, method="euler")
    with pytest.raises(ValueError, match="velocity returned shape"):
        fm.solve_ode(lambda x, t: x[:, :1], x, method="dopri5")
    with pytest.raises(ValueError, match="atol"):
        fm.solve_ode(f, x, method="dopri5", atol=0.0)


def test_dopri5_stops_at_its_step_cap_with_a_named_error() -> None:
    # a velocity that oscillates ever faster: the adaptive step shrinks without end, so the
    # solver must stop at max_steps (6 evaluations each, +1 for the first) instead of spinning
    from flowmatch.errors import NumericalError
    from flowmatch.solvers import AdaptiveOptions, _dopri5

    def stiff(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 1e3 * torch.sin(1e4 * t[:, None] * x) * x

    with pytest.raises(NumericalError, match=r"dopri5 took more than 50 steps"):
        _dopri5(
            stiff, torch.ones(4, 2), torch.tensor([0.0, 1.0]), options=AdaptiveOptions(max_steps=50)
        )
    with pytest.raises(ValueError, match="max_steps"):
        AdaptiveOptions(max_steps=0)


def test_dopri5_on_a_nan_velocity_is_a_numerical_error() -> None:
    from flowmatch.errors import NumericalError
    from flowmatch.solvers import _dopri5

    def nan(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float("nan"))

    with pytest.raises(NumericalError, match="the velocity is not finite"):
        _dopri5(nan, torch.ones(4, 2), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("shift", [0.25, 3.0])
def test_shifted_grid_is_the_sd3_map_of_the_uniform_grid(shift):
    grid = fm.time_grid(8, shift=shift, dtype=torch.float64)
    uniform = fm.time_grid(8, dtype=torch.float64)
    n = 1.0 - uniform  # the noise level; SD3 maps it to shift n / (1 + (shift - 1) n)
    torch.testing.assert_close(
        grid, 1.0 - shift * n / (1.0 + (shift - 1.0) * n), rtol=0, atol=1e-15
    )
    assert grid[0].item() == 0.0 and grid[-1].item() == 1.0
    assert bool((grid.diff() > 0).all())
    # shift > 1 makes the first steps (near the noise) the short ones, shift < 1 the last ones
    steps = grid.diff()
    assert (steps[0] < steps[-1]) == (shift > 1)
    # the map multiplies the odds n / (1 - n) by shift, so shifts compose by multiplying
    torch.testing.assert_close(fm.time.shift_times(grid, 1 / shift), uniform, rtol=0, atol=1e-12)
    backward = fm.time_grid(8, t0=1.0, t1=0.0, shift=shift, dtype=torch.float64)
    torch.testing.assert_close(backward, grid.flip(0), rtol=0, atol=1e-15)
    torch.testing.assert_close(fm.time_grid(8, shift=1.0), fm.time_grid(8), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_a_shifted_grid_keeps_the_order_of_the_method(gaussian_flow, method):
    # The shifted grid is a smooth map of the uniform one, so halving its steps divides the
    # error by ~2^order as on the uniform grid (0.8 of it for the pre-asymptotic regime).
    flow = _flow(gaussian_flow, fm.schedules.Linear())
    z = _z()
    errors = []
    for steps in (16, 32, 64):  # rk4 is pre-asymptotic at 8 steps on this grid (ratio 9)
        grid = fm.time_grid(steps, shift=3.0, dtype=torch.float64)
        res = fm.solve_ode(flow.velocity, flow.state(z, 0.0), method=method, times=grid)
        assert res.nfe == FIXED[method] * steps
        errors.append((res.x - flow.state(z, 1.0)).abs().max().item())
    for coarse, fine in itertools.pairwise(errors):
        assert coarse / fine >= 0.8 * 2 ** FIXED[method], errors


@pytest.mark.parametrize(("t0", "t1"), [(0.2, 0.9), (0.9, 0.2), (0.0, 0.5)])
def test_a_shifted_grid_over_part_of_the_interval_keeps_its_ends_and_order(t0, t1):
    grid = fm.time_grid(6, t0=t0, t1=t1, shift=3.0, dtype=torch.float64)
    assert grid[0].item() == t0 and grid[-1].item() == t1
    assert bool((grid.diff() * (t1 - t0) > 0).all())  # strictly monotone towards t1
    # undoing the shift gives a uniform grid between the preimages of t0 and t1
    unshifted = fm.time.shift_times(grid, 1 / 3.0)
    torch.testing.assert_close(unshifted.diff(), unshifted.diff()[:1].expand(6), rtol=0, atol=1e-12)


def test_shifted_grid_rejects_bad_shifts_and_times():
    for shift in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="shift must be a finite number > 0"):
            fm.time_grid(4, shift=shift)
    with pytest.raises(ValueError, match=r"t0 and t1 in \[0, 1\]"):
        fm.time_grid(4, t0=0.0, t1=2.0, shift=3.0)
