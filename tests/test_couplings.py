"""Tests of the couplings: exact and entropic minibatch OT, the Schrödinger bridge, fixed pairs."""

import itertools
import math

import numpy as np
import ot
import pytest
import scipy.optimize
import torch
from scipy.optimize import linear_sum_assignment

import flowmatch as fm
import flowmatch.ot as ot_module
from flowmatch.couplings import (
    COUPLINGS,
    Independent,
    MinibatchOT,
    Pairs,
    SchrodingerBridge,
    optimal_assignment,
    sinkhorn_plan,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _gaussians(batch, shape=(2,), seed=0, shift=0.0):
    """x0 ~ N(0, I) and x1 ~ N(shift, I) of shape (batch, *shape), float64."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn((batch, *shape), generator=g, dtype=F64)
    x1 = shift + torch.randn((batch, *shape), generator=g, dtype=F64)
    return x0, x1


def _cost_matrix(x0, x1):
    """Squared Euclidean distances between flattened points, by broadcasting (not the library's)."""
    a = x0.reshape(x0.shape[0], -1).double()
    b = x1.reshape(x1.shape[0], -1).double()
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _pair_cost(x0, x1):
    """Mean squared distance of the pairs (x0[i], x1[i])."""
    return ((x0.double() - x1.double()).reshape(x0.shape[0], -1) ** 2).sum(1).mean().item()


def _ot_cost(x0, x1):
    """Mean pair cost of the optimal assignment, by scipy on the broadcast cost matrix."""
    cost = _cost_matrix(x0, x1).numpy()
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].mean()


def _position(cost, ot_cost, independent_cost):
    """Where a pairing cost lies between the OT cost (0) and the independent cost (1)."""
    return (cost - ot_cost) / (independent_cost - ot_cost)


# ---------------------------------------------------------------------------------------------
# Exact minibatch OT
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (2, 3), (20,)], ids=["2d", "2x3", "20d-scipy"])
@pytest.mark.parametrize("batch", [2, 3, 4, 5, 6, 7])
def test_exact_pairing_cost_equals_brute_force_minimum(batch, shape):
    """The exact pairing's total cost is the minimum over all B! permutations."""
    perms = np.array(list(itertools.permutations(range(batch))))
    for seed in range(3):
        x0, x1 = _gaussians(batch, shape, seed=seed)
        cost = _cost_matrix(x0, x1).numpy()
        brute = cost[np.arange(batch), perms].sum(1).min()
        _, x1_out, _ = MinibatchOT("exact")(x0, x1)
        perm = optimal_assignment(x0, x1)
        # float64 costs of O(1) numbers: only rounding separates two equal-cost sums.
        assert _pair_cost(x0, x1_out) * batch == pytest.approx(brute, rel=1e-9, abs=0)
        assert cost[np.arange(batch), perm.numpy()].sum() == pytest.approx(brute, rel=1e-9, abs=0)


@pytest.mark.parametrize(("dim", "emd_branch"), [(2, True), (64, False)], ids=["pot", "scipy"])
def test_exact_pairing_is_a_true_permutation_at_batch_256(dim, emd_branch, monkeypatch):
    """At B=256 each x1 row appears exactly once, optimally, on the branch its dimension picks."""
    assert (dim <= ot_module._EMD_MAX_DIM) == emd_branch

    def forbidden(*args, **kwargs):
        raise AssertionError("the other exact solver was called")

    # Fail if the branch under test falls back to (or is replaced by) the other solver.
    # (the solvers are imported lazily, from their modules, so patch them there)
    if emd_branch:
        monkeypatch.setattr(scipy.optimize, "linear_sum_assignment", forbidden)
    else:
        monkeypatch.setattr(ot, "emd", forbidden)
    x0, x1 = _gaussians(256, (dim,), seed=1)
    x0 = x0.float()
    x1 = x1.float()
    cond = torch.arange(256)
    x0_out, x1_out, cond_out = MinibatchOT("exact")(x0, x1, cond)
    perm = optimal_assignment(x0, x1)
    monkeypatch.undo()

    assert perm.dtype == torch.int64 and perm.shape == (256,)
    assert torch.equal(perm.sort().values, torch.arange(256))
    assert torch.equal(cond_out, perm)
    assert torch.equal(x1_out, x1[cond_out])
    assert torch.equal(x0_out, x0)
    # Both solvers are exact; the costs are float64 sums of 256 O(1)-O(100) terms.
    assert _pair_cost(x0, x1_out) == pytest.approx(_ot_cost(x0, x1), rel=1e-9, abs=0)


