"""to_* / from_* conversions: trimesh, open3d, pyvista, torch_geometric, pytorch3d (skipped when not importable)."""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest
import torch

from geomot._core.errors import MissingDependencyError, ShapeError, ValidationError
from geomot.io import (
    from_open3d,
    from_pyg,
    from_pytorch3d,
    from_pyvista,
    from_trimesh,
    to_open3d,
    to_pyg,
    to_pytorch3d,
    to_pyvista,
    to_trimesh,
)
from geomot.io.synthetic import blob
from geomot.structures import Mesh, PointCloud

HAS_PYTORCH3D = importlib.util.find_spec("pytorch3d") is not None


@pytest.fixture
def mesh() -> Mesh:
    return blob(2)  # asymmetric, so a reordering of vertices could not go unnoticed


@pytest.fixture
def cloud() -> PointCloud:
    g = torch.Generator().manual_seed(1)
    p = torch.randn(40, 3, generator=g, dtype=torch.float64)
    return PointCloud(p, torch.nn.functional.normalize(torch.randn(40, 3, generator=g, dtype=torch.float64), dim=1))


def _same_mesh(a: Mesh, b: Mesh, atol: float = 1e-12) -> None:
    assert torch.allclose(a.verts.double(), b.verts.double(), atol=atol, rtol=0)
    assert torch.equal(a.faces, b.faces)


def _same_cloud(a: PointCloud, b: PointCloud, normals: bool = True) -> None:
    assert torch.allclose(a.points_list()[0].double(), b.points_list()[0].double(), atol=1e-12)
    if normals:
        assert torch.allclose(a.normals_list()[0].double(), b.normals_list()[0].double(), atol=1e-12)


# -- trimesh --------------------------------------------------------------------------------------------
def test_trimesh_round_trip_and_area(mesh, cloud):
    import trimesh

    tm = to_trimesh(mesh)
    assert isinstance(tm, trimesh.Trimesh) and tm.vertices.shape == (162, 3)
    assert tm.area == pytest.approx(float(mesh.total_area()[0]), rel=1e-12)
    assert tm.is_watertight and tm.volume > 0  # outward orientation survives
    back = from_trimesh(tm, dtype=torch.float64)
    _same_mesh(mesh, back)
    assert from_trimesh(tm).dtype == torch.float64  # trimesh stores float64: kept
    assert from_trimesh(tm, dtype=torch.float32).dtype == torch.float32
    pc = to_trimesh(cloud)
    assert isinstance(pc, trimesh.PointCloud)
    _same_cloud(cloud, from_trimesh(pc, dtype=torch.float64), normals=False)


def test_from_trimesh_of_trimesh_primitive():
    import trimesh

    tm = trimesh.creation.icosphere(subdivisions=2)
    m = from_trimesh(tm, dtype=torch.float64)
    np.testing.assert_allclose(m.verts.numpy(), tm.vertices)
    np.testing.assert_allclose(m.face_areas_list()[0].numpy(), tm.area_faces, rtol=1e-10)
    np.testing.assert_allclose(m.face_normals_list()[0].numpy(), tm.face_normals, atol=1e-10)


# -- open3d ---------------------------------------------------------------------------------------------
def test_open3d_round_trip(mesh, cloud):
    o3d = pytest.importorskip("open3d")
    om = to_open3d(mesh)
    assert isinstance(om, o3d.geometry.TriangleMesh)
    assert om.get_surface_area() == pytest.approx(float(mesh.total_area()[0]), rel=1e-10)
    _same_mesh(mesh, from_open3d(om, dtype=torch.float64))
    oc = to_open3d(cloud)
    assert isinstance(oc, o3d.geometry.PointCloud) and oc.has_normals()
    _same_cloud(cloud, from_open3d(oc, dtype=torch.float64))
    bare = from_open3d(to_open3d(PointCloud(cloud.points_list()[0])))
    assert bare.normals_list() is None


