"""Evaluation: one loop for every kind of sample (points, images), metrics passed in.

- :mod:`~flowmatch.evaluation.loop`: :func:`evaluate_model`, the loop over samplers, step
  counts and independent draws.
- :mod:`~flowmatch.evaluation.points`: W2/MMD against held-out points, the noise floor, the
  straightness of a flow.
- :mod:`~flowmatch.evaluation.images`: FD/KID/class accuracy of digits and Fashion-MNIST in
  the features of small shipped classifiers (not Inception FID).
- :mod:`~flowmatch.evaluation.reports`: ``eval.txt``, ``quality_vs_nfe.png``, ``eval.csv`` and
  :func:`run_report`, the final evaluation shared by the trainer and ``flowmatch eval``.
- :mod:`~flowmatch.evaluation.seeds`: the named random streams of a run.
"""

from flowmatch.evaluation.images import (
    ClassifierMetric,
    DigitsMetric,
    FashionMetric,
    ImageEvalRow,
    evaluate_images,
    image_floor,
)
from flowmatch.evaluation.loop import Metric, evaluate_model, mean_std
from flowmatch.evaluation.points import (
    EvalRow,
    PointMetric,
    evaluate,
    format_table,
    model_straightness,
    noise_floor,
)
from flowmatch.evaluation.reports import append_csv, run_report, write_report

__all__ = [
    "ClassifierMetric",
    "DigitsMetric",
    "EvalRow",
    "FashionMetric",
    "ImageEvalRow",
    "Metric",
    "PointMetric",
    "append_csv",
    "evaluate",
    "evaluate_images",
    "evaluate_model",
    "format_table",
    "image_floor",
    "mean_std",
    "model_straightness",
    "noise_floor",
    "run_report",
    "write_report",
]
