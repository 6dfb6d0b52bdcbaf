"""The manifold evaluation's metric and the CLI's table conversions, on hand-made points."""

import math

import pytest
import torch

from flowmatch.app.manifold import from_table, table_columns, to_table
from flowmatch.errors import DataError
from flowmatch.evaluation.manifolds import geodesic_w2
from flowmatch.manifolds import SO3, FlatTorus, ManifoldFlowModel, Product, Sphere
from flowmatch.models import MLP


def test_geodesic_w2_of_a_torus_shift_is_the_shift():
    """On the flat torus, moving every point by the same small delta is the optimal plan
    (the cost is convex in the wrapped difference), so W2 = |delta| exactly (1e-9: float64)."""
    g = torch.Generator().manual_seed(0)
    torus = FlatTorus(2)
    a = torus.random_uniform(200, generator=g, dtype=torch.float64)
    delta = torch.tensor([0.01, -0.02], dtype=torch.float64)
    b = torus.exp(a, delta.expand_as(a))
    assert abs(geodesic_w2(torus, a, b) - float(delta.norm())) < 1e-9


def test_geodesic_w2_between_two_points_is_their_great_circle_distance():
    sphere = Sphere(2)
    a = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    assert abs(geodesic_w2(sphere, a, b) - math.pi / 2) < 1e-12


def _model(manifold, **info):
    net = MLP(dim=manifold.feature_dim, out_dim=manifold.ambient_dim, hidden=8, depth=1)
    return ManifoldFlowModel(net, manifold, info=info)


@pytest.mark.parametrize("units", ["degrees", "radians"])
def test_tables_round_trip_in_the_data_units(units):
    """Points -> table (lat/lon, angles, matrix entries) -> points, for a torus x SO(3)
    product and the sphere; float32 round-off (1e-5)."""
    g = torch.Generator().manual_seed(1)
    space = Product(FlatTorus(2), SO3())
    model = _model(space, units=units)
    x = space.random_uniform(50, generator=g)
    table = to_table(model, x)
    assert table_columns(model)[:3] == ["phi", "psi", "r11"] and table.shape == (50, 11)
    limit = 180.0 if units == "degrees" else math.pi
    assert (table[:, :2].abs() <= limit).all()
    back = from_table(model, table.float(), "t.csv")
    assert (space.dist(back.double(), x.double())).max() < 1e-5
    sphere = _model(Sphere(2), units=units)
    p = Sphere(2).random_uniform(50, generator=g)
    lat_lon = to_table(sphere, p)
    assert table_columns(sphere) == ["lat", "lon"]
    assert (
        Sphere(2).dist(from_table(sphere, lat_lon.float(), "s.csv").double(), p.double())
    ).max() < 1e-5


def test_from_table_refuses_a_matrix_that_is_not_a_rotation():
    model = _model(SO3())
    with pytest.raises(DataError, match=r"bad\.csv: r11\.\.r33 must be rotation matrices"):
        from_table(model, 2 * torch.eye(3).reshape(1, 9), "bad.csv")
