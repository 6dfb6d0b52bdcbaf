"""flowmatch: Flow Matching generative models.

Time runs from t=0 (source, N(0, I) noise) to t=1 (data). A :class:`FlowModel` holds a
network and what it means (path, prediction, source, labels); ``fm.sample``, ``fm.encode``,
``fm.log_likelihood``, ``fm.train`` and ``fm.load`` all work with it.

    >>> import flowmatch as fm
    >>> path = fm.AffinePath(fm.schedules.Cosine())
    >>> x1 = fm.sample(model, torch.randn(1000, 2), steps=8, method="midpoint")
"""

from flowmatch import (
    couplings,
    diffusion,
    discrete,
    errors,
    interop,
    manifolds,
    meanflow,
    metrics,
    models,
    oracle,
    rectify,
    schedules,
    time,
    train,
)
from flowmatch.flow import FlowModel
from flowmatch.likelihood import log_likelihood
from flowmatch.loss import FlowMatchingLoss
from flowmatch.meanflow import MeanFlowLoss
from flowmatch.models.files import load
from flowmatch.paths import AffinePath, BrownianBridgePath, PathSample
from flowmatch.sampling import encode, generate, interpolate, model_velocity, sample, sample_sde
from flowmatch.solvers import ODESolution, solve_ode, time_grid

__version__ = "0.1.0"

__all__ = [
    "AffinePath",
    "BrownianBridgePath",
    "FlowMatchingLoss",
    "FlowModel",
    "MeanFlowLoss",
    "ODESolution",
    "PathSample",
    "__version__",
    "couplings",
    "diffusion",
    "discrete",
    "encode",
    "errors",
    "generate",
    "interop",
    "interpolate",
    "load",
    "log_likelihood",
    "manifolds",
    "meanflow",
    "metrics",
    "model_velocity",
    "models",
    "oracle",
    "rectify",
    "sample",
    "sample_sde",
    "schedules",
    "solve_ode",
    "time",
    "time_grid",
    "train",
]
