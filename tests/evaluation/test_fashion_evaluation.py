"""Fashion-MNIST runs are scored by FD/KID/accuracy in the shipped classifier's features, on
bounded sets, against a floor of as many training images."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowmatch as fm
from flowmatch.data.fashion import fashion_mnist_dir, load_fashion_mnist
from flowmatch.data.images import unit_range
from flowmatch.evaluation import ClassifierMetric, DigitsMetric, FashionMetric
from flowmatch.evaluation.images import FASHION_MAX_IMAGES, balanced_subset
from flowmatch.metrics import fashion_quality
from flowmatch.sampling import labels_in_turn
from flowmatch.train.data import RunData
from flowmatch.train.reports import eval_points, final_report, metric_of, periodic_report


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One thread: small models, and immune to a busy machine."""


@pytest.fixture(scope="module")
def data() -> RunData:
    """A small Fashion-MNIST run's data as ``data: {name: fashion}`` builds it: a uint8
    training pool (2000 images), the float test split (600 images), labels and class names."""
    if fashion_mnist_dir() is None:
        pytest.skip(
            "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist, or set "
            "FLOWMATCH_FASHION_MNIST)"
        )
    f = load_fashion_mnist(uint8=True)
    return RunData(
        f.train[:2000],
        unit_range(f.test[:600]),
        None,
        None,
        "fashion",
        None,
        f.train_labels[:2000],
        f.test_labels[:600],
        f.class_names,
    )


