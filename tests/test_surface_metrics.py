"""Surface metrics: exact point-to-triangle distances (vs trimesh), ASSD / HD / HD90 / Chamfer closed forms,
exact self-intersection counts on constructed cases, flipped faces, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from geomot._core.errors import ShapeError, ValidationError
from geomot.metrics import (
    assd,
    chamfer,
    flipped_faces,
    hausdorff,
    hd90,
    intersecting_face_pairs,
    normal_consistency,
    point_to_surface,
    point_triangle_distance,
    self_intersections,
    surface_metrics,
    triangles_intersect,
)
from geomot.structures import Mesh
from tests.conftest import icosphere


def _grid(n: int = 6, z: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    xs = np.linspace(0, 1, n)
    xx, yy = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([xx.ravel(), yy.ravel(), np.full(n * n, z)], 1)
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
            f += [[a, b, c], [a, c, d]]
    return v, np.array(f, dtype=np.int64)


def _brute_force(points: np.ndarray, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """min over every triangle of trimesh's row-wise closest point (the oracle)."""
    tri = v[f]
    out = np.full(len(points), np.inf)
    for k in range(len(f)):
        cp = trimesh.triangles.closest_point(np.repeat(tri[k][None], len(points), 0), points)
        out = np.minimum(out, np.linalg.norm(cp - points, axis=1))
    return out


def test_point_triangle_distance_matches_trimesh():
    rng = np.random.default_rng(0)
    tri = rng.normal(size=(500, 3, 3))
    tri[:20, 2] = tri[:20, 0] + 0.5 * (tri[:20, 1] - tri[:20, 0])  # degenerate (collinear) triangles
    p = rng.normal(size=(500, 3)) * 2
    d, cp = point_triangle_distance(p, tri)
    ref = trimesh.triangles.closest_point(tri, p)
    np.testing.assert_allclose(cp, ref, atol=1e-9)
    np.testing.assert_allclose(d, np.linalg.norm(ref - p, axis=1), atol=1e-9)


def test_point_to_surface_is_exact_against_brute_force():
    v, f = icosphere(1)
    v = v.numpy() * np.array([1.0, 0.6, 1.4])
    rng = np.random.default_rng(1)
    p = rng.normal(size=(300, 3)) * 1.2
    res = point_to_surface(p, (v, f))
    np.testing.assert_allclose(res.distance, _brute_force(p, v, f.numpy()), atol=1e-10)
    # the closest point lies on the reported face
    d_face, _ = point_triangle_distance(p, v[f.numpy()[res.face_index]])
    np.testing.assert_allclose(d_face, res.distance, atol=1e-10)


def test_parallel_planes_closed_form():
    a = _grid(7, 0.0)
    b = _grid(7, 0.3)
    assert assd(a, b) == pytest.approx(0.3, abs=1e-12)
    assert hd90(a, b) == pytest.approx(0.3, abs=1e-12)
    assert hausdorff(a, b) == pytest.approx(0.3, abs=1e-12)
    assert chamfer(a, b) == pytest.approx(2 * 0.09, abs=1e-12)
    assert normal_consistency(a, b) == pytest.approx(1.0, abs=1e-12)


def test_assd_matches_brute_force_oracle_and_is_symmetric():
    v, f = icosphere(2)
    a = (v, f)
    b = (v * torch.tensor([1.2, 0.9, 1.0], dtype=v.dtype) + 0.05, f)
    d_ab = _brute_force(a[0].numpy(), b[0].numpy(), f.numpy())
    d_ba = _brute_force(b[0].numpy(), a[0].numpy(), f.numpy())
    assert assd(a, b) == pytest.approx(0.5 * (d_ab.mean() + d_ba.mean()), rel=1e-10)
    assert assd(b, a) == pytest.approx(assd(a, b), rel=1e-12)
    assert hd90(a, b) == pytest.approx(max(np.percentile(d_ab, 90), np.percentile(d_ba, 90)), rel=1e-10)
    assert hausdorff(a, b) == pytest.approx(max(d_ab.max(), d_ba.max()), rel=1e-10)


def test_identical_surfaces_give_zero():
    v, f = icosphere(2)
    m = surface_metrics(Mesh(v, f), (v, f), reference=(v, f))
    assert m.assd == 0 and m.hd90 == 0 and m.hausdorff == 0 and m.chamfer == 0
    assert m.normal_consistency == pytest.approx(1.0)
    assert m.self_intersections == 0 and m.flipped_faces == 0
    assert surface_metrics((v, f), (v, f)).flipped_faces == -1


def test_two_crossing_triangles_intersect():
    t1 = np.array([[[0, 0, 0], [2, 0, 0], [0, 2, 0]]], dtype=float)
    t2 = np.array([[[0.5, 0.5, -1], [0.5, 0.5, 1], [1.5, -1, 0.0]]], dtype=float)
    assert triangles_intersect(t1, t2)[0]
    assert triangles_intersect(t2, t1)[0]
    far = t2 + np.array([5.0, 0, 0])
    assert not triangles_intersect(t1, far)[0]
    # straddles the plane of t1 but passes outside it
    beside = t2 + np.array([3.0, 3.0, 0])
    assert not triangles_intersect(t1, beside)[0]