def test_from_open3d_primitive():
    o3d = pytest.importorskip("open3d")
    sph = o3d.geometry.TriangleMesh.create_sphere(radius=2.0, resolution=10)
    m = from_open3d(sph, dtype=torch.float64)
    assert float(m.total_area()[0]) == pytest.approx(sph.get_surface_area(), rel=1e-10)
    assert torch.allclose(m.verts.norm(dim=1), torch.full((m.verts.shape[0],), 2.0, dtype=torch.float64))


# -- pyvista --------------------------------------------------------------------------------------------
def test_pyvista_round_trip(mesh, cloud):
    pv = pytest.importorskip("pyvista")
    poly = to_pyvista(mesh)
    assert isinstance(poly, pv.PolyData) and poly.n_points == 162 and poly.is_all_triangles
    assert poly.area == pytest.approx(float(mesh.total_area()[0]), rel=1e-10)
    _same_mesh(mesh, from_pyvista(poly, dtype=torch.float64))
    pc = to_pyvista(cloud)
    assert pc.n_points == 40 and np.asarray(pc.faces).size == 0
    _same_cloud(cloud, from_pyvista(pc, dtype=torch.float64))


def test_from_pyvista_triangulates_quads():
    pv = pytest.importorskip("pyvista")
    plane = pv.Plane(i_size=2.0, j_size=3.0, i_resolution=2, j_resolution=3)  # 6 quads
    m = from_pyvista(plane, dtype=torch.float64)
    assert m.faces.shape == (12, 3)
    np.testing.assert_allclose(m.verts.numpy(), np.asarray(plane.points))
    assert float(m.total_area()[0]) == pytest.approx(6.0)


# -- torch_geometric ------------------------------------------------------------------------------------
def test_pyg_round_trip_shares_tensors_and_gradients(mesh, cloud):
    pytest.importorskip("torch_geometric")
    data = to_pyg(mesh)
    assert data.pos.shape == (162, 3) and data.face.shape == (3, 320)
    assert data.pos.data_ptr() == mesh.verts.data_ptr()
    _same_mesh(mesh, from_pyg(data))
    assert from_pyg(data, dtype=torch.float32).dtype == torch.float32
    v = mesh.verts.clone().requires_grad_(True)
    out = from_pyg(to_pyg(Mesh(v, mesh.faces)))
    out.total_area().sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    d = to_pyg(cloud)
    assert d.normal.shape == (40, 3) and "face" not in d
    _same_cloud(cloud, from_pyg(d))


def test_pyg_batches(mesh):
    pyg = pytest.importorskip("torch_geometric")
    small = blob(1)
    batch = Mesh([mesh.verts, small.verts], [mesh.faces, small.faces])
    b = to_pyg(batch)
    assert isinstance(b, pyg.data.Batch) and b.num_graphs == 2 and b.pos.shape == (162 + 42, 3)
    back = from_pyg(b)
    assert len(back) == 2
    for i, ref in enumerate([mesh, small]):
        assert torch.equal(back.verts_list()[i], ref.verts) and torch.equal(back.faces_list()[i], ref.faces)
    clouds = from_pyg(to_pyg(PointCloud([torch.rand(5, 3), torch.rand(7, 3)])))
    assert clouds.lengths.tolist() == [5, 7]


def test_from_pyg_errors():
    pyg = pytest.importorskip("torch_geometric")
    with pytest.raises(ValidationError, match="data: expected a 'pos' attribute"):
        from_pyg(pyg.data.Data(x=torch.rand(3, 3)))
    with pytest.raises(ShapeError, match=r"data\.face: expected shape \(3, F\), got \(4, 3\)"):
        from_pyg(pyg.data.Data(pos=torch.rand(5, 3), face=torch.zeros(4, 3, dtype=torch.long)))
    with pytest.raises(ValidationError, match="faces: index 9 out of range for 5 vertices"):
        from_pyg(pyg.data.Data(pos=torch.rand(5, 3), face=torch.tensor([[0], [1], [9]])))


