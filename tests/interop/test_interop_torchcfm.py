"""fm.interop against TorchCFM itself: its (t, x) models sampled by our solvers give the
samples of Euler loops calling them and of torchdiffeq's fixed-grid solvers (what torchdyn's
NeuralODE runs in TorchCFM's examples); its flow matchers' targets are our loss's.

TorchCFM is installed with ``pip install --no-deps torchcfm`` (its flow-matching code needs
only torch, numpy and POT); these tests are skipped when it is not."""

import pytest
import torch
from gaussian_fields import velocity_ours
from torchdiffeq import odeint

import flowmatch as fm
from flowmatch import interop

cfm = pytest.importorskip(
    "torchcfm.conditional_flow_matching",
    reason="torchcfm is not installed (pip install --no-deps torchcfm)",
)
from torchcfm.models import MLP  # noqa: E402

# float32 on both sides, the same arithmetic per step up to the order of additions: measured
# differences are 0 to 2.4e-7 (a float32 ulp of states of order 1); 1e-5 leaves room.
TOL = {"rtol": 0.0, "atol": 1e-5}


class TorchWrapper(torch.nn.Module):
    """TorchCFM's ``torchcfm.utils.torch_wrapper``, line for line (that module imports torchdyn
    and matplotlib at the top, so it is copied here): a 0-dim t, concatenated to x."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, t, x, *args, **kwargs):
        return self.model(torch.cat([x, t.repeat(x.shape[0])[:, None]], 1))


@pytest.fixture
def mlp_model():
    torch.manual_seed(3)
    return TorchWrapper(MLP(dim=2, w=32, time_varying=True)).eval()


def euler_loop(model, x0: torch.Tensor, steps: int, **kwargs) -> torch.Tensor:
    """A hand-written Euler loop calling a TorchCFM model as TorchCFM does: model(t, x)."""
    x = x0.clone()
    grid = torch.linspace(0, 1, steps + 1)
    for k in range(steps):
        x = x + (grid[k + 1] - grid[k]) * model(grid[k], x, **kwargs)
    return x


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_our_euler_is_an_euler_loop_on_the_torchcfm_model(mlp_model, steps):
    x0 = torch.randn(128, 2)
    theirs = euler_loop(mlp_model, x0, steps)
    net = interop.from_torchcfm(mlp_model, time="scalar")
    ours = fm.sample(fm.FlowModel(net), x0, steps=steps, method="euler")
    torch.testing.assert_close(ours, theirs, **TOL)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_our_solvers_are_torchdiffeq_fixed_grid_on_the_torchcfm_model(mlp_model, method):
    x0 = torch.randn(128, 2)
    with torch.no_grad():
        theirs = odeint(mlp_model, x0, torch.linspace(0, 1, 9), method=method)[-1]
    ours = fm.sample(interop.from_torchcfm(mlp_model, time="scalar"), x0, steps=8, method=method)
    torch.testing.assert_close(ours, theirs, **TOL)


def test_torchdyn_neural_ode_when_installed(mlp_model):
    torchdyn = pytest.importorskip(
        "torchdyn.core", reason="torchdyn (TorchCFM's ODE wrapper) is not installed"
    )
    x0 = torch.randn(64, 2)
    node = torchdyn.NeuralODE(mlp_model, solver="euler", sensitivity="adjoint")
    with torch.no_grad():
        theirs = node.trajectory(x0, t_span=torch.linspace(0, 1, 9))[-1]
    ours = fm.sample(interop.from_torchcfm(mlp_model, time="scalar"), x0, steps=8, method="euler")
    torch.testing.assert_close(ours, theirs, **TOL)


def test_a_conditional_unet_with_batch_times_and_labels():
    """TorchCFM's U-Net takes t of shape (B,) and labels as ``y``."""
    from torchcfm.models.unet.unet import UNetModelWrapper

    torch.manual_seed(0)
    unet = UNetModelWrapper(
        dim=(1, 8, 8),
        num_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2),
        class_cond=True,
        num_classes=3,
        attention_resolutions="4",
    ).eval()
    x0 = torch.randn(6, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        x = x0.clone()
        for k in range(3):
            t = torch.full((6,), k / 3)
            x = x + unet(t, x, y=labels) / 3
    ours = fm.sample(interop.from_torchcfm(unet), x0, steps=3, method="euler", cond=labels)
    torch.testing.assert_close(ours, x, **TOL)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_our_net_under_torchdiffeq_as_torchcfm_runs_it(method):
    """to_torchcfm: our velocity in TorchCFM's (t, x) order, integrated by torchdiffeq."""
    x0 = torch.randn(64, 3)
    model = interop.to_torchcfm(velocity_ours)
    theirs = odeint(model, x0, torch.linspace(0, 1, 9), method=method)[-1]
    ours = fm.sample(interop.from_torchcfm(model), x0, steps=8, method=method)
    torch.testing.assert_close(ours, theirs, **TOL)
    args = (torch.tensor(0.3), x0, None)  # torchdyn's call: f(t, x, args)
    torch.testing.assert_close(model(*args), velocity_ours(x0, torch.full((64,), 0.3)))


class FixedTimes(fm.time.TimeSampler):
    """The times given, to compare a loss with TorchCFM's on the same t."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    def _draw(self, batch_size, device, dtype, generator):
        return self.t.to(device=device, dtype=dtype)


def test_conditional_flow_matcher_target_is_ours(mlp_model):
    x0, x1, t = torch.randn(64, 2), 3 + torch.randn(64, 2), torch.rand(64)
    matcher = cfm.ConditionalFlowMatcher(sigma=0.0)
    _, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1, t=t)
    loss = interop.loss_from_torchcfm(matcher)
    x_t, u_t = loss.path.sample(x0, x1, t)
    torch.testing.assert_close(x_t, xt, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(u_t, ut, rtol=0.0, atol=0.0)
    loss.time_sampler = FixedTimes(t)
    net = interop.from_torchcfm(lambda t, x: mlp_model.model(torch.cat([x, t[:, None]], 1)))
    theirs = torch.nn.functional.mse_loss(mlp_model.model(torch.cat([xt, t[:, None]], 1)), ut)
    torch.testing.assert_close(loss(net, x1, x0=x0), theirs, rtol=1e-6, atol=0.0)


def test_exact_ot_matcher_pairs_and_targets_are_ours():
    """The exact OT plan of a batch is a permutation: TorchCFM's plan (all its pairs, drawn
    without replacement) is our MinibatchOT("exact") pairing; the B pairs its matcher draws
    (with replacement) are pairs of that plan, with our targets."""
    x0, x1 = torch.randn(32, 2), 2 + torch.randn(32, 2)
    matcher = cfm.ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    loss = interop.loss_from_torchcfm(matcher)
    _, ours_x1, _ = loss.coupling(x0, x1)
    a, b = matcher.ot_sampler.sample_plan(x0, x1, replace=False)
    order = torch.cdist(a, x0).argmin(1)  # where each of their source points is in x0
    assert torch.equal(a, x0[order]) and sorted(order.tolist()) == list(range(32))
    assert torch.equal(b, ours_x1[order])
    t = torch.rand(32)
    _, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1, t=t)
    # their x0' = x_t - t u_t (u = x1' - x0' and x_t = x0' + t u): recover it, find its pair
    x0_theirs = xt - t[:, None] * ut
    i = torch.cdist(x0_theirs, x0).argmin(1)
    torch.testing.assert_close(x0_theirs, x0[i], rtol=0.0, atol=1e-5)
    x_t, u_t = loss.path.sample(x0[i], ours_x1[i], t)
    torch.testing.assert_close(u_t, ut, rtol=0.0, atol=1e-6)
    torch.testing.assert_close(x_t, xt, rtol=0.0, atol=1e-6)


def test_other_matchers_are_refused():
    with pytest.raises(ValueError, match="sigma=0"):
        interop.loss_from_torchcfm(cfm.ConditionalFlowMatcher(sigma=0.1))
    with pytest.raises(ValueError, match="supported"):
        interop.loss_from_torchcfm(cfm.TargetConditionalFlowMatcher(sigma=0.0))
