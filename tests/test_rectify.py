"""Reflow pairs, pair files, the straightness metric and the constant time sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import flowmatch as fm
from flowmatch.data.tabular import DataError
from flowmatch.rectify import load_pairs, reflow_pairs, save_pairs
from flowmatch.time import Constant

F64 = torch.float64


def gaussian_velocity(mu: float, s: float):
    """Exact velocity of the linear path from N(0, I) to N(mu, s^2 I) (see conftest)."""

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = t[:, None].to(x.dtype)
        var = tt**2 * s**2 + (1 - tt) ** 2
        dvar = 2 * tt * s**2 - 2 * (1 - tt)
        return mu + dvar / (2 * var) * (x - tt * mu)

    return v


def test_reflow_pairs_of_an_exact_flow_are_its_flow_map():
    """dopri5 pairs of the Gaussian flow land on mu + s * x0 (its exact flow map).

    Tolerance 1e-4: dopri5 at atol=rtol=1e-5 keeps the global error within ~10x its tolerance.
    """
    x0 = torch.randn(500, 2, dtype=F64)
    pairs, nfe = reflow_pairs(gaussian_velocity(1.5, 0.5), x0, batch_size=200)
    assert len(pairs) == 500 and torch.equal(pairs.x0, x0)
    torch.testing.assert_close(pairs.x1, 1.5 + 0.5 * x0, rtol=0, atol=1e-4)
    assert nfe > 0


def test_reflow_pairs_with_a_fixed_step_solver_and_progress():
    """A constant field is integrated exactly by one Euler step; on_batch sees every batch."""
    seen = []
    x0 = torch.randn(10, 3)
    pairs, nfe = reflow_pairs(
        lambda x, t: torch.full_like(x, 2.0),
        x0,
        method="euler",
        steps=1,
        batch_size=4,
        on_batch=seen.append,
    )
    torch.testing.assert_close(pairs.x1, x0 + 2.0)
    assert seen == [4, 8, 10] and nfe == 3


def test_reflow_pairs_accepts_a_model():
    model = fm.models.MLP(dim=2, hidden=16, depth=1)
    pairs, _ = reflow_pairs(model, torch.randn(8, 2), method="midpoint", steps=2)
    assert pairs.x1.shape == (8, 2) and torch.isfinite(pairs.x1).all()


def test_reflow_pairs_of_a_conditional_model_keep_their_labels():
    """Each point is integrated with its own label (batch by batch) and the pairs keep them;
    labels of the wrong length, or labels for a bare velocity callable, are refused."""

    class PerClass(torch.nn.Module):
        """Velocity = the class index: x1 = x0 + k along each axis."""

        def forward(self, x, t, *, cond=None):
            return torch.zeros_like(x) + cond.to(x.dtype)[:, None]

    x0 = torch.randn(7, 2)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    pairs, _ = reflow_pairs(PerClass(), x0, method="euler", steps=4, cond=labels, batch_size=3)
    assert pairs.cond is labels
    torch.testing.assert_close(pairs.x1, x0 + labels[:, None].float())
    with pytest.raises(ValueError, match="one entry per source point"):
        reflow_pairs(PerClass(), x0, cond=labels[:5])
    with pytest.raises(ValueError, match="cond needs a model"):
        reflow_pairs(lambda x, t: x, x0, cond=labels)


def test_pairs_file_round_trip(tmp_path):
    pairs = fm.couplings.Pairs(torch.randn(5, 2), torch.randn(5, 2), torch.arange(5))
    path = save_pairs(tmp_path / "p.safetensors", pairs, {"source_run": "x"})
    back = load_pairs(path)
    assert torch.equal(back.x0, pairs.x0) and torch.equal(back.x1, pairs.x1)
    assert torch.equal(back.cond, pairs.cond)
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]  # no temp file left


@pytest.mark.parametrize(
    ("tensors", "needle"),
    [
        ({"x0": torch.zeros(3, 2)}, "missing x1"),
        ({"x0": torch.zeros(3, 2), "x1": torch.zeros(4, 2)}, "same number of pairs"),
        ({"x0": torch.zeros(3, 2), "x1": torch.full((3, 2), float("nan"))}, "NaN"),
        ({"x0": torch.zeros(3), "x1": torch.zeros(3)}, "shape (N, *D)"),
    ],
)
def test_bad_pairs_file_is_a_data_error_naming_the_file(tmp_path, tensors, needle):
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(DataError, match=r"bad\.safetensors") as err:
        load_pairs(path)
    assert needle in str(err.value)


def test_unreadable_pairs_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match=r"junk\.safetensors"):
        load_pairs(path)
    with pytest.raises(DataError, match=r"missing\.safetensors"):
        load_pairs(tmp_path / "missing.safetensors")


def test_straightness_is_zero_for_a_straight_flow():
    """A constant field has straight trajectories: S = 0 up to float64 rounding."""
    s = fm.metrics.straightness(lambda x, t: torch.ones_like(x), torch.randn(50, 2, dtype=F64))
    assert abs(s) < 1e-20


def test_straightness_matches_the_closed_form_of_a_gaussian_flow():
    """N(0, I) -> N(mu, s^2 I) on the linear path: x_t = t mu + sd(t) z with
    sd(t) = sqrt(t^2 s^2 + (1 - t)^2), so v - (x1 - x0) = (sd'(t) - (s - 1)) z and
    S = D * E[z^2] * integral_0^1 (sd'(t) - (s - 1))^2 dt.

    The same z are used for the model and the closed form (E[z^2] is replaced by the batch's
    mean of ||z||^2 / D), so what remains is solver and trapezoid error: rk4 and 200 steps
    put it far below the 1e-3 relative tolerance.
    """
    s = 2.0
    z = torch.randn(4000, 2, dtype=F64)
    got = fm.metrics.straightness(gaussian_velocity(1.0, s), z, steps=200, method="rk4")
    t = np.linspace(0.0, 1.0, 200_001)
    sd_dot = (t * s**2 - (1 - t)) / np.sqrt(t**2 * s**2 + (1 - t) ** 2)
    integral = np.trapezoid((sd_dot - (s - 1)) ** 2, t)
    want = float(z.pow(2).sum(1).mean()) * integral
    assert got == pytest.approx(want, rel=1e-3)
    assert got > 0.5  # the flow is far from straight; the test is not vacuous


def test_straightness_rejects_adaptive_solver():
    with pytest.raises(ValueError, match="fixed-step"):
        fm.metrics.straightness(lambda x, t: x, torch.randn(3, 2), method="dopri5")


def test_constant_time_sampler():
    t = Constant(0.25)(7, dtype=F64)
    assert t.shape == (7,) and t.dtype == F64 and bool((t == 0.25).all())
    for bad in (-0.1, 1.5, math.nan, True):
        with pytest.raises(ValueError, match="value"):
            Constant(bad)


def test_distillation_loss_is_one_step_regression():
    """On fixed pairs at t = 0 the flow matching loss is ||model(x0, 0) - (x1 - x0)||^2."""
    model = fm.models.MLP(dim=2, hidden=16, depth=1)
    x0, x1 = torch.randn(32, 2), torch.randn(32, 2)
    loss = fm.FlowMatchingLoss(time_sampler=Constant(0.0))(model, x1, x0=x0)
    want = torch.nn.functional.mse_loss(model(x0, torch.zeros(32)), x1 - x0)
    torch.testing.assert_close(loss, want)
