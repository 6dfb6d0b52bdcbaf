"""The mixture path: sources, the kappa schedule, x_t ~ p_t(. | x1), the jump probability and
the JSON description.

Frequencies are checked within 4 binomial standard errors: a correct draw lands outside with
probability 6e-5 per comparison, so the ~10 comparisons of a test fail by chance about once in
a thousand seeds (and the seeds are fixed), while a wrong probability of more than a few SE is
caught."""

from __future__ import annotations

import json
import math

import pytest
import torch

from flowmatch import discrete as fd
from flowmatch.discrete.path import jump_probability
from flowmatch.schedules import DDPM, VE, VP, Cosine, Linear, Polynomial

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within_4_se(freq: torch.Tensor, p: torch.Tensor, n: int) -> None:
    se = (p * (1 - p) / n).sqrt().clamp_min(1e-12)
    z = ((freq - p) / se).abs()
    assert float(z.max()) < 4.0, f"frequencies {freq.tolist()} vs {p.tolist()} (z {z.tolist()})"


# ------------------------------------------------------------------------------- sources
def test_the_mask_source_starts_every_token_at_the_mask_id():
    path = fd.MixturePath(5, source="mask")
    x0 = path.sample_source((7, 3), generator=gen(0))
    assert x0.dtype == torch.long and x0.shape == (7, 3)
    assert bool((x0 == 5).all())
    assert path.mask_id == 5 and path.num_ids == 6
    p0 = path.source_probs(3)
    assert p0.shape == (3, 6) and p0.dtype == F64
    assert torch.equal(p0, torch.eye(6, dtype=F64)[[5, 5, 5]])


def test_the_uniform_source_draws_every_token_equally_often():
    path = fd.MixturePath(4, source="uniform")
    assert path.mask_id is None and path.num_ids == 4
    n = 60_000  # 20000 sequences x 3 positions
    x0 = path.sample_source((20_000, 3), generator=gen(1))
    assert int(x0.min()) >= 0 and int(x0.max()) < 4
    freq = torch.bincount(x0.flatten(), minlength=4).to(F64) / n
    within_4_se(freq, torch.full((4,), 0.25, dtype=F64), n)


def test_a_given_per_position_source_is_drawn_per_position():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.0, 0.1, 0.1, 0.8]], dtype=F64)
    path = fd.MixturePath(4, source=probs)
    assert path.source == "probs" and path.mask_id is None and path.num_ids == 4
    n = 20_000
    x0 = path.sample_source((n, 2), generator=gen(2))
    for i in range(2):
        freq = torch.bincount(x0[:, i], minlength=4).to(F64) / n
        assert float(freq[probs[i] == 0].sum()) == 0.0  # zero-probability tokens never drawn
        within_4_se(freq, probs[i], n)
    with pytest.raises(ValueError, match="2 positions"):
        path.source_probs(3)  # per-position probabilities for another length


def test_a_shared_source_vector_applies_to_every_position():
    probs = torch.tensor([0.5, 0.25, 0.25])
    path = fd.MixturePath(3, source=probs)
    p0 = path.source_probs(4)
    assert p0.shape == (4, 3) and torch.allclose(p0, probs.to(F64).expand(4, 3))