def test_exact_pairing_keeps_x0_and_moves_labels_with_x1():
    """x0 comes back unchanged and every label (any shape) stays with its own x1."""
    x0, x1 = _gaussians(32, (2, 3), seed=2)
    index = torch.arange(32)
    cond = torch.stack([index, 100 + index, -index], 1)  # (B, 3) labels of x1 row i
    x0_out, x1_out, cond_out = MinibatchOT("exact")(x0, x1, cond)
    assert torch.equal(x0_out, x0)
    assert x1_out.shape == x1.shape and cond_out.shape == cond.shape
    assert torch.equal(cond_out[:, 1], 100 + cond_out[:, 0])
    assert torch.equal(cond_out[:, 2], -cond_out[:, 0])
    assert torch.equal(x1_out, x1[cond_out[:, 0]])
    _, _, none_out = MinibatchOT("exact")(x0, x1)
    assert none_out is None


def test_exact_pairing_is_deterministic_and_draws_no_random_numbers():
    """Two calls give identical pairings and leave torch's global RNG state untouched."""
    x0, x1 = _gaussians(64, (2,), seed=3)
    cond = torch.arange(64)
    for coupling in (MinibatchOT("exact"), SchrodingerBridge(0.0)):
        state = torch.get_rng_state()
        first = coupling(x0, x1, cond)
        second = coupling(x0, x1, cond)
        assert torch.equal(torch.get_rng_state(), state), coupling
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a, b), coupling


def test_exact_pairing_lowers_cost_below_independent_pairing():
    """On Gaussian batches the OT pairing is strictly cheaper than the pairing as drawn."""
    for seed in range(3):
        x0, x1 = _gaussians(64, (2,), seed=seed)
        _, x1_ot, _ = MinibatchOT()(x0, x1)
        _, x1_ind, _ = Independent()(x0, x1)
        assert _pair_cost(x0, x1_ot) < _pair_cost(x0, x1_ind)


# ---------------------------------------------------------------------------------------------
# Entropic (Sinkhorn) minibatch OT
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dim", "shift", "reg", "relative"),
    [(2, 0.0, 0.05, True), (2, 1.0, 0.5, False), (8, 0.0, 2.0, False)],
    ids=["relative-default", "sb-default-2d", "sb-sigma-1-8d"],
)
def test_sinkhorn_plan_has_uniform_marginals(dim, shift, reg, relative):
    """Rows and columns of the plan sum to 1/B within Sinkhorn's stopping threshold."""
    x0, x1 = _gaussians(64, (dim,), seed=4, shift=shift)
    plan = sinkhorn_plan(x0, x1, reg, relative=relative)
    assert plan.shape == (64, 64) and plan.dtype == F64
    assert (plan >= 0).all()
    # POT stops once the L2 norm of the column-marginal error is < 1e-5, which bounds each
    # column's error; the last half-step rescales the rows, which are then exact up to rounding.
    torch.testing.assert_close(plan.sum(1), torch.full((64,), 1 / 64, dtype=F64), rtol=0, atol=1e-5)
    torch.testing.assert_close(plan.sum(0), torch.full((64,), 1 / 64, dtype=F64), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("batch", "dim", "sigma"),
    [(8, 2, 0.1), (8, 2, 0.03), (64, 16, 0.5)],
    ids=["2d-sigma-0.1", "2d-sigma-0.03", "16d-default-sigma"],
)
def test_sinkhorn_plan_is_a_coupling_at_small_reg(batch, dim, sigma):
    """At the Schrödinger bridge's reg = 2 sigma^2 the plan still has uniform marginals."""
    x0, x1 = _gaussians(batch, (dim,), seed=0)
    plan = sinkhorn_plan(x0, x1, 2 * sigma**2)
    # Contract: exact marginals (the plan is rounded onto the couplings). Before the rounding,
    # POT's iterations alone left column errors of 3.4e-4 (2-D, sigma=0.1), 1.7e-5 (16-D,
    # sigma=0.5) after the iteration cap and 0.25 = 2/B (2-D, sigma=0.03) after an early exit
    # on underflow: one data point never drawn and another twice as often.
    uniform = torch.full((batch,), 1 / batch, dtype=F64)
    torch.testing.assert_close(plan.sum(0), uniform, rtol=0, atol=1e-5)
    # Any coupling costs at least the OT cost; the sigma=0.03 "plan" costs half of it.
    assert (plan * _cost_matrix(x0, x1)).sum().item() >= _ot_cost(x0, x1) - 1e-4


