import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import flowmatch as fm


def eight_gaussians() -> fm.oracle.GaussianMixture:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return fm.oracle.GaussianMixture(4.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.5)


class Oracle(nn.Module):
    """A 'model' predicting the oracle's exact quantity of a kind (velocity, x1 or x0)."""

    def __init__(self, gm, path, kind="velocity"):
        super().__init__()
        self.gm, self.flow_path, self.kind = gm, path, kind
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        if self.kind == "velocity":
            return self.gm.velocity(self.flow_path)(x, t)
        e_x1, e_x0 = self.gm.posterior_mean(self.flow_path, x, t)
        return e_x1 if self.kind == "x1" else e_x0


def test_sample_equals_solving_the_velocity():
    gm, path = eight_gaussians(), fm.AffinePath()
    x0 = torch.randn(500, 2, dtype=torch.float64)
    model = Oracle(gm, path)
    out = fm.sample(model, x0, steps=8, method="midpoint")
    ref = fm.solve_ode(gm.velocity(path), x0, steps=8, method="midpoint")
    torch.testing.assert_close(out, ref.x)
    assert model.calls == ref.nfe == 16


@pytest.mark.parametrize("kind", ["x1", "x0"])
@pytest.mark.parametrize("path", [fm.AffinePath(), fm.AffinePath(fm.schedules.Cosine())], ids=repr)
def test_other_prediction_kinds_give_the_same_samples(kind, path):
    # x1 and x0 predictions are converted to the same exact velocity: samples agree to the
    # float64 conversion error (midpoint never evaluates t = 0 or 1 where conversions clamp).
    gm = eight_gaussians()
    x0 = torch.randn(300, 2, dtype=torch.float64)
    ref = fm.sample(Oracle(gm, path), x0, steps=16, method="midpoint")
    out = fm.sample(
        Oracle(gm, path, kind), x0, steps=16, method="midpoint", path=path, prediction=kind
    )
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_flow_model_carries_its_path_and_prediction():
    gm, path = eight_gaussians(), fm.AffinePath(fm.schedules.Cosine())
    model = fm.FlowModel(Oracle(gm, path, "x1"), path=path, prediction="x1")
    x0 = torch.randn(100, 2, dtype=torch.float64)
    out = fm.sample(model, x0, steps=8)
    ref = fm.solve_ode(gm.velocity(path), x0, steps=8, method="midpoint").x
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    # a plain net means a velocity on the linear path: the same net gives other samples
    plain = fm.sample(Oracle(gm, path, "x1"), x0, steps=8)
    assert (plain - ref).abs().max() > 0.1


def test_plain_attributes_on_a_net_are_not_read_as_its_meaning():
    # What a net means lives in its FlowModel; an attribute on the net does not change it.
    gm, path = eight_gaussians(), fm.AffinePath(fm.schedules.Cosine())
    net = Oracle(gm, path)
    net.prediction = "x1"
    assert fm.flow.as_flow(net).prediction == "velocity"
    assert fm.flow.as_flow(net).path == fm.AffinePath()


@pytest.mark.parametrize("path", [fm.AffinePath(), fm.AffinePath(fm.schedules.VP())], ids=repr)
def test_encode_then_sample_round_trip(path):
    gm = eight_gaussians()
    model = fm.FlowModel(Oracle(gm, path), path=path)
    x1 = gm.sample(300, generator=torch.Generator().manual_seed(3)).double()
    z = fm.encode(model, x1, atol=1e-8, rtol=1e-8)
    back = fm.sample(model, z, steps=None, method="dopri5", atol=1e-8, rtol=1e-8)
    assert (back - x1).abs().max().item() <= 1e-4
    # Encoded data is standard normal: mean ~ 0, var ~ 1 (standard errors 0.06, 0.08 at n=300).
    assert z.mean(0).abs().max().item() < 0.25
    assert (z.var(0) - 1).abs().max().item() < 0.35


def test_conditioning_reaches_the_model():
    class Cond(nn.Module):
        def forward(self, x, t, cond=None):
            return cond[:, None].to(x.dtype).expand_as(x)

    labels = torch.tensor([1.0, -2.0])
    out = fm.sample(Cond(), torch.zeros(2, 3), steps=4, method="euler", cond=labels)
    torch.testing.assert_close(out, labels[:, None].expand(2, 3))


def test_bad_input():
    model = fm.models.MLP(dim=2, hidden=8, depth=1)
    with pytest.raises(ValueError, match="prediction"):
        fm.sample(model, torch.randn(3, 2), prediction="noise")
    with pytest.raises(ValueError, match="method"):
        fm.sample(model, torch.randn(3, 2), method="rk45")
    with pytest.raises(ValueError, match="steps is required"):
        fm.sample(model, torch.randn(3, 2), steps=None, method="euler")
    with pytest.raises(ValueError, match="path"):
        fm.sample(model, torch.randn(3, 2), path="linear")


def test_import_is_light():
    code = "import sys, flowmatch; print('matplotlib' in sys.modules, 'ot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------- interpolation


def test_slerp_endpoints_norm_and_linear_fallback():
    """slerp hits both endpoints; between orthogonal unit vectors it stays on the unit circle;
    for parallel vectors it is the linear interpolation."""
    a, b = (
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
    )
    w = torch.linspace(0, 1, 5, dtype=torch.float64)
    out = fm.sampling.slerp(a, b, w)
    torch.testing.assert_close(out[0], a)
    torch.testing.assert_close(out[-1], b)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5, dtype=torch.float64))
    lin = fm.sampling.slerp(a, 3 * a, w)
    torch.testing.assert_close(lin[:, 0], 1 + 2 * w)
    with pytest.raises(ValueError, match="same shape"):
        fm.sampling.slerp(a, torch.zeros(3), w)


def test_interpolate_round_trips_its_endpoints():
    """With the exact flow of a Gaussian mixture and dopri5 both ways, the first and last
    interpolants reproduce the inputs (tolerance 1e-4: two dopri5 solves at tol 1e-7)."""
    gm = fm.oracle.GaussianMixture(
        torch.tensor([[2.0, 0.0], [-2.0, 0.0]], dtype=torch.float64), 0.3
    )
    velocity = gm.velocity(fm.AffinePath())

    class Exact(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return velocity(x, t)

    xa = torch.tensor([2.1, 0.2], dtype=torch.float64)
    xb = torch.tensor([-1.9, -0.3], dtype=torch.float64)
    out = fm.interpolate(Exact(), xa, xb, num=6, method="dopri5", steps=None, atol=1e-7, rtol=1e-7)
    assert out.shape == (6, 2)
    torch.testing.assert_close(out[0], xa, rtol=0, atol=1e-4)
    torch.testing.assert_close(out[-1], xb, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="num"):
        fm.interpolate(Exact(), xa, xb, num=1)
