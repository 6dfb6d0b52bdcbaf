"""Sample-quality metrics: exact W2 (POT), kernel MMD, the straightness of a flow, and FD / KID
of 8 x 8 digits and of Fashion-MNIST in the features of small shipped classifiers (not
Inception FID; :func:`inception_fid` is that one, an optional extra)."""

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
from flowmatch.metrics.fashion import (
    FashionClassifier,
    fashion_classify,
    fashion_features,
    fashion_quality,
    load_fashion_classifier,
)
from flowmatch.metrics.inception import inception_fid
from flowmatch.metrics.kernel import mmd
from flowmatch.metrics.straightness import straightness
from flowmatch.metrics.transport import w2

__all__ = [
    "DigitsClassifier",
    "FashionClassifier",
    "classify",
    "digits_features",
    "digits_quality",
    "fashion_classify",
    "fashion_features",
    "fashion_quality",
    "frechet_distance",
    "frechet_distance_gaussians",
    "inception_fid",
    "kernel_inception_distance",
    "load_classifier",
    "load_fashion_classifier",
    "mmd",
    "straightness",
    "w2",
]