def test_coplanar_triangles():
    t1 = np.array([[[0, 0, 0], [2, 0, 0], [0, 2, 0]]], dtype=float)
    overlap = np.array([[[0.5, 0.5, 0], [3, 0.5, 0], [0.5, 3, 0]]], dtype=float)
    inside = np.array([[[0.2, 0.2, 0], [0.5, 0.2, 0], [0.2, 0.5, 0]]], dtype=float)
    apart = np.array([[[3, 3, 0], [4, 3, 0], [3, 4, 0]]], dtype=float)
    assert triangles_intersect(t1, overlap)[0]
    assert triangles_intersect(t1, inside)[0] and triangles_intersect(inside, t1)[0]
    assert not triangles_intersect(t1, apart)[0]


def test_self_intersections_on_meshes():
    v, f = icosphere(3)
    assert self_intersections((v, f)) == 0  # closed sphere: adjacent faces only
    # two crossing triangles in one mesh
    verts = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0.5, 0.5, -1], [0.5, 0.5, 1], [1.5, -1, 0.0]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    assert self_intersections((verts, faces)) == 2
    assert intersecting_face_pairs((verts, faces)).tolist() == [[0, 1]]
    # a sphere whose top cap is pushed down through the bottom
    pushed = v.clone()
    cap = pushed[:, 2] > 0.3
    pushed[cap, 2] -= 1.8
    n = self_intersections((pushed, f))
    assert n > 0
    assert n == np.unique(intersecting_face_pairs(Mesh(pushed, f))).size


def test_flipped_faces():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    f = np.array([[0, 1, 2], [1, 3, 2]])
    moved = v.copy()
    moved[2] = [0.0, -1.0, 0]  # vertex 2 crosses the edge 0-1: face 0 flips, face 1 does not
    assert flipped_faces((v, f), (v, f)) == 0
    assert flipped_faces((v, f), (moved, f)) == 1


def test_bad_inputs():
    v, f = icosphere(1)
    bad = v.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValidationError, match="a: verts contain 1 NaN/Inf"):
        assd((bad, f), (v, f))
    with pytest.raises(ValidationError, match=r"face indices must lie in \[0, 42\)"):
        assd((v, f + 100), (v, f))
    with pytest.raises(ShapeError, match="expected a Mesh or a \\(verts, faces\\) pair"):
        assd(v, (v, f))
    with pytest.raises(ShapeError, match="expected verts of shape"):
        assd((v[:, :2], f), (v, f))
    with pytest.raises(ValidationError, match="percentile: expected a value in"):
        hausdorff((v, f), (v, f), percentile=120)
    with pytest.raises(ShapeError, match="points: expected shape"):
        point_to_surface(np.zeros((4, 2)), (v, f))
    with pytest.raises(ValidationError, match="points: contain"):
        point_to_surface(np.full((4, 3), np.inf), (v, f))
    with pytest.raises(ShapeError, match="deformed: expected the faces of source"):
        flipped_faces((v, f), (v, f[:10]))
    with pytest.raises(ShapeError, match="a single mesh"):
        assd(Mesh([v, v], [f, f]), (v, f))


def test_grid_candidates_contain_every_overlapping_box_pair():
    from geomot.metrics.intersections import _grid_pairs

    rng = np.random.default_rng(0)
    lo = rng.random((300, 3))
    hi = lo + rng.random((300, 3)) * 0.1
    hi[:3] += 2.0  # a few huge boxes take the direct path
    cand = set(map(tuple, _grid_pairs(lo, hi).tolist()))
    overlap = {(i, j) for i in range(300) for j in range(i + 1, 300) if (lo[i] <= hi[j]).all() and (lo[j] <= hi[i]).all()}
    assert overlap <= cand


def test_point_to_surface_stays_exact_and_small_with_one_huge_face():
    """A vertex thrown far away stretches a few faces: they are tested against every point instead of inflating the
    pruning radius of all faces (which used to re-search every point against every face)."""
    from geomot.metrics.surface import point_to_surface, point_triangle_distance

    rng = np.random.default_rng(0)
    n = 30
    u, w = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    verts = np.stack([u.ravel(), w.ravel(), np.zeros(n * n)], 1)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a = i * n + j
            faces += [[a, a + 1, a + n], [a + 1, a + n + 1, a + n]]
    faces = np.array(faces)
    verts[n * n // 2 + n // 2] = [0.5, 0.5, 50.0]
    pts = rng.uniform(-0.2, 1.2, (400, 3))
    res = point_to_surface(pts, (verts, faces))
    brute = np.stack([point_triangle_distance(pts, np.broadcast_to(verts[f], (len(pts), 3, 3)))[0] for f in faces])
    np.testing.assert_allclose(res.distance, brute.min(0), atol=1e-12)