def test_sinkhorn_pairing_keeps_x0_and_moves_labels_with_x1():
    """Each x0 keeps its place and draws a partner x1 that brings its own label."""
    x0, x1 = _gaussians(48, (2, 3), seed=5)
    cond = torch.arange(48)
    x0_out, x1_out, cond_out = MinibatchOT("sinkhorn", reg=0.5)(
        x0, x1, cond, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(x0_out, x0)
    assert x1_out.shape == x1.shape and cond_out.shape == cond.shape
    assert ((cond_out >= 0) & (cond_out < 48)).all()
    assert torch.equal(x1_out, x1[cond_out])


def test_sinkhorn_pairing_is_reproducible_with_a_generator():
    """The same seed gives the same pairing; another seed a different one."""
    x0, x1 = _gaussians(64, (2,), seed=6)
    cond = torch.arange(64)
    coupling = MinibatchOT("sinkhorn", reg=1.0)

    def draw(seed):
        return coupling(x0, x1, cond, generator=torch.Generator().manual_seed(seed))[2]

    assert torch.equal(draw(7), draw(7))
    # At reg=1 each row spreads over many columns: 64 identical draws would be a fluke.
    assert not torch.equal(draw(7), draw(8))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sinkhorn_pairing_approaches_exact_ot_at_small_reg(seed):
    """At reg=0.005 (relative) the sampled pairing costs about the exact OT pairing."""
    x0, x1 = _gaussians(256, (2,), seed=seed)
    ot_cost, independent_cost = _ot_cost(x0, x1), _cost_matrix(x0, x1).mean().item()
    _, x1_out, _ = MinibatchOT("sinkhorn", reg=0.005)(
        x0, x1, generator=torch.Generator().manual_seed(seed)
    )
    # Measured on the OT-to-independent scale: in 2-D the OT cost itself is ~3% of the
    # independent one, so sampling noise is large relative to it alone. The entropic bias is
    # ~reg * log(B) ~ 3% of the mean cost at most; here it is < 1% of the gap (20 seeds).
    assert abs(_position(_pair_cost(x0, x1_out), ot_cost, independent_cost)) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sinkhorn_pairing_approaches_independent_at_large_reg(seed):
    """At reg=10 (relative) the sampled pairing costs about as much as an independent one."""
    x0, x1 = _gaussians(256, (2,), seed=seed)
    ot_cost, independent_cost = _ot_cost(x0, x1), _cost_matrix(x0, x1).mean().item()
    _, x1_out, _ = MinibatchOT("sinkhorn", reg=10.0)(
        x0, x1, generator=torch.Generator().manual_seed(seed)
    )
    # A pair's cost has sd about equal to its mean here (2 chi^2_2), so the mean of 256 has a
    # relative sd of 1/16 ~ 6%; the plan's own bias toward cheap pairs is ~Var(c)/(reg mean^2)
    # ~ 3-10%. 0.3 is about five standard deviations.
    assert abs(_position(_pair_cost(x0, x1_out), ot_cost, independent_cost) - 1) < 0.3


def test_sinkhorn_plan_cost_increases_with_reg():
    """The plan's expected cost grows with reg, from near the OT cost to the independent one."""
    x0, x1 = _gaussians(128, (2,), seed=9)
    cost = _cost_matrix(x0, x1)
    costs = [
        (sinkhorn_plan(x0, x1, reg, relative=True) * cost).sum().item()
        for reg in (0.05, 0.2, 1.0, 10.0)
    ]
    # The entropic plan's cost is non-decreasing in reg (a convexity property); the plans are
    # converged to 1e-5 in the marginals, ~1e-3 of these cost differences.
    assert all(a < b for a, b in itertools.pairwise(costs)), costs
    assert _ot_cost(x0, x1) <= costs[0] < costs[-1] <= cost.mean().item()


# ---------------------------------------------------------------------------------------------
# Schrödinger bridge
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (3, 4, 4)], ids=["2d", "3x4x4"])
@pytest.mark.parametrize("cond_shape", [None, (), (5,)], ids=["none", "labels", "vectors"])
def test_schrodinger_bridge_pairing_any_shape_and_cond(shape, cond_shape):
    """The bridge pairs any data shape, keeps x0 and moves labels of any shape with x1."""
    x0, x1 = _gaussians(24, shape, seed=10)
    index = torch.arange(24)
    cond = {
        None: None,
        (): index,
        (5,): index[:, None] + 1000 * torch.arange(5),  # column 0 is the row index of x1
    }[cond_shape]
    coupling = SchrodingerBridge(0.5)
    x0_out, x1_out, cond_out = coupling(x0, x1, cond, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x0_out, x0)
    assert x1_out.shape == x1.shape
    if cond is None:
        assert cond_out is None
        assert all(any(torch.equal(row, other) for other in x1) for row in x1_out)
    else:
        assert cond_out.shape == cond.shape
        first = cond_out if cond_shape == () else cond_out[:, 0]
        assert torch.equal(x1_out, x1[first])
        again = coupling(x0, x1, cond, generator=torch.Generator().manual_seed(0))
        assert torch.equal(again[2], cond_out)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_schrodinger_bridge_path_has_the_bridge_moments(t):
    """x_t of one pair has mean t x1 + (1 - t) x0 and variance sigma^2 t (1 - t) per coordinate."""
    n, sigma = 20_000, 0.7
    x0 = torch.tensor([[-1.0, 0.5, 2.0]], dtype=F64).expand(n, 3)
    x1 = torch.tensor([[3.0, -2.0, 2.0]], dtype=F64).expand(n, 3)
    x_t, _ = SchrodingerBridge(sigma).sample_path(
        x0, x1, torch.full((n,), t, dtype=F64), generator=torch.Generator().manual_seed(11)
    )
    var = sigma**2 * t * (1 - t)
    # Five standard errors: of a mean, sqrt(var / n); of a sample variance, sqrt(2 / (n - 1)) var
    # (about 1% of var here).
    torch.testing.assert_close(
        x_t.mean(0), t * x1[0] + (1 - t) * x0[0], rtol=0, atol=5 * math.sqrt(var / n)
    )
    torch.testing.assert_close(
        x_t.var(0), torch.full((3,), var, dtype=F64), rtol=5 * math.sqrt(2 / (n - 1)), atol=0
    )


