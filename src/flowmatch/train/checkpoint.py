"""Resumable training state, written atomically: one directory per checkpoint.

``checkpoints/step_00001000/`` holds ``model.safetensors`` and ``ema.safetensors`` (weights),
``optim.pt`` (optimizer and LR-scheduler state, our own file, read back with
``torch.load(weights_only=True)``), ``rng.safetensors`` (every RNG state) and ``state.json``
(the step). The directory is assembled under a temporary name, fsynced and renamed, so a
checkpoint either exists complete or not at all; a run killed while writing one leaves a
temporary directory that the next resume removes.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from flowmatch.atomic import atomic_dir

__all__ = ["Checkpoint", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_NAME = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights, optimizer/scheduler state, RNG states and the step."""

    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optim: dict
    rng: dict[str, torch.Tensor]
    path: Path


def save_checkpoint(
    root: str | Path,
    *,
    step: int,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    optim: dict,
    rng: dict[str, torch.Tensor],
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` under ``root`` atomically; keep the newest ``keep``.

    Returns:
        The checkpoint directory.
    """
    from safetensors.torch import save_file

    root = Path(root)
    target = root / f"step_{step:08d}"
    if target.exists():  # the same step written again (e.g. the final step): replace it
        shutil.rmtree(target)
    with atomic_dir(target) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.items()}, tmp / "model.safetensors"
        )
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in ema.items()}, tmp / "ema.safetensors"
        )
        save_file({k: v.cpu().contiguous() for k, v in rng.items()}, tmp / "rng.safetensors")
        torch.save(optim, tmp / "optim.pt")
        (tmp / "state.json").write_text(
            json.dumps({"format_version": FORMAT_VERSION, "step": step}) + "\n"
        )
    for old in _complete(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _complete(root: Path) -> list[Path]:
    """Checkpoint directories under root, oldest first (temporary ones excluded)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint directory under root, or None."""
    found = _complete(Path(root))
    return found[-1] if found else None


def remove_partial(root: str | Path) -> None:
    """Delete temporary directories left by a run killed while writing a checkpoint."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(".step_") and p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Raises:
        ValueError: naming the file that is missing or unreadable.
    """
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        step = int(state["step"])
        tensors = {
            name: load_file(str(path / f"{name}.safetensors"), device=str(device))
            for name in ("model", "ema")
        }
        rng = load_file(str(path / "rng.safetensors"))
        optim = torch.load(path / "optim.pt", map_location=device, weights_only=True)
    except Exception as err:  # any unreadable piece makes the checkpoint unusable
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    return Checkpoint(
        step=step, model=tensors["model"], ema=tensors["ema"], optim=optim, rng=rng, path=path
    )
