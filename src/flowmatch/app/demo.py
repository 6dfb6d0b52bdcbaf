"""``flowmatch demo``: train the default model (checkerboard) or a digits U-Net, or plot the
exact flow of an 8-Gaussian mixture (no training)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flowmatch.data.toy2d import eight_gaussians_params
from flowmatch.oracle import GaussianMixture
from flowmatch.paths import AffinePath
from flowmatch.solvers import solve_ode

__all__ = [
    "DEMO_OVERRIDES",
    "DIGITS_OVERRIDES",
    "digits_demo",
    "oracle_demo",
    "run_demo",
    "train_demo_run",
    "training_demo",
]

DEMOS = ("checkerboard", "digits", "fashion", "names", "airports")


def oracle_demo(
    out: Path,
    *,
    num: int = 2000,
    steps: int = 8,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Integrate the exact marginal velocity from N(0, I) to the ``8gaussians`` mixture.

    Writes ``samples.png`` (samples beside true mixture draws) and ``trajectories.png`` (the
    paths from noise at t=0 to data at t=1) to ``out``.

    Args:
        out: output directory (created).
        num: number of samples.
        steps: midpoint steps (NFE = 2 x steps).
        seed: seed of the noise and of the reference draws.
        echo: where progress lines go.

    Returns:
        The written files by name.
    """
    from flowmatch import viz

    means, std, weights = eight_gaussians_params(dtype=torch.float64)
    mixture = GaussianMixture(means, std, weights)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(num, 2, generator=g, dtype=torch.float64)
    res = solve_ode(
        mixture.velocity(AffinePath()), x0, steps=steps, method="midpoint", return_trajectory=True
    )
    assert res.trajectory is not None  # return_trajectory=True
    reference = mixture.sample(num, generator=g)
    gen_lp, true_lp = mixture.log_prob(res.x).mean().item(), mixture.log_prob(reference.double())
    echo(
        f"8gaussians oracle flow, midpoint, NFE {res.nfe}: mean log-density of samples "
        f"{gen_lp:.3f} (true draws {true_lp.mean().item():.3f})"
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "samples": viz.scatter(
            res.x,
            out / "samples.png",
            reference=reference,
            names=("samples", "data"),
            title=f"exact flow, midpoint, NFE {res.nfe}",
        ),
        "trajectories": viz.trajectories(
            res.trajectory, out / "trajectories.png", title="noise (t=0) to data (t=1)"
        ),
    }
    for path in files.values():
        echo(f"wrote {path}")
    return files


DEMO_OVERRIDES = (
    "data.name=checkerboard",
    "model.hidden=256",
    "model.depth=3",
    "optim.lr=2e-3",
    "optim.warmup_steps=200",
    "train.batch_size=256",
    "train.ema_decay=0.999",
    "train.log_every=100",
    "train.checkpoint_every=1000",
    "train.eval_every=1000000",
    "sample.steps=8",
    "sample.method=midpoint",
    "eval.steps=[1,2,4,8,16]",
    "eval.methods=[euler,midpoint]",
    "eval.num_samples=2000",
    "eval.draws=5",
    "eval.fit_training_time=false",  # the demo's table is its point: always the full sizes
)
"""The demo's run config, on top of the defaults (written to the run's config.yaml)."""