def test_schrodinger_bridge_velocity_target_matches_its_formula():
    """u_t = x1 - x0 + sigma (1 - 2t) / (2 sqrt(t (1 - t))) eps, eps recovered from x_t."""
    sigma = 0.4
    x0, x1 = _gaussians(64, (2, 3), seed=12)
    t = 0.02 + 0.96 * torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=F64)
    bridge = SchrodingerBridge(sigma)
    x_t, u_t = bridge.sample_path(x0, x1, t, generator=torch.Generator().manual_seed(1))
    tt = t[:, None, None]
    eps = (x_t - tt * x1 - (1 - tt) * x0) / (sigma * (tt * (1 - tt)).sqrt())
    expected = x1 - x0 + sigma * (1 - 2 * tt) / (2 * (tt * (1 - tt)).sqrt()) * eps
    # float64; recovering eps divides by sigma sqrt(t(1-t)) >= 0.056: ~1e-14 errors.
    torch.testing.assert_close(u_t, expected, rtol=1e-10, atol=1e-10)
    # The noise is standard normal (1152 draws: sample mean/sd within ~5 standard errors).
    assert abs(eps.mean().item()) < 5 / math.sqrt(eps.numel())
    assert abs(eps.std().item() - 1) < 5 / math.sqrt(2 * eps.numel())
    again = bridge.sample_path(x0, x1, t, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.x_t, x_t) and torch.equal(again.u_t, u_t)

    # At the endpoints the bridge pins x_t to x0 and x1 and the clamped velocity stays finite.
    x_0, u_0 = bridge.sample_path(x0, x1, torch.zeros(64, dtype=F64))
    x_1, u_1 = bridge.sample_path(x0, x1, torch.ones(64, dtype=F64))
    torch.testing.assert_close(x_0, x0, rtol=0, atol=1e-15)
    torch.testing.assert_close(x_1, x1, rtol=0, atol=1e-15)
    assert torch.isfinite(u_0).all() and torch.isfinite(u_1).all()