class Templates(nn.Module):
    """A velocity that takes noise to one real image per class in a single Euler step."""

    num_classes = 10

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = nn.Parameter(images, requires_grad=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        assert cond is not None
        return self.images[cond] - x  # x1 = x0 + v(x0, 0) = the class's image


def _templates(data: RunData) -> fm.FlowModel:
    labels = data.labels
    assert labels is not None
    first = [int(torch.nonzero(labels == c)[0]) for c in range(10)]
    images = unit_range(data.train[first])
    return fm.FlowModel(Templates(images), num_classes=10, shape=(1, 28, 28))


def test_balanced_subset_has_the_wanted_classes_and_is_fixed():
    labels = torch.arange(100) % 4
    wanted = labels_in_turn(10, 4)  # 2, 2, 2, 4
    idx = balanced_subset(labels, wanted)
    assert torch.equal(labels[idx], wanted) and idx.unique().numel() == 10
    assert torch.equal(idx, balanced_subset(labels, wanted))
    assert not torch.equal(idx, balanced_subset(labels, wanted, seed=1))
    with pytest.raises(ValueError, match="class 3"):
        balanced_subset(labels[:8], wanted)


def test_fashion_runs_get_the_fashion_metric_with_bounded_balanced_sets(data):
    metric = metric_of(data)
    assert isinstance(metric, FashionMetric) and metric.classifier == "fashion"
    assert "not Inception FID" in metric.label
    n, labels = metric.plan(300)
    assert n == 300 and torch.equal(labels, labels_in_turn(300, 10))
    assert metric.plan(10**6)[0] == FASHION_MAX_IMAGES  # never 60,000 per draw
    assert eval_points(data, 300) == 300 and eval_points(data, 10**6) == FASHION_MAX_IMAGES
    # the floor: a fixed subset of the uint8 pool, the size and classes of a generated set
    floor = metric.floor(300, draws=3, seed=7)
    assert floor == metric.floor(300, draws=1, seed=0)
    idx = balanced_subset(data.labels, labels)
    same = fashion_quality(unit_range(data.train[idx]), data.holdout, labels)
    assert (floor.fd_mean, floor.kid_mean, floor.accuracy) == (
        pytest.approx(same["fd"]),
        pytest.approx(same["kid"]),
        pytest.approx(same["accuracy"]),
    )
    assert floor.accuracy >= 0.85 and floor.fd_mean < metric.floor(100, 1, 0).fd_mean
    with pytest.raises(ValueError, match="training split"):
        FashionMetric(data.holdout).floor(100, 1, 0)


def test_fashion_evaluation_end_to_end(data, tmp_path):
    flow = _templates(data)
    echoed: list[str] = []
    rows, floor = final_report(
        flow, data, tmp_path, seed=0, steps=[1], methods=["euler"], num=200, draws=2,
        echo=echoed.append,
    )  # fmt: skip
    (row,) = rows
    assert (row.method, row.steps, row.nfe) == ("euler", 1, 1)
    # one image per class, repeated: the classes are right, the spread is not
    assert row.accuracy == pytest.approx(1.0)
    assert row.fd_mean > 5 * floor.fd_mean and row.fd_std < 1e-6 * row.fd_mean
    assert floor == metric_of(data).floor(200, 2, 0)  # the floor at the generated size
    text = (tmp_path / "eval.txt").read_text()
    assert text.startswith("200 points per set, 2 draws per figure")
    assert "train/test" in text and any("euler" in line for line in echoed)
    periodic = periodic_report(
        flow, data, tmp_path, 5, seed=0, steps=[1, 2], methods=["euler"], num=150
    )
    assert len(periodic) == 1 and periodic[0].steps == 2  # the last sampler only
    csv = (tmp_path / "eval.csv").read_text().splitlines()
    assert csv[-1].startswith("5,euler,2,") and csv[-1].endswith(",150,1")


def test_digits_keep_their_metric_and_the_generic_one_gives_the_same_numbers():
    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(400, 1, 8, 8, generator=g) * 2 - 1, torch.rand(300, 1, 8, 8) * 2 - 1
    labels = torch.randint(0, 10, (400,), generator=g)
    digits = RunData(train, test, None, None, "digits", None, labels, None, list("0123456789"))
    metric = metric_of(digits)
    assert type(metric) is DigitsMetric and metric.plan(5) == (400, labels)
    generic = ClassifierMetric("digits", test, labels, train)
    floor = metric.floor(0, 1, 0)
    assert floor == generic.floor(0, 1, 0)
    q = fm.metrics.digits_quality(train, test, labels=labels)
    assert (floor.fd_mean, floor.kid_mean, floor.accuracy) == (q["fd"], q["kid"], q["accuracy"])
    q = fm.metrics.digits_quality(train[:300], test)
    score = DigitsMetric(test).score(train[:300], None, 0)
    assert (score["fd"], score["kid"]) == (q["fd"], q["kid"]) and math.isnan(score["accuracy"])
    with pytest.raises(ValueError, match="classifier must be one of"):
        ClassifierMetric("inception", test)


@pytest.mark.slow
def test_a_fashion_run_and_flowmatch_eval_score_bounded_sets(data, tmp_path):
    """The trainer's final evaluation and ``flowmatch eval`` of a run on the full data."""
    from flowmatch.app.evaluate import evaluate_run
    from flowmatch.train.config import load_config
    from flowmatch.train.trainer import Trainer

    tiny = ["model.name=unet", "model.channels=8", "model.multipliers=[1,2]", "model.groups=4"]
    settings = ["eval.steps=[1]", "eval.methods=[euler]", "eval.draws=1", "sample.steps=1"]
    cfg = load_config(
        None,
        [
            "data.name=fashion", *tiny, *settings, "train.steps=2", "train.batch_size=8",
            "train.eval_every=100000", "eval.num_samples=120", "sample.method=euler",
        ],
    )  # fmt: skip
    out = tmp_path / "run"
    Trainer(cfg, out, progress=False, echo=lambda _: None).run()
    assert (out / "eval.txt").read_text().startswith("120 points per set, 1 draws per figure")
    lines: list[str] = []
    rows, floor = evaluate_run(
        out, steps=[1], methods=["euler"], draws=2, num=100, echo=lines.append
    )
    assert "on fashion: 2 draws of 100 images per figure against the 10000 test images" in lines[0]
    assert floor.method == "floor" and floor.accuracy > 0.85  # 100 training images
    assert (out / "eval" / "eval.csv").read_text().splitlines()[-1].endswith(",100,2")
    assert len(rows) == 1 and 0.0 <= rows[0].accuracy <= 1.0
