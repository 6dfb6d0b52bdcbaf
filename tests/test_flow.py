"""FlowModel: the one model-to-velocity adapter and the sampler rules it states."""

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.data.tabular import Standardizer
from flowmatch.errors import SamplerError
from flowmatch.flow import as_flow

MEANS = torch.tensor([[2.0, 0.0], [-2.0, 1.0]], dtype=torch.float64)


class PosteriorNet(nn.Module):
    """Predicts the exact E[x1 | x_t] (kind x1) or E[x0 | x_t] (kind x0) of a mixture."""

    def __init__(self, gm, path, kind):
        super().__init__()
        self.gm, self.oracle_path, self.kind = gm, path, kind

    def forward(self, x, t):
        e_x1, e_x0 = self.gm.posterior_mean(self.oracle_path, x, t)
        return e_x1 if self.kind == "x1" else e_x0


@pytest.mark.parametrize(
    "schedule", [fm.schedules.Linear(), fm.schedules.Cosine(), fm.schedules.VP()], ids=repr
)
@pytest.mark.parametrize("kind", ["x1", "x0", "epsilon"])
def test_velocity_of_any_prediction_is_the_exact_marginal_velocity(schedule, kind):
    """The mixture's exact posterior means, converted by the FlowModel, give its exact
    marginal velocity (float64; t in [0.05, 0.95], away from the divisors' zeros: 1e-8)."""
    gm, path = fm.oracle.GaussianMixture(MEANS, 0.5), fm.AffinePath(schedule)
    net = PosteriorNet(gm, path, "x1" if kind == "x1" else "x0")
    flow = fm.FlowModel(net, path=path, prediction=kind)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64) * 2
    t = 0.05 + 0.9 * torch.rand(200, generator=g, dtype=torch.float64)
    torch.testing.assert_close(flow.velocity(x, t), gm.velocity(path)(x, t), rtol=1e-8, atol=1e-8)


def test_a_plain_net_means_a_velocity_on_the_linear_path_from_noise():
    net = fm.models.MLP(dim=2, hidden=8, depth=1)
    flow = as_flow(net)
    assert isinstance(flow, fm.FlowModel) and flow.net is net
    assert flow.path == fm.AffinePath() and flow.prediction == "velocity"
    assert flow.source is None and not flow.two_times and flow.num_classes is None
    x, t = torch.randn(4, 2), torch.rand(4)
    torch.testing.assert_close(flow.velocity(x, t), net(x, t), rtol=0, atol=0)
    cosine = fm.AffinePath(fm.schedules.Cosine())
    view = as_flow(fm.FlowModel(net, path=cosine), prediction="x1")
    assert view.net is net and view.path == cosine and view.prediction == "x1"


