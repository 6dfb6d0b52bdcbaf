"""``flowmatch demo --dataset fashion``: a small class-conditional U-Net on Fashion-MNIST that
trains in minutes on a CPU, draws recognisable clothes of each class and says how
recognisable: the class accuracy of its samples in the shipped Fashion-MNIST classifier, next
to the classifier's accuracy on real images. The run is ``configs/fashion.yaml``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

__all__ = ["FASHION_OVERRIDES", "FASHION_STEPS", "fashion_demo"]

FASHION_OVERRIDES = (
    "data.name=fashion",
    "model.name=unet",
    "model.channels=16",
    "model.multipliers=[1,2,2]",
    "model.res_blocks=1",
    "objective.cond_dropout=0.1",
    "optim.lr=2e-3",
    "optim.warmup_steps=200",
    "train.batch_size=64",
    "train.ema_decay=0.999",
    "train.log_every=100",
    "train.checkpoint_every=500",
    "train.eval_every=1000000",
    "sample.steps=4",
    "sample.method=midpoint",
    "sample.guidance=2.0",
    "eval.steps=[2,4,8]",
    "eval.methods=[euler,midpoint]",
    "eval.draws=1",
    "eval.num_samples=1000",
    "eval.fit_training_time=false",
)
"""The demo's run config: a 290k-parameter U-Net (16 channels, 28 -> 14 -> 7), label dropout
for guidance, one training thread (the default for a network this size), and an evaluation of
1,000 images per figure (the floor at the same size)."""

FASHION_STEPS = 1200
"""Training steps of the demo: 402 s of training and 9 min 51 s in all, measured on one thread
of a 2-core machine whose other core was busy; 96.5% of its midpoint NFE 8 samples are
classified as the class asked for (real images: 93.7%)."""


def fashion_demo(
    out: Path,
    *,
    steps: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train the demo's U-Net on Fashion-MNIST and write samples, a path and the FD table.

    The run directory is recreated: ``samples.png`` (a row per class, midpoint in 4 steps,
    guidance 2), ``path.png``, ``eval.txt`` (FD, KID and class accuracy in the Fashion-MNIST
    classifier's features per sampler and NFE, with the train/test floor) and the model.

    Raises:
        DataError: the Fashion-MNIST files are not installed (one line saying how to install
            them; the run directory is left as it was).
    """
    from flowmatch.app.demo import train_demo_run

    n = steps if steps is not None else FASHION_STEPS
    result = train_demo_run(out, [*FASHION_OVERRIDES, f"train.steps={n}"], progress, echo)
    echo(
        f"fashion demo: a small model ({n} steps in {result.wall_time:.0f} s); samples.png "
        f"(a row per class), path.png and eval.txt in {out}"
    )
    said = _accuracy_line(result.eval_rows, result.floor)
    if said:
        echo(said)
    return out


def _accuracy_line(rows: list, floor: object) -> str | None:
    """How recognisable the samples are: the best class accuracy among the evaluated
    samplers, and the classifier's accuracy on real images (the floor's row)."""
    scored = [r for r in rows if not math.isnan(getattr(r, "accuracy", math.nan))]
    if not scored:
        return None
    best = max(scored, key=lambda r: r.accuracy)
    real = getattr(floor, "accuracy", math.nan)
    versus = f" (real training images: {real:.0%})" if not math.isnan(real) else ""
    return (
        f"the classifier recognises the asked-for class in {best.accuracy:.0%} of the samples "
        f"({best.method}, NFE {best.nfe}){versus}"
    )
