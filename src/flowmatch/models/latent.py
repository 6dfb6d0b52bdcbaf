"""Autoencoder model files and the latent codec of a latent flow model.

An autoencoder's model directory holds ``config.json`` (``kind: autoencoder``, its
architecture, image and latent shapes) and ``model.safetensors`` / ``ema.safetensors``, whose
buffers ``latent_shift`` and ``latent_scale`` hold the fitted latent statistics.

A latent flow model (a :class:`~flowmatch.flow.FlowModel` trained on the latents of an
autoencoder) carries a :class:`LatentCodec` as its data transform: ``model.decode(z)`` turns
sampled latents into images. Its ``config.json`` says so under ``latent`` and its model
directory holds a copy of the autoencoder in ``autoencoder/``, so the run is self-contained.
Time runs from t = 0 (noise, in latent space) to t = 1 (data latents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch.errors import ModelFileError
from flowmatch.models.autoencoder import AutoEncoder
from flowmatch.models.schema_errors import SpecProblem

__all__ = [
    "AUTOENCODER_DIR",
    "LatentCodec",
    "autoencoder_from_spec",
    "check_autoencoder_spec",
    "check_latent_entry",
    "load_codec",
]

AUTOENCODER_DIR = "autoencoder"
"""The folder of a latent model's directory holding its copy of the autoencoder."""

_BATCH = 500


def check_autoencoder_spec(spec: dict[str, Any], arch: dict[str, Any]) -> None:
    """The checks of an autoencoder's ``config.json`` beyond its top-level keys: the network
    is an ``autoencoder`` whose image and latent shapes are the file's.

    Raises:
        SpecProblem: the dotted key and what is wrong.
    """
    if arch["name"] != "autoencoder":
        raise SpecProblem("arch.name", f"expected 'autoencoder', got {arch['name']!r:.80}")
    try:
        ae = AutoEncoder(**{k: v for k, v in arch.items() if k != "name"})
    except (TypeError, ValueError) as err:
        raise SpecProblem("arch", " ".join(str(err).split())) from None
    for key, want in (("shape", ae.shape), ("latent_shape", ae.latent_shape)):
        if spec.get(key) is not None and list(spec[key]) != list(want):
            raise SpecProblem(key, f"expected {list(want)} (the network's), got {spec[key]}")


def autoencoder_from_spec(spec: dict[str, Any]) -> AutoEncoder:
    """A freshly initialized autoencoder of a checked spec, with its descriptive info."""
    arch = {k: v for k, v in spec["arch"].items() if k != "name"}
    ae = AutoEncoder(**arch)
    ae.info = {k: spec[k] for k in ("data", "objective", "class_names") if k in spec}
    return ae


def check_latent_entry(raw: Any, shape: list[int] | None) -> None:
    """The ``latent`` entry of a latent flow model's ``config.json``.

    Raises:
        SpecProblem: the dotted key and what is wrong.
    """
    if raw is None:
        return
    keys = {"autoencoder", "image_shape", "latent_shape"}
    if not isinstance(raw, dict) or set(raw) - {*keys, "source"} or not keys <= set(raw):
        raise SpecProblem("latent", f"expected a mapping with keys {sorted(keys)}, got {raw!r:.80}")
    if raw["autoencoder"] != AUTOENCODER_DIR:
        raise SpecProblem("latent.autoencoder", f"expected {AUTOENCODER_DIR!r}")
    for key in ("image_shape", "latent_shape"):
        value = raw[key]
        if not (isinstance(value, list) and len(value) == 3 and all(_pos(v) for v in value)):
            raise SpecProblem(f"latent.{key}", f"expected 3 positive integers, got {value!r:.80}")
    if shape is not None and list(shape) != raw["latent_shape"]:
        raise SpecProblem("shape", f"expected {raw['latent_shape']} (latent.latent_shape)")


def _pos(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class LatentCodec:
    """The data transform of a latent flow model: images <-> scaled latents of a fixed
    :class:`~flowmatch.models.autoencoder.AutoEncoder` (no gradients, in batches).

    It is no ``nn.Module`` on purpose: a FlowModel holding it does not train or average the
    autoencoder's weights. It follows the device of what it is given.

    Args:
        autoencoder: the trained autoencoder (its fitted scale and shift included).
        source: where it came from (a run directory), for the record.

    Shapes:
        ``transform``: images (B, C, H, W) in [-1, 1] (or uint8) -> latents (B, c, h, w);
        ``inverse``: latents -> images.
    """

    SPEC_KEY = "latent"
    """The key of a FlowModel's ``config.json`` that records the codec."""

    def __init__(self, autoencoder: AutoEncoder, source: str | None = None) -> None:
        if not isinstance(autoencoder, AutoEncoder):
            raise ValueError(f"expected an AutoEncoder, got {type(autoencoder).__name__}")
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.source = source

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images."""
        return self.autoencoder.shape

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of the latents."""
        return self.autoencoder.latent_shape

    def _on(self, device: torch.device) -> AutoEncoder:
        ae = self.autoencoder
        if ae.latent_scale.device != device:
            self.autoencoder = ae = ae.to(device)
        return ae

    @torch.no_grad()
    def transform(self, x: Tensor) -> Tensor:
        """Scaled latents (means) of images x, in batches of 500."""
        from flowmatch.data.images import unit_range

        ae = self._on(x.device)
        parts = [ae.encode(unit_range(x[i : i + _BATCH]).float()) for i in range(0, len(x), _BATCH)]
        return torch.cat(parts) if parts else x.new_zeros((0, *self.latent_shape))

    @torch.no_grad()
    def inverse(self, z: Tensor) -> Tensor:
        """Images (B, C, H, W) of scaled latents z (B, c, h, w), in batches of 500."""
        ae = self._on(z.device)
        parts = [ae.decode(z[i : i + _BATCH].float()) for i in range(0, len(z), _BATCH)]
        return torch.cat(parts) if parts else z.new_zeros((0, *self.image_shape))

    def to_dict(self) -> dict[str, Any]:
        """The ``latent`` entry of the flow's ``config.json``."""
        entry: dict[str, Any] = {
            "autoencoder": AUTOENCODER_DIR,
            "image_shape": list(self.image_shape),
            "latent_shape": list(self.latent_shape),
        }
        if self.source is not None:
            entry["source"] = self.source
        return entry

    def save(self, directory: str | Path) -> Path:
        """Write the autoencoder's copy into ``directory/autoencoder/`` (its weights as
        both ``model`` and ``ema``)."""
        return self.autoencoder.save_pretrained(Path(directory) / AUTOENCODER_DIR)


def load_codec(directory: str | Path, entry: dict[str, Any], shape: Any) -> LatentCodec:
    """The codec of a latent flow model's directory (its ``autoencoder/`` copy).

    Raises:
        ModelFileError: a missing copy, or one that is no autoencoder of the recorded shapes.
    """
    from flowmatch.models.files import load

    where = Path(directory) / AUTOENCODER_DIR
    ae = load(where)
    if not isinstance(ae, AutoEncoder):
        raise ModelFileError(f"{where}: expected an autoencoder, got a {type(ae).__name__}")
    if list(ae.latent_shape) != list(entry["latent_shape"]) or (
        shape is not None and tuple(shape) != ae.latent_shape
    ):
        raise ModelFileError(
            f"{where}: its latents are {list(ae.latent_shape)}, the model's points "
            f"{entry['latent_shape']}"
        )
    return LatentCodec(ae, entry.get("source"))
