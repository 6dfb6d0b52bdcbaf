"""``flowmatch likelihood``: the negative log-likelihood of data under a trained run."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flowmatch.app.guards import check_finite
from flowmatch.app.sample import point_shape
from flowmatch.data.tabular import TABLE_SUFFIXES, load_table, save_table
from flowmatch.discrete.mixed_model import MixedFlowModel
from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.errors import DataError, ModelFileError, NumericalError
from flowmatch.manifolds import ManifoldFlowModel
from flowmatch.models.files import load
from flowmatch.sources import source_log_prob as _source_log_prob
from flowmatch.train.logging import count_bar

__all__ = ["likelihood_run", "source_log_prob"]


def source_log_prob(source: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The log-density of a run's source (see :func:`flowmatch.sources.source_log_prob`).

    Raises:
        ModelFileError: a toy source without a closed-form density (moons, circles, ...).
    """
    try:
        return _source_log_prob(source)
    except ValueError as err:
        raise ModelFileError(str(err)) from None


def _table_points(model: Any, data_file: Path) -> tuple[torch.Tensor, int, float]:
    """A table's points in model units, the data dimension and the log-Jacobian of the
    standardization (added to the model's log-density to give the data's)."""
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
    x = model.encode_data(table.data.float()).float()
    log_jacobian = 0.0
    if model.transform is not None:
        log_jacobian = -float(model.transform.std.double().log().sum())
    return x, dim, log_jacobian


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
    Bits per dimension here are nats / (D ln 2) (no dequantization: continuous data). A
    text run scores each line of a text file by its ELBO instead
    (:func:`flowmatch.app.text.likelihood_text`).

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
        NumericalError: a point whose log-density is NaN/Inf (nothing is written; exit 3).
    """
    from flowmatch.likelihood import LikelihoodResult, log_likelihood

    data_file = Path(data_file)
    model = load(run_dir)
    if isinstance(model, MixedFlowModel):
        raise ModelFileError(
            f"{run_dir}: a table with categorical columns has no likelihood here (its "
            "continuous and discrete parts have no joint density estimate yet)"
        )
    if isinstance(model, DiscreteFlowModel):
        from flowmatch.app.text import likelihood_text

        return likelihood_text(
            model,
            data_file,
            batch_size=batch_size,
            seed=seed,
            out=Path(out) if out is not None else None,
            echo=echo,
        )
    if out is not None and Path(out).suffix not in TABLE_SUFFIXES:
        raise DataError(f"{out}: expected a file name ending in .csv or .npy")
    if isinstance(model, ManifoldFlowModel):
        from flowmatch.app.manifold import read_points

        x, dim, log_jacobian, log_p0 = read_points(model, data_file), model.manifold.dim, 0.0, None
        what = f"nats w.r.t. the volume of {model.manifold!r}"
    else:
        x, dim, log_jacobian = _table_points(model, data_file)
        log_p0, what = source_log_prob(model.source), "nats"
    generator = torch.Generator().manual_seed(seed)
    log_probs, std_errs, nfes = [], [], []
    with count_bar(progress) as bar:
        task = bar.add_task("likelihood", total=x.shape[0])
        for start in range(0, x.shape[0], batch_size):
            try:
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
            except (AssertionError, NumericalError) as err:  # dopri5 on a NaN/Inf velocity
                stop = min(x.shape[0], start + batch_size)
                raise NumericalError(
                    f"likelihood: the ODE solver failed on points {start + 1} to {stop} "
                    f"({' '.join(str(err).split())}); the model's velocity is not finite there, "
                    "nothing was written"
                ) from None
            assert isinstance(res, LikelihoodResult)  # return_result=True
            log_probs.append(res.log_prob + log_jacobian)
            std_errs.append(res.std_err)
            nfes.append(res.nfe)
            bar.update(task, completed=min(x.shape[0], start + batch_size))
    log_prob, std_err = torch.cat(log_probs).double(), torch.cat(std_errs).double()
    check_finite(log_prob.float(), what="likelihood", items="points' log-densities")
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
        f"NLL {nll:.4f} +- {nll_se:.4f} {what} ({summary['bits_per_dim']:.4f} +- "
        f"{summary['bits_per_dim_se']:.4f} bits/dim) over {n} points of {data_file.name} "
        f"({how}, dopri5 tol {atol:g}/{rtol:g}, NFE {summary['nfe']:.0f} per batch)"
    )
    if out is not None:
        save_table(out, torch.stack([log_prob, std_err], 1).float(), ["log_prob", "std_err"])
        echo(f"wrote per-point log_prob and std_err to {out}")
    return summary
