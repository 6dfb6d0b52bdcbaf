"""Riemannian flow matching: flows on spheres, tori, rotations and their products.

Time runs from t = 0 (the base: uniform on a compact manifold) to t = 1 (data), as everywhere
in flowmatch. Points are flat coordinate vectors (see :mod:`flowmatch.manifolds.base`):

- :class:`Sphere` (unit vectors in R^(d+1)), :class:`FlatTorus` (angles in [-pi, pi)),
  :class:`SO3` (rotation matrices, 9 numbers), :class:`Euclidean` and :class:`Product`;
- :class:`GeodesicPath` (x_t = exp_{x1}(kappa_t log_{x1} x0)) and
  :class:`RiemannianFlowMatchingLoss`;
- :class:`ManifoldFlowModel` (any network made a tangent field), sampled with exp-map
  Runge-Kutta steps (:func:`solve_manifold_ode`) and scored by
  :func:`manifold_log_likelihood`; ``fm.sample``, ``fm.encode`` and ``fm.log_likelihood``
  accept it;
- :class:`AxialVMFFlow`, a closed-form flow on S^2 for tests.

Example:
    >>> sphere = fm.manifolds.Sphere(2)
    >>> net = fm.models.MLP(dim=sphere.feature_dim, out_dim=sphere.ambient_dim)
    >>> model = fm.manifolds.ManifoldFlowModel(net, sphere)
    >>> loss = fm.manifolds.RiemannianFlowMatchingLoss(model.path)(model, x1)
    >>> x = fm.sample(model, sphere.random_uniform(1000), steps=32, method="rk4")
"""

from flowmatch.manifolds.base import Manifold
from flowmatch.manifolds.files import MANIFOLDS, manifold_from_dict
from flowmatch.manifolds.flat import Euclidean, FlatTorus, wrap
from flowmatch.manifolds.likelihood import manifold_divergence, manifold_log_likelihood
from flowmatch.manifolds.loss import RiemannianFlowMatchingLoss
from flowmatch.manifolds.model import MANIFOLD_METHODS, ManifoldFlowModel
from flowmatch.manifolds.oracle import AxialVMFFlow
from flowmatch.manifolds.path import GeodesicPath
from flowmatch.manifolds.product import Product
from flowmatch.manifolds.so3 import SO3
from flowmatch.manifolds.solvers import solve_manifold_ode
from flowmatch.manifolds.sphere import Sphere

__all__ = [
    "MANIFOLDS",
    "MANIFOLD_METHODS",
    "SO3",
    "AxialVMFFlow",
    "Euclidean",
    "FlatTorus",
    "GeodesicPath",
    "Manifold",
    "ManifoldFlowModel",
    "Product",
    "RiemannianFlowMatchingLoss",
    "Sphere",
    "manifold_divergence",
    "manifold_from_dict",
    "manifold_log_likelihood",
    "solve_manifold_ode",
    "wrap",
]