def test_schrodinger_bridge_with_zero_sigma_is_exact_ot_and_a_straight_path():
    """sigma=0: the exact OT pairing and the deterministic straight path with u = x1 - x0."""
    x0, x1 = _gaussians(32, (2, 3), seed=13)
    cond = torch.arange(32)
    bridge = SchrodingerBridge(0.0)
    x0_out, x1_out, cond_out = bridge(x0, x1, cond)
    assert torch.equal(x0_out, x0)
    assert torch.equal(cond_out, optimal_assignment(x0, x1))
    assert torch.equal(x1_out, x1[cond_out])
    t = torch.rand(32, generator=torch.Generator().manual_seed(0), dtype=F64)
    a = bridge.sample_path(x0_out, x1_out, t, generator=torch.Generator().manual_seed(1))
    b = bridge.sample_path(x0_out, x1_out, t, generator=torch.Generator().manual_seed(2))
    tt = t[:, None, None]
    torch.testing.assert_close(a.x_t, tt * x1_out + (1 - tt) * x0_out, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(a.u_t, x1_out - x0_out, rtol=1e-14, atol=1e-14)
    assert torch.equal(a.x_t, b.x_t) and torch.equal(a.u_t, b.u_t)


def test_schrodinger_bridge_at_small_sigma_pairs_like_exact_ot():
    """At sigma=0.03 on unit-scale data the bridge's pairing is the exact OT assignment."""
    x0, x1 = _gaussians(8, (2,), seed=0)
    cond = torch.arange(8)
    _, _, cond_out = SchrodingerBridge(0.03)(
        x0, x1, cond, generator=torch.Generator().manual_seed(1)
    )
    # The converged plan at reg = 2 * 0.03^2 (POT log-domain Sinkhorn run to 1e-9) is within
    # 2e-5 / B of the OT permutation matrix in every entry, so a correct draw differs from the
    # OT assignment with probability < 8 * 2e-5. Observed: [1, 6, 7, 7, 6, 6, 4, 2].
    assert torch.equal(cond_out, optimal_assignment(x0, x1))


def test_schrodinger_bridge_marginal_std():
    """marginal_std(t) = sigma sqrt(t (1 - t)) with the shape of t: 0 at the ends, sigma/2 mid."""
    bridge = SchrodingerBridge(0.8)
    t = torch.linspace(0, 1, 11, dtype=F64)
    std = bridge.marginal_std(t)
    assert std.shape == t.shape
    torch.testing.assert_close(std, 0.8 * (t * (1 - t)).sqrt(), rtol=1e-15, atol=0)
    assert std[0] == 0 and std[-1] == 0 and std[5].item() == pytest.approx(0.4, rel=1e-15)
    assert bridge.marginal_std(t.reshape(11, 1, 1)).shape == (11, 1, 1)
    assert (SchrodingerBridge(0.0).marginal_std(t) == 0).all()


# ---------------------------------------------------------------------------------------------
# Fixed pairs
# ---------------------------------------------------------------------------------------------


def test_pairs_sample_draws_existing_pairs_reproducibly():
    """Each drawn x0 comes with its own x1 and label; a seeded generator repeats the draw."""
    n = 50
    x0 = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(14))
    x1 = 3 * x0.flip(-1) + 1  # a known partner for every x0
    pairs = Pairs(x0, x1, torch.arange(n))
    a0, a1, a_cond = pairs.sample(200, generator=torch.Generator().manual_seed(0))
    assert a0.shape == (200, 2, 3) and a1.shape == (200, 2, 3) and a_cond.shape == (200,)
    assert torch.equal(a0, x0[a_cond]) and torch.equal(a1, x1[a_cond])
    # 200 uniform draws from 50 pairs hit ~49 distinct ones; 25 is far below any plausible count.
    assert a_cond.unique().numel() > 25
    b0, b1, b_cond = pairs.sample(200, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a0, b0) and torch.equal(a1, b1) and torch.equal(a_cond, b_cond)
    assert not torch.equal(pairs.sample(200, generator=torch.Generator().manual_seed(1))[2], a_cond)

    c0, c1, c_cond = Pairs(x0, x1).sample(64)
    assert c_cond is None
    torch.testing.assert_close(c1, 3 * c0.flip(-1) + 1, rtol=0, atol=0)


def test_pairs_call_returns_its_inputs_unchanged():
    """Calling a Pairs coupling on a batch returns the very same tensors."""
    pairs = Pairs(torch.randn(10, 2), torch.randn(10, 2))
    x0, x1, cond = torch.randn(6, 2), torch.randn(6, 2), torch.arange(6)
    out = pairs(x0, x1, cond)
    assert out[0] is x0 and out[1] is x1 and out[2] is cond
    assert pairs(x0, x1)[2] is None