# -- pytorch3d ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_PYTORCH3D, reason="pytorch3d is not installed (optional: pip install geomot[pytorch3d])")
def test_pytorch3d_round_trip(mesh, cloud):
    from pytorch3d.structures import Meshes, Pointclouds

    m3 = to_pytorch3d(mesh)
    assert isinstance(m3, Meshes) and m3.verts_packed().shape == (162, 3)
    _same_mesh(mesh, from_pytorch3d(m3))
    p3 = to_pytorch3d(cloud)
    assert isinstance(p3, Pointclouds)
    _same_cloud(cloud, from_pytorch3d(p3))
    batch = Mesh([mesh.verts, blob(1).verts], [mesh.faces, blob(1).faces])
    assert len(from_pytorch3d(to_pytorch3d(batch))) == 2


def _fake_pytorch3d():
    """Stand-in with the constructor signatures and list accessors of pytorch3d.structures (v0.7), used only when
    the real package is absent so the conversion logic (keywords, batches, missing normals) still runs."""
    import types

    class Meshes:
        def __init__(self, verts, faces, textures=None, *, verts_normals=None):
            self._v, self._f = list(verts), list(faces)

        def verts_list(self):
            return self._v

        def faces_list(self):
            return self._f

    class Pointclouds:
        def __init__(self, points, normals=None, features=None):
            self._p, self._n = list(points), None if normals is None else list(normals)

        def points_list(self):
            return self._p

        def normals_list(self):
            return self._n

    root, structures = types.ModuleType("pytorch3d"), types.ModuleType("pytorch3d.structures")
    structures.Meshes, structures.Pointclouds = Meshes, Pointclouds
    root.structures = structures
    return root, structures


@pytest.mark.skipif(HAS_PYTORCH3D, reason="the real pytorch3d is installed and tested above")
def test_pytorch3d_conversion_logic_with_stand_in(monkeypatch, mesh, cloud):
    root, structures = _fake_pytorch3d()
    monkeypatch.setitem(sys.modules, "pytorch3d", root)
    monkeypatch.setitem(sys.modules, "pytorch3d.structures", structures)
    m3 = to_pytorch3d(mesh)
    assert isinstance(m3, structures.Meshes) and m3.verts_list()[0] is mesh.verts
    _same_mesh(mesh, from_pytorch3d(m3))
    assert from_pytorch3d(m3, dtype=torch.float32).dtype == torch.float32
    _same_cloud(cloud, from_pytorch3d(to_pytorch3d(cloud)))
    bare = from_pytorch3d(to_pytorch3d(PointCloud([torch.rand(4, 3), torch.rand(6, 3)])))
    assert bare.normals_list() is None and bare.lengths.tolist() == [4, 6]
    small = blob(1)
    batch = from_pytorch3d(to_pytorch3d(Mesh([mesh.verts, small.verts], [mesh.faces, small.faces])))
    assert len(batch) == 2 and torch.equal(batch.faces_list()[1], small.faces)
    with pytest.raises(ValidationError, match="obj: expected pytorch3d Meshes or Pointclouds, got str"):
        from_pytorch3d("x")
    with pytest.raises(ValidationError, match="to_pytorch3d: expected a geomot Mesh or PointCloud, got str"):
        to_pytorch3d("x")


def test_pytorch3d_missing_raises(monkeypatch, mesh):
    if HAS_PYTORCH3D:
        monkeypatch.setitem(sys.modules, "pytorch3d", None)
        monkeypatch.setitem(sys.modules, "pytorch3d.structures", None)
    with pytest.raises(MissingDependencyError, match=r"to_pytorch3d needs .*'pytorch3d'.*pip install geomot\[pytorch3d\]"):
        to_pytorch3d(mesh)
    with pytest.raises(MissingDependencyError, match=r"pip install geomot\[pytorch3d\]"):
        from_pytorch3d(object())


