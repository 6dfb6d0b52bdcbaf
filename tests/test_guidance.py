"""Classifier-free guidance: label dropout in the loss, the guided prediction (one batched
forward), and sampling a class of the Gaussian-mixture oracle with it."""

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.loss import check_label_dropout, couple_batch, drop_labels
from flowmatch.sampling import guided_prediction, labels_in_turn

MEANS = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]], dtype=torch.float64)


class ClassOracle(nn.Module):
    """Exact velocities of a 3-component mixture: a label k gives component k's own flow
    (the conditional model), the null label 3 the whole mixture's (the unconditional one)."""

    null_class = 3

    def __init__(self, path):
        super().__init__()
        self.flow_path = path
        self.mixture = fm.oracle.GaussianMixture(MEANS, 0.4).velocity(path)
        self.parts = [fm.oracle.GaussianMixture(m[None], 0.4).velocity(path) for m in MEANS]
        self.calls, self.batch_sizes = 0, []

    def forward(self, x, t, cond):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        out = self.mixture(x, t)
        for k, part in enumerate(self.parts):
            mask = cond == k
            if mask.any():
                out[mask] = part(x[mask], t[mask])
        return out


def test_drop_labels_rate_and_values():
    labels = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    out = drop_labels(labels, 0.1, 10, generator=torch.Generator().manual_seed(1))
    dropped = out == 10
    # binomial(20000, 0.1): sd 42, so 5 sd is 0.0106
    assert abs(dropped.float().mean().item() - 0.1) < 0.0106
    assert torch.equal(out[~dropped], labels[~dropped])
    again = drop_labels(labels, 0.1, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="integer labels"):
        drop_labels(torch.rand(5), 0.1, 10)


def test_loss_with_label_dropout_passes_null_labels_to_the_model():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x, t, cond):
            seen.append(cond.clone())
            return torch.zeros_like(x)

    loss_fn = fm.FlowMatchingLoss(cond_dropout=0.5, null_cond=7)
    labels = torch.zeros(4000, dtype=torch.long)
    loss_fn(
        Recorder(), torch.randn(4000, 2), cond=labels, generator=torch.Generator().manual_seed(0)
    )
    share = (seen[0] == 7).float().mean().item()
    assert 0.47 < share < 0.53 and set(seen[0].tolist()) == {0, 7}
    for bad, match in [
        (dict(cond_dropout=1.0, null_cond=7), "cond_dropout"),
        (dict(cond_dropout=-0.1, null_cond=7), "cond_dropout"),
        (dict(cond_dropout=0.1), "null_cond"),
    ]:
        with pytest.raises(ValueError, match=match):
            fm.FlowMatchingLoss(**bad)


def test_guided_prediction_is_the_cfg_combination_in_one_forward():
    path = fm.AffinePath()
    model = ClassOracle(path)
    x = torch.randn(50, 2, dtype=torch.float64)
    t = torch.rand(50, dtype=torch.float64)
    cond = torch.randint(0, 3, (50,))
    null = torch.full_like(cond, 3)
    conditional = model(x, t, cond)
    unconditional = model(x, t, null)
    model.calls, model.batch_sizes = 0, []
    for w in (0.0, 1.0, 2.5):
        out = guided_prediction(model, cond, guidance=w)(x, t)
        torch.testing.assert_close(out, unconditional + w * (conditional - unconditional))
    # w = 1 is the conditional model: one forward of the 50 points, not 2 x 50
    assert model.calls == 3 and model.batch_sizes == [100, 50, 100]
    plain = guided_prediction(model, cond)(x, t)
    torch.testing.assert_close(plain, conditional)


def test_guiding_epsilon_equals_guiding_the_velocity():
    """convert is affine in the prediction, so guiding an epsilon model and converting equals
    converting each branch and guiding the velocities (float64, 1e-10)."""
    path = fm.AffinePath(fm.schedules.VP())

    class Eps(nn.Module):
        null_class = 5

        def forward(self, x, t, cond):
            return torch.sin(x * (cond[:, None] + 1.0)) + t[:, None]

    model = Eps()
    x = torch.randn(30, 2, dtype=torch.float64)
    t = torch.rand(30, dtype=torch.float64) * 0.9 + 0.05
    cond = torch.randint(0, 5, (30,))
    v = fm.model_velocity(model, path=path, prediction="epsilon", cond=cond, guidance=3.0)(x, t)
    vc = fm.model_velocity(model, path=path, prediction="epsilon", cond=cond)(x, t)
    vu = fm.model_velocity(model, path=path, prediction="epsilon", cond=torch.full_like(cond, 5))(
        x, t
    )
    torch.testing.assert_close(v, vu + 3.0 * (vc - vu), rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["midpoint", "ddim"])
