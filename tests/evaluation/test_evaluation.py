"""The evaluation package: one loop with the metric passed in, and the run's seed streams."""

import math

import pytest
import torch

import flowmatch as fm
from flowmatch.evaluation import PointMetric, append_csv, evaluate_model, mean_std, seeds


class Recorder:
    """A metric that records what the loop hands it: the mean of each draw's samples."""

    def __init__(self) -> None:
        self.begun, self.scored = [], []

    def begin(self, num, draws, generator):
        self.begun.append((num, draws))
        return "state"

    def score(self, samples, state, draw):
        assert state == "state" and samples.dtype == torch.float32
        self.scored.append((draw, samples.mean().item()))
        return {"mean": samples.mean().item()}

    def row(self, method, steps, nfe, guidance, scores):
        return (method, steps, nfe, mean_std([s["mean"] for s in scores]))


def test_the_loop_hands_every_draw_to_the_metric_and_reseeds_per_sampler():
    net = fm.models.MLP(dim=2, hidden=8, depth=1)
    metric = Recorder()
    rows = evaluate_model(
        net,
        metric,
        lambda n, g: torch.randn(n, 2, generator=g),
        steps=[2, 2],
        methods=["euler", "midpoint"],
        num=50,
        draws=3,
        seed=4,
    )
    assert [(m, s, nfe) for m, s, nfe, _ in rows] == [
        ("euler", 2, 2),
        ("euler", 2, 2),
        ("midpoint", 2, 4),
        ("midpoint", 2, 4),
    ]
    assert metric.begun == [(50, 3)] * 4 and [d for d, _ in metric.scored] == [0, 1, 2] * 4
    # re-seeded for every (method, steps): the same noise, so the same figures
    assert rows[0][3] == rows[1][3] and rows[2][3] == rows[3][3]
    assert rows[0][3] != rows[2][3]


def test_a_two_time_model_is_evaluated_by_its_jumps():
    net = fm.models.MLP(dim=2, hidden=8, depth=1, two_times=True)
    rows = evaluate_model(
        net,
        Recorder(),
        lambda n, g: torch.randn(n, 2, generator=g),
        steps=[1, 2],
        methods=["euler", "midpoint"],
        num=10,
        draws=1,
    )
    assert [(m, s, nfe) for m, s, nfe, _ in rows] == [("average", 1, 1), ("average", 2, 2)]


def test_point_metric_against_the_noise_floor():
    """Samples drawn from the reference distribution itself score like the floor (same
    size, 4 draws: within 3 of the floor's spreads)."""
    reference = lambda n, g: torch.randn(n, 2, generator=g)  # noqa: E731
    metric = PointMetric(reference)
    identity = fm.FlowModel(fm.models.MLP(dim=2, hidden=4, depth=1))
    torch.nn.init.zeros_(identity.net.net[-1].weight)
    torch.nn.init.zeros_(identity.net.net[-1].bias)  # v = 0: samples = the N(0, I) source
    rows = evaluate_model(
        identity, metric, reference, steps=[1], methods=["euler"], num=300, draws=4
    )
    floor = metric.floor(300, 4, seed=0)
    assert abs(rows[0].w2_mean - floor.w2_mean) < 3 * (rows[0].w2_std + floor.w2_std)


def test_mean_std():
    assert mean_std([2.0]) == (2.0, 0.0)
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and math.isclose(std, 1.0)


def test_seed_streams_are_named_and_stable():
    # the values of earlier versions, so runs trained again reproduce their numbers
    assert seeds.stream_seed(3, "eval") == 10 and seeds.stream_seed(3, "straightness") == 16
    assert seeds.stream_seed(3, "plots") == 14 and seeds.stream_seed(3, "pool") == 3001
    assert seeds.stream_seed(3, "batches", rank=2) == 3012
    a = torch.rand(3, generator=seeds.generator(1, "holdout"))
    assert torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(1002)))
    with pytest.raises(ValueError, match="stream must be one of"):
        seeds.stream_seed(0, "typo")


def test_append_csv_writes_the_header_once(tmp_path):
    row = fm.evaluation.EvalRow("euler", 2, 2, 0.5, 0.1, 0.01, 0.001)
    for step in (10, 20):
        append_csv(tmp_path / "eval.csv", step, [row])
    lines = (tmp_path / "eval.csv").read_text().splitlines()
    assert lines[0].startswith("step,method") and len(lines) == 3
    assert lines[2].split(",")[:4] == ["20", "euler", "2", "2"]
