"""The sections that choose one of several options, each option with its own parameters.

``path``, ``coupling``, ``time``, ``objective`` and ``model`` are discriminated unions: a tag key
(``schedule``, ``name``, ``sampler``) picks the variant, and the other keys of the section are
that variant's parameters. A missing tag (or section, or null) picks the default variant.
The ``model`` section's variants live in `models` (any name other than mlp, unet, dit and
transformer is a network registered with `flowmatch.models.register`).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, Tag, model_validator

from flowmatch.train.config.models import MODEL
from flowmatch.train.config.types import (
    MAX_SCALE,
    Choice,
    NonNegativeFloat,
    PositiveFloat,
    Probability,
    UnitFloat,
    _FieldProblem,
    _Float,
    _Int,
    _Variant,
)

# --- path: the probability path x_t = alpha(t) x1 + sigma(t) x0 (see `flowmatch.schedules`)


class _PathVariant(_Variant):
    _not_params: ClassVar[tuple[str, ...]] = ("schedule",)
    _order: ClassVar[tuple[str, str] | None] = None  # (low, high): keys that must increase

    @model_validator(mode="after")
    def _check_order(self) -> _PathVariant:
        if self._order is not None:
            low, high = (getattr(self, key) for key in self._order)
            if high <= low:
                raise _FieldProblem(
                    self._order[1],
                    f"expected a number > path.{self._order[0]} ({low:g}), got {high:g}",
                )
        return self


class LinearPathConfig(_PathVariant):
    """``path: {schedule: linear}``: alpha = t, sigma = 1 - t (rectified flow); no keys."""

    schedule: Literal["linear"] = "linear"


class CosinePathConfig(_PathVariant):
    """``path: {schedule: cosine}``: alpha = sin(pi t / 2), sigma = cos(pi t / 2); no keys."""

    schedule: Literal["cosine"] = "cosine"


class PolynomialPathConfig(_PathVariant):
    """``path: {schedule: polynomial}``: alpha = t^n, sigma = 1 - t^n.

    Attributes:
        n: the exponent, > 0.
    """

    schedule: Literal["polynomial"] = "polynomial"
    n: Annotated[_Float, Field(gt=0, le=100)] = 2.0


class VPPathConfig(_PathVariant):
    """``path: {schedule: vp}``: the variance-preserving diffusion path.

    Attributes:
        beta_min: noise rate at the data end.
        beta_max: noise rate at the source end; > beta_min.
    """

    schedule: Literal["vp"] = "vp"
    beta_min: PositiveFloat = 0.1
    beta_max: PositiveFloat = 20.0
    _order: ClassVar[tuple[str, str]] = ("beta_min", "beta_max")


class VEPathConfig(_PathVariant):
    """``path: {schedule: ve}``: the variance-exploding path, scale-normalized.

    Attributes:
        sigma_min: noise scale at the data end.
        sigma_max: noise scale at the source end; > sigma_min.
    """

    schedule: Literal["ve"] = "ve"
    sigma_min: PositiveFloat = 0.01
    sigma_max: PositiveFloat = 50.0
    _order: ClassVar[tuple[str, str]] = ("sigma_min", "sigma_max")


class DDPMPathConfig(_PathVariant):
    """``path: {schedule: ddpm}``: the discrete-time DDPM noise schedule.

    Attributes:
        timesteps: the number of diffusion steps T, >= 2.
        betas: the beta schedule, linear | cosine.
        beta_start: the first beta (linear betas).
        beta_end: the last beta (linear betas); in (beta_start, 1).
    """

    schedule: Literal["ddpm"] = "ddpm"
    timesteps: Annotated[_Int, Field(ge=2, le=100_000)] = 1000
    betas: Literal["linear", "cosine"] = "linear"
    beta_start: PositiveFloat = 1e-4
    beta_end: Annotated[_Float, Field(gt=0, lt=1)] = 0.02
    _order: ClassVar[tuple[str, str]] = ("beta_start", "beta_end")


_PathUnion = (
    Annotated[LinearPathConfig, Tag("linear")]
    | Annotated[CosinePathConfig, Tag("cosine")]
    | Annotated[PolynomialPathConfig, Tag("polynomial")]
    | Annotated[VPPathConfig, Tag("vp")]
    | Annotated[VEPathConfig, Tag("ve")]
    | Annotated[DDPMPathConfig, Tag("ddpm")]
)
PATH = Choice("path", "schedule", _PathUnion)
PathConfig = Annotated[_PathUnion, PATH.discriminator, PATH.before]
"""The ``path`` section: one of the path variants, by ``schedule`` (default linear)."""


# --- coupling: how source and data points are paired in a batch (see `flowmatch.couplings`)


class _CouplingVariant(_Variant):
    _not_params: ClassVar[tuple[str, ...]] = ("name",)


class IndependentCouplingConfig(_CouplingVariant):
    """``coupling: {name: independent}``: the batch's points as drawn; no keys."""

    name: Literal["independent"] = "independent"