# --------------------------------------------------------------------------------- x_t
@pytest.mark.parametrize("schedule", [Linear(), Polynomial(2.0), Cosine()], ids=repr)
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_x_t_keeps_the_data_token_with_probability_kappa(source, schedule):
    """P(x_t^i = x1^i) = kappa_t with the mask source, kappa_t + (1 - kappa_t) / V with the
    uniform one (the source token may equal the data token); the other tokens are the
    source's."""
    vocab, n = 5, 40_000  # 8000 sequences x 5 positions
    path = fd.MixturePath(vocab, source=source, schedule=schedule)
    x1 = torch.randint(0, vocab, (8000, 5), generator=gen(3))
    for j, time in enumerate((0.2, 0.5, 0.85)):
        t = torch.full((8000,), time)
        x_t = path.sample(x1, t, generator=gen(10 + j))
        kappa = float(path.kappa(torch.tensor(time, dtype=F64))[0])
        p = kappa if source == "mask" else kappa + (1 - kappa) / vocab
        freq = float((x_t == x1).to(F64).mean())
        within_4_se(torch.tensor([freq]), torch.tensor([p], dtype=F64), n)
        if source == "mask":
            assert bool(((x_t == x1) | (x_t == vocab)).all())
        else:
            assert int(x_t.min()) >= 0 and int(x_t.max()) < vocab


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_x_t_is_the_source_at_t0_and_the_data_at_t1(source):
    path = fd.MixturePath(6, source=source)
    x1 = torch.randint(0, 6, (50, 4), generator=gen(4))
    x0 = path.sample_source((50, 4), generator=gen(5))
    assert torch.equal(path.sample(x1, torch.zeros(50), x0=x0, generator=gen(6)), x0)
    assert torch.equal(path.sample(x1, torch.ones(50), x0=x0, generator=gen(6)), x1)


def test_x_t_is_reproducible_and_rejects_bad_shapes():
    path = fd.MixturePath(6, source="uniform")
    x1 = torch.randint(0, 6, (50, 4), generator=gen(4))
    t = torch.rand(50, generator=gen(7))
    assert torch.equal(path.sample(x1, t, generator=gen(8)), path.sample(x1, t, generator=gen(8)))
    with pytest.raises(ValueError, match="x1 must be"):
        path.sample(x1[0], t[:1])
    with pytest.raises(ValueError, match="x1 must be"):
        path.sample(x1, t[:3])


# ------------------------------------------------------------------------------ kappa
@pytest.mark.parametrize("schedule", [Linear(), Polynomial(3.0), Polynomial(0.5), Cosine()])
def test_kappa_schedules_from_0_to_1_are_accepted(schedule):
    path = fd.MixturePath(3, schedule=schedule)
    kappa, d_kappa = path.kappa(torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    # 1e-12: the ends are exact in float64 for these schedules up to sin(pi/2) rounding
    assert abs(float(kappa[0])) < 1e-12 and abs(float(kappa[2]) - 1.0) < 1e-12
    assert float(d_kappa[1]) > 0


@pytest.mark.parametrize(("schedule", "name"), [(VP(), "vp"), (VE(), "ve"), (DDPM(), "ddpm")])
def test_schedules_not_from_0_to_1_are_rejected_naming_kappa(schedule, name):
    """VP and DDPM start at alpha(0) = 0.0066, VE ends at alpha(1) = 0.99995: not kappa."""
    with pytest.raises(ValueError, match="kappa"):
        fd.MixturePath(3, schedule=schedule)
    with pytest.raises(ValueError, match="kappa"):
        fd.MixturePath.from_dict({"vocab_size": 3, "kappa": {"schedule": name}})


@pytest.mark.parametrize("schedule", [Linear(), Polynomial(2.5), Cosine()], ids=repr)
def test_time_of_inverts_kappa(schedule):
    path = fd.MixturePath(3, schedule=schedule)
    t = torch.linspace(0.0, 1.0, 41, dtype=F64)
    kappa = path.kappa(t)[0]
    back = path.time_of(kappa)
    assert back.dtype == F64
    # 1e-12 in kappa: 45 bisection halvings reach 3e-14 in t and |kappa'| <= pi/2 here
    assert float((path.kappa(back)[0] - kappa).abs().max()) < 1e-12
    # 1e-9 in t away from the ends, where kappa' > 0.02 for all three schedules (Cosine and
    # Polynomial(2.5) are flat at one end, where t is ill-conditioned given kappa)
    inner = slice(4, -4)
    assert float((back[inner] - t[inner]).abs().max()) < 1e-9


# -------------------------------------------------------------------- jump probability
@pytest.mark.parametrize("schedule", [Linear(), Polynomial(2.0), Cosine()], ids=repr)
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 64, 1000])
def test_the_jump_probability_is_1_at_the_last_step_and_telescopes(schedule, steps):
    """On the sampler's float32 grid t_k = k / K: q_k in [0, 1], q = 1 at the last step, and
    prod_{k<j} (1 - q_k) = 1 - kappa(t_j) (a token is still at its source at t_j with
    probability 1 - kappa)."""
    path = fd.MixturePath(4, schedule=schedule)
    h = 1.0 / steps
    q = torch.cat(
        [jump_probability(path, torch.full((1,), k * h), torch.tensor(h)) for k in range(steps)]
    )
    assert q.dtype == F64
    assert bool(((q >= 0) & (q <= 1)).all())
    assert float(q[-1]) == 1.0
    still = torch.cumprod(1.0 - q, 0)[:-1]
    kappa = path.kappa(torch.tensor([(k + 1) * h for k in range(steps - 1)]).to(F64))[0]
    # 2e-7 + 1e-8 * K: the grid is float32, and a step's end t + h (a float32 sum) may differ from
    # the next step's t = float32(k / K) by one float32 ulp (6e-8), which breaks the
    # telescoping by up to ~1e-7 kappa' / (1 - kappa) per step; measured 4.5e-6 at K = 1000
    # (Polynomial(2)), 1.4e-7 at K = 10, 0 at K = 2 and 64 (exact binary fractions)
    if steps > 1:
        assert float((still - (1.0 - kappa)).abs().max()) < 2e-7 + 1e-8 * steps
    # the exact formula (kappa_{t+h} - kappa_t) / (1 - kappa_t) away from the last step
    t = torch.tensor([0.0, 0.25, 0.5], dtype=F64)
    k0, k1 = path.kappa(t)[0], path.kappa(t + 0.25)[0]
    # 1e-12: the same float64 formula, up to rounding
    assert torch.allclose(
        jump_probability(path, t, torch.tensor(0.25)), (k1 - k0) / (1 - k0), atol=1e-12, rtol=0
    )


