"""L1 geometry ops against trimesh / robust_laplacian, and sampling statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from geomot._core.errors import ValidationError
from geomot.ops import (
    boundary_loops,
    center_and_scale,
    cotangent_laplacian,
    edges,
    face_areas_normals,
    face_centroids,
    farthest_point_sampling,
    remove_unreferenced_vertices,
    sample_surface,
    total_area,
    uniform_laplacian,
    vertex_areas,
    vertex_normals,
)
from tests.conftest import icosphere


def _random_mesh(seed: int = 0):
    tm = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(seed)
    v = tm.vertices * (1 + 0.2 * rng.standard_normal((len(tm.vertices), 1)))
    return torch.tensor(v), torch.tensor(tm.faces, dtype=torch.long), trimesh.Trimesh(v, tm.faces, process=False)


def test_areas_normals_match_trimesh():
    v, f, tm = _random_mesh()
    areas, normals = face_areas_normals(v, f)
    np.testing.assert_allclose(areas.numpy(), tm.area_faces, rtol=1e-10)
    np.testing.assert_allclose(normals.numpy(), tm.face_normals, atol=1e-10)
    np.testing.assert_allclose(total_area(v, f).item(), tm.area, rtol=1e-12)
    np.testing.assert_allclose(face_centroids(v, f).numpy(), tm.triangles_center, atol=1e-12)


def test_batched_areas_match_single():
    v, f, _ = _random_mesh(1)
    a1, n1 = face_areas_normals(v, f)
    ab, nb = face_areas_normals(torch.stack([v, 2 * v]), torch.stack([f, f]))
    assert torch.allclose(ab[0], a1) and torch.allclose(ab[1], 4 * a1) and torch.allclose(nb[1], n1)


def test_vertex_normals_and_areas():
    v, f = icosphere(3)
    vn = vertex_normals(v, f)
    # on a sphere the area-weighted vertex normal is close to the radial direction
    assert (vn * v).sum(-1).min() > 0.999
    va = vertex_areas(v, f)
    assert torch.allclose(va.sum(), total_area(v, f))
    _, _, tm = _random_mesh(2)
    vv, ff = torch.tensor(tm.vertices), torch.tensor(tm.faces)
    ref = np.zeros(len(tm.vertices))
    np.add.at(ref, tm.faces.ravel(), np.repeat(tm.area_faces / 3, 3))
    np.testing.assert_allclose(vertex_areas(vv, ff).numpy(), ref, rtol=1e-12)


def test_center_and_scale_unit_area():
    v, f = icosphere(2)
    vn, c, _ = center_and_scale(3 * v + torch.tensor([1.0, 2.0, 3.0], dtype=v.dtype), f)
    assert torch.allclose(total_area(vn, f), torch.tensor(1.0, dtype=v.dtype))
    assert torch.allclose(c, torch.tensor([1.0, 2.0, 3.0], dtype=v.dtype), atol=1e-12)
    pts, _, _ = center_and_scale(torch.randn(100, 3, dtype=torch.float64) * 5 + 2)
    assert torch.allclose((pts**2).sum(-1).mean(), torch.tensor(1.0, dtype=torch.float64))


def test_cotangent_laplacian_matches_robust_laplacian():
    import robust_laplacian

    v, f = icosphere(2)  # Delaunay: the intrinsic Delaunay Laplacian equals the cotangent one
    L_ref, M_ref = robust_laplacian.mesh_laplacian(v.numpy(), f.numpy())
    L = cotangent_laplacian(v, f).to_dense().numpy()
    np.testing.assert_allclose(L, L_ref.toarray(), atol=1e-9)
    np.testing.assert_allclose(vertex_areas(v, f).numpy(), M_ref.diagonal(), rtol=1e-9)
    # PSD convention and constants in the kernel
    assert np.allclose(L.sum(1), 0, atol=1e-12) and np.linalg.eigvalsh(L).min() > -1e-10


def test_cotangent_laplacian_differentiable():
    v, f = icosphere(0)
    v = v.clone().requires_grad_(True)

    def energy(x):
        L = cotangent_laplacian(x, f)
        return (x * torch.sparse.mm(L, x)).sum()

    assert torch.autograd.gradcheck(energy, (v,))


def test_uniform_laplacian_degrees():
    v, f = icosphere(1)
    L = uniform_laplacian(f, v.shape[0], dtype=torch.float64).to_dense()
    deg = L.diagonal()
    assert set(deg.tolist()) == {5.0, 6.0} and torch.allclose(L.sum(1), torch.zeros(v.shape[0], dtype=torch.float64))


def test_edges_boundary_and_unreferenced():
    v, f = icosphere(1)
    assert edges(f).shape[0] == 120  # V - E + F = 2 with V=42, F=80
    assert boundary_loops(f) == []
    open_f = f[1:]  # remove one triangle -> one boundary loop of 3 vertices
    loops = boundary_loops(open_f)
    assert len(loops) == 1 and sorted(loops[0].tolist()) == sorted(f[0].tolist())
    v2 = torch.cat([v, torch.randn(3, 3, dtype=v.dtype)])
    vk, fk, kept = remove_unreferenced_vertices(v2, f)
    assert vk.shape[0] == 42 and torch.equal(vk[fk], v2[f]) and kept.max() == 41


def _two_scale_mesh():
    """One big triangle (area 50) next to a fan of many tiny triangles: vertex-uniform sampling would land
    almost everywhere on the tiny ones, area-uniform sampling lands on the big one with probability ~ area ratio."""
    verts = [[0.0, 0, 0], [10, 0, 0], [0, 10, 0]]
    faces = [[0, 1, 2]]
    k = 40
    for i in range(k):
        x = 20.0 + i * 0.1
        base = len(verts)
        verts += [[x, 0, 0], [x + 0.1, 0, 0], [x, 0.1, 0]]
        faces.append([base, base + 1, base + 2])
    return torch.tensor(verts, dtype=torch.float64), torch.tensor(faces)


def test_sampling_is_uniform_by_area():
    v, f = _two_scale_mesh()
    areas, _ = face_areas_normals(v, f)
    p_big = float(areas[0] / areas.sum())
    n = 20000
    s = sample_surface(v, f, n, generator=torch.Generator().manual_seed(0))
    frac_big = float((s.face_index == 0).double().mean())
    # binomial standard deviation ~ 0.0014; vertex-uniform sampling would give 3 / 123 ~ 0.024
    assert abs(frac_big - p_big) < 5 * (p_big * (1 - p_big) / n) ** 0.5
    # inside the big triangle the points are uniform: x + y <= 10 and the mean is the centroid
    pts = s.points[s.face_index == 0]
    assert (pts[:, :2].sum(1) <= 10 + 1e-9).all()
    assert torch.allclose(pts[:, :2].mean(0), torch.tensor([10 / 3, 10 / 3], dtype=v.dtype), atol=0.1)
    # fraction of the big triangle's samples inside the half-area sub-triangle x + y <= 10/sqrt(2)
    inner = float((pts[:, :2].sum(1) <= 10 / 2**0.5).double().mean())
    assert abs(inner - 0.5) < 0.03
    assert torch.allclose(s.barycentric.sum(1), torch.ones(n, dtype=v.dtype))


def test_sampling_reproducible_and_differentiable():
    v, f = icosphere(1)
    a = sample_surface(v, f, 50, generator=torch.Generator().manual_seed(3)).points
    b = sample_surface(v, f, 50, generator=torch.Generator().manual_seed(3)).points
    assert torch.equal(a, b)
    vv = v.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: sample_surface(x, f, 20, generator=torch.Generator().manual_seed(5)).points, (vv,)
    )


def test_sampling_bad_input():
    v, f = icosphere(0)
    with pytest.raises(ValidationError, match="n: expected a positive value"):
        sample_surface(v, f, 0)
    with pytest.raises(ValidationError, match="zero total area"):
        sample_surface(torch.zeros_like(v), f, 10)


def test_farthest_point_sampling():
    pts = torch.tensor([[0.0, 0], [0.1, 0], [10, 0], [10, 0.1], [5, 8]])
    idx = farthest_point_sampling(pts, 3, start=0)
    assert idx.tolist() == [0, 3, 4]  # [10, 0.1] is farther from the origin than [10, 0]
    assert len(set(farthest_point_sampling(torch.randn(50, 3), 50, start=1).tolist())) == 50
    with pytest.raises(ValidationError, match="k: cannot choose 6 points out of 5"):
        farthest_point_sampling(pts, 6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_farthest_point_sampling_compiled_equals_torch_loop(dtype, monkeypatch):
    """The compiled loop picks the same indices as the torch loop (ties included: a grid has many)."""
    import geomot.ops.sampling as sampling

    g = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(torch.arange(12.0), torch.arange(9.0), indexing="ij"), -1).reshape(-1, 2)
    cases = [(torch.randn(3000, 3, generator=g), 400), (grid, 60), (icosphere(3)[0], 200)]
    for pts, k in cases:
        pts = pts.to(dtype)
        fast = farthest_point_sampling(pts, k, start=7)
        monkeypatch.setattr(sampling, "numba_available", lambda: False)
        slow = farthest_point_sampling(pts, k, start=7)
        monkeypatch.undo()
        assert torch.equal(fast, slow)
    bad = torch.randn(30, 3, generator=g)
    bad[4, 1] = float("nan")  # non-finite points take the torch loop
    assert farthest_point_sampling(bad, 5, start=0).shape == (5,)
