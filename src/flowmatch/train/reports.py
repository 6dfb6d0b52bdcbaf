"""The evaluation and plots of a run: what the trainer writes at the end (and every
``eval_every`` steps) and what ``flowmatch eval`` writes, from the same code.

Points (toy sets, tables, image sets other than digits and Fashion-MNIST) are scored by
W2/MMD against the held-out data with the noise floor and the flow's straightness; digits and
Fashion-MNIST by FD/KID/class accuracy in a shipped classifier's features (not Inception FID)
with the train/test floor at the generated sets' size. The draws come
from the run's named seed streams (:mod:`flowmatch.evaluation.seeds`), so the trainer's
``eval.txt`` and ``flowmatch eval`` with the same settings give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowmatch.discrete.model import DiscreteFlowModel
from flowmatch.evaluation import seeds
from flowmatch.evaluation.images import ClassifierMetric, DigitsMetric, FashionMetric
from flowmatch.evaluation.loop import evaluate_model
from flowmatch.evaluation.points import PointMetric
from flowmatch.evaluation.reports import append_csv, run_report
from flowmatch.flow import FlowModel
from flowmatch.sampling import generate, labels_in_turn
from flowmatch.train.data import RunData

__all__ = [
    "eval_points",
    "final_report",
    "metric_of",
    "periodic_report",
    "plots",
    "text_reports",
    "time_one_draw",
]


def metric_of(data: RunData) -> PointMetric | ClassifierMetric:
    """The metric a run's samples are scored with."""
    if data.name == "digits":
        return DigitsMetric(data.holdout, data.labels, data.train)
    if data.name == "fashion":
        k = data.num_classes
        return FashionMetric(data.holdout, data.train, data.labels, num_classes=k or 10)
    if data.is_manifold:
        from flowmatch.evaluation.manifolds import ManifoldMetric

        return ManifoldMetric(data.holdout, data.manifold)
    return PointMetric(data.reference())


def _generated(
    data: RunData, metric: PointMetric | ClassifierMetric, num: int, guidance: float | None
) -> dict[str, Any]:
    """What an evaluation generates: points, as many as the held-out data allows (at most
    ``num``); digits, one image per training digit with its label; Fashion-MNIST, ``num``
    images (at most 10,000), the classes in equal shares (images at ``guidance``)."""
    if isinstance(metric, ClassifierMetric):
        n, cond = metric.plan(num)
        return {"num": n, "cond": cond, "guidance": guidance}
    return {"num": data.max_eval_points(num)}


def time_one_draw(
    flow: FlowModel,
    data: RunData,
    num: int,
    *,
    steps: Sequence[int],
    methods: Sequence[str],
    eta: float = 0.0,
    noise: float = 1.0,
) -> float:
    """Seconds one evaluation draw of ``num`` points over the whole sampler grid takes
    (points data: sampling and the metric), measured, for :func:`fit_evaluation`."""
    import time

    metric = metric_of(data)
    start = time.perf_counter()
    evaluate_model(
        flow, metric, flow.draw_source, steps=steps, methods=methods, num=num, draws=1,
        seed=0, eta=eta, noise=noise,
    )  # fmt: skip
    return time.perf_counter() - start


def eval_points(data: RunData, num: int) -> int:
    """Points per set of an evaluation asking for ``num`` (what :func:`final_report` and
    :func:`periodic_report` generate; recorded with the rows in ``eval.csv``)."""
    if data.is_manifold:
        return data.max_eval_points(num)
    return int(_generated(data, metric_of(data), num, None)["num"])


def final_report(
    flow: FlowModel,
    data: RunData,
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
    """Every row, the floor, ``eval.txt`` and ``quality_vs_nfe.png`` of a run (a manifold
    run's also hold its held-out NLL: :func:`~flowmatch.evaluation.manifolds.manifold_report`).

    Args:
        flow: the run's (EMA) model.
        data: the run's data.
        directory: the run directory.
        seed: the run's ``train.seed``.
        steps, methods: the sampler grid.
        num: points per set (capped by the held-out data); digits always generate as many
            images as the training split, with its labels; Fashion-MNIST ``num`` images (at
            most 10,000, classes in equal shares), and its floor scores as many training
            images.
        draws: independent draws per figure.
        eta, noise: of ddim and sde.
        guidance: classifier-free guidance scale of labelled runs.
        note: a line of ``eval.txt`` after the sizes (why they were scaled down).
        echo: where progress lines and the table go.

    Returns:
        The rows and the floor.
    """
    if data.is_manifold:
        from flowmatch.evaluation.manifolds import manifold_report

        mflow: Any = flow  # a ManifoldFlowModel for manifold data
        return manifold_report(
            mflow, data, directory, seed=seed, steps=steps, methods=methods, num=num,
            draws=draws, echo=echo,
        )  # fmt: skip
    metric = metric_of(data)
    if isinstance(metric, ClassifierMetric):
        g = "none" if guidance is None else guidance
        what: dict[str, Any] = {"title": f"{data.name}: FD vs NFE (guidance {g})"}
    else:
        what = {
            "title": f"{data.name}: W2 vs NFE",
            "straightness": not data.is_image,  # 64 midpoint steps of images: too slow on a CPU
        }
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
        **_generated(data, metric, num, guidance),
        **what,
    )


