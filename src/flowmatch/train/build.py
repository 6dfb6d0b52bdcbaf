"""From a run config to objects, in one place, through the registries.

Every object of a run is built here from its config section by name: the schedule
(``schedules.SCHEDULES``), the coupling (``couplings.COUPLINGS``), the time sampler
(``time.TIME_SAMPLERS``), the network (``models.registry``, in :mod:`flowmatch.train.nets`),
the loss and the FlowModel. The rules that tie sections together are not restated here: each
lives in the object it concerns (the loss refuses a Schrödinger bridge on a cosine path, a
FlowModel refuses DDPM on a bridge or guidance without labels, the DDPM schedule refuses more
sampling steps than its timesteps) or in the config validator, and this module turns the
object's refusal into a :class:`~flowmatch.errors.ConfigError` naming the config key to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from flowmatch.couplings import COUPLINGS, Coupling
from flowmatch.discrete.loss import DiscreteFlowMatchingLoss
from flowmatch.discrete.mixed_model import MixedFlowModel
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.errors import ConfigError, SamplerError
from flowmatch.flow import FlowModel
from flowmatch.loss import FlowMatchingLoss
from flowmatch.manifolds.model import ManifoldFlowModel
from flowmatch.meanflow import MeanFlowLoss
from flowmatch.models.autoencoder import AutoEncoder
from flowmatch.paths import AffinePath
from flowmatch.schedules import SCHEDULES
from flowmatch.time import TIME_SAMPLERS, Discrete, TimeSampler
from flowmatch.train.autoencoder import autoencoder_objective
from flowmatch.train.build_kinds import (
    build_mixture_path,
    check_discrete_sampling,
    check_manifold_sampling,
    make,
    manifold_flow,
    manifold_loss,
    mixed_loss,
)
from flowmatch.train.config import (
    DDPMPathConfig,
    FlowMatchingObjectiveConfig,
    MeanFlowObjectiveConfig,
    RunConfig,
    config_to_dict,
)
from flowmatch.train.data import RunData
from flowmatch.train.loop import LoopSettings, OptimSettings
from flowmatch.train.nets import TRAIN_BYTES_PER_PARAMETER, build_net, check_trainable, net_arch

__all__ = [
    "OBJECTIVES",
    "TRAIN_BYTES_PER_PARAMETER",
    "build_coupling",
    "build_flow",
    "build_loss",
    "build_mixture_path",
    "build_net",
    "build_path",
    "build_time_sampler",
    "check_sampling",
    "check_trainable",
    "loop_settings",
    "net_arch",
    "optim_settings",
]

T = TypeVar("T")


def build_path(cfg: RunConfig) -> AffinePath:
    """The affine path of ``path`` (``schedule`` and its parameters)."""
    p = cfg.path
    return make("path", lambda: AffinePath(SCHEDULES[p.schedule](**p.params())))


def build_coupling(cfg: RunConfig) -> Coupling:
    """The coupling of ``coupling`` (``name`` and its parameters)."""
    c = cfg.coupling
    return make("coupling", lambda: COUPLINGS[c.name](**c.params()))


def build_time_sampler(cfg: RunConfig) -> TimeSampler:
    """The time sampler of ``time``; ``discrete`` draws the ``ddpm`` path's timesteps."""
    t = cfg.time
    if t.sampler == "discrete":
        p = cfg.path
        assert isinstance(p, DDPMPathConfig)  # RunConfig: time.sampler=discrete needs ddpm
        return make("time", lambda: Discrete(p.timesteps))
    return make("time", lambda: TIME_SAMPLERS[t.sampler](**t.params()))


def _flow_matching(cfg: RunConfig, path: AffinePath, common: dict[str, Any]) -> FlowMatchingLoss:
    obj = cfg.objective
    assert isinstance(obj, FlowMatchingObjectiveConfig)
    return FlowMatchingLoss(path, prediction=obj.prediction, **common)


def _meanflow(cfg: RunConfig, path: AffinePath, common: dict[str, Any]) -> MeanFlowLoss:
    obj = cfg.objective
    assert isinstance(obj, MeanFlowObjectiveConfig)
    return MeanFlowLoss(
        path=path,
        ratio_distinct=obj.ratio_distinct,
        adaptive_p=obj.adaptive_p,
        tangent=obj.tangent,
        time_pairs=obj.time_pairs,
        **common,
    )


OBJECTIVES: dict[str, Callable[..., FlowMatchingLoss | MeanFlowLoss]] = {
    "flow_matching": _flow_matching,
    "meanflow": _meanflow,
}
"""The loss of each ``objective.name``: ``f(cfg, path, common) -> loss``, with ``common``
the coupling, time sampler and label dropout every loss takes."""


