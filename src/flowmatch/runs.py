"""Working with run directories: sample a trained run, evaluate it against its held-out data,
reflow it (or distill it to one step) into a new run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from flowmatch.data.tabular import TABLE_SUFFIXES, DataError, Standardizer, load_table, save_table
from flowmatch.models.files import ModelFileError, load
from flowmatch.sampling import SCORE_METHODS, generate, labels_in_turn
from flowmatch.train.config import load_config
from flowmatch.train.data import draw_source, load_run_data
from flowmatch.train.evaluate import (
    EvalRow,
    evaluate,
    format_row,
    model_straightness,
    noise_floor,
    write_report,
)

if TYPE_CHECKING:
    from flowmatch.train.trainer import TrainResult

__all__ = [
    "SamplerError",
    "check_sampler",
    "evaluate_run",
    "likelihood_run",
    "reflow_run",
    "sample_run",
    "source_log_prob",
]


class SamplerError(ValueError):
    """A sampler that does not fit the run: one line naming the option; exit code 2 in the CLI."""


def check_sampler(
    model: torch.nn.Module, method: str, steps: Sequence[int], *, eta: float = 0.0
) -> None:
    """Check, before any work, that ``method`` can sample ``model`` at each step count.

    Raises:
        SamplerError: an unknown method; ddpm/ddim with more steps than the timesteps of the
            model's DDPM schedule, or an eta outside [0, 1]; sde/ddpm/ddim on a model whose
            source is not N(0, I) (no Gaussian score).
    """
    from flowmatch.diffusion import check_eta, diffusion_times
    from flowmatch.sampling import SAMPLE_METHODS, SCORE_METHODS

    if method not in SAMPLE_METHODS:
        raise SamplerError(f"--method: expected one of {', '.join(SAMPLE_METHODS)}, got {method!r}")
    if method not in SCORE_METHODS:
        return
    spec = getattr(model, "spec", {}) or {}
    if spec.get("source") is not None:
        raise SamplerError(
            f"--method: {method} needs the N(0, I) source; this model's source is "
            f"{spec['source']!r}; use an ODE solver"
        )
    if method == "sde":
        return
    try:
        check_eta(eta)
    except ValueError as err:
        raise SamplerError(f"--eta: {err}") from None
    try:
        for n in steps:
            diffusion_times(model.flow_path, n)
    except ValueError as err:
        raise SamplerError(f"--steps: {err}") from None


def sample_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    num: int = 1000,
    steps: int | None = None,
    method: str | None = None,
    seed: int = 0,
    interpolate: str | Path | None = None,
    eta: float | None = None,
    noise: float | None = None,
    cond: int | None = None,
    guidance: float | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Sample a trained run (EMA weights) from its source and write the points atomically.

    Table data is mapped back to its original units with the run's stored standardization.
    With ``interpolate``, the output is instead ``num`` points on the path between the first
    two rows of that data file through noise space (:func:`~flowmatch.sampling.interpolate`:
    encode, slerp, decode; the run's source must be N(0, I)).

    Args:
        run_dir: the run (or its ``model/``) directory.
        out: ``.npy``, ``.csv`` or, for 2-D data, ``.png`` (a scatter plot).
        num: number of samples.
        steps: solver steps (for dopri5: output intervals; its tolerances set the accuracy);
            None: the run's ``sample.steps`` (16 without a run config).
        method: solver method; None: the run's ``sample.method`` (midpoint without one), e.g.
            euler for a distilled one-step run.
        seed: seed of the source draws (and of the noise of sde, ddpm and ddim).
        interpolate: a ``.csv``/``.npy`` data file whose first two rows are interpolated.
        eta: DDIM's eta in [0, 1]; None: the run's ``sample.eta`` (0 without one).
        noise: the SDE's noise scale; None: the run's ``sample.noise`` (1 without one).
        cond: the class of every sample (labelled runs); None: ``num`` samples spread evenly
            over the classes (a labelled run) or unconditional ones.
        guidance: classifier-free guidance scale; None: the run's ``sample.guidance``.
        echo: where the summary line goes.

    Image runs write ``.npy`` (N, C, H, W) or a ``.png`` grid (a row per class).

    Raises:
        DataError: an output suffix that is not supported, or an interpolation file with
            fewer than 2 rows or the wrong number of columns.
        ModelFileError: an unloadable run, or interpolation with a source other than N(0, I).
        SamplerError: a sampler that does not fit the model (see :func:`check_sampler`).
    """
    out = Path(out)
    if out.suffix not in (*TABLE_SUFFIXES, ".png"):
        raise DataError(f"{out}: expected a file ending in .npy, .csv or .png")
    model = load(run_dir)
    shape = point_shape(model)
    image = len(shape) == 3
    if out.suffix == ".png" and shape != (2,) and not image:
        raise DataError(f"{out}: a .png needs 2-D points or images, this model has {shape}")
    if out.suffix == ".csv" and image:
        raise DataError(f"{out}: images are written as .npy (N, C, H, W) or a .png grid")
    run_cfg = Path(run_dir) / "config.yaml"
    defaults = load_config(run_cfg).sample if run_cfg.is_file() else None
    steps = steps if steps is not None else (defaults.steps if defaults else 16)
    method = method if method is not None else (defaults.method if defaults else "midpoint")
    eta = eta if eta is not None else (defaults.eta if defaults else 0.0)
    noise = noise if noise is not None else (defaults.noise if defaults else 1.0)
    if guidance is None and defaults is not None:
        guidance = defaults.guidance
    labels = _labels(model, num, cond, guidance)
    if labels is None:
        guidance = None  # an unlabelled run: the run's default guidance does not apply
    check_sampler(model, method, [steps], eta=eta)
    if interpolate is not None and method in SCORE_METHODS:
        raise SamplerError(f"--interpolate decodes with an ODE solver, got --method {method}")
    standardizer = None
    if model.spec.get("standardizer") is not None:
        standardizer = Standardizer.from_dict(model.spec["standardizer"])
    if interpolate is not None:
        x, what = _interpolants(model, Path(interpolate), standardizer, num, steps, method)
    else:
        g = torch.Generator().manual_seed(seed)
        x0 = draw_source(model.spec.get("source"), num, shape, g)
        res = generate(
            model,
            x0,
            steps=steps,
            method=method,
            eta=eta,
            noise=noise,
            generator=g,
            cond=labels,
            guidance=guidance,
        )
        how = "average velocity" if getattr(model, "two_times", False) else method
        guided = f", guidance {guidance:g}" if guidance is not None else ""
        x, what = res.x, f"samples ({how}, NFE {res.nfe}{guided})"
    if standardizer is not None:
        x = standardizer.inverse(x)
    if out.suffix == ".png":
        from flowmatch import viz

        if image:
            per_row = 10 if labels is None else max(1, num // len(model.spec["class_names"]))
            viz.image_grid(x, out, nrow=min(per_row, num), scale=max(1, 96 // shape[-1]))
        else:
            viz.scatter(x, out, title=what)
    elif image:
        _save_npy(out, x)
    else:
        save_table(out, x, model.spec.get("columns"))
    echo(f"wrote {num} {what} to {out}")
    return out


def point_shape(model: torch.nn.Module) -> tuple[int, ...]:
    """The shape of one data point of a loaded model: (D,) or (C, H, W)."""
    spec = model.spec
    if "shape" in spec:
        return tuple(spec["shape"])
    return (spec["arch"]["dim"],)  # model files written before images existed


def _labels(
    model: torch.nn.Module, num: int, cond: int | None, guidance: float | None
) -> torch.Tensor | None:
    """The class of each of ``num`` samples: ``cond``, or the classes in turn, or None."""
    names = model.spec.get("class_names")
    if names is None:
        if cond is not None or guidance is not None:
            what = "--cond" if cond is not None else "--guidance"
            raise SamplerError(f"{what}: this model was not trained with labels")
        return None
    if cond is not None:
        if not 0 <= cond < len(names):
            raise SamplerError(
                f"--cond: expected a class in [0, {len(names) - 1}] ({', '.join(names)}), "
                f"got {cond}"
            )
        return torch.full((num,), cond, dtype=torch.int64)
    return labels_in_turn(num, len(names))


def _save_npy(path: Path, x: torch.Tensor) -> None:
    import numpy as np

    from flowmatch.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, x.detach().cpu().numpy().astype(np.float32))


def _interpolants(
    model: torch.nn.Module,
    data_file: Path,
    standardizer: Standardizer | None,
    num: int,
    steps: int,
    method: str,
) -> tuple[torch.Tensor, str]:
    """``num`` points between the first two rows of a data file (model units)."""
    from flowmatch.sampling import interpolate

    if model.spec.get("source") is not None:
        raise ModelFileError(
            f"interpolation slerps in N(0, I) noise space; this model's source is "
            f"{model.spec['source']!r}"
        )
    if num < 2:
        raise DataError(f"--num: interpolation needs at least 2 points, got {num}")
    shape = point_shape(model)
    if len(shape) != 1:
        raise DataError(f"--interpolate: takes a table of points; this model makes {shape} images")
    table = load_table(data_file)
    dim = shape[0]
    if table.data.shape[0] < 2 or table.data.shape[1] != dim:
        raise DataError(
            f"{data_file}: expected at least 2 rows of {dim} columns to interpolate between, "
            f"got {table.data.shape[0]} rows of {table.data.shape[1]}"
        )
    ends = table.data[:2].float()
    if standardizer is not None:
        ends = standardizer.transform(ends).float()
    x = interpolate(model, ends[0], ends[1], num=num, steps=steps, method=method)
    return x, f"interpolants between rows 1 and 2 of {data_file.name} ({method} decoding)"


def evaluate_run(
    run_dir: str | Path,
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int = 5,
    num: int = 2000,
    eta: float | None = None,
    noise: float | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[list[EvalRow], EvalRow]:
    """Evaluate a run against its held-out data; write ``eval.txt`` and ``quality_vs_nfe.png``.

    The held-out data is rebuilt from the run's ``config.yaml`` (same seed, same split). For a
    toy set the reference is fresh draws of the true distribution. ``eta`` and ``noise`` (of
    ddim and sde) default to the run's ``sample`` section.

    Returns:
        The rows (one per method and step count) and the noise floor.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ModelFileError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    data = load_run_data(cfg.data, seed=cfg.train.seed, base_dir=run_dir)
    model = load(run_dir)
    eta = eta if eta is not None else cfg.sample.eta
    noise = noise if noise is not None else cfg.sample.noise
    for method in methods:
        check_sampler(model, method, steps, eta=eta)
    if data.name == "digits":
        return _evaluate_digits(run_dir, model, data, cfg, steps, methods, draws, eta, noise, echo)
    reference, num = data.reference(), data.max_eval_points(num)
    seed = cfg.train.seed + 7
    echo(f"evaluating {run_dir} on {data.name}: {draws} draws of {num} points per figure")
    rows = evaluate(
        model,
        reference,
        data.draw_source,
        steps=steps,
        methods=methods,
        num_samples=num,
        draws=draws,
        seed=seed,
        eta=eta,
        noise=noise,
        on_row=lambda r: echo(format_row(r)),
    )
    floor = noise_floor(reference, num_samples=num, draws=draws, seed=seed)
    straight = model_straightness(model, data.draw_source, seed=cfg.train.seed + 13)
    echo(write_report(run_dir, rows, floor, title=f"{data.name}: W2 vs NFE", straightness=straight))
    echo(f"wrote {run_dir / 'eval.txt'} and {run_dir / 'quality_vs_nfe.png'}")
    return rows, floor


def _evaluate_digits(
    run_dir: Path,
    model: torch.nn.Module,
    data: Any,
    cfg: Any,
    steps: Sequence[int],
    methods: Sequence[str],
    draws: int,
    eta: float,
    noise: float,
    echo: Callable[[str], None],
) -> tuple[list[Any], Any]:
    """FD/KID/accuracy of a digits run per sampler (see :mod:`flowmatch.train.image_eval`)."""
    from flowmatch.train.image_eval import digits_report

    guidance = cfg.sample.guidance
    echo(
        f"evaluating {run_dir} on digits: {draws} draws of {data.train.shape[0]} images per "
        f"figure against the {data.holdout.shape[0]} test images, guidance {guidance}"
    )
    rows, floor = digits_report(
        model,
        run_dir,
        train=data.train,
        train_labels=data.labels,
        test=data.holdout,
        steps=steps,
        methods=methods,
        draws=draws,
        seed=cfg.train.seed + 7,
        guidance=guidance,
        eta=eta,
        noise=noise,
        echo=echo,
    )
    echo(f"wrote {run_dir / 'eval.txt'} and {run_dir / 'quality_vs_nfe.png'}")
    return rows, floor


PAIRS_FILE = "pairs.safetensors"


def reflow_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    num: int = 50_000,
    train_steps: int | None = None,
    distill: bool = False,
    seed: int = 0,
    overrides: Sequence[str] = (),
    resume: bool = False,
    progress: bool = True,
    final_eval: bool = True,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Reflow a trained run: generate (noise, sample) pairs, then train on them, warm-started.

    The pairs are ``num`` source draws integrated by the run's EMA model with dopri5
    (tolerance 1e-5) and written to ``OUT/pairs.safetensors``. The new run's config is the old
    one with ``data.pairs`` set to that file, ``model.init`` to ``run_dir`` and the coupling
    independent; ``distill`` trains the one-step map instead (``time: constant 0``, sampled
    with one Euler step). A labelled run (digits, image folders) integrates each point with a
    label, the classes in turn, at the run's ``sample.guidance``, and the pairs keep the
    labels. Its ``config.yaml`` records all of it, so ``flowmatch train --resume --out OUT``
    (or ``resume=True`` here) continues it.

    Args:
        run_dir: the trained k-rectified run.
        out: the new run directory (must not hold a run unless ``resume``).
        num: number of pairs.
        train_steps: training steps of the new run (default: the old run's).
        distill: train a one-step model instead of the (k+1)-rectified flow.
        seed: seed of the source draws of the pairs.
        overrides: ``key=value`` config overrides of the new run.
        resume: continue an interrupted reflow run in ``out``.
        progress: show progress bars.
        final_eval: evaluate the new run at the end (table, plots).
        echo: where messages go.

    Raises:
        ModelFileError: ``run_dir`` is not a loadable run.
        RunExistsError: ``out`` already holds a run (and not ``resume``) or other files.
        ConfigError: a bad override.
    """
    from flowmatch.rectify import reflow_pairs, save_pairs
    from flowmatch.train.config import apply_overrides, config_from_dict, config_to_dict
    from flowmatch.train.trainer import RunExistsError, Trainer

    run_dir, out = Path(run_dir), Path(out)
    if resume:
        if not (out / "config.yaml").is_file():
            raise RunExistsError(f"{out}: no run to resume (no config.yaml)")
        cfg = load_config(out / "config.yaml", overrides)
        trainer = Trainer(
            cfg, out, resume=True, progress=progress, final_eval=final_eval, echo=echo
        )
        return trainer.run()
    if not (run_dir / "config.yaml").is_file():
        raise ModelFileError(f"{run_dir}: not a run directory (no config.yaml)")
    if (out / "config.yaml").exists():
        raise RunExistsError(
            f"{out}: already holds a run; pass --resume to continue it or choose another --out"
        )
    if out.is_dir() and any(p.name != PAIRS_FILE for p in out.iterdir()):
        raise RunExistsError(f"{out}: exists and is not empty; choose another --out")
    base = load_config(run_dir / "config.yaml")
    model = load(run_dir)
    raw = config_to_dict(base)
    raw["data"]["pairs"] = str((out / PAIRS_FILE).resolve())
    raw["model"]["init"] = str(run_dir.resolve())
    raw["coupling"] = {"name": "independent"}
    if train_steps is not None:
        raw["train"]["steps"] = train_steps
    if distill:
        raw["time"] = {"sampler": "constant", "value": 0.0}
        raw["sample"] = {"steps": 1, "method": "euler"}
        raw["eval"]["steps"], raw["eval"]["methods"] = [1, 2, 4], ["euler"]
    cfg = apply_overrides(config_from_dict(raw), overrides)  # validated before any write

    x0 = draw_source(
        model.spec.get("source"), num, point_shape(model), torch.Generator().manual_seed(seed)
    )
    labels = _labels(model, num, None, None)  # a labelled run: the classes in turn
    guidance = base.sample.guidance if labels is not None else None
    echo(f"reflow: integrating {num} source points with {run_dir} (dopri5, tol 1e-5)")
    start = time.perf_counter()
    with _bar(progress) as bar:
        task = bar.add_task("pairs", total=num)
        pairs, nfe = reflow_pairs(
            model,
            x0,
            cond=labels,
            guidance=guidance,
            on_batch=lambda n: bar.update(task, completed=n),
        )
    out.mkdir(parents=True, exist_ok=True)
    meta = {"source_run": str(run_dir.resolve()), "nfe": str(nfe), "seed": str(seed)}
    save_pairs(out / PAIRS_FILE, pairs, meta)
    echo(
        f"wrote {num} pairs to {out / PAIRS_FILE} in {time.perf_counter() - start:.1f} s "
        f"(dopri5: {nfe} batched velocity evaluations in all)"
    )
    what = "one-step distillation" if distill else "reflow"
    echo(f"training the {what} run in {out}")
    return Trainer(cfg, out, progress=progress, final_eval=final_eval, echo=echo).run()


def _bar(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        disable=not enabled,
    )


def source_log_prob(source: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The log-density of a run's source: N(0, I) (None), ``8gaussians`` or ``checkerboard``.

    Raises:
        ModelFileError: a toy source without a closed-form density (moons, circles, ...).
    """
    from flowmatch.data.toy2d import checkerboard_log_prob, eight_gaussians_params
    from flowmatch.likelihood import standard_normal_log_prob
    from flowmatch.oracle import GaussianMixture

    if source is None:
        return standard_normal_log_prob
    if source == "checkerboard":
        return checkerboard_log_prob
    if source == "8gaussians":
        means, std, weights = eight_gaussians_params(dtype=torch.float64)
        mixture = GaussianMixture(means, std, weights)
        return lambda x: mixture.log_prob(x.double()).to(x.dtype)
    raise ModelFileError(
        f"the model's source {source!r} has no closed-form log-density; likelihoods need a "
        "source with one (N(0, I), 8gaussians or checkerboard)"
    )


def likelihood_run(
    run_dir: str | Path,
    data_file: str | Path,
    *,
    method: str = "exact",
    num_probes: int = 4,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    batch_size: int = 1000,
    seed: int = 0,
    error_norm: str = "batch",
    out: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, float]:
    """Mean negative log-likelihood of the points of a data file under a trained run.

    Points are in the data's own units: for a table run they are standardized with the run's
    stored statistics and the log-density is corrected by the standardization's Jacobian.
    Bits per dimension here are nats / (D ln 2) (no dequantization: continuous data).

    Args:
        run_dir: the run (or its ``model/``) directory.
        data_file: a ``.csv`` or ``.npy`` file of points, one per row.
        method: ``exact`` or ``hutchinson`` divergence.
        num_probes: Hutchinson probes per point.
        atol, rtol: dopri5 tolerances.
        batch_size: points per solve.
        seed: seed of the Hutchinson probes.
        error_norm: dopri5's error measure, ``batch`` or ``per_sample`` (see
            :func:`~flowmatch.solvers.solve_ode`).
        out: optional ``.csv``/``.npy`` file of per-point ``log_prob`` and ``std_err``, written
            atomically once every point is done.
        progress: show a progress bar.
        echo: where the summary goes.

    Returns:
        ``nll`` (nats), ``nll_se`` (its standard error over the points, probe noise included),
        ``bits_per_dim``, ``bits_per_dim_se``, ``num`` and ``nfe`` (mean per batch).

    Raises:
        DataError: an unreadable data file, the wrong number of columns, or a bad ``out``.
        ModelFileError: an unloadable run, or a source without a log-density.
    """
    from flowmatch.likelihood import log_likelihood

    data_file = Path(data_file)
    if out is not None and Path(out).suffix not in TABLE_SUFFIXES:
        raise DataError(f"{out}: expected a file name ending in .csv or .npy")
    model = load(run_dir)
    shape = point_shape(model)
    if len(shape) != 1:
        raise DataError(
            f"{data_file}: flowmatch likelihood scores tables of points; this model makes "
            f"{shape} images (use fm.log_likelihood with method='hutchinson')"
        )
    dim = shape[0]
    table = load_table(data_file)
    if table.data.shape[1] != dim:
        raise DataError(
            f"{data_file}: expected {dim} columns (the model's data dimension), "
            f"got {table.data.shape[1]}"
        )
    x = table.data.float()
    log_jacobian = 0.0
    if model.spec.get("standardizer") is not None:
        standardizer = Standardizer.from_dict(model.spec["standardizer"])
        x = standardizer.transform(x).float()
        log_jacobian = -float(standardizer.std.double().log().sum())
    log_p0 = source_log_prob(model.spec.get("source"))
    generator = torch.Generator().manual_seed(seed)
    log_probs, std_errs, nfes = [], [], []
    with _bar(progress) as bar:
        task = bar.add_task("likelihood", total=x.shape[0])
        for start in range(0, x.shape[0], batch_size):
            res = log_likelihood(
                model,
                x[start : start + batch_size],
                method=method,
                num_probes=num_probes,
                atol=atol,
                rtol=rtol,
                source_log_prob=log_p0,
                generator=generator,
                return_result=True,
                error_norm=error_norm,
            )
            log_probs.append(res.log_prob + log_jacobian)
            std_errs.append(res.std_err)
            nfes.append(res.nfe)
            bar.update(task, completed=min(x.shape[0], start + batch_size))
    log_prob, std_err = torch.cat(log_probs).double(), torch.cat(std_errs).double()
    n = log_prob.shape[0]
    # The spread of the per-point values already holds the probes' noise (Hutchinson), so the
    # standard error of the mean over points covers both.
    nll = -float(log_prob.mean())
    nll_se = (float(log_prob.var()) / n) ** 0.5 if n > 1 else float("nan")
    summary = {
        "nll": nll,
        "nll_se": nll_se,
        "bits_per_dim": nll / (dim * math.log(2)),
        "bits_per_dim_se": nll_se / (dim * math.log(2)),
        "num": float(n),
        "nfe": sum(nfes) / len(nfes),
    }
    how = "exact divergence" if method == "exact" else f"Hutchinson, {num_probes} probes"
    echo(
        f"NLL {nll:.4f} +- {nll_se:.4f} nats ({summary['bits_per_dim']:.4f} +- "
        f"{summary['bits_per_dim_se']:.4f} bits/dim) over {n} points of {data_file.name} "
        f"({how}, dopri5 tol {atol:g}/{rtol:g}, NFE {summary['nfe']:.0f} per batch)"
    )
    if out is not None:
        save_table(out, torch.stack([log_prob, std_err], 1).float(), ["log_prob", "std_err"])
        echo(f"wrote per-point log_prob and std_err to {out}")
    return summary
