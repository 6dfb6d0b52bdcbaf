"""Config to objects for the kinds of data beyond points and images: token sequences and
tables with categorical columns (discrete flow matching), and points on manifolds
(Riemannian flow matching). :mod:`flowmatch.train.build` calls these; like it, they turn an
object's refusal into a :class:`~flowmatch.errors.ConfigError` naming the config key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flowmatch.discrete.mixed_sampling import MixedFlowMatchingLoss
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.discrete.path import MixturePath
from flowmatch.errors import ConfigError, SamplerError
from flowmatch.manifolds import GeodesicPath, ManifoldFlowModel, RiemannianFlowMatchingLoss
from flowmatch.schedules import SCHEDULES, Schedule
from flowmatch.time import TimeSampler
from flowmatch.train.config import DiscreteObjectiveConfig, MLPConfig, RunConfig
from flowmatch.train.data import RunData

__all__ = [
    "build_mixture_path",
    "check_discrete_sampling",
    "check_manifold_sampling",
    "config_error",
    "make",
    "manifold_arch",
    "manifold_flow",
    "manifold_loss",
    "mixed_loss",
]

T = TypeVar("T")

# The config key of each parameter an object names first in its error message.
_KEYS = {
    "path": "path.schedule",
    "coupling": "coupling.name",
    "prediction": "objective.prediction",
    "time_sampler": "time.sampler",
    "cond_dropout": "objective.cond_dropout",
}


def config_error(key: str, err: Exception) -> ConfigError:
    text = " ".join(str(err).split())
    head, sep, rest = text.partition(": ")
    if sep and head in _KEYS:
        key, text = _KEYS[head], rest
    return ConfigError(f"config: {key}: {text}", key=key)


def make(key: str, fn: Callable[[], T]) -> T:
    """Build an object; its ValueError becomes a ConfigError naming ``key`` (or the key of
    the parameter its message starts with)."""
    try:
        return fn()
    except ValueError as err:
        raise config_error(key, err) from None


def build_mixture_path(cfg: RunConfig, data: RunData) -> MixturePath:
    """The mixture path of a discrete run: the data's vocabulary, ``objective.source`` and
    ``objective.kappa``."""
    obj = cfg.objective
    assert isinstance(obj, DiscreteObjectiveConfig)  # RunConfig: text data are discrete
    make_kappa: Callable[..., Schedule] = SCHEDULES[obj.kappa]  # polynomial takes n
    kappa = make_kappa(n=obj.n) if obj.kappa == "polynomial" else make_kappa()
    return make(
        "objective", lambda: MixturePath(data.text.vocab.size, source=obj.source, schedule=kappa)
    )


def mixed_loss(cfg: RunConfig, data: RunData) -> MixedFlowMatchingLoss:
    """A table with categorical columns: velocity on the linear path for the numbers, the
    posterior of each masked category (one loss, :class:`MixedFlowMatchingLoss`)."""
    rules = (
        ("objective.name", cfg.objective.name == "flow_matching", "flow_matching"),
        (
            "objective.prediction",
            getattr(cfg.objective, "prediction", None) == "velocity",
            "velocity",
        ),
        ("path.schedule", cfg.path.schedule == "linear", "linear"),
        ("coupling.name", cfg.coupling.name == "independent", "independent"),
        ("time.sampler", cfg.time.sampler == "uniform", "uniform"),
    )
    for key, ok, wanted in rules:
        if not ok:
            raise ConfigError(
                f"config: {key}: a table with categorical columns is trained with {key}="
                f"{wanted} (one loss for numbers and categories)",
                key=key,
            )
    table = data.mixed
    return make(
        "objective", lambda: MixedFlowMatchingLoss(table.continuous.shape[1], table.vocab_sizes)
    )


def check_discrete_sampling(cfg: RunConfig, flow: DiscreteFlowModel) -> None:
    import torch

    s = cfg.sample
    if s.corrector > 0 and flow.path.mask_id is None:
        raise ConfigError(
            "config: sample.corrector: the corrector needs objective.source=mask, got "
            f"{flow.path.source!r}",
            key="sample.corrector",
        )
    labels = None if flow.num_classes is None else torch.tensor([0])
    try:
        flow.check_guidance(s.guidance, labels)
    except SamplerError as err:
        raise ConfigError(f"config: sample.guidance: {err}", key="sample.guidance") from None


def _require(cfg: RunConfig, rules: tuple[tuple[str, bool, str], ...], what: str) -> None:
    for key, ok, wanted in rules:
        if not ok:
            raise ConfigError(f"config: {key}: {what} is trained with {key}={wanted}", key=key)


def manifold_arch(cfg: RunConfig, data: RunData) -> dict[str, Any]:
    """The network of a manifold run: an MLP from the manifold's features (cos/sin of
    angles, unit vectors, matrix entries) to an ambient vector, projected to a tangent one."""
    m, manifold = cfg.model, data.manifold
    if not isinstance(m, MLPConfig):
        return {"name": m.name, **m.params()}
    return {
        "name": "mlp",
        "dim": manifold.feature_dim,
        "out_dim": manifold.ambient_dim,
        "hidden": m.hidden,
        "depth": m.depth,
        "activation": m.activation,
        "time_embed_dim": m.time_embed_dim,
        "time_frequency": m.time_frequency,
        "fourier_features": m.fourier_features,
        "fourier_scale": m.fourier_scale,
    }


def manifold_loss(
    cfg: RunConfig, data: RunData, time_sampler: TimeSampler
) -> RiemannianFlowMatchingLoss:
    """The Riemannian flow matching loss on the geodesic path of ``path.schedule``."""
    obj = cfg.objective
    _require(
        cfg,
        (
            ("objective.name", obj.name == "flow_matching", "flow_matching"),
            ("objective.prediction", getattr(obj, "prediction", None) == "velocity", "velocity"),
            ("coupling.name", cfg.coupling.name == "independent", "independent"),
        ),
        "data on a manifold",
    )
    p = cfg.path
    path = make("path", lambda: GeodesicPath(data.manifold, SCHEDULES[p.schedule](**p.params())))
    return make("objective", lambda: RiemannianFlowMatchingLoss(path, time_sampler=time_sampler))


def manifold_flow(
    data: RunData, loss: RiemannianFlowMatchingLoss, net: Any, info: dict[str, Any]
) -> ManifoldFlowModel:
    """The run's :class:`~flowmatch.manifolds.ManifoldFlowModel` (units and columns kept)."""
    info = {k: v for k, v in info.items() if k != "coupling"}
    if data.units is not None:
        info["units"] = data.units
    return ManifoldFlowModel(net, data.manifold, path=loss.path, info=info)


def check_manifold_sampling(cfg: RunConfig, flow: ManifoldFlowModel) -> None:
    """The exp-map samplers of ``sample.method`` and ``eval.methods``; no guidance."""
    uses = (("sample.method", [cfg.sample.method]), ("eval.methods", list(cfg.eval.methods)))
    for key, methods in uses:
        for method in methods:
            try:
                flow.check_sampler(method)
            except SamplerError as err:
                raise ConfigError(f"config: {key}: {err}", key=key) from None
    if cfg.sample.guidance is not None:
        raise ConfigError(
            "config: sample.guidance: manifold models are sampled without guidance",
            key="sample.guidance",
        )
