"""Latent runs: a flow trained on the latents of an autoencoder run (``data: {latent: RUN}``).

As Stable Diffusion does, small: the run's images (``data.name: fashion``, ``digits`` or
``data.images``) are encoded once, in batches, by the autoencoder of ``RUN`` (its fitted
shift and scale applied) and the flow (a U-Net by default) learns those latents, from N(0, I)
noise at t = 0 to data latents at t = 1. The run's model carries a copy of the autoencoder
(``model/autoencoder/``), so ``flowmatch sample`` and ``fm.load(run).decode`` give images.
The evaluation and the pictures score and show decoded images against the held-out images,
with the same metric as a pixel run of the same data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch.errors import ConfigError, ModelFileError
from flowmatch.models.autoencoder import AutoEncoder
from flowmatch.models.latent import LatentCodec
from flowmatch.train.data import RunData

__all__ = [
    "DecodedMetric",
    "LatentRunData",
    "encode_images",
    "evaluation_data",
    "latent_data",
    "latent_final_report",
    "latent_periodic_report",
    "latent_plots",
    "latent_points",
    "load_autoencoder",
]

_BATCH = 500


@dataclass
class LatentRunData(RunData):
    """The data of a latent run: ``train`` and ``holdout`` are scaled latents (N, c, h, w)
    (float32), ``standardizer`` the :class:`~flowmatch.models.latent.LatentCodec` (the
    transform of the run's FlowModel: its ``decode`` gives images), ``pixels`` the images."""

    pixels: RunData | None = None

    @property
    def codec(self) -> LatentCodec:
        """The autoencoder's codec (images <-> latents)."""
        assert isinstance(self.standardizer, LatentCodec)
        return self.standardizer


def load_autoencoder(run: str | Path, base_dir: str | Path = ".") -> AutoEncoder:
    """The (EMA) autoencoder of an autoencoder run or model directory.

    Raises:
        ConfigError: ``data.latent``: no such run, an unreadable one, or a run whose model is
            not an autoencoder; one line.
    """
    from flowmatch.models.files import load

    path = Path(run)
    path = path if path.is_absolute() else Path(base_dir) / path
    key = "data.latent"
    if not path.exists():
        raise ConfigError(f"config: {key}: {path}: no such autoencoder run", key=key)
    try:
        model = load(path)
    except ModelFileError as err:
        raise ConfigError(f"config: {key}: {err}", key=key) from None
    if not isinstance(model, AutoEncoder):
        raise ConfigError(
            f"config: {key}: {path} is not an autoencoder run (its model is a "
            f"{type(model).__name__}); train one with objective.name=autoencoder",
            key=key,
        )
    return model


@torch.no_grad()
def encode_images(
    codec: LatentCodec, images: Any, *, progress: bool = False, what: str = "encode"
) -> Tensor:
    """Scaled latents (N, c, h, w) of images (N, C, H, W) (a tensor in [-1, 1] or uint8, or
    images read from disk by index), in batches of 500, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    n = int(images.shape[0])
    parts: list[Tensor] = []
    columns = (TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(what, total=n)
        for start in range(0, n, _BATCH):
            idx = torch.arange(start, min(start + _BATCH, n))
            batch = (
                images[idx] if not isinstance(images, Tensor) else images[start : start + _BATCH]
            )
            parts.append(codec.transform(batch).cpu())
            bar.update(task, completed=int(idx[-1]) + 1)
    return torch.cat(parts) if parts else torch.zeros((0, *codec.latent_shape))


def latent_data(
    pixels: RunData,
    run: str | Path,
    *,
    base_dir: str | Path = ".",
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> LatentRunData:
    """The latent data of a run: ``pixels`` (the run's images) encoded by the autoencoder of
    ``run``.

    Raises:
        ConfigError: ``data.latent``: no autoencoder run there, or one of other images
            (channels, side) than the run's.
    """
    ae = load_autoencoder(run, base_dir)
    if tuple(pixels.shape) != ae.shape:
        raise ConfigError(
            f"config: data.latent: {run} encodes images of shape {ae.shape}, the run's images "
            f"({pixels.name}) are {tuple(pixels.shape)}",
            key="data.latent",
        )
    codec = LatentCodec(ae, str(run))
    n = int(pixels.train.shape[0])
    echo(f"encoding {n} training images to latents {ae.latent_shape} with {run}")
    start = time.perf_counter()
    train = encode_images(codec, pixels.train, progress=progress, what="encode")
    holdout = encode_images(codec, pixels.holdout)
    echo(f"encoded {n} + {holdout.shape[0]} images in {time.perf_counter() - start:.1f} s")
    return LatentRunData(
        train,
        holdout,
        None,
        codec,  # type: ignore[arg-type]  # the FlowModel's transform: decode gives images
        pixels.name,
        None,
        pixels.labels,
        pixels.holdout_labels,
        pixels.class_names,
        pixels=pixels,
    )


def evaluation_data(pixels: RunData, codec: LatentCodec) -> LatentRunData:
    """A latent run's data for an evaluation after training (``flowmatch eval``), from the
    run's images and its model's own codec: the held-out images encoded; nothing is trained
    on it, so ``train`` holds those held-out latents too (the training images stay in
    ``pixels``, which the metric reads)."""
    holdout = encode_images(codec, pixels.holdout)
    return LatentRunData(
        holdout,
        holdout,
        None,
        codec,  # type: ignore[arg-type]  # the FlowModel's transform
        pixels.name,
        None,
        pixels.holdout_labels,
        pixels.holdout_labels,
        pixels.class_names,
        pixels=pixels,
    )


class DecodedMetric:
    """A metric of images that scores a latent model's samples decoded to images first;
    everything else (floor, formatting, plot) is the image metric's."""

    def __init__(self, metric: Any, codec: LatentCodec) -> None:
        self.metric, self.codec = metric, codec

    def score(self, samples: Tensor, state: Any, draw: int) -> dict[str, float]:
        """The image metric's scores of the decoded samples (B, C, H, W)."""
        images = self.codec.inverse(samples).float().cpu()
        scores: dict[str, float] = self.metric.score(images, state, draw)
        return scores

    def __getattr__(self, name: str) -> Any:
        return getattr(self.metric, name)


def _metric(data: LatentRunData) -> tuple[Any, Any]:
    from flowmatch.train.reports import metric_of

    assert data.pixels is not None
    inner = metric_of(data.pixels)
    return DecodedMetric(inner, data.codec), inner


def _generated(data: LatentRunData, inner: Any, num: int, guidance: float | None) -> Any:
    from flowmatch.train import reports

    return reports._generated(data.pixels, inner, num, guidance)  # type: ignore[arg-type]


def latent_points(data: LatentRunData, num: int, guidance: float | None = None) -> int:
    """Images per set of a latent run's evaluation asking for ``num`` (as a pixel run's)."""
    _, inner = _metric(data)
    return int(_generated(data, inner, num, guidance)["num"])


def latent_final_report(
    flow: Any,
    data: LatentRunData,
    directory: str | Path,
    *,
    seed: int,
    steps: Sequence[int],
    methods: Sequence[str],
    num: int,
    draws: int,
    eta: float = 0.0,
    noise: float = 1.0,
    guidance: float | None = None,
    note: str | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[Any], Any]:
    """A latent run's final evaluation (see :func:`flowmatch.train.reports.final_report`):
    the samples decoded, scored as images with the pixel run's metric; ``eval.txt`` and
    ``quality_vs_nfe.png``."""
    from flowmatch.evaluation.reports import run_report

    metric, inner = _metric(data)
    kind = "W2" if type(inner).__name__ == "PointMetric" else "FD"
    g = "" if guidance is None else f", guidance {guidance}"
    return run_report(
        flow,
        metric,
        flow.draw_source,
        directory,
        steps=steps,
        methods=methods,
        draws=draws,
        seed=seed,
        eta=eta,
        noise=noise,
        note=note,
        echo=echo,
        title=f"{data.name} (latent, decoded): {kind} vs NFE{g}",
        **_generated(data, inner, num, guidance),
    )


def latent_periodic_report(
    flow: Any,
    data: LatentRunData,
    directory: str | Path,
    step: int,
    *,
    seed: int,
    steps: Sequence[int],
    methods: Sequence[str],
    num: int,
    eta: float = 0.0,
    noise: float = 1.0,
    guidance: float | None = None,
) -> list[Any]:
    """A quick evaluation of decoded samples during training, appended to ``eval.csv``: one
    draw of at most 1000 images at the last sampler and step count."""
    from flowmatch.evaluation import seeds
    from flowmatch.evaluation.loop import evaluate_model
    from flowmatch.evaluation.reports import append_csv

    metric, inner = _metric(data)
    plan = _generated(data, inner, min(num, 1000), guidance)
    rows = evaluate_model(
        flow,
        metric,
        flow.draw_source,
        draws=1,
        seed=seeds.stream_seed(seed, "eval"),
        eta=eta,
        noise=noise,
        steps=steps[-1:],
        methods=methods[-1:],
        **plan,
    )
    append_csv(Path(directory) / "eval.csv", step, rows, points=int(plan["num"]), draws=1)
    return rows


def latent_plots(
    flow: Any,
    data: LatentRunData,
    directory: str | Path,
    *,
    seed: int,
    steps: int,
    method: str,
    eta: float = 0.0,
    noise: float = 1.0,
    guidance: float | None = None,
) -> None:
    """``samples.png``: decoded samples, a row per class (or a square grid) at the run's
    sampler."""
    from flowmatch import viz
    from flowmatch.evaluation import seeds
    from flowmatch.sampling import generate, labels_in_turn

    k = data.num_classes
    cond = labels_in_turn(10 * k, k) if k is not None else None
    n = 10 * k if k is not None else 100
    device = next(flow.parameters()).device
    g = seeds.generator(seed, "plots")
    res = generate(
        flow,
        flow.draw_source(n, g).to(device),
        steps=steps,
        method=method,
        eta=eta,
        noise=noise,
        cond=cond.to(device) if cond is not None else None,
        guidance=guidance if cond is not None else None,
        generator=g,
    )
    images = data.codec.inverse(res.x).cpu()
    scale = max(1, 96 // images.shape[-1])
    viz.image_grid(images, Path(directory) / "samples.png", nrow=10, scale=scale)
