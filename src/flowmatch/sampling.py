"""Sampling from a trained model: ``sample``, ``generate``, ``encode`` and ``interpolate``.

Every function takes a :class:`~flowmatch.flow.FlowModel` (or a plain ``nn.Module``, which
means a velocity net on the linear path; see :func:`~flowmatch.flow.as_flow`), turns it into
the field its sampler integrates (:meth:`FlowModel.velocity_field`, the one model-to-velocity
adapter) and runs a sampler of the registry :data:`flowmatch.solvers.SAMPLERS`. t=0 is the
source (noise), t=1 the data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

import flowmatch.meanflow  # noqa: F401  (registers the average-velocity sampler)
from flowmatch.diffusion import DIFFUSION_METHODS
from flowmatch.flow import FlowModel, as_flow
from flowmatch.interpolation import interpolate, slerp
from flowmatch.manifolds.model import ManifoldFlowModel
from flowmatch.paths import AffinePath, BrownianBridgePath
from flowmatch.sde import NoiseScale
from flowmatch.solvers import METHODS, ODESolution, get_sampler, run_sampler, solve_ode

__all__ = [
    "SAMPLE_METHODS",
    "SCORE_METHODS",
    "encode",
    "generate",
    "guided_prediction",
    "interpolate",
    "labels_in_turn",
    "model_velocity",
    "sample",
    "sample_sde",
    "slerp",
]

SCORE_METHODS: tuple[str, ...] = ("sde", *DIFFUSION_METHODS)
"""The samplers that need the score (or noise prediction) of a Gaussian path and N(0, I) source:
the SDE, DDPM and DDIM (the others integrate the flow's ODE); those of the registry marked
``needs_score``."""

SAMPLE_METHODS: tuple[str, ...] = (*METHODS, *SCORE_METHODS)
"""The samplers of :func:`generate` for one-time models: the ODE solvers, the SDE
(Euler-Maruyama), DDPM, DDIM. Two-time (MeanFlow) models take average-velocity jumps."""

Model = FlowModel | nn.Module


def guided_prediction(
    model: Model,
    cond: Tensor | None = None,
    *,
    guidance: float | None = None,
    null_cond: int | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The model's prediction ``f(x, t)``, conditional on ``cond`` and optionally guided.

    See :meth:`FlowModel.prediction_field`; ``null_cond`` overrides the model's null class.

    Args:
        model: a conditional model (FlowModel or net), ``model(x, t, cond=labels)``.
        cond: labels, shape (B,) (or (B, ...) for other conditioning); None: unconditional.
        guidance: the scale w, a finite number >= 0; None: no guidance (one forward).
        null_cond: the label meaning "no label"; the model's null class when None.

    Returns:
        ``f(x, t)`` with x (B, *D), t (B,), returning (B, *D).

    Raises:
        ValueError: guidance without cond, a bad scale, or no null label known.
    """
    flow = as_flow(model)
    if null_cond is not None:
        flow = flow.replace(null_class=null_cond)
    return flow.prediction_field(cond, guidance=guidance)


def labels_in_turn(num: int, num_classes: int) -> Tensor:
    """Labels for ``num`` conditional samples, the classes in turn: ``num // K`` of class 0,
    then of class 1, ..., the last class taking what is left (a grid with a row per class when
    ``num`` is a multiple of K).

    Returns:
        int64 labels of shape (num,).

    Raises:
        ValueError: ``num`` or ``num_classes`` not an integer >= 1.
    """
    for name, value in (("num", num), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    per = max(1, num // num_classes)
    return (torch.arange(num) // per).clamp(max=num_classes - 1)


def model_velocity(
    model: Model,
    *,
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
    cond: Tensor | None = None,
    guidance: float | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The velocity callable ``v(x, t)`` of a model, for the solvers.

    Args:
        model: a FlowModel, or a net (a velocity net on the linear path unless ``path`` /
            ``prediction`` say otherwise).
        path: overrides the model's path (see :func:`~flowmatch.flow.as_flow`).
        prediction: overrides the model's prediction kind (likewise).
        cond: conditioning passed to every call, shape (B, ...).
        guidance: classifier-free guidance scale (see :meth:`FlowModel.prediction_field`).

    Returns:
        ``v(x, t)`` with x (B, *D) and t (B,), one model evaluation per call.
    """
    flow = as_flow(model, path=path, prediction=prediction)
    return flow.velocity_field(cond, guidance=guidance)


@torch.no_grad()
def sample(
    model: Model,
    x0: Tensor,
    *,
    steps: int | None = 16,
    method: str = "midpoint",
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
    cond: Tensor | None = None,
    times: Tensor | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    average: bool | None = None,
    eta: float = 0.0,
    noise: NoiseScale = 1.0,
    spacing: str = "trailing",
    generator: torch.Generator | None = None,
    guidance: float | None = None,
) -> Tensor:
    """Generate data by integrating the model's flow from noise x0 (t=0) to data (t=1).

    A :class:`~flowmatch.manifolds.ManifoldFlowModel` is integrated on its manifold with
    exp-map Runge-Kutta steps (euler, midpoint, heun, rk4; see
    :func:`~flowmatch.manifolds.solve_manifold_ode`), from base points x0 on the manifold.

    A MeanFlow model (one that takes two times, ``model.two_times``) is sampled with its
    average velocity instead: ``steps`` jumps x_{k+1} = x_k + h u(x_k, t_k, t_{k+1}), one
    evaluation each, whatever ``method`` says (see :func:`flowmatch.meanflow.sample_average`);
    ``average=False`` integrates its instantaneous velocity u(x, t, t) with ``method``.

    Args:
        model: a trained model (see :func:`model_velocity` for path and prediction).
        x0: source samples, shape (B, *D), usually ``torch.randn``.
        steps: number of solver steps (NFE = steps x stages: 1 euler, sde, ddpm and ddim,
            2 midpoint/heun, 4 rk4); for dopri5 may be None.
        method: an ODE solver (euler, midpoint, heun, rk4, dopri5); ``sde``, Euler-Maruyama
            on the flow's SDE (:func:`sample_sde`); ``ddpm`` or ``ddim``, the diffusion
            samplers of :mod:`flowmatch.diffusion` (any Gaussian path and prediction kind).
        path: see :func:`model_velocity`.
        prediction: see :func:`model_velocity`.
        cond: conditioning, shape (B, ...).
        times: a custom time grid from 0 to 1 instead of ``steps`` (ODE solvers).
        atol: dopri5's absolute tolerance.
        rtol: dopri5's relative tolerance.
        average: use the average velocity (MeanFlow); None: when the model takes two times.
        eta: DDIM's stochasticity, in [0, 1] (ddim).
        noise: the SDE's noise scale g(t) = noise * sigma_t, or a callable g(t) (sde).
        spacing: trailing | leading: the timesteps of a DDPM schedule that ddpm/ddim visit.
        generator: torch RNG of the noise of sde, ddpm and ddim (eta > 0).
        guidance: classifier-free guidance scale w with ``cond`` (see
            :func:`guided_prediction`); None: the plain conditional model.

    Returns:
        Samples at t=1, shape (B, *D). :func:`generate` also gives the NFE and trajectory.
    """
    return generate(
        model,
        x0,
        steps=steps,
        method=method,
        path=path,
        prediction=prediction,
        cond=cond,
        times=times,
        atol=atol,
        rtol=rtol,
        average=average,
        eta=eta,
        noise=noise,
        spacing=spacing,
        generator=generator,
        guidance=guidance,
    ).x


@torch.no_grad()
def generate(
    model: Model,
    x0: Tensor,
    *,
    steps: int | None = 16,
    method: str = "midpoint",
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
    cond: Tensor | None = None,
    times: Tensor | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    average: bool | None = None,
    eta: float = 0.0,
    noise: NoiseScale = 1.0,
    spacing: str = "trailing",
    generator: torch.Generator | None = None,
    guidance: float | None = None,
    return_trajectory: bool = False,
) -> ODESolution:
    """Samples of a model with the NFE (and trajectory): the sampler behind :func:`sample`,
    the evaluation, the plots and ``flowmatch sample``.

    A two-time (MeanFlow) model takes ``steps`` average-velocity jumps (the ``average``
    sampler; ``method`` and the tolerances do not apply) unless ``average=False``; any other
    model's velocity field is integrated by the sampler ``method`` of the registry (ODE
    solvers through :func:`~flowmatch.solvers.solve_ode`; ``sde``, ``ddpm`` and ``ddim`` on
    their own grids). The model is checked first (:meth:`FlowModel.check_sampler`): the score
    samplers need a Gaussian affine path and the N(0, I) source. Arguments as in
    :func:`sample`.

    Returns:
        :class:`~flowmatch.solvers.ODESolution` (x at t=1, exact NFE, optional trajectory).
    """
    if isinstance(model, ManifoldFlowModel):
        model.check_guidance(guidance, cond)
        return model.integrate(
            x0, steps=steps, method=method, cond=cond, return_trajectory=return_trajectory
        )
    flow = as_flow(model, path=path, prediction=prediction)
    name = flow.sampler_name(method, average)
    average = name == "average"
    if average:
        if guidance is not None:
            raise ValueError("guidance is not supported for average-velocity (MeanFlow) jumps")
        steps = steps if steps is not None else 1
    sampler = get_sampler(name)
    if (sampler.needs_score or average) and (steps is None or times is not None):
        raise ValueError(f"method {name!r} takes a number of steps, not a time grid")
    flow.check_sampler(name, eta=eta, average=average)
    field: Callable[..., Tensor]
    if sampler.field == "average":
        field = flow.average_field(cond)
    else:
        field = flow.velocity_field(cond, guidance=guidance)
    if name in METHODS:
        return solve_ode(
            field,  # type: ignore[arg-type]  # the ODE methods integrate a velocity field
            x0,
            steps=None if times is not None else steps,
            method=name,
            times=times,
            atol=atol,
            rtol=rtol,
            return_trajectory=return_trajectory,
        )
    options = sampler.make_options(path=flow.path, eta=eta, noise=noise, spacing=spacing)
    return run_sampler(
        sampler,
        field,
        x0,
        sampler.times(steps, options),  # type: ignore[arg-type]  # the grid rejects None
        options=options,
        generator=generator,
        return_trajectory=return_trajectory,
    )


@torch.no_grad()
def sample_sde(
    model: Model,
    x0: Tensor,
    *,
    steps: int = 100,
    noise: NoiseScale = 1.0,
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Generate data with the SDE that has the flow's marginals (Euler-Maruyama, t=0 -> 1).

    The drift is v + g^2/2 score with the score converted from the model's velocity on its
    (Gaussian) path; ``noise=0`` is the Euler ODE sampler. See :func:`flowmatch.sde.solve_sde`.

    Args:
        model: a trained model (see :func:`model_velocity` for path and prediction).
        x0: source samples (B, *D) at t=0.
        steps: Euler-Maruyama steps (= NFE).
        noise: g(t) = noise * sigma_t, or a callable g(t) -> (B,).
        path: see :func:`model_velocity`.
        prediction: see :func:`model_velocity`.
        cond: see :func:`model_velocity`.
        generator: torch RNG of the Brownian increments.

    Returns:
        Samples at t=1, shape (B, *D).
    """
    return generate(
        model,
        x0,
        steps=steps,
        method="sde",
        noise=noise,
        path=path,
        prediction=prediction,
        cond=cond,
        generator=generator,
    ).x


@torch.no_grad()
def encode(
    model: Model,
    x1: Tensor,
    *,
    steps: int | None = None,
    method: str = "dopri5",
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
    cond: Tensor | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Tensor:
    """Map data x1 back to noise by integrating the model's flow from t=1 to t=0.

    The inverse of :func:`sample` up to solver error (use dopri5 with small tolerances, the
    default, for an accurate inversion). A manifold model is integrated on its manifold
    (dopri5 in ambient coordinates, projected; or an exp-map method with ``steps``).

    Args:
        model: a trained model.
        x1: data, shape (B, *D).
        steps: as in :func:`sample`.
        method: as in :func:`sample`.
        path: as in :func:`sample`.
        prediction: as in :func:`sample`.
        cond: as in :func:`sample`.
        atol: as in :func:`sample`.
        rtol: as in :func:`sample`.

    Returns:
        The noise at t=0, shape (B, *D).
    """
    if isinstance(model, ManifoldFlowModel):
        return model.integrate(
            x1, steps=steps, method=method, t0=1.0, t1=0.0, cond=cond, atol=atol, rtol=rtol
        ).x
    velocity = as_flow(model, path=path, prediction=prediction).velocity_field(cond)
    return solve_ode(
        velocity, x1, steps=steps, method=method, t0=1.0, t1=0.0, atol=atol, rtol=rtol
    ).x
