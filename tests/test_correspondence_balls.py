"""Areas of geodesic balls (geomot.correspondence.geodesic_ball_areas) and the ranking of extrinsic candidates that
uses them (geomot.correspondence.pipeline._pick_extrinsic)."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence import geodesic_ball_areas
from geomot.correspondence.pipeline import _pick_extrinsic, _unit_area
from geomot.io.synthetic import icosphere
from geomot.ops.graph import edge_graph
from geomot.ops.sampling import farthest_point_sampling

RADII = (0.3, 0.6, 1.0, 2.0)


def _cap(r: float) -> float:
    return 2 * math.pi * (1 - math.cos(r))  # area of a geodesic ball of radius r on the unit sphere


def test_ball_areas_on_the_sphere_are_bounded_by_the_closed_form():
    m = icosphere(4)
    A = geodesic_ball_areas(m.verts, m.faces, RADII)
    assert A.shape == (m.verts.shape[0], len(RADII)) and A.dtype == torch.float64
    assert bool((A[:, 1:] >= A[:, :-1]).all())  # nested balls
    total = float(A.new_tensor(0).add(4 * math.pi))
    assert float(A.max()) <= total * 1.01
    for j, r in enumerate(RADII):
        mean = float(A[:, j].mean())
        # edge paths are at most 2/sqrt(3) longer than geodesics on an equilateral mesh and never shorter (up to the
        # chords being shorter than arcs): the ball of radius r holds the true ball of radius r sqrt(3)/2 and is held
        # by the true one of radius r (lumped vertex areas add a few per cent either way)
        assert _cap(r * math.sqrt(3) / 2) * 0.95 <= mean <= _cap(r) * 1.05, (r, mean)
    # the sphere is homogeneous: every vertex sees nearly the same areas
    assert float((A.std(0) / A.mean(0)).max()) < 0.1


def test_sampled_ball_areas_approach_the_exact_ones_and_follow_rigid_motions():
    m = icosphere(3)
    v = m.verts * torch.tensor([2.0, 1.0, 0.7], dtype=torch.float64)  # an ellipsoid: areas vary over the surface
    exact = geodesic_ball_areas(v, m.faces, (1.0, 1.5))
    sampled = geodesic_ball_areas(v, m.faces, (1.0, 1.5), samples=200)
    assert float(((sampled - exact).abs() / exact).mean()) < 0.05
    assert float(exact[:, 0].max() / exact[:, 0].min()) > 1.2  # not a constant
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(geodesic_ball_areas(v @ q + 3.0, m.faces, (1.0, 1.5)), exact)
    idx = farthest_point_sampling(v, 50, start=0).long()
    given = geodesic_ball_areas(v, m.faces, (1.0,), samples=idx, graph=edge_graph(v, m.faces))
    torch.testing.assert_close(given[idx], exact[idx, :1])


def test_ball_area_errors():
    m = icosphere(1)
    with pytest.raises(ValidationError, match="radii"):
        geodesic_ball_areas(m.verts, m.faces, [0.5, 0.0])
    with pytest.raises(ValidationError, match="radii"):
        geodesic_ball_areas(m.verts, m.faces, [])
    with pytest.raises(ShapeError, match="verts"):
        geodesic_ball_areas(m.verts[:, :2], m.faces, [0.5])
    with pytest.raises(ValidationError, match="samples"):
        geodesic_ball_areas(m.verts, m.faces, [0.5], samples=0)
    with pytest.raises((ShapeError, ValidationError), match="faces"):
        geodesic_ball_areas(m.verts, m.faces + 1000, [0.5])


def _tadpole(asymmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """An elongated body along x at unit area: thick at x > 0 and thin at x < 0 (a head and a tail), or an
    ellipsoid with the same ends."""
    m = icosphere(4)
    x = m.verts[:, :1]
    radius = 0.12 + 0.88 * ((1 + x) / 2) ** 2 if asymmetric else 0.5 + 0.0 * x
    v = torch.cat([2.5 * x, radius * m.verts[:, 1:]], 1)
    return _unit_area(v, m.faces), m.faces


@pytest.mark.parametrize("asymmetric", [True, False])
def test_pick_extrinsic_tells_a_head_from_a_tail(asymmetric):
    v, f = _tadpole(asymmetric)
    samples = farthest_point_sampling(v, 1000, start=0).long()
    g = edge_graph(v, f)
    identity = samples
    # the same body turned end to end (a half-turn about z): every sample goes to the closest vertex of its image
    turned = torch.cdist(v[samples] * torch.tensor([-1.0, -1.0, 1.0], dtype=v.dtype), v).argmin(1)
    # the residual slightly prefers the turned candidate
    pick = _pick_extrinsic(v, f, v, f, g, g, samples, [0.021, 0.020], [identity, turned])
    # head to tail changes the balls' areas: the right map wins; on the ellipsoid the turn is a symmetry, the
    # areas cannot tell, and the residual decides
    assert pick == (0 if asymmetric else 1)
    assert _pick_extrinsic(v, f, v, f, g, g, samples, [0.02], [turned]) == 0
