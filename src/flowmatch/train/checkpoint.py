"""Resumable training state, written atomically: one directory per checkpoint.

``checkpoints/step_00001000/`` holds ``model.safetensors`` and ``ema.safetensors`` (weights),
``optim.pt`` (optimizer and LR-scheduler state, our own file, read back with
``torch.load(weights_only=True)``), ``rng.safetensors`` (every RNG state) and ``state.json``
(the step and the SHA-256 of every other file). The directory is assembled under a temporary
name, fsynced and renamed, so a checkpoint either exists complete or not at all; a run killed
while writing one leaves a temporary directory that the next resume removes. A full disk
fails the write with a :class:`~flowmatch.errors.CheckpointError` and leaves the previous
checkpoints as they were.

Reading one back verifies it: ``state.json`` must be plausible (its step that of the
directory's name) and every file must match its checksum, so a damaged or tampered checkpoint
is found before anything is unpickled or loaded. :func:`newest_good_checkpoint` moves a
damaged one aside (``damaged_step_...``, never deleted) and falls back to the one before.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from flowmatch.atomic import atomic_dir
from flowmatch.errors import CheckpointError

__all__ = [
    "Checkpoint",
    "latest_checkpoint",
    "latest_step",
    "load_checkpoint",
    "newest_good_checkpoint",
    "save_checkpoint",
    "verify_checkpoint",
]

_NAME = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 1
_FILES = ("model.safetensors", "ema.safetensors", "rng.safetensors", "optim.pt")
MAX_STEP = 10**9  # the config's bound on train.steps


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

    Raises:
        CheckpointError: the checkpoint could not be written (a full disk, an I/O error); the
            checkpoints written before are intact.
    """
    from safetensors.torch import save_file

    root = Path(root)
    target = root / f"step_{step:08d}"
    try:
        if target.exists():  # the same step written again (e.g. the final step): replace it
            shutil.rmtree(target)
        with atomic_dir(target) as tmp:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in model.items()},
                tmp / "model.safetensors",
            )
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in ema.items()},
                tmp / "ema.safetensors",
            )
            save_file({k: v.cpu().contiguous() for k, v in rng.items()}, tmp / "rng.safetensors")
            torch.save(optim, tmp / "optim.pt")
            state = {
                "format_version": FORMAT_VERSION,
                "step": step,
                "sha256": {name: _sha256(tmp / name) for name in _FILES},
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    except Exception as err:  # OSError (ENOSPC, EIO), SafetensorError, ...
        previous = latest_checkpoint(root)
        kept = f"the newest intact checkpoint is {previous}" if previous else "none was written"
        raise CheckpointError(
            f"{target}: cannot write the checkpoint ({_reason(err)}); {kept}; free the space "
            "and continue with --resume"
        ) from None
    for old in _complete(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        return err.strerror or errno.errorcode.get(err.errno, str(err))
    return f"{type(err).__name__}: {err}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(root: Path) -> list[Path]:
    """Checkpoint directories under root, oldest first (temporary ones excluded)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]

    def step(p: Path) -> int:
        match = _NAME.match(p.name)
        assert match is not None  # found holds matching names only
        return int(match.group(1))

    return sorted(found, key=step)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint directory under root, or None."""
    found = _complete(Path(root))
    return found[-1] if found else None


def latest_step(root: str | Path) -> int:
    """The step of the newest complete checkpoint under root (by its name), or 0."""
    latest = latest_checkpoint(root)
    match = _NAME.match(latest.name) if latest is not None else None
    return int(match.group(1)) if match else 0


def remove_partial(root: str | Path) -> None:
    """Delete temporary directories left by a run killed while writing a checkpoint."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(".step_") and p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)


def verify_checkpoint(path: str | Path) -> int:
    """Check a checkpoint directory without loading it: a plausible ``state.json`` (format
    version, the step of the directory's name) and every file present and matching its
    SHA-256 (checkpoints written before checksums were recorded are checked for presence).

    Returns:
        The checkpoint's step.

    Raises:
        CheckpointError: naming the checkpoint and the first problem found.
    """
    path = Path(path)
    match = _NAME.match(path.name)
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: damaged checkpoint (state.json is missing)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(
            f"{path}: damaged checkpoint (state.json is unreadable: {_reason(err)})"
        ) from None
    step = state.get("step") if isinstance(state, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        raise CheckpointError(
            f"{path}: damaged checkpoint (state.json: expected a step in [0, {MAX_STEP}], got "
            f"{str(step)[:40]!r})"
        )
    if match is not None and int(match.group(1)) != step:
        raise CheckpointError(
            f"{path}: damaged checkpoint (state.json says step {step}, its name step "
            f"{int(match.group(1))})"
        )
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown checkpoint format_version {state.get('format_version')!r} "
            f"(this flowmatch reads {FORMAT_VERSION})"
        )
    sums = state.get("sha256")
    for name in _FILES:
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: damaged checkpoint ({name} is missing)")
        if isinstance(sums, dict):
            try:
                actual = _sha256(file)
            except OSError as err:
                raise CheckpointError(
                    f"{path}: damaged checkpoint ({name}: {_reason(err)})"
                ) from None
            if sums.get(name) != actual:
                raise CheckpointError(
                    f"{path}: damaged checkpoint ({name} does not match its checksum in state.json)"
                )
    return step


def newest_good_checkpoint(root: str | Path, *, warn: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint under root that verifies; damaged ones newer than it are moved
    aside to ``damaged_step_XXXXXXXX`` (never deleted), each with a one-line ``warn``.

    Returns:
        The checkpoint directory, or None when there is none at all.

    Raises:
        CheckpointError: there are checkpoints but none of them verifies.
    """
    root = Path(root)
    found = _complete(root)
    damaged: list[str] = []
    warnings: list[str] = []
    for path in reversed(found):
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            moved = _move_aside(path)
            damaged.append(path.name)
            warnings.append(f"warning: {err}; moved it to {moved.name}, using the one before")
            continue
        for line in warnings:  # said only when a good one is found: else the error says it
            warn(line)
        return path
    if damaged:
        raise CheckpointError(
            f"{root}: no intact checkpoint to resume from (damaged, moved aside: "
            f"{', '.join(damaged)})"
        )
    return None


def _move_aside(path: Path) -> Path:
    target = path.with_name(f"damaged_{path.name}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"damaged_{path.name}.{n}")
    path.rename(target)
    return target


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`, verified first
    (:func:`verify_checkpoint`).

    Raises:
        CheckpointError: naming the file that is missing, damaged or unreadable.
    """
    from safetensors.torch import load_file

    path = Path(path)
    step = verify_checkpoint(path)
    try:
        tensors = {
            name: load_file(str(path / f"{name}.safetensors"), device=str(device))
            for name in ("model", "ema")
        }
        rng = load_file(str(path / "rng.safetensors"))
        optim = torch.load(path / "optim.pt", map_location=device, weights_only=True)
    except Exception as err:  # any unreadable piece makes the checkpoint unusable
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({type(err).__name__}: {err})"
        ) from None
    return Checkpoint(
        step=step, model=tensors["model"], ema=tensors["ema"], optim=optim, rng=rng, path=path
    )