class MinibatchOTConfig(_CouplingVariant):
    """``coupling: {name: minibatch_ot}``: each batch re-paired by optimal transport.

    Attributes:
        method: exact | sinkhorn, the OT solver.
        reg: entropic regularisation of sinkhorn, relative to the mean cost, >= 1e-3 (below
            it the iterations need seconds per batch of 256 and still do not converge).
    """

    name: Literal["minibatch_ot"] = "minibatch_ot"
    method: Literal["exact", "sinkhorn"] = "exact"
    reg: Annotated[_Float, Field(ge=1e-3, le=MAX_SCALE)] = 0.05


class SchrodingerBridgeConfig(_CouplingVariant):
    """``coupling: {name: schrodinger_bridge}``: the entropic OT plan and a noisy bridge.

    Attributes:
        sigma: the bridge's noise level, >= 0 (its plan has reg 2 sigma^2, absolute).
    """

    name: Literal["schrodinger_bridge"] = "schrodinger_bridge"
    sigma: NonNegativeFloat = 0.5


_CouplingUnion = (
    Annotated[IndependentCouplingConfig, Tag("independent")]
    | Annotated[MinibatchOTConfig, Tag("minibatch_ot")]
    | Annotated[SchrodingerBridgeConfig, Tag("schrodinger_bridge")]
)
COUPLING = Choice("coupling", "name", _CouplingUnion)
CouplingConfig = Annotated[_CouplingUnion, COUPLING.discriminator, COUPLING.before]
"""The ``coupling`` section: one of the coupling variants, by ``name`` (default independent)."""


# --- time: how training times t are drawn (see `flowmatch.time`)


class _TimeVariant(_Variant):
    _not_params: ClassVar[tuple[str, ...]] = ("sampler",)


class UniformTimeConfig(_TimeVariant):
    """``time: {sampler: uniform}``: t ~ U[0, 1); no keys."""

    sampler: Literal["uniform"] = "uniform"


class LogitNormalTimeConfig(_TimeVariant):
    """``time: {sampler: logit_normal}``: t = sigmoid(mean + std z), more weight mid-path.

    Attributes:
        mean: mean of the normal.
        std: standard deviation of the normal, > 0.
    """

    sampler: Literal["logit_normal"] = "logit_normal"
    mean: Annotated[_Float, Field(ge=-100, le=100)] = 0.0
    std: PositiveFloat = 1.0


class ShiftedTimeConfig(_TimeVariant):
    """``time: {sampler: shifted}``: uniform times moved by Stable Diffusion 3's time shift.

    Attributes:
        shift: the shift factor, > 0 (> 1 moves the times towards the noise).
    """

    sampler: Literal["shifted"] = "shifted"
    shift: PositiveFloat = 1.0


class ConstantTimeConfig(_TimeVariant):
    """``time: {sampler: constant}``: one time for every point.

    Attributes:
        value: the time, in [0, 1] (0 on reflow pairs: distillation).
    """

    sampler: Literal["constant"] = "constant"
    value: Probability = 0.0


class DiscreteTimeConfig(_TimeVariant):
    """``time: {sampler: discrete}``: the timesteps of the ``ddpm`` path, drawn uniformly
    (DDPM's training); no keys, the timesteps are the path's."""

    sampler: Literal["discrete"] = "discrete"


_TimeUnion = (
    Annotated[UniformTimeConfig, Tag("uniform")]
    | Annotated[LogitNormalTimeConfig, Tag("logit_normal")]
    | Annotated[ShiftedTimeConfig, Tag("shifted")]
    | Annotated[ConstantTimeConfig, Tag("constant")]
    | Annotated[DiscreteTimeConfig, Tag("discrete")]
)
TIME = Choice("time", "sampler", _TimeUnion)
TimeConfig = Annotated[_TimeUnion, TIME.discriminator, TIME.before]
"""The ``time`` section: one of the time samplers, by ``sampler`` (default uniform)."""


