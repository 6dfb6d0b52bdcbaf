"""FlowModel: a network together with what it means, from training to files to sampling.

A network alone predicts *something* at (x_t, t); to sample it, score it or evaluate it one
must know the path it was trained on, what it predicts (velocity, x1, x0, epsilon), whether it
takes two times (MeanFlow), its source distribution, its labels and the transform of its data.
:class:`FlowModel` holds all of it, so ``fm.sample(model, x0, steps=8)`` needs nothing else.
Time runs from t = 0 (source) to t = 1 (data).

A plain ``nn.Module`` is accepted wherever a FlowModel is; it means a velocity network on the
linear path from N(0, I) (see :func:`as_flow`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from flowmatch.errors import SamplerError
from flowmatch.models.base import Pretrained, call_model, net_labels
from flowmatch.paths import PREDICTION_KINDS, AffinePath, BrownianBridgePath, PredictionKind
from flowmatch.sources import check_source, draw_source, source_log_prob

__all__ = ["FlowModel", "as_flow"]

Field = Callable[[Tensor, Tensor], Tensor]


def _count(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be None or an integer >= {minimum}, got {value!r}")
    return value


class FlowModel(Pretrained, nn.Module):
    """A trained (or to-be-trained) flow: the network and what it means.

    Args:
        net: any ``nn.Module`` called as ``net(x_t, t)`` (and ``cond=labels`` for labelled
            data; ``t_end=`` for two-time models) returning a tensor of the shape of x_t.
        path: the probability path it is trained on: an :class:`~flowmatch.paths.AffinePath`
            (linear by default) or a :class:`~flowmatch.paths.BrownianBridgePath`.
        prediction: what the net predicts: velocity (default), x1, x0, epsilon or score
            (converted to a velocity on the affine path by :meth:`velocity`).
        two_times: a MeanFlow net ``net(x, r, t_end=t)`` giving the average velocity over
            [r, t]; None: the net's own ``two_times`` attribute, else False.
        source: the source distribution: None for N(0, I), or a built-in 2-D set by name.
        num_classes: the number K of classes of labelled data; None: the net's
            ``num_classes`` attribute, else unlabelled.
        null_class: the label meaning "no label" (classifier-free guidance); None: the net's
            ``null_class`` attribute, else K.
        transform: the data transform the net works in (a
            :class:`~flowmatch.data.tabular.Standardizer`): :meth:`decode` maps samples back
            to data units.
        shape: the shape of one data point, (D,) or (C, H, W); None: unknown (then
            :meth:`draw_source` needs it).
        info: JSON-serializable facts kept in the model file (data name, column and class
            names, the objective and coupling it was trained with).

    Shapes:
        ``model(x, t, cond)``: x (B, *D), t (B,), cond (B,) -> (B, *D), the net's prediction.

    Example:
        >>> net = fm.models.MLP(dim=2)
        >>> model = fm.FlowModel(net, path=fm.AffinePath(fm.schedules.Cosine()), prediction="x1")
        >>> x = fm.sample(model, torch.randn(100, 2), steps=8)
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        path: AffinePath | BrownianBridgePath | None = None,
        prediction: str = "velocity",
        two_times: bool | None = None,
        source: str | None = None,
        num_classes: int | None = None,
        null_class: int | None = None,
        transform: Any = None,
        shape: Sequence[int] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be an nn.Module, got {type(net).__name__}")
        if isinstance(net, FlowModel):
            raise ValueError("net is already a FlowModel; pass its .net")
        path = AffinePath() if path is None else path
        if not isinstance(path, (AffinePath, BrownianBridgePath)):
            raise ValueError(
                f"path must be an AffinePath or a BrownianBridgePath, got {type(path).__name__}"
            )
        if prediction not in PREDICTION_KINDS:
            raise ValueError(f"prediction must be one of {PREDICTION_KINDS}, got {prediction!r}")
        if not isinstance(path, AffinePath) and prediction != "velocity":
            raise ValueError(f"a {path!r} model predicts a velocity, got prediction={prediction!r}")
        # A net's own declarations: two_times here, labels through models.base.net_labels.
        if two_times is None:
            two_times = bool(getattr(net, "two_times", False))
        num_classes, null_class = net_labels(net, num_classes, null_class)
        self.num_classes = _count(num_classes, "num_classes", 1)
        self.null_class = _count(null_class, "null_class", 0)
        self.net = net
        self.path = path
        self.prediction = prediction
        self.two_times = bool(two_times)
        self.source = check_source(source)
        self.transform = transform
        self.shape = None if shape is None else tuple(int(s) for s in shape)
        self.info = dict(info or {})

    def extra_repr(self) -> str:
        return (
            f"path={self.path!r}, prediction={self.prediction!r}, two_times={self.two_times}, "
            f"source={self.source!r}, num_classes={self.num_classes}"
        )

    # ------------------------------------------------------------------------- evaluation
    def forward(
        self, x: Tensor, t: Tensor, cond: Tensor | None = None, *, t_end: Tensor | None = None
    ) -> Tensor:
        """The net's prediction at (x, t) (of the kind :attr:`prediction`), shape of x.

        ``t_end`` (two-time nets) asks for the average velocity from t to ``t_end``.
        """
        return call_model(self.net, x, t, cond, t_end=t_end)

    def check_guidance(self, guidance: float | None, cond: Tensor | None = None) -> float | None:
        """Check a classifier-free guidance scale for this model; return it as a float.

        Raises:
            SamplerError (``option`` = "guidance"): a scale that is not a finite number >= 0,
                guidance on an unlabelled model, or without labels to guide towards.
        """
        if guidance is None:
            return None
        if (
            isinstance(guidance, bool)
            or not isinstance(guidance, (int, float))
            or not (math.isfinite(guidance) and guidance >= 0)
        ):
            raise _sampler_error(
                "guidance", f"guidance must be a finite number >= 0, got {guidance!r}"
            )
        if self.null_class is None:
            raise _sampler_error(
                "guidance",
                "guidance needs a model trained with labels and a 'no label' class (a labelled "
                "FlowModel, or a net with a null_class attribute such as "
                "fm.models.UNet(num_classes=...)); this model has none",
            )
        if cond is None:
            raise _sampler_error("guidance", "guidance needs labels to guide towards (cond=...)")
        return float(guidance)

    def prediction_field(
        self, cond: Tensor | None = None, *, guidance: float | None = None
    ) -> Field:
        """``f(x, t)``: the net's prediction, conditional on ``cond`` and optionally guided.

        With a guidance scale w, classifier-free guidance (Ho & Salimans 2022, eq. 6 in our
        notation) is ``f = f(x, t | null) + w (f(x, t | cond) - f(x, t | null))``: w = 1 is the
        conditional model (one forward of B points), w = 0 the unconditional one, w > 1
        sharpens the class; both branches go through one batched forward of 2B points. The
        combination is taken in the model's own prediction kind: every conversion of
        :meth:`~flowmatch.paths.AffinePath.convert` is affine, so it equals guiding the
        velocity.
        """
        w = self.check_guidance(guidance, cond)
        net = self.net  # called directly: this sits on every sampler step
        if w is None or w == 1.0:
            return lambda x, t: call_model(net, x, t, cond)
        assert cond is not None and self.null_class is not None  # check_guidance
        both = torch.cat([cond, torch.full_like(cond, self.null_class)])

        def guided(x: Tensor, t: Tensor) -> Tensor:
            out = call_model(net, torch.cat([x, x]), torch.cat([t, t]), both)
            conditional, unconditional = out.chunk(2)
            return unconditional + w * (conditional - unconditional)

        return guided

    def velocity_field(self, cond: Tensor | None = None, *, guidance: float | None = None) -> Field:
        """The velocity callable ``v(x, t)`` the solvers integrate: the one model-to-velocity
        adapter (prediction kind converted on :attr:`path`, labels, guidance). One model
        evaluation per call (one batched evaluation of 2B points with guidance)."""
        predict = self.prediction_field(cond, guidance=guidance)
        if self.prediction == "velocity":
            return predict
        path, kind = self.path, cast(PredictionKind, self.prediction)  # checked in __init__
        assert isinstance(path, AffinePath)  # __init__: a bridge model predicts a velocity

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return path.convert(predict(x, t), src=kind, dst="velocity", x_t=x, t=t)

        return velocity

    def velocity(
        self, x: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance: float | None = None
    ) -> Tensor:
        """The velocity at (x, t): x (B, *D), t (B,) -> (B, *D) (see :meth:`velocity_field`)."""
        return self.velocity_field(cond, guidance=guidance)(x, t)

    def average_field(
        self, cond: Tensor | None = None
    ) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """``u(x, r, t)``, the average velocity over [r, t] of a two-time (MeanFlow) model."""
        if not self.two_times:
            raise _sampler_error(
                "method", "average-velocity jumps need a two-time (MeanFlow) model"
            )
        return lambda x, r, t: self(x, r, cond, t_end=t)

    # ---------------------------------------------------------------------------- checks
    def sampler_name(self, method: str, average: bool | None = None) -> str:
        """The sampler that actually runs when ``method`` is asked for: a two-time (MeanFlow)
        model takes its average-velocity jumps (``average``) whatever the method, unless
        ``average=False`` (then ``method`` integrates its instantaneous velocity)."""
        return "average" if (self.two_times if average is None else average) else method

    def check_sampler(
        self,
        method: str,
        steps: Sequence[int] | int | None = None,
        *,
        eta: float = 0.0,
        average: bool | None = None,
    ) -> None:
        """Check, before any work, that ``method`` can sample this model at each step count.

        The rules: ``average`` needs a two-time model; the score samplers (sde, ddpm, ddim)
        need a Gaussian affine path and the N(0, I) source; ddim's eta is in [0, 1]; the step
        counts fit the sampler (at most T steps on a DDPM schedule of T timesteps). The
        sampler checked is the one that runs (:meth:`sampler_name`).

        Raises:
            SamplerError: one line; its ``option`` (method, steps, eta) says what to change.
        """
        from flowmatch.solvers import get_sampler

        method = self.sampler_name(method, average)
        try:
            sampler = get_sampler(method)
        except ValueError as err:
            raise _sampler_error("method", str(err)) from None
        if sampler.field == "average" and not self.two_times:
            raise _sampler_error("method", f"{method} needs a two-time (MeanFlow) model")
        if sampler.needs_score:
            if not (isinstance(self.path, AffinePath) and self.path.is_gaussian):
                raise _sampler_error(
                    "method",
                    f"{method} needs the score of a Gaussian affine path; this model's path is "
                    f"{self.path!r}; use an ODE solver",
                )
            if self.source is not None:
                raise _sampler_error(
                    "method",
                    f"{method} needs the N(0, I) source; this model's source is "
                    f"{self.source!r}; use an ODE solver",
                )
        try:
            options = sampler.make_options(path=self.path, eta=eta)
        except ValueError as err:
            raise _sampler_error("eta", str(err)) from None
        counts = [] if steps is None else [steps] if isinstance(steps, int) else list(steps)
        for n in counts:
            try:
                sampler.times(n, options)
            except ValueError as err:
                raise _sampler_error("steps", str(err)) from None

    # --------------------------------------------------------------------------- sources
    def draw_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n source points (N(0, I) or the toy source), shape (n, *shape), on the CPU."""
        if self.shape is None:
            raise ValueError("draw_source needs the model's point shape (FlowModel(shape=...))")
        return draw_source(self.source, n, self.shape, generator)

    def source_log_prob(self) -> Callable[[Tensor], Tensor]:
        """The source's log-density ``f(x0) -> (B,)`` (ValueError when it has none)."""
        return source_log_prob(self.source)

    def decode(self, x: Tensor) -> Tensor:
        """Samples in data units: the inverse of :attr:`transform` (x itself without one)."""
        return x if self.transform is None else self.transform.inverse(x)

    def encode_data(self, x: Tensor) -> Tensor:
        """Data in the model's units: :attr:`transform` applied (x itself without one)."""
        return x if self.transform is None else self.transform.transform(x)

    # ------------------------------------------------------------------------------ files
    def config(self) -> dict[str, Any]:
        """The JSON description of ``config.json`` (see :func:`flowmatch.models.files.spec_of`).

        Raises:
            ValueError: the net is not a registered architecture (see
                :func:`flowmatch.models.register`).
        """
        from flowmatch.models.files import spec_of

        return spec_of(self)

    def replace(self, **changes: Any) -> FlowModel:
        """A FlowModel sharing this one's net, with the fields named in ``changes`` replaced
        (``path``, ``prediction``, ``two_times``, ``source``, ``num_classes``,
        ``null_class``, ``transform``, ``shape``, ``info``).

        Raises:
            ValueError: a name that is not a field.
        """
        fields = {
            "path": self.path,
            "prediction": self.prediction,
            "two_times": self.two_times,
            "source": self.source,
            "num_classes": self.num_classes,
            "null_class": self.null_class,
            "transform": self.transform,
            "shape": self.shape,
            "info": self.info,
        }
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ValueError(f"replace: unknown fields {unknown} (fields: {', '.join(fields)})")
        return FlowModel(self.net, **{**fields, **changes})

    @property
    def spec(self) -> dict[str, Any]:
        """The model file's description (:meth:`config`); kept for code written for the
        modules ``fm.load`` returned before FlowModel."""
        return self.config()

    @property
    def flow_path(self) -> AffinePath | BrownianBridgePath:
        """:attr:`path` under its former name."""
        return self.path


def _sampler_error(option: str, message: str) -> SamplerError:
    return SamplerError(message, option=option)


def as_flow(
    model: nn.Module,
    *,
    path: AffinePath | BrownianBridgePath | None = None,
    prediction: str | None = None,
) -> FlowModel:
    """The FlowModel a sampler works with.

    A FlowModel is returned as it is, or, when ``path`` or ``prediction`` is given, as a
    FlowModel sharing its net with those replaced. A plain ``nn.Module`` is wrapped: a
    velocity net on the linear path from N(0, I) unless ``path``/``prediction`` say otherwise.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module or a FlowModel, got {type(model).__name__}")
    if isinstance(model, FlowModel):
        changes = {"path": path, "prediction": prediction}
        changes = {k: v for k, v in changes.items() if v is not None}
        return model.replace(**changes) if changes else model
    return FlowModel(model, path=path, prediction=prediction or "velocity")
