"""``flowmatch sample``: draw samples (or interpolants) from a trained run and write them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from flowmatch.app.guards import check_finite, check_num
from flowmatch.app.manifold import sample_manifold
from flowmatch.app.text import TextOptions, sample_text
from flowmatch.data.tabular import TABLE_SUFFIXES, load_table, save_table
from flowmatch.discrete.mixed_model import MixedFlowModel
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.errors import DataError, ModelFileError, SamplerError
from flowmatch.flow import FlowModel, as_flow
from flowmatch.manifolds import ManifoldFlowModel
from flowmatch.models.files import load
from flowmatch.sampling import SCORE_METHODS, generate, labels_in_turn
from flowmatch.train.config import SampleConfig, load_config

__all__ = ["check_sampler", "point_shape", "run_defaults", "sample_labels", "sample_run"]


def check_sampler(
    model: torch.nn.Module, method: str, steps: Sequence[int], *, eta: float = 0.0
) -> None:
    """Check, before any work, that ``method`` can sample ``model`` at each step count (the
    model's own rules, :meth:`FlowModel.check_sampler`), naming the flag to change.

    Raises:
        SamplerError: ``--method``, ``--steps`` or ``--eta`` and what is wrong with it.
    """
    try:
        flow = model if isinstance(model, ManifoldFlowModel) else as_flow(model)
        flow.check_sampler(method, steps, eta=eta)
    except SamplerError as err:
        raise SamplerError(f"--{err.option or 'method'}: {err}", option=err.option) from None


def point_shape(model: FlowModel) -> tuple[int, ...]:
    """The shape of one data point of a loaded model: (D,) or (C, H, W)."""
    if model.shape is None:
        raise ModelFileError("the model file does not record the shape of its data points")
    return model.shape


def run_defaults(run_dir: str | Path) -> SampleConfig:
    """The ``sample`` section of a run's ``config.yaml`` (the defaults without one)."""
    run_cfg = Path(run_dir) / "config.yaml"
    return load_config(run_cfg).sample if run_cfg.is_file() else SampleConfig()


def sample_labels(
    model: FlowModel, num: int, cond: int | None, guidance: float | None
) -> torch.Tensor | None:
    """The class of each of ``num`` samples: ``cond``, or the classes in turn, or None."""
    k = model.num_classes
    if k is None:
        if cond is not None:
            raise SamplerError("--cond: this model was not trained with labels", option="cond")
        try:
            model.check_guidance(guidance)  # the model's rule: guidance needs labels
        except SamplerError as err:
            raise SamplerError(f"--guidance: {err}", option="guidance") from None
        return None
    if cond is not None:
        if not 0 <= cond < k:
            names = model.info.get("class_names") or [str(i) for i in range(k)]
            raise SamplerError(
                f"--cond: expected a class in [0, {k - 1}] ({', '.join(names)}), got {cond}"
            )
        return torch.full((num,), cond, dtype=torch.int64)
    return labels_in_turn(num, k)


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
    text: TextOptions | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Sample a trained run (EMA weights) from its source and write the points atomically.

    Table data is mapped back to its original units with the run's stored standardization.
    With ``interpolate``, the output is instead ``num`` points on the path between the first
    two rows of that data file through noise space (:func:`~flowmatch.sampling.interpolate`:
    encode, slerp, decode; the run's source must be N(0, I)).

    Args:
        run_dir: the run (or its ``model/``) directory.
        out: ``.npy``, ``.csv`` or, for 2-D data, ``.png`` (a scatter plot); image runs write
            ``.npy`` (N, C, H, W) or a ``.png`` grid (a row per class).
        num: number of samples.
        steps: solver steps (for dopri5: output intervals; its tolerances set the accuracy);
            None: the run's ``sample.steps`` (16 without a run config).
        method: sampler; None: the run's ``sample.method`` (midpoint without one), e.g.
            euler for a distilled one-step run.
        seed: seed of the source draws (and of the noise of sde, ddpm and ddim).
        interpolate: a ``.csv``/``.npy`` data file whose first two rows are interpolated.
        eta: DDIM's eta in [0, 1]; None: the run's ``sample.eta`` (0 without one).
        noise: the SDE's noise scale; None: the run's ``sample.noise`` (1 without one).
        cond: the class of every sample (labelled runs); None: ``num`` samples spread evenly
            over the classes (a labelled run) or unconditional ones.
        guidance: classifier-free guidance scale; None: the run's ``sample.guidance``.
        text: a text run's options (prefix, infill, temperature, corrector); its samples
            are written one per line to a ``.txt`` file (:mod:`flowmatch.app.text`).
        echo: where the summary line goes.

    Raises:
        DataError: an output suffix that is not supported, or an interpolation file with
            fewer than 2 rows or the wrong number of columns.
        ModelFileError: an unloadable run.
        SamplerError: a sampler, label or guidance that does not fit the model.
        UsageError: ``num`` samples too many for memory (refused before any allocation).
        NumericalError: samples holding NaN/Inf (nothing is written; exit code 3).
    """
    out = Path(out)
    text = text if text is not None else TextOptions()
    model = load(run_dir)
    check_num(model, num)
    if isinstance(model, DiscreteFlowModel):
        if interpolate is not None or method is not None:
            flag = "--interpolate" if interpolate is not None else "--method"
            raise SamplerError(f"{flag}: a text model has one sampler and no interpolation")
        defaults = run_defaults(run_dir)
        n = steps if steps is not None else defaults.steps
        g = guidance if guidance is not None else defaults.guidance
        return sample_text(
            model,
            out,
            num=num,
            steps=n,
            seed=seed,
            options=text,
            defaults=defaults,
            cond=cond,
            guidance=g,
            echo=echo,
        )
    if text.given:
        raise SamplerError("--prefix, --infill, --temperature and --corrector are for text runs")
    if isinstance(model, ManifoldFlowModel):
        if interpolate is not None or cond is not None or guidance is not None:
            raise SamplerError("--interpolate, --cond and --guidance are not for manifold runs")
        defaults = run_defaults(run_dir)
        return sample_manifold(
            model,
            out,
            num=num,
            steps=steps if steps is not None else defaults.steps,
            method=method if method is not None else defaults.method,
            seed=seed,
            echo=echo,
        )
    if isinstance(model, MixedFlowModel):
        return _sample_mixed(
            model,
            out,
            run_dir,
            num=num,
            steps=steps,
            method=method,
            interpolate=interpolate,
            seed=seed,
            echo=echo,
        )
    if out.suffix not in (*TABLE_SUFFIXES, ".png"):
        raise DataError(f"{out}: expected a file ending in .npy, .csv or .png")
    shape = point_shape(model)
    image = len(shape) == 3
    if out.suffix == ".png" and shape != (2,) and not image:
        raise DataError(f"{out}: a .png needs 2-D points or images, this model has {shape}")
    if out.suffix == ".csv" and image:
        raise DataError(f"{out}: images are written as .npy (N, C, H, W) or a .png grid")
    defaults = run_defaults(run_dir)
    steps = steps if steps is not None else defaults.steps
    method = method if method is not None else defaults.method
    eta = eta if eta is not None else defaults.eta
    noise = noise if noise is not None else defaults.noise
    if guidance is None:
        guidance = defaults.guidance
    labels = sample_labels(model, num, cond, guidance)
    if labels is None:
        guidance = None  # an unlabelled run: the run's default guidance does not apply
    check_sampler(model, method, [steps], eta=eta)
    if interpolate is not None and method in SCORE_METHODS:
        raise SamplerError(f"--interpolate decodes with an ODE solver, got --method {method}")
    if interpolate is not None:
        x, what = _interpolants(model, Path(interpolate), num, steps, method)
    else:
        gen = torch.Generator().manual_seed(seed)
        res = generate(
            model,
            model.draw_source(num, gen),
            steps=steps,
            method=method,
            eta=eta,
            noise=noise,
            generator=gen,
            cond=labels,
            guidance=guidance,
        )
        how = "average velocity" if model.sampler_name(method) == "average" else method
        guided = f", guidance {guidance:g}" if guidance is not None else ""
        x, what = res.x, f"samples ({how}, NFE {res.nfe}{guided})"
    x = model.decode(x)
    check_finite(x.float())  # as written: float32 (a float64 value past 3.4e38 is Inf there)
    _write(model, x, out, image=image, per_class=labels is not None, what=what)
    echo(f"wrote {num} {what} to {out}")
    return out


def _write(
    model: FlowModel, x: torch.Tensor, out: Path, *, image: bool, per_class: bool, what: str
) -> None:
    if out.suffix == ".png":
        from flowmatch import viz

        if image:
            num = x.shape[0]
            per_row = max(1, num // model.num_classes) if per_class and model.num_classes else 10
            viz.image_grid(x, out, nrow=min(per_row, num), scale=max(1, 96 // x.shape[-1]))
        else:
            viz.scatter(x, out, title=what)
    elif image:
        import numpy as np

        from flowmatch.atomic import atomic_path

        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, x.detach().cpu().numpy().astype(np.float32))
    else:
        save_table(out, x, model.info.get("columns"))


def _interpolants(
    model: FlowModel, data_file: Path, num: int, steps: int, method: str
) -> tuple[torch.Tensor, str]:
    """``num`` points between the first two rows of a data file (model units)."""
    from flowmatch.sampling import interpolate

    if model.source is not None:
        raise SamplerError(
            f"--interpolate: interpolation slerps in N(0, I) noise space; this model's source "
            f"is {model.source!r}"
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
    ends = model.encode_data(table.data[:2].float()).float()
    x = interpolate(model, ends[0], ends[1], num=num, steps=steps, method=method)
    return x, f"interpolants between rows 1 and 2 of {data_file.name} ({method} decoding)"


def _sample_mixed(
    model: MixedFlowModel,
    out: Path,
    run_dir: str | Path,
    *,
    num: int,
    steps: int | None,
    method: str | None,
    interpolate: str | Path | None,
    seed: int,
    echo: Callable[[str], None],
) -> Path:
    """A table with categorical columns: ``num`` rows in the data's units and category
    strings, written to a ``.csv`` (one sampler: Euler steps with category jumps)."""
    from flowmatch.data.mixed import save_mixed_table
    from flowmatch.discrete.mixed_sampling import sample_mixed

    if out.suffix != ".csv":
        raise DataError(f"{out}: a table with categorical columns is written to a .csv file")
    if method is not None or interpolate is not None:
        flag = "--method" if method is not None else "--interpolate"
        raise SamplerError(f"{flag}: a table with categorical columns has one sampler")
    n = steps if steps is not None else run_defaults(run_dir).steps
    x = sample_mixed(model, num, steps=n, generator=torch.Generator().manual_seed(seed))
    check_finite(x[:, : model.num_continuous].float(), items="rows")
    dc = model.num_continuous
    save_mixed_table(out, x[:, :dc], x[:, dc:], **model.layout)
    echo(f"wrote {num} rows (NFE {n}) to {out}")
    return out
