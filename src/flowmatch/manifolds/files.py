"""Manifolds by name and manifold model files (``config.json`` with ``"kind": "manifold"``)."""

from __future__ import annotations

from typing import Any

from flowmatch.manifolds.base import Manifold
from flowmatch.manifolds.flat import Euclidean, FlatTorus
from flowmatch.manifolds.model import ManifoldFlowModel
from flowmatch.manifolds.path import GeodesicPath
from flowmatch.manifolds.product import Product
from flowmatch.manifolds.so3 import SO3
from flowmatch.manifolds.sphere import Sphere
from flowmatch.models import registry

__all__ = ["MANIFOLDS", "flow_from_spec", "manifold_from_dict", "spec_of"]

MANIFOLDS: dict[str, type[Manifold]] = {
    "euclidean": Euclidean,
    "sphere": Sphere,
    "torus": FlatTorus,
    "so3": SO3,
    "product": Product,
}
"""The manifolds of flowmatch by name (config files and model files)."""

INFO_KEYS = ("data", "objective", "columns", "units", "class_names")


def manifold_from_dict(spec: Any) -> Manifold:
    """The manifold a :meth:`~flowmatch.manifolds.Manifold.to_dict` description names.

    Raises:
        ValueError: an unknown name or a bad dimension, naming them.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"a manifold must be a mapping with a 'name', got {spec!r}")
    name = spec["name"]
    if name not in MANIFOLDS:
        raise ValueError(f"unknown manifold {name!r}; known: {', '.join(MANIFOLDS)}")
    extra = sorted(set(spec) - {"name", "dim", "factors"})
    if extra:
        raise ValueError(f"manifold {name!r}: unknown keys {extra}")
    if name == "so3":
        if spec.get("dim", 3) != 3:
            raise ValueError(f"so3 has dimension 3, got {spec['dim']!r}")
        return SO3()
    if name == "product":
        factors = spec.get("factors")
        if not isinstance(factors, list) or not factors:
            raise ValueError("a product manifold needs a non-empty list of factors")
        return Product(*(manifold_from_dict(f) for f in factors))
    cls = MANIFOLDS[name]
    if name == "euclidean" and "dim" not in spec:
        raise ValueError("manifold 'euclidean' needs its dimension ('dim')")
    return cls(spec["dim"]) if "dim" in spec else cls()  # type: ignore[call-arg]


def spec_of(model: ManifoldFlowModel) -> dict[str, Any]:
    """The JSON description of a manifold model (ValueError for an unregistered net)."""
    from flowmatch.paths import AffinePath, path_to_dict

    return {
        **model.info,
        "kind": "manifold",
        "arch": registry.architecture(model.net),
        "manifold": model.manifold.to_dict(),
        "path": path_to_dict(AffinePath(model.path.schedule)),
        "num_classes": model.num_classes,
        "null_class": model.null_class,
    }


def flow_from_spec(spec: dict[str, Any]) -> ManifoldFlowModel:
    """The model a ``config.json`` describes, freshly initialized (weights not loaded).

    Raises:
        ValueError / TypeError / KeyError: a bad field (the caller names the file).
    """
    from flowmatch.models.files import build_model
    from flowmatch.paths import AffinePath, path_from_dict

    manifold = manifold_from_dict(spec["manifold"])
    affine = path_from_dict(spec.get("path", {}))
    if not isinstance(affine, AffinePath):
        raise ValueError(f"a manifold model's path needs a schedule, got {spec.get('path')!r}")
    path = GeodesicPath(manifold, affine.schedule)
    return ManifoldFlowModel(
        build_model(spec["arch"]),
        manifold,
        path=path,
        num_classes=spec.get("num_classes"),
        null_class=spec.get("null_class"),
        info={k: spec[k] for k in INFO_KEYS if k in spec},
    )