def test_the_jump_probability_is_1_from_t1_and_for_steps_past_1():
    path = fd.MixturePath(4)
    t = torch.tensor([1.0, 0.9, 0.5])
    q = jump_probability(path, t, torch.tensor([0.1, 0.2, 0.5]))
    assert q.tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------- construction
@pytest.mark.parametrize("vocab", [1, 0, -3, True, 2.0, "3", None])
def test_bad_vocab_sizes_are_rejected(vocab):
    with pytest.raises(ValueError, match="vocab_size"):
        fd.MixturePath(vocab)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("gaussian", "source must be one of"),
        ("probs", "source must be one of"),
        (torch.tensor([0.5, 0.5]), r"shape \(V,\) or \(L, V\)"),
        (torch.full((2, 2, 3), 1 / 3), r"shape \(V,\) or \(L, V\)"),
        (torch.tensor([0.5, 0.6, -0.1]), "finite and >= 0"),
        (torch.tensor([0.5, float("nan"), 0.5]), "finite and >= 0"),
        (torch.tensor([0.5, 0.2, 0.2]), "sum to 1"),
    ],
)
def test_bad_sources_are_rejected(source, match):
    with pytest.raises(ValueError, match=match):
        fd.MixturePath(3, source=source)


def test_a_schedule_must_be_a_flowmatch_schedule():
    with pytest.raises(ValueError, match="schedule"):
        fd.MixturePath(3, schedule=lambda t: t)