def test_guidance_one_samples_the_class_and_zero_the_mixture(method):
    """With the exact class-conditional and unconditional velocities, w = 1 gives class k's
    component (mean within 4 SE, std 0.4 within 5%) and w = 0 the mixture (component shares
    within 4 sd of 1/3), n = 3000."""
    path = fm.AffinePath()
    model = ClassOracle(path)
    n = 3000
    x0 = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cond = torch.full((n,), 1)
    x = fm.sample(model, x0, steps=50, method=method, cond=cond, guidance=1.0)
    se = 0.4 / math.sqrt(n)
    assert (x.mean(0) - MEANS[1]).abs().max() < 4 * se + 2e-3
    assert (x.std(0) / 0.4 - 1).abs().max() < 0.05
    mixed = fm.sample(model, x0, steps=50, method=method, cond=cond, guidance=0.0)
    share = torch.bincount(((mixed[:, None] - MEANS) ** 2).sum(-1).argmin(1), minlength=3) / n
    assert (share - 1 / 3).abs().max() < 4 * math.sqrt(2 / 9 / n)
    stronger = fm.sample(model, x0, steps=50, method=method, cond=cond, guidance=3.0)
    # guidance > 1 pushes further from the other classes: mean x-coordinate more negative
    assert stronger[:, 0].mean() < x[:, 0].mean() - 0.1


def test_guidance_bad_input():
    model = ClassOracle(fm.AffinePath())
    x0 = torch.randn(4, 2, dtype=torch.float64)
    cond = torch.zeros(4, dtype=torch.long)
    for bad in (-1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="guidance must be a finite number"):
            fm.sample(model, x0, cond=cond, guidance=bad)
    with pytest.raises(ValueError, match="needs labels"):
        fm.sample(model, x0, guidance=2.0)

    class NoNull(nn.Module):
        def forward(self, x, t, cond):
            return x

    with pytest.raises(ValueError, match="null_class"):
        fm.sample(NoNull(), x0, cond=cond, guidance=2.0)
    out = guided_prediction(NoNull(), cond, guidance=2.0, null_cond=9)(x0, torch.rand(4))
    torch.testing.assert_close(out, x0)


def test_labels_in_turn():
    """num // K labels of each class in order, the last class taking the remainder."""
    torch.testing.assert_close(
        labels_in_turn(100, 10), torch.arange(10).repeat_interleave(10), rtol=0, atol=0
    )
    assert labels_in_turn(7, 3).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert labels_in_turn(2, 5).tolist() == [0, 1]
    assert labels_in_turn(5, 1).tolist() == [0] * 5
    for bad in ((0, 3), (3, 0), (2.0, 3), (True, 3)):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            labels_in_turn(*bad)


def test_couple_batch_pairs_then_drops_labels():
    """The coupling's pairing moves each label with its data point; then about a fraction p of
    the labels become the null label (p = 0.5 over 4000: within 0.03, 4 SE)."""
    from flowmatch.couplings import MinibatchOT

    x0 = torch.randn(6, 2)
    x1 = x0[[3, 1, 5, 0, 2, 4]] + 1e-3  # the OT partner of x0[i] is x1 at the index of i
    cond = torch.arange(6) * 10
    a0, a1, c = couple_batch(MinibatchOT("exact"), x0, x1, cond)
    assert torch.equal(a0, x0)
    torch.testing.assert_close(a1, x0 + 1e-3)
    # x0[i]'s partner is x1[j] with j the position of i in the permutation; its label is 10 j
    assert c.tolist() == [30, 10, 40, 0, 50, 20]
    labels = torch.zeros(4000, dtype=torch.int64)
    z = torch.zeros(4000, 1)
    _, _, dropped = couple_batch(
        fm.couplings.Independent(), z, z, labels, cond_dropout=0.5, null_cond=9
    )
    assert abs((dropped == 9).float().mean().item() - 0.5) < 0.03
    for bad, match in [((1.0, 3), "cond_dropout"), ((0.1, None), "null_cond")]:
        with pytest.raises(ValueError, match=match):
            check_label_dropout(*bad)
