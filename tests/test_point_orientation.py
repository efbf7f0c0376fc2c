"""Orientation of point clouds (geomot.ops.orientation.oriented_normals / point_map_orientation_score, the
point-cloud orientation operators) and their use by ``geomot.match`` on point clouds: outward normals on shapes
that are not star-shaped, the score against the mesh score, exact sign reversal under mirroring, and matched
clouds that keep orientation."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence import match
from geomot.correspondence.descriptors import geodesic_ball_areas
from geomot.correspondence.fmaps import orientation_operators, point_orientation_operators
from geomot.io.synthetic import bumpy_pair, icosphere, torus
from geomot.metrics import geodesic_error
from geomot.ops.geometry import vertex_areas
from geomot.ops.graph import edge_graph
from geomot.ops.orientation import (
    map_orientation_score,
    oriented_normals,
    point_gradients,
    point_map_orientation_score,
)
from geomot.ops.spectral import spectral_basis
from geomot.structures import PointCloud

FAST = dict(k=30, k_init=6, k_select=16, n_candidates=8, n_samples=200)
MIRROR = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)


def _rotation(seed: int) -> torch.Tensor:
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    return q * torch.sign(torch.linalg.det(q))


@pytest.fixture(scope="module")
def ellipsoid():
    m = icosphere(3)
    return m.verts * torch.tensor([1.0, 1.6, 0.7], dtype=torch.float64), m.faces


def test_normals_point_outwards_on_a_torus_and_on_separate_parts():
    # a torus is not star-shaped: on its inner ring the outward normal points towards the centroid, so a sign
    # chosen by "away from the centroid" fails there; the spanning tree and the divergence theorem do not
    t = torus(1.0, 0.35, n_major=60, n_minor=24)
    v = t.verts
    core = torch.nn.functional.normalize(v * torch.tensor([1.0, 1.0, 0.0], dtype=v.dtype), dim=1)
    outward = torch.nn.functional.normalize(v - core, dim=1)
    n = oriented_normals(v)
    assert torch.allclose(n.norm(dim=1), torch.ones(v.shape[0], dtype=v.dtype))
    assert float((n * outward).sum(1).min()) > 0.9
    # two spheres far apart: each part outward on its own
    s = icosphere(3).verts
    two = torch.cat([s, 0.5 * s + 5.0])
    n2 = oriented_normals(two)
    centres = torch.cat([torch.zeros_like(s), torch.full_like(s, 5.0)])
    assert float(((n2 * (two - centres)).sum(1) > 0).double().mean()) == 1.0


def test_normals_follow_rigid_motions_and_scaling():
    # random points on an ellipsoid (no ties among the neighbours), against the exact outward normals
    g = torch.Generator().manual_seed(0)
    axes = torch.tensor([1.0, 1.6, 0.7], dtype=torch.float64)
    v = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g, dtype=torch.float64), dim=1) * axes
    n = oriented_normals(v)
    exact = torch.nn.functional.normalize(v / axes**2, dim=1)
    assert float((n * exact).sum(1).min()) > 0.95
    rot = _rotation(3)
    moved = oriented_normals(2.5 * v @ rot.T + torch.tensor([1.0, -2.0, 3.0], dtype=v.dtype))
    assert torch.allclose(moved, n @ rot.T, atol=1e-8)
    assert oriented_normals(v.float()).dtype == torch.float32


def test_point_score_detects_mirrors_and_agrees_with_the_mesh_score(ellipsoid):
    v, f = ellipsoid
    n = oriented_normals(v)
    ident = torch.arange(v.shape[0])
    assert point_map_orientation_score(ident, v, n, v, n) == pytest.approx(1.0, abs=1e-9)
    vm = v * MIRROR
    assert point_map_orientation_score(ident, v, n, vm, oriented_normals(vm)) == pytest.approx(-1.0, abs=1e-9)
    sym = torch.cdist(v * MIRROR, v).argmin(1)  # the left-right self-map: reverses orientation
    rot = torch.cdist(v * torch.tensor([-1.0, -1.0, 1.0], dtype=v.dtype), v).argmin(1)  # a half-turn: keeps it
    grads = point_gradients(v, n)
    for p2p, sign in ((sym, -1), (rot, 1)):
        s_pts = point_map_orientation_score(p2p, v, n, v, n, gradients=grads)
        s_mesh = map_orientation_score(p2p, v, f, v, f)
        assert sign * s_pts > 0.9 and sign * s_mesh > 0.9
    scrambled = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(0))
    assert abs(point_map_orientation_score(scrambled, v, n, v, n)) < 0.2
    # a mesh source with a point-cloud target (normals instead of faces)
    assert map_orientation_score(sym, v, f, v, None, normals_tgt=n) < -0.9


def test_point_orientation_operators_flip_under_a_mirror_and_match_the_mesh_operators(ellipsoid):
    v, f = ellipsoid
    basis = spectral_basis(v, f, k=12)
    desc = basis.evecs[:, 1:5] ** 2 + basis.evecs[:, 2:6]  # some functions that are not eigenfunctions
    n = oriented_normals(v)
    ops = point_orientation_operators(point_gradients(v, n), basis.mass, basis.evecs, desc)
    assert ops.shape == (4, 12, 12)
    mesh_ops = orientation_operators(v, f, basis.evecs, desc)
    cos = float((ops * mesh_ops).sum() / (ops.norm() * mesh_ops.norm()))
    assert cos > 0.9
    # on a closed surface <h, n . (grad f x grad g)> = -<g, n . (grad f x grad h)>: nearly antisymmetric
    assert float((ops + ops.transpose(1, 2)).norm() / ops.norm()) < 0.2
    # a mirror image reverses the operators exactly (random points: no ties among the neighbours)
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(1500, 3, generator=g, dtype=torch.float64), dim=1)
    x = x * torch.tensor([1.0, 1.6, 0.7], dtype=torch.float64)
    b = spectral_basis(x, None, k=10)
    d = b.evecs[:, 1:4] ** 2 + b.evecs[:, 2:5]
    o = point_orientation_operators(point_gradients(x, oriented_normals(x)), b.mass, b.evecs, d)
    xm = x * MIRROR
    om = point_orientation_operators(point_gradients(xm, oriented_normals(xm)), b.mass, b.evecs, d)
    assert torch.allclose(om, -o, atol=1e-9 * float(o.abs().max()))


def test_ball_areas_of_a_point_cloud_with_its_areas_equal_the_mesh_ones(ellipsoid):
    v, f = ellipsoid
    graph = edge_graph(v, f)
    radii = [0.3, 0.6]
    mesh = geodesic_ball_areas(v, f, radii, graph=graph)
    cloud = geodesic_ball_areas(v, None, radii, graph=graph, areas=vertex_areas(v, f))
    assert torch.equal(mesh, cloud)
    assert geodesic_ball_areas(v, None, radii, areas=vertex_areas(v, f)).shape == (v.shape[0], 2)
    with pytest.raises(ValidationError, match="areas"):
        geodesic_ball_areas(v, None, radii)
    with pytest.raises(ShapeError, match="areas"):
        geodesic_ball_areas(v, None, radii, areas=torch.ones(3, dtype=v.dtype))


def test_bad_inputs_raise_clear_errors(ellipsoid):
    v, f = ellipsoid
    with pytest.raises(ShapeError, match="points"):
        oriented_normals(v[:, :2])
    with pytest.raises(ValidationError, match="points"):
        oriented_normals(torch.cat([v, torch.full((1, 3), math.nan, dtype=v.dtype)]))
    with pytest.raises(ValidationError, match="k"):
        oriented_normals(v, k=2)
    with pytest.raises(ValidationError, match="more than k"):
        oriented_normals(v[:5])
    n = oriented_normals(v)
    with pytest.raises(ShapeError, match="normals"):
        point_gradients(v, n[:-1])
    with pytest.raises(ShapeError, match="p2p"):
        point_map_orientation_score(torch.arange(3), v, n, v, n)
    with pytest.raises(ShapeError, match="faces_tgt"):
        map_orientation_score(torch.arange(v.shape[0]), v, f, v, None)


def test_match_on_point_clouds_keeps_orientation():
    pair = bumpy_pair(600, seed=3)
    src, tgt = PointCloud(pair.source.verts), PointCloud(pair.target.verts)
    res = match(src, tgt, **FAST)
    err = 100 * float(geodesic_error(res.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx))
    assert err < 5.0
    assert res.orientation_ratio < 1.0  # finite: point clouds have orientation terms too
    v2, v1 = pair.source.verts, pair.target.verts
    score = point_map_orientation_score(res.p2p_21, v2, oriented_normals(v2), v1, oriented_normals(v1))
    assert score > 0.5
    # a mesh matched to a point cloud (and back) uses the same terms
    mixed = match(pair.source, tgt, **FAST)
    err = 100 * float(geodesic_error(mixed.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx))
    assert err < 5.0 and mixed.orientation_ratio < 1.0


def test_small_clouds_and_duplicated_points_are_matched():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    settings = dict(k=6, k_init=2, k_select=3, n_candidates=1, n_samples=10)
    res = match(PointCloud(torch.cat([x, x[:5]])), PointCloud(x), **settings)
    assert res.p2p_21.shape == (45,) and int(res.p2p_21.max()) < 40
    n = oriented_normals(torch.cat([x, x[:5]]))
    assert bool(torch.isfinite(n).all()) and torch.allclose(n.norm(dim=1), torch.ones(45, dtype=x.dtype))