def test_equality_and_repr():
    probs = torch.tensor([0.2, 0.3, 0.5])
    assert fd.MixturePath(3) == fd.MixturePath(3, source="mask", schedule=Linear())
    assert fd.MixturePath(3) != fd.MixturePath(3, source="uniform")
    assert fd.MixturePath(3) != fd.MixturePath(4)
    assert fd.MixturePath(3) != fd.MixturePath(3, schedule=Cosine())
    assert fd.MixturePath(3, source=probs) == fd.MixturePath(3, source=probs.clone())
    assert fd.MixturePath(3, source=probs) != fd.MixturePath(3, source=probs.expand(2, 3))
    assert "probs(2, 3)" in repr(fd.MixturePath(3, source=probs.expand(2, 3)))
    with pytest.raises(TypeError):
        hash(fd.MixturePath(3))


# ------------------------------------------------------------------------------- JSON
@pytest.mark.parametrize(
    "path",
    [
        fd.MixturePath(27),
        fd.MixturePath(5, source="uniform", schedule=Cosine()),
        fd.MixturePath(3, source=torch.tensor([0.2, 0.3, 0.5]), schedule=Polynomial(3.0)),
        fd.MixturePath(2, source=torch.tensor([[0.1, 0.9], [0.6, 0.4]])),
    ],
    ids=["mask", "uniform-cosine", "probs-polynomial", "probs-per-position"],
)
def test_to_dict_from_dict_round_trips_through_json(path):
    spec = json.loads(json.dumps(path.to_dict(), allow_nan=False))
    back = fd.MixturePath.from_dict(spec)
    assert back == path
    assert back.source == path.source and back.schedule == path.schedule
    if path.probs is not None:
        assert back.probs is not None and back.probs.dtype == F64
        assert torch.equal(back.probs, path.probs)  # float64 -> JSON -> float64 is exact


def test_from_dict_defaults_to_the_mask_source_and_linear_kappa():
    assert fd.MixturePath.from_dict({"vocab_size": 4}) == fd.MixturePath(4)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([4], "mapping"),
        ({}, "vocab_size"),
        ({"vocab_size": 1}, "vocab_size"),
        ({"vocab_size": "4"}, "vocab_size"),
        ({"vocab_size": 4, "source": "gaussian"}, "source"),
        ({"vocab_size": 4, "source": [0.5, 0.5]}, "source"),
        ({"vocab_size": 2, "source": [0.5, 0.6]}, "source"),
        ({"vocab_size": 4, "kappa": {"schedule": "quadratic"}}, "kappa.schedule"),
        ({"vocab_size": 4, "kappa": {"schedule": "vp"}}, "kappa"),
    ],
)
def test_bad_dicts_are_rejected_naming_the_field(spec, match):
    with pytest.raises(ValueError, match=match):
        fd.MixturePath.from_dict(spec)


@pytest.mark.parametrize(
    "kappa", [{"schedule": "polynomial", "m": 2}, {"schedule": "linear", "n": 2}, 5, "linear"]
)
def test_bad_kappa_arguments_raise_value_error_naming_kappa(kappa):
    with pytest.raises(ValueError, match="kappa"):
        fd.MixturePath.from_dict({"vocab_size": 4, "kappa": kappa})


@pytest.mark.parametrize("probs", [[0.7, 0.2, 0.1], [1 / 7] * 7])
def test_a_probs_source_round_trips_exactly(probs):
    path = fd.MixturePath(len(probs), source=torch.tensor(probs, dtype=F64))
    assert fd.MixturePath.from_dict(json.loads(json.dumps(path.to_dict()))) == path


def test_an_unnamed_schedule_cannot_be_saved():
    class Mine(Linear):
        pass

    with pytest.raises(ValueError, match="no name"):
        fd.MixturePath(3, schedule=Mine()).to_dict()


def test_source_probabilities_are_kept_as_given_in_float64():
    # Kept as given (not renormalized) so that a saved path loads back equal; the draws
    # renormalize each row in float64.
    probs = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float32)  # sums to 1 within 1e-7
    path = fd.MixturePath(3, source=probs)
    assert path.probs.dtype == F64
    assert torch.equal(path.probs, probs.to(F64))
    assert math.isclose(float(path.probs.sum()), 1.0, abs_tol=1e-7)
