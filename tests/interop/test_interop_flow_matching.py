"""fm.interop against Meta's flow_matching itself: a ModelWrapper sampled by its ODESolver and
by our solvers gives the same samples; its compute_likelihood and our log_likelihood (exact
divergence) give the same log-densities, and both the closed-form one of a Gaussian.

flow_matching is installed with ``pip install --no-deps flow_matching``; skipped without it."""

import pytest
import torch
from gaussian_fields import data_log_prob, normal_log_prob, velocity_ours

import flowmatch as fm
from flowmatch import interop

pytest.importorskip(
    "flow_matching", reason="flow_matching is not installed (pip install --no-deps flow_matching)"
)
from flow_matching.solver import ODESolver
from flow_matching.utils import ModelWrapper

# Both sides run fixed Runge-Kutta steps in float32 with the same stages and times (theirs
# through torchdiffeq); only the order of additions could differ. Measured: bit for bit the
# same (difference 0); 1e-5 (tens of float32 ulps of states of order 1) leaves room for
# another platform's kernels.
SAMPLE_TOL = {"rtol": 0.0, "atol": 1e-5}


class GaussianVelocity(ModelWrapper):
    """A flow_matching model as its users write one: the exact velocity to N(m, s^2 I),
    t a 0-dim tensor (their ODESolver) or (B,) (their training)."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Identity())

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras) -> torch.Tensor:
        return velocity_ours(x, t.reshape(-1).expand(x.shape[0]))


class ScaledByLabel(ModelWrapper):
    """A conditional model: the velocity scaled by an extra ``scale`` of shape (B,)."""

    def __init__(self) -> None:
        super().__init__(torch.nn.Identity())

    def forward(self, x, t, scale=None, **extras):
        return velocity_ours(x, t.reshape(-1).expand(x.shape[0])) * scale[:, None]


@pytest.mark.parametrize("time", ["batch", "scalar"])
@pytest.mark.parametrize("method", ["euler", "midpoint"])
@pytest.mark.parametrize("steps", [1, 8, 32])
def test_their_ode_solver_and_ours_give_the_same_samples(method, steps, time):
    x0 = torch.randn(128, 3)
    model = GaussianVelocity()
    # a power-of-two step: torchdiffeq's grid arange(n) * step_size is then exact
    theirs = ODESolver(velocity_model=model).sample(x_init=x0, step_size=1.0 / steps, method=method)
    net = interop.from_flow_matching(model, time=time)
    ours = fm.sample(fm.FlowModel(net), x0, steps=steps, method=method)
    torch.testing.assert_close(ours, theirs, **SAMPLE_TOL)


def test_a_custom_time_grid_and_extras():
    """Their time_grid (no step_size) is our times=; our cond reaches the model as an extra."""
    x0 = torch.randn(64, 3)
    grid = torch.tensor([0.0, 0.1, 0.3, 0.6, 1.0])
    scale = torch.linspace(0.5, 1.5, 64)
    model = ScaledByLabel()
    theirs = ODESolver(velocity_model=model).sample(
        x_init=x0, step_size=None, method="midpoint", time_grid=grid, scale=scale
    )
    net = interop.from_flow_matching(model, cond_name="scale")
    ours = fm.sample(net, x0, times=grid, method="midpoint", cond=scale)
    torch.testing.assert_close(ours, theirs, **SAMPLE_TOL)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_our_net_as_a_model_wrapper_in_their_solver(method):
    x0 = torch.randn(64, 3)
    wrapper = interop.to_flow_matching(interop.from_flow_matching(GaussianVelocity()))
    assert isinstance(wrapper, ModelWrapper)
    theirs = ODESolver(velocity_model=wrapper).sample(x_init=x0, step_size=0.125, method=method)
    ours = fm.sample(wrapper.model, x0, steps=8, method=method)
    torch.testing.assert_close(ours, theirs, **SAMPLE_TOL)


# Their compute_likelihood and ours integrate the same augmented ODE [x, div v] from t=1 to 0
# with the same midpoint steps and the same exact divergence, in float64 here: measured
# difference 0; 1e-9 asserted. Against the closed-form density the 64 midpoint steps leave a
# discretization error, measured 2e-4 nats at most (5e-4 asserted); our dopri5 at
# atol = rtol = 1e-7, 7e-8 (1e-5 asserted).
SAME_LL_TOL = {"rtol": 0.0, "atol": 1e-9}


def test_their_likelihood_and_ours_agree_and_are_the_gaussian_density():
    x1 = torch.tensor([1.5, -0.5, 0.25], dtype=torch.float64) + 0.4 * torch.randn(
        48, 3, dtype=torch.float64
    )
    model = GaussianVelocity()
    _, theirs = ODESolver(velocity_model=model).compute_likelihood(
        x_1=x1,
        log_p0=normal_log_prob,
        step_size=1.0 / 64,
        method="midpoint",
        exact_divergence=True,
    )
    net = interop.from_flow_matching(model)
    ours = fm.log_likelihood(fm.FlowModel(net), x1, solver="midpoint", steps=64)
    torch.testing.assert_close(ours, theirs, **SAME_LL_TOL)
    exact = data_log_prob(x1)
    torch.testing.assert_close(ours, exact, rtol=0.0, atol=5e-4)
    adaptive = fm.log_likelihood(net, x1, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(adaptive, exact, rtol=0.0, atol=1e-5)


def test_scalar_time_refuses_a_batch_of_different_times():
    net = interop.from_flow_matching(GaussianVelocity(), time="scalar")
    with pytest.raises(ValueError, match="time='batch'"):
        net(torch.randn(4, 3), torch.rand(4))
