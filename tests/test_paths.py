import itertools
import json

import pytest
import torch

import flowmatch as fm
from flowmatch.paths import PREDICTION_KINDS

SCHEDULES = [
    fm.schedules.Linear(),
    fm.schedules.Cosine(),
    fm.schedules.Polynomial(2.0),
    fm.schedules.VP(),
    fm.schedules.VE(),
]
SHAPES = [(7, 2), (5, 3, 4, 4), (6, 10)]


def _batch(shape, dtype=torch.float64, t_range=(0.05, 0.95)):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(shape, generator=g, dtype=dtype)
    x1 = 2.0 + torch.randn(shape, generator=g, dtype=dtype)
    lo, hi = t_range
    t = lo + (hi - lo) * torch.rand(shape[0], generator=g, dtype=dtype)
    return x0, x1, t


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_path_endpoints_and_velocity(shape):
    x0, x1, _ = _batch(shape)
    path = fm.AffinePath()
    b = shape[0]
    x_start, _ = path.sample(x0, x1, torch.zeros(b, dtype=x0.dtype))
    x_end, u = path.sample(x0, x1, torch.ones(b, dtype=x0.dtype))
    torch.testing.assert_close(x_start, x0)
    torch.testing.assert_close(x_end, x1)
    torch.testing.assert_close(u, x1 - x0)


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_fast_path_equals_the_general_formula(shape):
    # Polynomial(1) is the linear schedule computed through the general coefficients.
    x0, x1, t = _batch(shape)
    fast = fm.AffinePath(fm.schedules.Linear()).sample(x0, x1, t)
    general = fm.AffinePath(fm.schedules.Polynomial(1.0)).sample(x0, x1, t)
    torch.testing.assert_close(fast.x_t, general.x_t, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(fast.u_t, general.u_t, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize("shape", SHAPES)
def test_u_t_is_the_time_derivative_of_x_t(sched, shape):
    # Property: u_t = d/dt x_t along the conditional path, checked by autograd (float64).
    x0, x1, t = _batch(shape)
    path = fm.AffinePath(sched)
    t = t.clone().requires_grad_(True)
    x_t, u_t = path.sample(x0, x1, t)
    # x_t[i] depends on t[i] only, so the gradient of <x_t, e_k> sums per-sample derivatives.
    flat = x_t.reshape(shape[0], -1)
    for k in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, k].sum(), t, retain_graph=True)
        torch.testing.assert_close(g, u_t.reshape(shape[0], -1)[:, k].detach())


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize(("src", "dst"), list(itertools.permutations(PREDICTION_KINDS, 2)))
def test_round_trip_is_identity(sched, src, dst):
    x0, x1, t = _batch((9, 3, 2))
    path = fm.AffinePath(sched)
    x_t, _ = path.sample(x0, x1, t)
    pred = torch.randn_like(x_t)  # any prediction, consistent or not, must come back
    there = path.convert(pred, src=src, dst=dst, x_t=x_t, t=t)
    back = path.convert(there, src=dst, dst=src, x_t=x_t, t=t)
    # float64 with divisors >= alpha(0.05) ~ 0.02: relative error stays near 1e-13.
    torch.testing.assert_close(back, pred, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_true_quantities_convert_to_the_conditional_velocity(sched, dtype):
    x0, x1, t = _batch((64, 2), dtype=dtype)
    path = fm.AffinePath(sched)
    x_t, u_t = path.sample(x0, x1, t)
    a, s = (c[:, None] for c in sched(t)[:2])
    cond_score = -(x_t - a * x1) / s**2  # grad log N(x_t; alpha x1, sigma^2 I)
    truth = {"velocity": u_t, "x1": x1, "x0": x0, "epsilon": x0, "score": cond_score}
    # float32 conversions divide by alpha or sigma >= ~0.02 at t in [0.05, 0.95]: 1e-4 relative.
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-9, "atol": 1e-9}
    for src, dst in itertools.product(PREDICTION_KINDS, PREDICTION_KINDS):
        out = path.convert(truth[src], src=src, dst=dst, x_t=x_t, t=t)
        torch.testing.assert_close(out, truth[dst], **tol, msg=f"{src} -> {dst}")


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_times_never_nan(sched, dtype):
    x0, x1, _ = _batch((4, 2), dtype=dtype)
    t = torch.tensor([0.0, 1.0, 1e-7, 1 - 1e-7], dtype=dtype)
    path = fm.AffinePath(sched)
    x_t, u_t = path.sample(x0, x1, t)
    assert torch.isfinite(x_t).all() and torch.isfinite(u_t).all()
    for src, dst in itertools.product(PREDICTION_KINDS, PREDICTION_KINDS):
        out = path.convert(torch.randn_like(x_t), src=src, dst=dst, x_t=x_t, t=t)
        assert torch.isfinite(out).all(), (src, dst)