def build_loss(cfg: RunConfig, data: RunData) -> Any:
    """The objective's loss (:data:`OBJECTIVES`) on the run's path, coupling and time
    sampler (label dropout for labelled data); a discrete run's
    :class:`~flowmatch.discrete.DiscreteFlowMatchingLoss` on its mixture path."""
    labelled = data.num_classes is not None
    if data.is_mixed:
        return mixed_loss(cfg, data)
    if data.is_manifold:
        return manifold_loss(cfg, data, build_time_sampler(cfg))
    if cfg.objective.name == "autoencoder":
        return make("objective", lambda: autoencoder_objective(cfg))
    if cfg.objective.name == "discrete":
        obj, path = cfg.objective, build_mixture_path(cfg, data)
        return make(
            "objective",
            lambda: DiscreteFlowMatchingLoss(
                path,
                kind=obj.loss,
                cond_dropout=obj.cond_dropout if labelled else 0.0,
                null_cond=data.num_classes,
            ),
        )
    common = {
        "coupling": build_coupling(cfg),
        "time_sampler": build_time_sampler(cfg),
        "cond_dropout": cfg.objective.cond_dropout if labelled else 0.0,
        "null_cond": data.num_classes,
    }
    affine = build_path(cfg)
    return make("objective", lambda: OBJECTIVES[cfg.objective.name](cfg, affine, common))


def build_flow(cfg: RunConfig, data: RunData, loss: Any, net: nn.Module) -> Any:
    """The run's FlowModel: the net, the loss's path and prediction, the data's source,
    labels, standardization and shape, and the objective and coupling for the record (a
    :class:`~flowmatch.discrete.DiscreteFlowModel` with the vocabulary for text)."""
    raw = config_to_dict(cfg)
    info: dict[str, Any] = {
        "data": data.name,
        "objective": raw["objective"],
        "coupling": raw["coupling"],
    }
    if data.class_names is not None:
        info["class_names"] = data.class_names
    if data.columns is not None:
        info["columns"] = data.columns
    if isinstance(net, AutoEncoder):  # an autoencoder run: the model is the net
        net.info = {k: v for k, v in info.items() if k != "coupling"}
        return net
    if data.is_mixed:
        table = data.mixed
        return make(
            "model",
            lambda: MixedFlowModel(
                net,
                num_continuous=table.continuous.shape[1],
                vocab_sizes=table.vocab_sizes,
                standardizer=data.standardizer,
                info={**info, **table.layout},
            ),
        )
    if data.is_manifold:
        return make("model", lambda: manifold_flow(data, loss, net, info))
    if data.is_text:
        info.pop("coupling")
        return make(
            "model",
            lambda: DiscreteFlowModel(
                net,
                loss.path,
                length=data.shape[0],
                vocab=data.text.vocab,
                num_classes=data.num_classes,
                info=info,
            ),
        )
    return make(
        "model",
        lambda: FlowModel(
            net,
            path=loss.path,
            prediction=loss.prediction,
            two_times=cfg.objective.name == "meanflow",
            source=data.source,
            num_classes=data.num_classes,
            transform=data.standardizer,
            shape=data.shape,
            info=info,
        ),
    )


def check_sampling(cfg: RunConfig, flow: FlowModel) -> None:
    """Check the run's samplers (``sample`` and ``eval``) and guidance against its model, by
    the model's own rules, before anything is trained.

    Raises:
        ConfigError: naming ``sample.method`` / ``eval.methods``, ``sample.steps`` /
            ``eval.steps``, ``sample.eta`` or ``sample.guidance``.
    """
    s, ev = cfg.sample, cfg.eval
    if isinstance(flow, DiscreteFlowModel):
        check_discrete_sampling(cfg, flow)
        return
    if isinstance(flow, ManifoldFlowModel):
        check_manifold_sampling(cfg, flow)
        return
    if isinstance(flow, (MixedFlowModel, AutoEncoder)):
        return  # one sampler (Euler steps and category jumps), or no sampler at all
    keys = {
        "sample": {"method": "sample.method", "steps": "sample.steps", "eta": "sample.eta"},
        "eval": {"method": "eval.methods", "steps": "eval.steps", "eta": "sample.eta"},
    }
    uses = [("sample", [s.method], [s.steps]), ("eval", list(ev.methods), list(ev.steps))]
    for section, methods, steps in uses:
        for method in methods:
            try:
                flow.check_sampler(method, steps, eta=s.eta)
            except SamplerError as err:
                key = keys[section][err.option or "method"]
                raise ConfigError(f"config: {key}: {err}", key=key) from None
    labels = None if flow.num_classes is None else [0]
    try:
        import torch

        flow.check_guidance(s.guidance, torch.tensor(labels) if labels else None)
    except SamplerError as err:
        raise ConfigError(f"config: sample.guidance: {err}", key="sample.guidance") from None


def optim_settings(cfg: RunConfig) -> OptimSettings:
    """The ``optim`` section as :class:`~flowmatch.train.loop.OptimSettings`."""
    o = cfg.optim
    return OptimSettings(
        lr=o.lr,
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_steps,
        grad_clip=o.grad_clip,
        betas=(o.betas[0], o.betas[1]),
    )


def loop_settings(cfg: RunConfig, *, progress: bool) -> LoopSettings:
    """The ``train`` section as :class:`~flowmatch.train.loop.LoopSettings`."""
    t = cfg.train
    return LoopSettings(
        steps=t.steps,
        batch_size=t.batch_size,
        ema_decay=t.ema_decay,
        seed=t.seed,
        checkpoint_every=t.checkpoint_every,
        log_every=t.log_every,
        eval_every=t.eval_every,
        precision=t.precision,
        compile=t.compile,
        tensorboard=t.tensorboard,
        progress=progress,
        max_minutes=t.max_minutes,
        loggers=tuple(t.loggers),
        wandb_project=t.wandb_project,
        hparams=config_to_dict(cfg),
    )
