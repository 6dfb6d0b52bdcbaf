"""``fm.train``: train any network on any data from Python, with the loop the CLI uses."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.discrete.loss import DiscreteFlowMatchingLoss
from flowmatch.discrete.mixed_model import MixedFlowModel
from flowmatch.discrete.mixed_sampling import MixedFlowMatchingLoss
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.errors import DataError, ModelFileError
from flowmatch.flow import FlowModel
from flowmatch.loss import FlowMatchingLoss
from flowmatch.manifolds import ManifoldFlowModel, RiemannianFlowMatchingLoss
from flowmatch.meanflow import MeanFlowLoss
from flowmatch.train import distributed
from flowmatch.train.batches import Batches, as_batches
from flowmatch.train.loop import LoopSettings, OptimSettings, TrainLoop
from flowmatch.train.pipeline import StreamBatches, take_coupling
from flowmatch.train.trainer import check_run_dir

__all__ = ["default_loss", "train"]


def default_loss(flow: FlowModel | DiscreteFlowModel | MixedFlowModel | ManifoldFlowModel) -> Any:
    """The loss a model is trained with when none is given: :class:`MeanFlowLoss` for a
    two-time model, :class:`~flowmatch.discrete.DiscreteFlowMatchingLoss` (cross-entropy)
    for a discrete one, :class:`~flowmatch.discrete.MixedFlowMatchingLoss` for a mixed
    table one, :class:`~flowmatch.manifolds.RiemannianFlowMatchingLoss` for a manifold
    one, else :class:`FlowMatchingLoss` on its path and prediction; with 10%
    label dropout (classifier-free guidance) when it has a null class."""
    if isinstance(flow, MixedFlowModel):
        return MixedFlowMatchingLoss.for_model(flow)
    if isinstance(flow, ManifoldFlowModel):
        return RiemannianFlowMatchingLoss(flow.path)
    if isinstance(flow, DiscreteFlowModel):
        labelled = flow.num_classes is not None and flow.null_class is not None
        return DiscreteFlowMatchingLoss(
            flow.path,
            cond_dropout=0.1 if labelled else 0.0,
            null_cond=flow.null_class if labelled else None,
        )
    if flow.two_times:
        return MeanFlowLoss(path=flow.path)  # type: ignore[arg-type]  # it rejects a bridge
    labelled = flow.num_classes is not None and flow.null_class is not None
    return FlowMatchingLoss(
        flow.path,
        prediction=flow.prediction,
        cond_dropout=0.1 if labelled else 0.0,
        null_cond=flow.null_class if labelled else None,
    )


def _check_data(
    flow: FlowModel | DiscreteFlowModel | MixedFlowModel | ManifoldFlowModel, dtype: torch.dtype
) -> None:
    if isinstance(flow, MixedFlowModel) and not dtype.is_floating_point:
        raise DataError(
            f"data: a MixedFlowModel trains on float rows (continuous values, then category "
            f"codes as floats; MixedFlowModel.encode builds them), got {dtype}"
        )
    discrete = isinstance(flow, DiscreteFlowModel)
    if discrete and dtype.is_floating_point:
        raise DataError(f"data: a DiscreteFlowModel trains on integer token ids, got {dtype}")
    if not discrete and not dtype.is_floating_point:
        raise DataError(
            f"data: a FlowModel trains on floating-point points, got {dtype} (token ids go "
            "to a flowmatch.discrete.DiscreteFlowModel)"
        )


def _check_loss(
    flow: FlowModel | DiscreteFlowModel | MixedFlowModel | ManifoldFlowModel, loss: Any
) -> None:
    if isinstance(flow, MixedFlowModel):
        layout = (getattr(loss, "num_continuous", None), getattr(loss, "vocab_sizes", None))
        if hasattr(loss, "path") or (
            isinstance(loss, MixedFlowMatchingLoss)
            and layout != (flow.num_continuous, flow.vocab_sizes)
        ):
            raise ValueError(
                f"loss: {loss!r} does not fit the MixedFlowModel; use "
                "MixedFlowMatchingLoss.for_model(model)"
            )
        return
    path, prediction = getattr(loss, "path", None), getattr(loss, "prediction", None)
    if path is not None and path != flow.path:
        raise ValueError(
            f"loss: it trains on {path!r} but the model's path is {flow.path!r}; build the "
            "FlowModel with the loss's path (FlowModel(net, path=loss.path))"
        )
    if prediction is not None and prediction != flow.prediction:
        raise ValueError(
            f"loss: it trains a {prediction!r} prediction but the model predicts "
            f"{flow.prediction!r}"
        )


def train(
    model: FlowModel | DiscreteFlowModel | MixedFlowModel | ManifoldFlowModel | nn.Module,
    data: Any,
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    loss: Any = None,
    labels: Tensor | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    ema_decay: float = 0.999,
    optim: OptimSettings | None = None,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = True,
    echo: Callable[[str], None] = print,
    workers: int = 0,
    flip: bool = False,
) -> FlowModel | DiscreteFlowModel | MixedFlowModel | ManifoldFlowModel:
    """Train a model on your data; return the EMA model, ready for ``fm.sample``.

    The loop is the one ``flowmatch train`` runs: AdamW with warmup and cosine decay,
    gradient clipping, an EMA of the weights, and with ``out`` atomic checkpoints,
    ``metrics.csv`` and ``out/model/`` (``fm.load(out)`` and ``flowmatch sample out`` read
    it; a net of your own must be registered with :func:`flowmatch.models.register`). Under
    ``torchrun`` it runs DDP. Time runs from t=0 (source) to t=1 (data).

    Args:
        model: a :class:`~flowmatch.flow.FlowModel`, a
            :class:`~flowmatch.discrete.DiscreteFlowModel` (data: token ids), a
            :class:`~flowmatch.manifolds.ManifoldFlowModel` (data: points on its manifold), a
            :class:`~flowmatch.discrete.MixedFlowModel` (data: float rows, continuous
            values then category codes), or a net (a
            velocity net on the linear path from N(0, I)); trained in place.
        data: the data x1: a tensor (N, *D) (with ``labels``), a map-style
            ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, label)``, a
            ``DataLoader`` (its own batches, workers allowed) or
            :class:`~flowmatch.rectify.Pairs` (fixed (x0, x1) pairs). See
            :mod:`flowmatch.train.batches` for what resume guarantees for each.
        steps: optimiser steps.
        batch_size: points per step (per process); a DataLoader's batches are used as is.
        lr: peak learning rate (``optim`` sets the rest of the optimiser).
        loss: the loss; default :func:`default_loss`. Its path and prediction must be the
            model's.
        labels: class labels (N,) of a data tensor.
        out: a run directory for checkpoints, ``metrics.csv`` and ``model/``; None: memory.
        resume: continue the run in ``out`` from its newest checkpoint (bit-identical on CPU
            to an uninterrupted run for tensors, Datasets and pairs).
        seed: seed of the batches, noise, times and of torch's global RNG (dropout).
        ema_decay: decay of the weight EMA, in [0, 1).
        optim: weight decay, warmup, gradient clipping, betas (:class:`OptimSettings`; its
            ``lr`` is replaced by ``lr``).
        checkpoint_every: steps between checkpoints.
        log_every: steps between ``metrics.csv`` rows.
        device: auto (CUDA when available) | cpu | cuda.
        precision: fp32 | bf16 | fp16 autocast; fp16 scales the loss
            (``torch.amp.GradScaler``, checkpointed with the optimizer) so that small
            gradients do not underflow, skipping the updates whose gradients overflow.
        progress: show a progress bar.
        echo: where messages go.
        workers: for a data tensor: loader processes that draw each batch, map uint8
            images to [-1, 1], flip them and pair them with the loss's coupling while the
            previous step trains (:class:`~flowmatch.train.pipeline.StreamBatches`; the
            batches are the same for any number of workers, 0 included).
        flip: for a tensor of images (N, C, H, W): mirror each drawn image left-right with
            probability 1/2.

    A uint8 image tensor (pixels 0..255) is kept as uint8 and streamed the same way, so
    60,000 28x28 images take 47 MB rather than four times that as floats.

    Returns:
        The EMA FlowModel (eval mode).

    Raises:
        DataError: data of an unsupported kind or shape.
        ModelFileError: ``out`` given for a net that is not registered (it could not be
            loaded back).
        RunExistsError: ``out`` holds a run and ``resume`` is False (or holds none to resume).
        ValueError: a bad setting or a loss that does not fit the model.

    Example:
        >>> model = fm.FlowModel(fm.models.MLP(dim=2))
        >>> ema = fm.train(model, x, steps=2000, batch_size=256)
        >>> samples = fm.sample(ema, torch.randn(1000, 2), steps=8)
    """
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    known = (FlowModel, DiscreteFlowModel, MixedFlowModel, ManifoldFlowModel)
    flow = model if isinstance(model, known) else FlowModel(model)
    batches = _batches(data, labels, seed=seed, size=batch_size, workers=workers, flip=flip)
    _check_data(flow, batches.dtype)
    if flow.shape is None:
        flow.shape = batches.shape
    elif flow.shape != batches.shape:
        raise DataError(
            f"data: points of shape {batches.shape}, but the model's shape is {flow.shape}"
        )
    loss = default_loss(flow) if loss is None else loss
    _check_loss(flow, loss)
    if isinstance(batches, StreamBatches):  # the loader pairs x0 with x1, not the loss
        loss = copy.copy(loss)  # the caller's loss keeps its coupling
        batches.coupling = take_coupling(loss) or batches.coupling
    if out is not None:
        out = Path(out)
        check_run_dir(out, resume=resume)
        try:
            flow.config()  # a model that could not be loaded back fails now, not at step 1000
        except ValueError as err:
            raise ModelFileError(f"{out}: cannot save the model ({err})") from None
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    settings = LoopSettings(
        precision=precision,
        steps=steps,
        batch_size=batch_size,
        ema_decay=ema_decay,
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        progress=progress,
    )
    base = optim if optim is not None else OptimSettings()
    optim_settings = OptimSettings(
        lr=float(lr),
        weight_decay=base.weight_decay,
        warmup_steps=base.warmup_steps,
        grad_clip=base.grad_clip,
        betas=base.betas,
    )
    dist = distributed.setup(device)
    torch.manual_seed(seed)
    if out is not None and dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    try:
        if isinstance(batches, StreamBatches):
            batches.for_rank(dist.rank)
        loop = TrainLoop(
            flow, loss, batches, settings, optim_settings, out=out, dist=dist, echo=echo
        )
        if resume:
            loop.restore()
        try:
            loop.run()
        finally:
            batches.close()
        loop.release()
    finally:
        distributed.cleanup(dist)
    return loop.ema.module.eval()


def _batches(
    data: Any, labels: Tensor | None, *, seed: int, size: int, workers: int, flip: bool
) -> Batches:
    """The batch source: a :class:`StreamBatches` for a tensor with workers, flips or uint8
    images, else :func:`~flowmatch.train.batches.as_batches`."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"workers must be an integer in [0, 64], got {workers!r}")
    stream = workers > 0 or flip or (isinstance(data, Tensor) and data.dtype == torch.uint8)
    if not stream:
        return as_batches(data, labels=labels, seed=seed)
    if not isinstance(data, Tensor):
        raise DataError(
            f"data: workers and flip stream a tensor of points or images, got "
            f"{type(data).__name__} (give a DataLoader its own workers)"
        )
    if data.ndim < 2:
        raise DataError(f"data: expected a tensor (N, *D), got shape {tuple(data.shape)}")
    return StreamBatches(data, labels, batch_size=size, seed=seed, workers=workers, flip=flip)