def test_pairs_len():
    """len(Pairs) is the number of stored pairs, kept by .to()."""
    pairs = Pairs(torch.randn(13, 4), torch.randn(13, 4), torch.arange(13))
    assert len(pairs) == 13
    assert len(pairs.to("cpu")) == 13


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "coupling",
    [MinibatchOT(), MinibatchOT("sinkhorn"), SchrodingerBridge(), SchrodingerBridge(0.0)],
    ids=repr,
)
def test_ot_couplings_reject_different_batch_sizes(coupling):
    """x0 and x1 of different batch sizes: a ValueError naming both sizes."""
    with pytest.raises(ValueError, match=r"batch size.*x0 with 4 and x1 with 5"):
        coupling(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="cond"):
        coupling(torch.randn(4, 2), torch.randn(4, 2), torch.arange(3))


def test_solvers_reject_different_batch_sizes():
    """optimal_assignment and sinkhorn_plan check the batch sizes too."""
    with pytest.raises(ValueError, match="batch size"):
        optimal_assignment(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="batch size"):
        sinkhorn_plan(torch.randn(4, 2), torch.randn(5, 2), 0.1)


def test_pairs_reject_mismatched_lengths():
    """Pairs of x0 and x1 with different lengths: a ValueError naming x0 and x1."""
    with pytest.raises(ValueError, match=r"x0 and x1.*x0 with 4 and x1 with 5"):
        Pairs(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="batch_size"):
        Pairs(torch.randn(4, 2), torch.randn(4, 2)).sample(0)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_schrodinger_bridge_rejects_bad_sigma(sigma):
    """A negative or non-finite sigma: a ValueError naming sigma."""
    with pytest.raises(ValueError, match="sigma"):
        SchrodingerBridge(sigma)


@pytest.mark.parametrize("reg", [0.0, -1.0, float("nan")])
def test_minibatch_ot_rejects_non_positive_reg(reg):
    """A non-positive or non-finite reg: a ValueError naming reg."""
    with pytest.raises(ValueError, match="reg"):
        MinibatchOT("sinkhorn", reg=reg)


def test_minibatch_ot_rejects_unknown_method():
    """An unknown method: a ValueError naming method."""
    with pytest.raises(ValueError, match="method"):
        MinibatchOT("greedy")


def test_coupling_registry():
    """The names of a run config map to the coupling classes, constructible with defaults."""
    assert COUPLINGS == {
        "independent": Independent,
        "minibatch_ot": MinibatchOT,
        "schrodinger_bridge": SchrodingerBridge,
    }
    for cls in COUPLINGS.values():
        assert callable(cls())


# ---------------------------------------------------------------------------------------------
# With the loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "coupling",
    [MinibatchOT(), MinibatchOT("sinkhorn"), SchrodingerBridge(0.5), SchrodingerBridge(0.0)],
    ids=repr,
)
def test_loss_with_coupling_is_a_finite_scalar(coupling):
    """FlowMatchingLoss with an OT or bridge coupling returns a finite scalar with gradients."""
    model = fm.models.MLP(dim=2, hidden=32, depth=2)
    loss = fm.FlowMatchingLoss(coupling=coupling)(
        model, torch.randn(64, 2), generator=torch.Generator().manual_seed(0)
    )
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_with_zero_sigma_bridge_equals_exact_ot_loss():
    """sigma=0: the bridge's path is the linear one, so the loss equals the exact-OT loss."""
    model = fm.models.MLP(dim=2, hidden=32, depth=2).double()
    x1, x0 = _gaussians(64, (2,), seed=15)

    def loss(coupling):
        return fm.FlowMatchingLoss(coupling=coupling)(
            model, x1, x0=x0, generator=torch.Generator().manual_seed(0)
        )

    # Same t (drawn before the coupling), same pairs, same x_t and target up to float64 rounding.
    torch.testing.assert_close(loss(SchrodingerBridge(0.0)), loss(MinibatchOT()))


def test_loss_rejects_bridge_with_other_predictions_or_paths():
    """A bridge trains velocities on its own linear path: other settings raise ValueError."""
    for prediction in ("x1", "x0", "epsilon"):
        with pytest.raises(ValueError, match="prediction"):
            fm.FlowMatchingLoss(coupling=SchrodingerBridge(), prediction=prediction)
    with pytest.raises(ValueError, match="SchrodingerBridge"):
        fm.FlowMatchingLoss(fm.AffinePath(fm.schedules.Cosine()), coupling=SchrodingerBridge())