def test_what_the_net_declares_is_read_once_at_construction():
    mf = fm.FlowModel(fm.models.MLP(dim=2, two_times=True))
    assert mf.two_times
    unet = fm.FlowModel(fm.models.UNet(1, 8, base=8, groups=4, num_classes=3))
    assert (unet.num_classes, unet.null_class) == (3, 3)
    assert fm.FlowModel(fm.models.MLP(dim=2), num_classes=4).null_class == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"path": "linear"}, "path must be"),
        ({"prediction": "noise"}, "prediction must be one of"),
        ({"path": fm.BrownianBridgePath(0.5), "prediction": "x1"}, "predicts a velocity"),
        ({"source": "nowhere"}, "source must be"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_construction_is_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        fm.FlowModel(fm.models.MLP(dim=2), **kwargs)
    with pytest.raises(ValueError, match=r"nn\.Module"):
        fm.FlowModel("mlp")


@pytest.mark.parametrize(
    ("flow_kwargs", "method", "steps", "eta", "option", "needle"),
    [
        ({"path": fm.BrownianBridgePath(0.5)}, "sde", 8, 0.0, "method", "Gaussian affine"),
        ({"path": fm.BrownianBridgePath(0.5)}, "ddim", 8, 0.0, "method", "Gaussian affine"),
        ({"source": "8gaussians"}, "ddpm", 8, 0.0, "method", r"N\(0, I\) source"),
        ({}, "average", 1, 0.0, "method", "two-time"),
        ({}, "ddim", 8, 1.5, "eta", "eta must be"),
        ({"path": fm.AffinePath(fm.schedules.DDPM(timesteps=10))}, "ddpm", 11, 0.0, "steps", "10"),
        ({}, "rk5", 8, 0.0, "method", "method must be one of"),
    ],
)
def test_sampler_rules(flow_kwargs, method, steps, eta, option, needle):
    flow = fm.FlowModel(fm.models.MLP(dim=2), **flow_kwargs)
    with pytest.raises(SamplerError, match=needle) as err:
        flow.check_sampler(method, [4, steps], eta=eta)
    assert err.value.option == option


def test_allowed_samplers_pass_the_rules_and_sample():
    bridge = fm.FlowModel(fm.models.MLP(dim=2), path=fm.BrownianBridgePath(0.5), shape=(2,))
    for method in ("euler", "midpoint", "heun", "rk4", "dopri5"):
        bridge.check_sampler(method, [2])
    x = fm.sample(bridge, bridge.draw_source(5, torch.Generator().manual_seed(0)), steps=2)
    assert x.shape == (5, 2)
    with pytest.raises(SamplerError, match="Gaussian affine"):
        fm.sample(bridge, torch.randn(5, 2), steps=4, method="sde")
    ddpm = fm.FlowModel(fm.models.MLP(dim=2), path=fm.AffinePath(fm.schedules.DDPM(timesteps=10)))
    ddpm.check_sampler("ddpm", [1, 10], eta=1.0)


def test_guidance_rules():
    flow = fm.FlowModel(fm.models.MLP(dim=2))
    with pytest.raises(SamplerError, match="trained with labels") as err:
        flow.check_guidance(2.0, torch.zeros(3, dtype=torch.long))
    assert err.value.option == "guidance"
    labelled = fm.FlowModel(fm.models.MLP(dim=2), num_classes=3)
    for bad in (-1.0, math.inf, True):
        with pytest.raises(SamplerError, match="finite number"):
            labelled.check_guidance(bad, torch.zeros(3, dtype=torch.long))
    with pytest.raises(SamplerError, match="labels to guide"):
        labelled.check_guidance(2.0, None)
    assert labelled.check_guidance(2, torch.zeros(3, dtype=torch.long)) == 2.0
    assert labelled.check_guidance(None) is None


def test_source_and_transform():
    std = Standardizer.fit(torch.tensor([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]]))
    flow = fm.FlowModel(fm.models.MLP(dim=2), source="8gaussians", transform=std, shape=(2,))
    x0 = flow.draw_source(100, torch.Generator().manual_seed(0))
    assert x0.shape == (100, 2)
    # 8gaussians: points on a circle of radius 2 sqrt 2 (std 0.35): no point near the origin
    assert x0.norm(dim=1).min() > 0.5
    x = torch.randn(6, 2)
    torch.testing.assert_close(flow.encode_data(flow.decode(x)), x)
    torch.testing.assert_close(flow.decode(x), std.inverse(x))
    # the source's density: high on its draws, tiny at the empty origin
    log_p = flow.source_log_prob()
    assert log_p(x0).mean() > log_p(torch.zeros(1, 2))[0] + 10
    with pytest.raises(ValueError, match="shape"):
        fm.FlowModel(fm.models.MLP(dim=2)).draw_source(3)


def test_forward_checks_the_output_shape():
    class Bad(nn.Module):
        def forward(self, x, t):
            return x[:, :1]

    with pytest.raises(ValueError, match="returned shape"):
        fm.FlowModel(Bad())(torch.randn(3, 2), torch.rand(3))


def test_replace_shares_the_net_and_changes_only_what_is_named():
    std = Standardizer.fit(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    flow = fm.FlowModel(
        fm.models.MLP(dim=2), num_classes=3, source="8gaussians", transform=std, shape=(2,)
    )
    x1 = flow.replace(prediction="x1", null_class=7)
    assert x1.net is flow.net and (x1.prediction, x1.null_class) == ("x1", 7)
    assert (x1.num_classes, x1.source, x1.transform, x1.shape) == (3, "8gaussians", std, (2,))
    assert (flow.prediction, flow.null_class) == ("velocity", 3)  # the original is unchanged
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        flow.replace(colour="red")


def test_two_time_nets_get_their_end_time_and_a_shape_check():
    net = fm.models.MLP(dim=2, hidden=8, depth=1, two_times=True)
    flow = fm.FlowModel(net)
    x, r, t = torch.randn(4, 2), torch.zeros(4), torch.ones(4)
    torch.testing.assert_close(flow(x, r, t_end=t), net(x, r, t_end=t), rtol=0, atol=0)
    torch.testing.assert_close(flow.average_field()(x, r, t), net(x, r, t_end=t), rtol=0, atol=0)

    class Bad(nn.Module):
        def forward(self, x, t, t_end=None):
            return x[:, :1]

    with pytest.raises(ValueError, match="returned shape"):
        fm.FlowModel(Bad(), two_times=True)(x, r, t_end=t)


def test_the_sampler_that_runs_is_named_once():
    two = fm.FlowModel(fm.models.MLP(dim=2, two_times=True))
    one = fm.FlowModel(fm.models.MLP(dim=2))
    assert two.sampler_name("midpoint") == "average"
    assert two.sampler_name("midpoint", average=False) == "midpoint"
    assert one.sampler_name("midpoint") == "midpoint"
    assert one.sampler_name("euler", average=True) == "average"
    two.check_sampler("ddim", [1, 2])  # checked as the jumps that run, not as DDIM
    with pytest.raises(SamplerError, match="two-time"):
        one.check_sampler("euler", [1], average=True)