def training_demo(
    out: Path,
    *,
    steps: int = 20000,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train the default model (checkerboard, 3x256 MLP) and write samples, plots and W2 table.

    The run directory is recreated: ``config.yaml``, ``model/``, ``checkpoints/``,
    ``metrics.csv``, ``eval.txt`` (W2 and MMD per method and NFE, mean +- std over 5 draws,
    with the noise floor), ``samples.png``, ``trajectories.png`` and ``quality_vs_nfe.png``.
    """
    result = train_demo_run(out, [*DEMO_OVERRIDES, f"train.steps={steps}"], progress, echo)
    echo(f"demo: {result.steps} steps in {result.wall_time:.0f} s; plots and eval.txt in {out}")
    return out


DIGITS_OVERRIDES = (
    "data.name=digits",
    "model.name=unet",
    "model.channels=32",
    "model.multipliers=[1,2]",
    "model.res_blocks=1",
    "objective.cond_dropout=0.1",
    "optim.lr=2e-3",
    "optim.warmup_steps=200",
    "train.batch_size=128",
    "train.ema_decay=0.999",
    "train.log_every=100",
    "train.checkpoint_every=1000",
    "train.eval_every=1000000",
    "sample.steps=4",
    "sample.method=midpoint",
    "sample.guidance=1.0",
    "eval.steps=[1,2,4,8]",
    "eval.methods=[euler,midpoint]",
    "eval.draws=2",
)
"""The digits demo's run config: a class-conditional U-Net with label dropout for guidance."""

DIGITS_STEPS = 3000


def digits_demo(
    out: Path,
    *,
    steps: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train a class-conditional U-Net on the 8x8 digits and write samples, a path and FD table.

    The run directory is recreated: ``samples.png`` (10 x 10, a row per class, the midpoint
    method in 4 steps (NFE 8), guidance 1: the plain conditional model, whose FD at NFE 8
    measured best of the scales 0, 1, 2, 4 in benchmarks/digits.py), ``path.png`` (one
    sample from noise, t=0, to digit, t=1), ``eval.txt`` (FD, KID and class accuracy per
    sampler and NFE against the test split, with the train/test floor),
    ``quality_vs_nfe.png`` and the model.
    """
    n = steps if steps is not None else DIGITS_STEPS
    result = train_demo_run(out, [*DIGITS_OVERRIDES, f"train.steps={n}"], progress, echo)
    echo(
        f"digits demo: {result.steps} steps in {result.wall_time:.0f} s; samples.png, path.png "
        f"and eval.txt in {out}"
    )
    return out


def train_demo_run(
    out: Path, overrides: list[str], progress: bool, echo: Callable[[str], None]
) -> Any:
    """Train a demo's run config (the defaults + ``overrides``) into ``out``, recreated."""
    from flowmatch.train.config import load_config
    from flowmatch.train.trainer import Trainer

    cfg = load_config(None, overrides)
    return Trainer(cfg, out, overwrite=True, progress=progress, echo=echo).run()


NAMES_OVERRIDES = (
    "data.corpus=names",
    "model.name=transformer",
    "model.dim=96",
    "model.depth=3",
    "model.heads=4",
    "objective.name=discrete",
    "optim.lr=2e-3",
    "optim.warmup_steps=200",
    "train.batch_size=256",
    "train.log_every=100",
    "train.checkpoint_every=1000",
    "train.eval_every=1000000",
    "sample.steps=14",
    "eval.steps=[4,8,14,32]",
    "eval.num_samples=1000",
    "eval.draws=3",
)
"""The names demo's run config: a small character transformer, discrete flow matching."""

NAMES_STEPS = 3000


def names_demo(
    out: Path,
    *,
    steps: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train discrete flow matching on US census surnames; write samples, the ELBO and plots.

    The run directory is recreated: ``samples.txt`` (1000 names sampled in 14 steps, one
    per line), ``eval.txt`` (the held-out ELBO in nats per character; per NFE the share of
    samples that are real names, novel, unique, and the sampler's own bound),
    ``quality_vs_nfe.png`` and the model.
    """
    n = steps if steps is not None else NAMES_STEPS
    result = train_demo_run(out, [*NAMES_OVERRIDES, f"train.steps={n}"], progress, echo)
    echo(
        f"names demo: {result.steps} steps in {result.wall_time:.0f} s; samples.txt, eval.txt "
        f"and quality_vs_nfe.png in {out}"
    )
    return out


AIRPORTS_OVERRIDES = (
    "data.name=airports",
    "model.hidden=256",
    "model.depth=4",
    "model.fourier_features=128",
    "model.fourier_scale=16",
    "optim.lr=2e-3",
    "optim.warmup_steps=200",
    "train.batch_size=512",
    "train.log_every=200",
    "train.checkpoint_every=2000",
    "train.eval_every=1000000",
    "sample.steps=8",
    "sample.method=rk4",
    "eval.steps=[2,4,8,16]",
    "eval.methods=[euler,midpoint,rk4]",
    "eval.num_samples=1000",
    "eval.draws=3",
)
"""The airports demo's run config: Riemannian flow matching on S^2 from the uniform
distribution, an MLP with random Fourier features of the unit vectors."""

AIRPORTS_STEPS = 12000


def airports_demo(
    out: Path,
    *,
    steps: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train a flow on the sphere on the world's airports; write maps, the NLL and plots.

    The run directory is recreated: ``samples.png`` (5000 samples on a world map, Mollweide
    projection, next to the held-out airports), ``globe.png`` (the same on an orthographic
    globe), ``eval.txt`` (the held-out NLL in nats w.r.t. the sphere's area, and the geodesic
    W2 and MMD per sampler and NFE with the floor), ``quality_vs_nfe.png`` and the model.
    """
    n = steps if steps is not None else AIRPORTS_STEPS
    result = train_demo_run(out, [*AIRPORTS_OVERRIDES, f"train.steps={n}"], progress, echo)
    echo(
        f"airports demo: {result.steps} steps in {result.wall_time:.0f} s; samples.png (world "
        f"map), globe.png, eval.txt (held-out NLL) and quality_vs_nfe.png in {out}"
    )
    return out


def run_demo(
    dataset: str,
    out: Path | None,
    *,
    steps: int | None,
    oracle: bool,
    progress: bool,
    echo: Callable[[str], None],
) -> None:
    """``flowmatch demo``: the demo of ``dataset`` (one of `DEMOS`) into ``out`` (default
    ``runs/demo`` or ``runs/demo_DATASET``); ``oracle`` integrates the exact flow instead.

    Raises:
        UsageError: an unknown dataset.
    """
    from flowmatch.app.options import UsageError

    if dataset not in DEMOS:
        raise UsageError(f"--dataset: expected {', '.join(DEMOS)}, got {dataset!r}")
    if oracle:
        oracle_demo(out if out is not None else Path("runs/demo"), echo=echo)
        return
    if dataset == "checkerboard":
        out = out if out is not None else Path("runs/demo")
        training_demo(out, steps=steps or 20000, progress=progress, echo=echo)
        return
    from flowmatch.app.demo_fashion import fashion_demo

    runs = {
        "airports": airports_demo,
        "names": names_demo,
        "digits": digits_demo,
        "fashion": fashion_demo,
    }
    out = out if out is not None else Path(f"runs/demo_{dataset}")
    runs[dataset](out, steps=steps, progress=progress, echo=echo)
