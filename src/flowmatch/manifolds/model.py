"""ManifoldFlowModel: a network whose output is a tangent velocity field on a manifold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.errors import SamplerError
from flowmatch.manifolds.base import Manifold
from flowmatch.manifolds.path import GeodesicPath
from flowmatch.manifolds.solvers import solve_manifold_ode
from flowmatch.models.base import Pretrained, net_labels
from flowmatch.solvers import ODESolution

__all__ = ["MANIFOLD_METHODS", "ManifoldFlowModel"]

MANIFOLD_METHODS: tuple[str, ...] = ("euler", "midpoint", "heun", "rk4")
"""The samplers of manifold models: Runge-Kutta methods taking exp-map steps
(:func:`~flowmatch.manifolds.solve_manifold_ode`)."""


class ManifoldFlowModel(Pretrained, nn.Module):
    """A flow on a manifold: the network, its manifold and path, and what it was trained on.

    The network sees each point through ``manifold.features(x)`` (e.g. the cos and sin of
    torus angles, continuous across the seam) and returns an ambient vector of
    ``manifold.ambient_dim`` numbers, which is projected onto the tangent space at x: this one
    wrapper makes any network a tangent vector field, on every manifold. The base (t = 0) is
    the uniform distribution of a compact manifold (N(0, I) on Euclidean factors); t = 1 is
    the data.

    Args:
        net: called as ``net(features, t)`` (``cond=labels`` for labelled data), features
            (B, feature_dim), t (B,), returning (B, ambient_dim); e.g.
            ``fm.models.MLP(dim=manifold.feature_dim, out_dim=manifold.ambient_dim)``.
        manifold: the :class:`~flowmatch.manifolds.Manifold`.
        path: the :class:`~flowmatch.manifolds.GeodesicPath` it is trained on (linear by
            default); it must be on ``manifold``.
        num_classes: the number of labels (read from the net's attributes when None).
        null_class: the "no label" class (read from the net's attributes when None).
        info: JSON-serializable facts kept in the model file (data name, units, columns).

    Shapes:
        ``model(x, t, cond)``: x (B, ambient_dim), t (B,) -> (B, ambient_dim), tangent at x.
    """

    kind = "manifold"

    def __init__(
        self,
        net: nn.Module,
        manifold: Manifold,
        *,
        path: GeodesicPath | None = None,
        num_classes: int | None = None,
        null_class: int | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be an nn.Module, got {type(net).__name__}")
        if not isinstance(manifold, Manifold):
            raise ValueError(f"manifold must be a Manifold, got {type(manifold).__name__}")
        path = GeodesicPath(manifold) if path is None else path
        if not isinstance(path, GeodesicPath) or path.manifold != manifold:
            raise ValueError(f"path must be a GeodesicPath on {manifold!r}, got {path!r}")
        self.net = net
        self.manifold = manifold
        self.path = path
        self.num_classes, self.null_class = net_labels(net, num_classes, null_class)
        self.info = dict(info or {})
        # What the shared training loop reads: the loss draws the base itself.
        self.source = None
        self.shape = (manifold.ambient_dim,)
        self.prediction = "velocity"
        self.two_times = False
        self.transform = None

    def extra_repr(self) -> str:
        return f"manifold={self.manifold!r}, path={self.path!r}, num_classes={self.num_classes}"

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The tangent velocity at (x, t): x (B, n), t (B,) -> (B, n)."""
        kwargs = {} if cond is None else {"cond": cond}
        out = self.net(self.manifold.features(x), t, **kwargs)
        if out.shape != x.shape:
            raise ValueError(
                f"the net returned shape {tuple(out.shape)} for points of shape "
                f"{tuple(x.shape)}; it must return one ambient vector per point "
                f"({self.manifold.ambient_dim} numbers)"
            )
        return self.manifold.proj_tangent(x, out)

    # ----------------------------------------------------------------------- sampling
    def check_guidance(self, guidance: float | None, cond: Tensor | None = None) -> None:
        """Manifold models are sampled without classifier-free guidance."""
        if guidance is not None:
            raise SamplerError("guidance is not supported for manifold models", option="guidance")

    def sampler_name(self, method: str, average: bool | None = None) -> str:
        """The sampler that runs for ``method``: that method (no average-velocity jumps)."""
        return method

    def check_sampler(self, method: str, steps: Any = None, **_: Any) -> None:
        """Check a sampler name and step counts (see :data:`MANIFOLD_METHODS`).

        Raises:
            SamplerError: naming the method or the steps.
        """
        if method not in MANIFOLD_METHODS:
            raise SamplerError(
                f"a manifold model is sampled with exp-map Runge-Kutta steps: method must be "
                f"one of {MANIFOLD_METHODS}, got {method!r}",
                option="method",
            )
        counts = (
            [] if steps is None else list(steps) if isinstance(steps, list | tuple) else [steps]
        )
        for n in counts:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise SamplerError(f"steps must be integers >= 1, got {n!r}", option="steps")

    def velocity_field(
        self, cond: Tensor | None = None, *, guidance: float | None = None
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """The tangent velocity callable ``v(x, t)`` the samplers integrate."""
        self.check_guidance(guidance, cond)
        return lambda x, t: self(x, t, cond)

    def integrate(
        self,
        x: Tensor,
        *,
        steps: int | None,
        method: str,
        t0: float = 0.0,
        t1: float = 1.0,
        cond: Tensor | None = None,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        return_trajectory: bool = False,
    ) -> ODESolution:
        """Integrate the model's flow from t0 to t1 (0 -> 1 samples, 1 -> 0 encodes).

        ``method`` is an exp-map Runge-Kutta method (:data:`MANIFOLD_METHODS`, ``steps``
        steps) or ``dopri5`` (adaptive, in the ambient coordinates, the end point projected
        onto the manifold; no trajectory).
        """
        velocity = self.velocity_field(cond)
        if method == "dopri5":
            from flowmatch.solvers import solve_ode

            res = solve_ode(velocity, x, method="dopri5", t0=t0, t1=t1, atol=atol, rtol=rtol)
            res.x = self.manifold.proj_point(res.x)
            return res
        self.check_sampler(method, steps)
        if steps is None:
            raise SamplerError(f"method {method!r} needs a number of steps", option="steps")
        return solve_manifold_ode(
            self.manifold,
            velocity,
            x,
            steps=steps,
            method=method,
            t0=t0,
            t1=t1,
            return_trajectory=return_trajectory,
        )

    def draw_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n base points (uniform on a compact manifold), shape (n, ambient_dim), on the CPU."""
        return self.manifold.random_base(n, generator=generator)

    def source_log_prob(self) -> Callable[[Tensor], Tensor]:
        """The base's log-density w.r.t. the Riemannian volume, ``f(x0) -> (B,)``."""
        return self.manifold.base_log_prob

    def decode(self, x: Tensor) -> Tensor:
        """Samples in the manifold's coordinates (nothing to undo)."""
        return x

    def encode_data(self, x: Tensor) -> Tensor:
        """Data in the model's coordinates, projected onto the manifold."""
        return self.manifold.proj_point(x)

    # -------------------------------------------------------------------------- files
    def config(self) -> dict[str, Any]:
        """The ``config.json`` description (see :mod:`flowmatch.manifolds.files`)."""
        from flowmatch.manifolds.files import spec_of

        return spec_of(self)