def test_velocity_to_x1_is_exact_at_the_edges_where_no_division_is_needed():
    # Linear path: x1 = x_t + (1 - t) v needs no clamping, even at t = 0 and t = 1.
    x0, x1, _ = _batch((2, 3))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    path = fm.AffinePath()
    x_t, u_t = path.sample(x0, x1, t)
    torch.testing.assert_close(path.convert(u_t, src="velocity", dst="x1", x_t=x_t, t=t), x1)
    torch.testing.assert_close(path.convert(u_t, src="velocity", dst="x0", x_t=x_t, t=t), x0)


def test_bad_input_names_the_argument():
    path = fm.AffinePath()
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="x0 and x1"):
        path.sample(x, torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        path.sample(x, x, torch.rand(4, 1))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        path.sample(x, x, torch.rand(3))
    with pytest.raises(ValueError, match="src must be one of"):
        path.convert(x, src="noise", dst="x1", x_t=x, t=torch.rand(4))
    with pytest.raises(ValueError, match="dst must be one of"):
        path.convert(x, src="x1", dst="v", x_t=x, t=torch.rand(4))
    with pytest.raises(ValueError, match="pred and x_t"):
        path.convert(x, src="x1", dst="x0", x_t=torch.randn(4, 3), t=torch.rand(4))
    with pytest.raises(ValueError, match="schedule"):
        fm.AffinePath("linear")
    with pytest.raises(ValueError, match="eps"):
        fm.AffinePath(eps=0.0)


# ------------------------------------------------------------------ Brownian bridge, path files


def test_brownian_bridge_moments_match_its_closed_form():
    """Given the pair, x_t ~ N(t x1 + (1-t) x0, sigma^2 t (1-t) I); u_t has mean x1 - x0.
    100k draws per time: standard errors 0.003 (mean) and 0.005 (variance ratio), so 0.02."""
    path = fm.BrownianBridgePath(0.7)
    n = 100_000
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64).expand(n, 2)
    x1 = torch.tensor([[3.0, 0.5]], dtype=torch.float64).expand(n, 2)
    g = torch.Generator().manual_seed(0)
    for t_value in (0.1, 0.5, 0.8):
        t = torch.full((n,), t_value, dtype=torch.float64)
        x_t, u_t = path.sample(x0, x1, t, generator=g)
        mean = t_value * x1[0] + (1 - t_value) * x0[0]
        torch.testing.assert_close(x_t.mean(0), mean, atol=0.02, rtol=0)
        var = 0.7**2 * t_value * (1 - t_value)
        torch.testing.assert_close(
            x_t.var(0) / var, torch.ones(2, dtype=torch.float64), atol=0.02, rtol=0
        )
        torch.testing.assert_close(u_t.mean(0), x1[0] - x0[0], atol=0.02, rtol=0)


def test_brownian_bridge_of_zero_sigma_is_the_linear_path():
    x0, x1, t = torch.randn(8, 3), torch.randn(8, 3), torch.rand(8)
    bridge = fm.BrownianBridgePath(0.0).sample(x0, x1, t)
    linear = fm.AffinePath().sample(x0, x1, t)
    torch.testing.assert_close(bridge.x_t, linear.x_t)
    torch.testing.assert_close(bridge.u_t, linear.u_t)
    with pytest.raises(ValueError, match="sigma"):
        fm.BrownianBridgePath(-1.0)


def test_the_schrodinger_bridge_loss_trains_on_its_bridge_path():
    sb = fm.couplings.SchrodingerBridge(0.4)
    loss = fm.FlowMatchingLoss(coupling=sb)
    assert loss.path == fm.BrownianBridgePath(0.4) == sb.path
    with pytest.raises(ValueError, match="path: a SchrodingerBridge coupling has its own"):
        fm.FlowMatchingLoss(fm.AffinePath(fm.schedules.Cosine()), coupling=sb)
    with pytest.raises(ValueError, match="trains a velocity"):
        fm.FlowMatchingLoss(coupling=sb, prediction="x1")


@pytest.mark.parametrize(
    "path",
    [
        fm.AffinePath(),
        fm.AffinePath(fm.schedules.Cosine()),
        fm.AffinePath(fm.schedules.Polynomial(3.0)),
        fm.AffinePath(fm.schedules.VP(0.2, 10.0)),
        fm.AffinePath(fm.schedules.VE(0.02, 20.0)),
        fm.AffinePath(fm.schedules.DDPM(timesteps=50, betas="cosine")),
        fm.BrownianBridgePath(0.25),
    ],
    ids=repr,
)
def test_path_dicts_round_trip(path):
    from flowmatch.paths import path_from_dict, path_to_dict

    spec = path_to_dict(path)
    assert json.loads(json.dumps(spec)) == spec
    assert path_from_dict(spec) == path


def test_bad_path_dicts():
    from flowmatch.paths import path_from_dict

    with pytest.raises(ValueError, match="schedule must be one of"):
        path_from_dict({"schedule": "wavy"})
    with pytest.raises(TypeError):
        path_from_dict({"schedule": "vp", "beta": 3})