# -- shared error behaviour -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "fn", "extra"),
    [("open3d", to_open3d, "geomot[o3d]"), ("pyvista", to_pyvista, "geomot[viz]"),
     ("torch_geometric", to_pyg, "geomot[pyg]"), ("trimesh", to_trimesh, "geomot")],
)
def test_missing_backend(monkeypatch, mesh, module, fn, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=rf"{fn.__name__} needs the optional package .*pip install {re.escape(extra)}`"):
        fn(mesh)


@pytest.mark.parametrize("fn", [to_trimesh, to_open3d, to_pyvista])
def test_numpy_backends_reject_batches_and_non_shapes(fn, mesh):
    batch = Mesh([mesh.verts, mesh.verts], [mesh.faces, mesh.faces])
    with pytest.raises(ShapeError, match=rf"{fn.__name__}: expects a single mesh, got a batch of 2"):
        fn(batch)
    with pytest.raises(ShapeError, match=rf"{fn.__name__}: expects a single point cloud, got a batch of 2"):
        fn(PointCloud(torch.rand(2, 4, 3)))
    with pytest.raises(ValidationError, match=rf"{fn.__name__}: expected a geomot Mesh or PointCloud, got ndarray"):
        fn(np.zeros((3, 3)))


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (from_trimesh, r"tm: expected a trimesh\.Trimesh or trimesh\.PointCloud, got str"),
        (from_open3d, r"geom: expected an open3d\.geometry\.TriangleMesh or open3d\.geometry\.PointCloud, got str"),
        (from_pyvista, r"poly: expected a pyvista\.PolyData, got str"),
        (from_pyg, "data: expected a torch_geometric Data or Batch, got str"),
    ],
)
def test_from_wrong_type(fn, match):
    with pytest.raises(ValidationError, match=match):
        fn("mesh.off")


def test_from_trimesh_validates_geometry():
    import trimesh

    tm = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, np.nan], [0, 1, 0]], faces=[[0, 1, 2]], process=False)
    with pytest.raises(ValidationError, match="verts: contains 1 NaN/Inf"):
        from_trimesh(tm)
    with pytest.raises(ValidationError, match="to_pyg: expected a geomot Mesh or PointCloud, got list"):
        to_pyg([1, 2])


def test_numpy_backends_keep_the_source_precision(mesh, cloud):
    """from_trimesh / from_open3d / from_pyvista keep float64 (and float32) positions unless dtype is given."""
    import trimesh

    tm = trimesh.Trimesh(mesh.verts.numpy(), mesh.faces.numpy(), process=False)
    m = from_trimesh(tm)
    assert m.dtype == torch.float64 and torch.equal(m.verts, mesh.verts)  # bit-exact, not through float32
    assert from_trimesh(trimesh.PointCloud(cloud.points_list()[0].numpy())).dtype == torch.float64
    pv = pytest.importorskip("pyvista")
    poly = to_pyvista(mesh)
    assert from_pyvista(poly).dtype == torch.float64 and torch.equal(from_pyvista(poly).verts, mesh.verts)
    poly32 = pv.PolyData(mesh.verts.numpy().astype(np.float32))
    assert from_pyvista(poly32).dtype == torch.float32
    pc = from_pyvista(to_pyvista(cloud))
    assert pc.dtype == torch.float64 and pc.normals_list()[0].dtype == torch.float64
    o3d = pytest.importorskip("open3d")
    om = to_open3d(mesh)
    assert isinstance(om, o3d.geometry.TriangleMesh)
    assert from_open3d(om).dtype == torch.float64 and torch.equal(from_open3d(om).verts, mesh.verts)
    oc = from_open3d(to_open3d(cloud))
    assert oc.dtype == torch.float64 and oc.normals_list()[0].dtype == torch.float64