# --- objective: what the network learns


class _ObjectiveVariant(_Variant):
    _not_params: ClassVar[tuple[str, ...]] = ("name",)


class FlowMatchingObjectiveConfig(_ObjectiveVariant):
    """``objective: {name: flow_matching}``: the conditional flow matching regression.

    Attributes:
        prediction: what the network predicts, velocity | x1 | x0 | epsilon.
        cond_dropout: labelled data (images): probability of training a label as the null
            class, which makes the model usable with classifier-free guidance; in [0, 1).
    """

    name: Literal["flow_matching"] = "flow_matching"
    prediction: Literal["velocity", "x1", "x0", "epsilon"] = "velocity"
    cond_dropout: UnitFloat = 0.1


class MeanFlowObjectiveConfig(_ObjectiveVariant):
    """``objective: {name: meanflow}``: the average velocity of `flowmatch.meanflow`, sampled
    in one or a few jumps (a velocity, so no ``prediction``; linear path; independent or
    minibatch_ot coupling). The defaults are `flowmatch.meanflow.MeanFlowLoss`'s.

    Attributes:
        cond_dropout: as for flow_matching.
        ratio_distinct: fraction of points with two distinct times, in [0, 1].
        adaptive_p: power of the adaptive loss weight (0: plain squared error).
        tangent: the velocity that moves the point in the target's time derivative,
            conditional (x1 - x0, the paper's) | model (the network's own instantaneous
            velocity: lower variance; measured better on long runs, worse on short ones).
        time_pairs: ordered (two time draws, sorted) | gap (one draw is the interval length
            t - r; measured better with minibatch_ot).
    """

    name: Literal["meanflow"] = "meanflow"
    cond_dropout: UnitFloat = 0.1
    ratio_distinct: Probability = 0.5
    adaptive_p: NonNegativeFloat = 0.0
    tangent: Literal["conditional", "model"] = "conditional"
    time_pairs: Literal["ordered", "gap"] = "ordered"


class DiscreteObjectiveConfig(_ObjectiveVariant):
    """``objective: {name: discrete}``: discrete flow matching of token data (text) on the
    mixture path of `flowmatch.discrete`: the network predicts each token's posterior.

    Attributes:
        source: mask (every token starts as an extra mask token) | uniform (a uniform token).
        kappa: linear | cosine | polynomial, the probability kappa_t that a token is its data
            token at time t.
        n: the exponent of the polynomial kappa = t^n, > 0.
        loss: ce (the posterior's cross-entropy) | gkl (the generalized KL, the ELBO's
            integrand).
        cond_dropout: as for flow_matching (labelled data).
    """

    name: Literal["discrete"] = "discrete"
    source: Literal["mask", "uniform"] = "mask"
    kappa: Literal["linear", "cosine", "polynomial"] = "linear"
    n: Annotated[_Float, Field(gt=0, le=100)] = 2.0
    loss: Literal["ce", "gkl"] = "ce"
    cond_dropout: UnitFloat = 0.1


class AutoEncoderObjectiveConfig(_ObjectiveVariant):
    """``objective: {name: autoencoder}``: train ``model: {name: autoencoder}`` on images
    (the VAE loss of `flowmatch.models.autoencoder`), for latent runs (``data.latent``).

    Attributes:
        kl_weight: the weight beta of the KL term, >= 0 (0: a plain autoencoder).
        reconstruction: mse | l1, the reconstruction error.
    """

    name: Literal["autoencoder"] = "autoencoder"
    kl_weight: Annotated[_Float, Field(ge=0, le=MAX_SCALE)] = 1e-4
    reconstruction: Literal["mse", "l1"] = "mse"


_ObjectiveUnion = (
    Annotated[FlowMatchingObjectiveConfig, Tag("flow_matching")]
    | Annotated[MeanFlowObjectiveConfig, Tag("meanflow")]
    | Annotated[DiscreteObjectiveConfig, Tag("discrete")]
    | Annotated[AutoEncoderObjectiveConfig, Tag("autoencoder")]
)
OBJECTIVE = Choice("objective", "name", _ObjectiveUnion)
ObjectiveConfig = Annotated[_ObjectiveUnion, OBJECTIVE.discriminator, OBJECTIVE.before]
"""The ``objective`` section, by ``name`` (default flow_matching)."""


CHOICES: dict[str, Choice] = {c.section: c for c in (MODEL, PATH, COUPLING, TIME, OBJECTIVE)}
"""The union sections by name."""
