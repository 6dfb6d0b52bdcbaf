"""Sample-quality metrics: exact W2 (POT), kernel MMD, the straightness of a flow, and FD / KID
of 8 x 8 digits in the features of a small shipped classifier."""

from flowmatch.metrics.digits import (
    DigitsClassifier,
    classify,
    digits_features,
    digits_quality,
    frechet_distance,
    frechet_distance_gaussians,
    kernel_inception_distance,
    load_classifier,
)
from flowmatch.metrics.kernel import mmd
from flowmatch.metrics.straightness import straightness
from flowmatch.metrics.transport import w2

__all__ = [
    "DigitsClassifier",
    "classify",
    "digits_features",
    "digits_quality",
    "frechet_distance",
    "frechet_distance_gaussians",
    "kernel_inception_distance",
    "load_classifier",
    "mmd",
    "straightness",
    "w2",
]
