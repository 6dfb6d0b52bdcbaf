"""Former home of the run-directory commands; they live in :mod:`flowmatch.app` now.

The names below keep working for code written against this module.
"""

from flowmatch.app.evaluate import evaluate_run
from flowmatch.app.likelihood import likelihood_run, source_log_prob
from flowmatch.app.reflow import PAIRS_FILE, reflow_run
from flowmatch.app.sample import check_sampler, point_shape, sample_run
from flowmatch.errors import SamplerError

__all__ = [
    "PAIRS_FILE",
    "SamplerError",
    "check_sampler",
    "evaluate_run",
    "likelihood_run",
    "point_shape",
    "reflow_run",
    "sample_run",
    "source_log_prob",
]