def periodic_report(
    flow: FlowModel,
    data: RunData,
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
    """A quick evaluation during training, appended to ``eval.csv``: one draw of at most 1000
    points per sampler (digits and Fashion-MNIST: the last sampler and step count, on the
    training labels for digits)."""
    metric = metric_of(data)
    grid = (steps[-1:], methods[-1:]) if isinstance(metric, ClassifierMetric) else (steps, methods)
    rows = evaluate_model(
        flow,
        metric,
        flow.draw_source,
        draws=1,
        seed=seeds.stream_seed(seed, "eval"),
        eta=eta,
        noise=noise,
        steps=grid[0],
        methods=grid[1],
        **_generated(data, metric, min(num, 1000), guidance),
    )
    points = eval_points(data, min(num, 1000))
    append_csv(Path(directory) / "eval.csv", step, rows, points=points, draws=1)
    return rows


def plots(
    flow: FlowModel,
    data: RunData,
    directory: str | Path,
    *,
    seed: int,
    steps: int,
    method: str,
    eta: float = 0.0,
    noise: float = 1.0,
    guidance: float | None = None,
    num: int = 5000,
) -> None:
    """The run's pictures at its sampler: ``samples.png`` and ``trajectories.png`` for 2-D
    points; maps of points on a manifold (:func:`~flowmatch.evaluation.manifolds.manifold_plots`);
    for images ``samples.png`` (a row per class, or a square grid) and ``path.png``
    (one sample's states from noise, t=0, to image, t=1)."""
    from flowmatch import viz

    if data.is_manifold:
        from flowmatch.evaluation.manifolds import manifold_plots

        mflow: Any = flow  # a ManifoldFlowModel for manifold data
        manifold_plots(mflow, data, directory, seed=seed, steps=steps, method=method)
        return
    directory = Path(directory)
    image = data.is_image
    if data.is_text or (not image and data.dim != 2):
        return
    k = data.num_classes
    cond = labels_in_turn(10 * k, k) if image and k is not None else None
    n = (10 * k if k is not None else 100) if image else min(num, 5000)
    device = next(flow.parameters()).device
    g = seeds.generator(seed, "plots")
    x0 = flow.draw_source(n, g).to(device)
    res = generate(
        flow,
        x0,
        steps=steps,
        method=method,
        eta=eta,
        noise=noise,
        cond=cond.to(device) if cond is not None else None,
        guidance=guidance if cond is not None else None,
        generator=g,
        return_trajectory=True,
    )
    assert res.trajectory is not None  # return_trajectory=True
    if image:
        scale = max(1, 96 // data.shape[-1])
        viz.image_grid(res.x.cpu(), directory / "samples.png", nrow=10, scale=scale)
        viz.trajectory_strip(
            res.trajectory[:, 0].cpu(), directory / "path.png", num_frames=9, scale=scale
        )
        return
    viz.scatter(
        res.x.cpu(),
        directory / "samples.png",
        reference=data.holdout[:n],
        names=("samples", "data"),
        title=f"{data.name}: {method}, NFE {res.nfe}",
    )
    viz.trajectories(
        res.trajectory.cpu(), directory / "trajectories.png", title="noise (t=0) to samples (t=1)"
    )


def text_reports(
    model: DiscreteFlowModel,
    data: RunData,
    directory: str | Path,
    *,
    seed: int,
    steps: Sequence[int],
    sample_steps: int,
    num: int,
    draws: int,
    temperature: float = 1.0,
    corrector: float = 0.0,
    echo: Callable[[str], None] = print,
) -> tuple[list[Any], Any]:
    """A text run's final report: ``eval.txt``, ``quality_vs_nfe.png`` (see
    :func:`~flowmatch.evaluation.text.text_report`) and ``samples.txt``: ``num`` samples
    (at most 1000) at ``sample_steps`` steps, one per line."""
    from flowmatch.discrete.sampler import sample
    from flowmatch.evaluation.text import text_report, write_samples

    rows, elbo = text_report(
        model,
        data.text,
        directory,
        seed=seed,
        steps=steps,
        num=num,
        draws=draws,
        temperature=temperature,
        corrector=corrector,
        echo=echo,
    )
    g = seeds.generator(seed, "plots")
    x = sample(
        model,
        min(num, 1000),
        steps=sample_steps,
        temperature=temperature,
        corrector=corrector,
        generator=g,
    )
    write_samples(data.text.vocab.decode_batch(x.cpu()), Path(directory) / "samples.txt")
    return rows, elbo
