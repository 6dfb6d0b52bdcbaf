"""Autoencoder runs (``objective: {name: autoencoder}``) and the checks of latent runs.

An autoencoder run trains :class:`~flowmatch.models.autoencoder.AutoEncoder` (``model:
{name: autoencoder, ...}``; its image channels and side come from the data) with the VAE loss
through the same loop, checkpoints and resume as a flow. At the end it fits the latent shift
and scale on the training images (:data:`SCALE_IMAGES` at most), writes them into ``model/``
and reports the held-out reconstruction error in ``eval.txt``. A latent run (``data: {latent:
AE_RUN}``) then trains a flow on that autoencoder's latents (:mod:`flowmatch.train.latent`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._extras import MissingExtraError
from flowmatch.errors import ConfigError
from flowmatch.models.autoencoder import AutoEncoder, autoencoder_loss

__all__ = [
    "SCALE_IMAGES",
    "AutoEncoderLoss",
    "autoencoder_objective",
    "check_autoencoder_config",
    "finish_autoencoder",
    "finish_hook",
    "periodic_hook",
    "prepare_run",
    "reconstruction_error",
    "with_image_shape",
]

SCALE_IMAGES = 10_000
"""The most training images the latent scale is fitted on at the end of a run."""

EVAL_IMAGES = 2_000
"""The most held-out images the final reconstruction error is measured on."""


class AutoEncoderLoss:
    """The VAE loss as the training loop calls a loss: ``loss(model, x1, x0=, cond=,
    generator=)`` with x1 the images (B, C, H, W), in [-1, 1] or uint8; x0 and cond unused.

    Args:
        kl_weight: the KL's weight beta (0: a plain autoencoder).
        reconstruction: mse | l1.
    """

    coupling = None  # nothing to pair: the streaming loader keeps its own

    def __init__(self, kl_weight: float = 1e-4, reconstruction: str = "mse") -> None:
        if not (math.isfinite(kl_weight) and kl_weight >= 0):
            raise ValueError(f"kl_weight must be a finite number >= 0, got {kl_weight!r}")
        self.kl_weight, self.reconstruction = float(kl_weight), reconstruction

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        *,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        from flowmatch.data.images import unit_range

        return autoencoder_loss(
            model,
            unit_range(x1).float(),
            kl_weight=self.kl_weight,
            reconstruction=self.reconstruction,
            generator=generator,
        )


def autoencoder_objective(cfg: Any, path: Any = None, common: Any = None) -> AutoEncoderLoss:
    """The loss of ``objective: {name: autoencoder}`` (path and coupling do not apply)."""
    obj = cfg.objective
    return AutoEncoderLoss(obj.kl_weight, obj.reconstruction)


def check_autoencoder_config(cfg: Any) -> None:
    """The rules between sections of autoencoder and latent runs.

    Raises:
        ConfigError: one line naming the key: the autoencoder objective without
            ``model.name=autoencoder`` or without image data, or with ``data.latent``; an
            autoencoder network with another objective.
    """
    ae_objective = cfg.objective.name == "autoencoder"
    ae_model = cfg.model.name == "autoencoder"
    if ae_objective and not ae_model:
        raise ConfigError(
            f"config: model.name: objective.name=autoencoder trains model.name=autoencoder, "
            f"got {cfg.model.name!r}",
            key="model.name",
        )
    if ae_model and not ae_objective:
        raise ConfigError(
            "config: objective.name: model.name=autoencoder is trained by "
            f"objective.name=autoencoder, got {cfg.objective.name!r}",
            key="objective.name",
        )
    if ae_objective and not cfg.data.is_image:
        raise ConfigError(
            "config: data: an autoencoder learns images (data.name: digits or fashion, or "
            "data.images)",
            key="data",
        )
    latent = getattr(cfg.data, "latent", None)
    if latent is not None and ae_objective:
        raise ConfigError(
            "config: data.latent: an autoencoder is trained on pixels; remove data.latent",
            key="data.latent",
        )
    if latent is not None and not cfg.data.is_image:
        raise ConfigError(
            "config: data.latent: latents are of images: give data.name (digits, fashion) or "
            "data.images with it",
            key="data.latent",
        )


def with_image_shape(cfg: Any, shape: tuple[int, ...]) -> Any:
    """The config of an autoencoder run with the data's image channels and side in ``model``
    (where not given), so that ``config.yaml`` says what was built."""
    if cfg.model.name != "autoencoder":
        return cfg
    extra = dict(cfg.model.model_extra or {})
    extra.setdefault("channels", int(shape[0]))
    extra.setdefault("size", int(shape[1]))
    for key in ("channels", "size"):
        if extra[key] != shape[0 if key == "channels" else 1]:
            raise ConfigError(
                f"config: model.{key}: the images are {tuple(shape)}, got {key}={extra[key]!r}",
                key=f"model.{key}",
            )
    model = cfg.model.model_validate({"name": cfg.model.name, "init": cfg.model.init, **extra})
    return cfg.model_copy(update={"model": model})


@torch.no_grad()
def reconstruction_error(ae: AutoEncoder, images: Tensor, *, batch_size: int = 500) -> float:
    """The mean squared error per value of the reconstructions (posterior means) of images
    (N, C, H, W) in [-1, 1] or uint8."""
    from flowmatch.data.images import unit_range

    device = ae.latent_scale.device
    total, count = 0.0, 0
    for start in range(0, images.shape[0], batch_size):
        x = unit_range(images[start : start + batch_size]).to(device, torch.float32)
        total += float((ae.decode(ae.encode(x)) - x).double().square().sum())
        count += x.numel()
    return total / max(count, 1)


def _first(pool: Any, n: int) -> Tensor:
    """The first n images of a pool (a tensor, or images read from disk)."""
    n = min(n, pool.shape[0])
    return pool[torch.arange(n)] if not isinstance(pool, Tensor) else pool[:n]


def finish_autoencoder(
    raw: AutoEncoder,
    ema: AutoEncoder,
    data: Any,
    out: str | Path,
    *,
    echo: Callable[[str], None] = print,
) -> tuple[list[Any], Any]:
    """The end of an autoencoder run: fit the latent shift and scale of the averaged model on
    the training images (at most :data:`SCALE_IMAGES`), copy them into the raw model, rewrite
    ``model/`` and write the held-out reconstruction error (PSNR for images in [-1, 1]) to
    ``eval.txt``. Returns no rows and no floor (the trainer's shape of a report)."""
    out = Path(out)
    images = _first(data.train, SCALE_IMAGES)
    ema.eval()
    shift, scale = ema.fit_latent_scale(images)
    raw.latent_shift.fill_(shift)
    raw.latent_scale.fill_(scale)
    raw.save_pretrained(out / "model", ema=ema)
    held = _first(data.holdout, EVAL_IMAGES)
    mse = reconstruction_error(ema, held)
    psnr = 10 * math.log10(4.0 / mse) if mse > 0 else float("inf")  # peak-to-peak 2
    lines = [
        f"autoencoder: {data.name}, images {tuple(ema.shape)} -> latents {tuple(ema.latent_shape)}",
        f"latent shift {shift:.6g}, scale {scale:.6g} (fitted on {images.shape[0]} "
        "training images)",
        f"held-out reconstruction MSE {mse:.6g} per value, PSNR {psnr:.2f} dB "
        f"({held.shape[0]} images)",
    ]
    (out / "eval.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        echo(line)
    return [], None


# ----------------------------------------------------------- the trainer's hooks


def prepare_run(
    cfg: Any,
    data: Any,
    *,
    base_dir: str | Path = ".",
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> tuple[Any, Any]:
    """The config and data a run trains on, for the trainer: an autoencoder run's config with
    the images' channels and side in ``model``; a latent run's data encoded to latents
    (:func:`flowmatch.train.latent.latent_data`); any other run's as they are.

    Raises:
        ConfigError: the rules of :func:`check_autoencoder_config`, or a bad ``data.latent``.
    """
    check_autoencoder_config(cfg)
    if cfg.objective.name == "autoencoder":
        return with_image_shape(cfg, data.shape), data
    latent = getattr(cfg.data, "latent", None)
    if latent is None:
        return cfg, data
    from flowmatch.train.latent import latent_data

    return cfg, latent_data(data, latent, base_dir=base_dir, progress=progress, echo=echo)


def periodic_hook(trainer: Any, step: int) -> bool:
    """The periodic evaluation of an autoencoder run (the held-out reconstruction error,
    echoed) or a latent run (decoded samples); False for any other run."""
    from flowmatch.train.latent import LatentRunData, latent_periodic_report

    ema, data = trainer.loop.ema.module, trainer.data
    if isinstance(ema, AutoEncoder):
        mse = reconstruction_error(ema, _first(data.holdout, 500))
        trainer.echo(f"step {step}: held-out reconstruction MSE {mse:.6g}")
        return True
    if not isinstance(data, LatentRunData):
        return False
    ev, s = trainer.cfg.eval, trainer.cfg.sample
    latent_periodic_report(
        ema, data, trainer.out, step, seed=trainer.cfg.train.seed, steps=ev.steps,
        methods=ev.methods, num=ev.num_samples, eta=s.eta, noise=s.noise, guidance=s.guidance,
    )  # fmt: skip
    return True


def finish_hook(trainer: Any) -> tuple[list[Any], Any] | None:
    """The final report of an autoencoder run (:func:`finish_autoencoder`) or a latent run
    (decoded samples scored and drawn); None for any other run."""
    from flowmatch.evaluation.reports import append_csv
    from flowmatch.train.latent import (
        LatentRunData,
        latent_final_report,
        latent_plots,
        latent_points,
    )

    ema, data, out = trainer.loop.ema.module, trainer.data, trainer.out
    if isinstance(ema, AutoEncoder):
        return finish_autoencoder(trainer.loop.flow, ema, data, out, echo=trainer.echo)
    if not isinstance(data, LatentRunData):
        return None
    cfg, ev, s = trainer.cfg, trainer.cfg.eval, trainer.cfg.sample
    sampler = {"eta": s.eta, "noise": s.noise, "guidance": s.guidance}
    trainer.echo(f"evaluating decoded samples ({ev.draws} draws per figure)...")
    report = latent_final_report(
        ema, data, out, seed=cfg.train.seed, steps=ev.steps, methods=ev.methods,
        num=ev.num_samples, draws=ev.draws, echo=trainer.echo, **sampler,
    )  # fmt: skip
    points = latent_points(data, ev.num_samples, s.guidance)
    append_csv(out / "eval.csv", trainer.loop.step, report[0], points=points, draws=ev.draws)
    try:
        latent_plots(ema, data, out, seed=cfg.train.seed, steps=s.steps, method=s.method, **sampler)
    except MissingExtraError as err:  # a core install (no matplotlib): the run is complete
        trainer.echo(f"warning: plots not written: {err}")
    return report
