"""geomot.io.load / save: every format round-trips, vertex order is the file's, and bad files raise geomot errors."""

from __future__ import annotations

import gzip
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geomot._core.errors import FileFormatError, MissingDependencyError, ValidationError
from geomot.cli import main as cli_main
from geomot.io import load, save, supported_formats
from geomot.structures import Mesh, PointCloud
from tests.conftest import ROOT, icosphere, shared_path

MESH_SUFFIXES = [".off", ".obj", ".ply", ".stl", ".npz", ".gii", ".gii.gz"]
CLOUD_SUFFIXES = [".ply", ".pcd", ".xyz", ".npz"]
# formats that store positions as float32 (others are lossless or text with >= 10 digits)
FLOAT32_FORMATS = {".gii", ".gii.gz", ".pcd", ".xyz"}


@pytest.fixture
def sphere_mesh() -> Mesh:
    return Mesh(*icosphere(2))


def _cloud(n: int = 50, seed: int = 0) -> PointCloud:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(n, 3, generator=g, dtype=torch.float64)
    nrm = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)
    return PointCloud(p, nrm)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return p


# -- round trips ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_mesh_round_trip(tmp_path, sphere_mesh, suffix):
    if suffix == ".stl":
        with pytest.warns(UserWarning, match=r"m\.stl: STL stores no shared vertices; loading this file back gives "
                          r"vertices numbered in the order of their first use"):
            out = save(sphere_mesh, tmp_path / f"m{suffix}")
    else:
        out = save(sphere_mesh, tmp_path / f"m{suffix}")
    assert out.is_file()
    back = load(out, dtype=torch.float64)
    assert isinstance(back, Mesh) and back.dtype == torch.float64
    tol = 1e-6 if suffix in FLOAT32_FORMATS else 1e-9
    if suffix == ".stl":  # triangle soup: corners are merged again, in first-use order; compare geometry
        assert back.verts.shape == sphere_mesh.verts.shape and back.faces.shape == sphere_mesh.faces.shape
        tri_a = sphere_mesh.verts[sphere_mesh.faces]
        tri_b = back.verts[back.faces]
        assert torch.allclose(tri_a, tri_b, atol=tol)
    else:
        assert torch.allclose(back.verts, sphere_mesh.verts, atol=tol, rtol=0)
        assert torch.equal(back.faces, sphere_mesh.faces)
    assert torch.allclose(back.total_area(), sphere_mesh.total_area(), rtol=1e-5)


@pytest.mark.parametrize("suffix", CLOUD_SUFFIXES)
def test_cloud_round_trip_keeps_normals(tmp_path, suffix):
    pc = _cloud()
    back = load(save(pc, tmp_path / f"c{suffix}"), dtype=torch.float64)
    assert isinstance(back, PointCloud)
    tol = 1e-6 if suffix in FLOAT32_FORMATS else 1e-12
    assert torch.allclose(back.points_list()[0], pc.points_list()[0], atol=tol, rtol=0)
    assert torch.allclose(back.normals_list()[0], pc.normals_list()[0], atol=tol, rtol=0)


@pytest.mark.parametrize("suffix", [".npy", ".ply", ".xyz", ".pcd", ".npz"])
def test_cloud_without_normals(tmp_path, suffix):
    pts = torch.rand(20, 3, dtype=torch.float64)
    back = load(save(PointCloud(pts), tmp_path / f"c{suffix}"), dtype=torch.float64)
    assert back.normals_list() is None
    assert torch.allclose(back.points_list()[0], pts, atol=1e-6)


def test_ply_cloud_readable_by_open3d_and_trimesh(tmp_path):
    o3d = pytest.importorskip("open3d")
    import trimesh

    pc = _cloud(30)
    p = save(pc, tmp_path / "c.ply")
    ref = o3d.io.read_point_cloud(str(p))
    np.testing.assert_allclose(np.asarray(ref.points), pc.points_list()[0].numpy())
    np.testing.assert_allclose(np.asarray(ref.normals), pc.normals_list()[0].numpy())
    np.testing.assert_allclose(np.asarray(trimesh.load(p).vertices), pc.points_list()[0].numpy())


def test_ply_mesh_readable_by_trimesh_and_open3d(tmp_path, sphere_mesh):
    import trimesh

    for dtype in (torch.float64, torch.float32):
        m = Mesh(sphere_mesh.verts.to(dtype), sphere_mesh.faces)
        p = save(m, tmp_path / "m.ply")
        ref = trimesh.load(p, process=False)
        np.testing.assert_array_equal(ref.vertices, m.verts.double().numpy())  # exact in the mesh's precision
        np.testing.assert_array_equal(ref.faces, m.faces.numpy())
    o3d = pytest.importorskip("open3d")
    om = o3d.io.read_triangle_mesh(str(p))
    np.testing.assert_array_equal(np.asarray(om.triangles), sphere_mesh.faces.numpy())


def test_load_matches_trimesh_on_real_meshes():
    import trimesh

    for name in ["spot.obj", "stanford-bunny.obj"]:
        p = shared_path("common3d", name)
        m = load(p, dtype=torch.float64)
        n_v_lines = sum(1 for ln in p.read_text().splitlines() if ln.startswith("v "))
        assert m.verts.shape[0] == n_v_lines  # no vertex split at UV seams, no unreferenced vertex dropped
        ref = trimesh.load(p, process=False, maintain_order=True)
        np.testing.assert_allclose(m.verts.numpy(), ref.vertices)
        assert abs(float(m.total_area()[0]) - ref.area) < 1e-9 * ref.area


def test_dtype_device_and_kind(tmp_path, sphere_mesh):
    p = save(sphere_mesh, tmp_path / "m.off")
    m32 = load(p)
    assert m32.dtype == torch.float32 and m32.device.type == "cpu" and m32.faces.dtype == torch.int64
    assert load(p, device="cpu", dtype=torch.float64).dtype == torch.float64
    pc = load(p, kind="points", dtype=torch.float64)
    assert isinstance(pc, PointCloud)
    # vertex normals of the unit sphere point outwards, along the position
    cos = (pc.normals_list()[0] * pc.points_list()[0]).sum(1)
    assert bool((cos > 0.99).all())
    assert isinstance(load(p, kind="mesh"), Mesh)


def test_vertex_order_and_duplicates_preserved(tmp_path):
    # vertex 3 duplicates vertex 0, vertex 4 is unreferenced: both must stay, in file order
    off = "OFF\n5 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 0\n5 5 5\n3 0 1 2\n3 3 2 1\n"
    m = load(_write(tmp_path, "d.off", off), dtype=torch.float64)
    assert m.verts.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [5, 5, 5]]
    assert m.faces.tolist() == [[0, 1, 2], [3, 2, 1]]
    # OBJ with two texture coordinates on vertex 1 (a UV seam) and an unreferenced vertex
    obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nv 9 9 9\nvt 0 0\nvt 1 0\nvt 0 1\nvt 0.5 0.5\n" \
          "f 1/1 2/2 3/3\nf 2/4 4/2 3/3\n"
    m = load(_write(tmp_path, "seam.obj", obj), dtype=torch.float64)
    assert m.verts.shape == (5, 3) and m.faces.tolist() == [[0, 1, 2], [1, 3, 2]]
    ply = "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n" \
          "element face 2\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n0 0 0\n5 5 5\n" \
          "3 0 1 2\n3 3 2 1\n"
    m = load(_write(tmp_path, "d.ply", ply), dtype=torch.float64)
    assert m.verts.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [5, 5, 5]]
    assert m.faces.tolist() == [[0, 1, 2], [3, 2, 1]]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("q.off", "OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n"),
        ("q.obj", "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n"),
        ("q.ply", "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
                  "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
                  "4 0 1 2 3\n"),
    ],
)
def test_polygons_are_triangulated(tmp_path, name, content):
    m = load(_write(tmp_path, name, content), dtype=torch.float64)
    assert m.faces.shape == (2, 3) and m.verts.shape == (4, 3)
    assert torch.allclose(m.total_area(), torch.tensor([1.0], dtype=torch.float64))
    assert torch.allclose(m.face_normals_list()[0], torch.tensor([[0.0, 0.0, 1.0]] * 2, dtype=torch.float64))


def test_zero_area_faces_load_with_finite_normals(tmp_path):
    off = "OFF\n4 2 0\n0 0 0\n1 0 0\n2 0 0\n0 1 0\n3 0 1 2\n3 0 1 3\n"  # face 0 is degenerate (collinear)
    m = load(_write(tmp_path, "z.off", off), dtype=torch.float64)
    assert m.face_areas_list()[0].tolist() == [0.0, 0.5]
    assert torch.isfinite(m.vertex_normals_list()[0]).all() and torch.isfinite(m.face_normals_list()[0]).all()
    assert m.face_normals_list()[0][0].abs().sum() == 0


def test_file_without_faces_is_a_point_cloud(tmp_path):
    p = _write(tmp_path, "pts.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    assert isinstance(load(p), PointCloud)
    with pytest.raises(FileFormatError, match=r"pts\.off: kind='mesh' but the file has no faces"):
        load(p, kind="mesh")


def test_gifti_reads_fsaverage_like_nibabel():
    nib = pytest.importorskip("nibabel")
    p = shared_path("fsaverage5", "pial_left.gii.gz")
    m = load(p, dtype=torch.float64)
    img = nib.load(str(p))
    np.testing.assert_allclose(m.verts.numpy(), img.darrays[0].data)
    np.testing.assert_array_equal(m.faces.numpy(), img.darrays[1].data)


def test_supported_formats_table():
    fmts = supported_formats()
    assert set(fmts) == {".off", ".obj", ".ply", ".stl", ".pcd", ".xyz", ".npy", ".npz", ".gii", ".gii.gz"}
    assert fmts[".ply"].meshes and fmts[".ply"].points and not fmts[".stl"].points and not fmts[".npy"].meshes


# -- bad input ------------------------------------------------------------------------------------------
def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileFormatError, match=r"nope\.off: no such file"):
        load(tmp_path / "nope.off")
    d = tmp_path / "folder.off"
    d.mkdir()
    with pytest.raises(FileFormatError, match="is a directory"):
        load(d)
    with pytest.raises(FileFormatError, match="is a directory"):
        load(tmp_path)


def test_unknown_suffix_lists_supported(tmp_path):
    p = _write(tmp_path, "mesh.fbx", "x")
    with pytest.raises(FileFormatError, match=r"mesh\.fbx: unsupported file type \('\.fbx'\); supported suffixes: .*\.off"):
        load(p)
    with pytest.raises(FileFormatError, match=r"unsupported file type \('\.vtk'\)"):
        save(Mesh(*icosphere(0)), tmp_path / "m.vtk")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("tv.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n", r"tv\.off: truncated OFF file: the header \(line 2\) declares 4 vertices and 2 faces, but only 2 data"),
        ("tf.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n", r"tf\.off: truncated OFF file.*2 faces"),
        ("garbage.off", bytes(range(256)) * 4, r"garbage\.off: not a text OFF file: byte 0x80 at offset 128"),
        ("badcount.off", "OFF\nfour two 0\n0 0 0\n", r"badcount\.off: line 2: bad OFF counts line 'four two 0': expected 'n_vertices n_faces"),
        ("empty.off", "OFF\n0 0 0\n", r"empty\.off: the file holds no vertices"),
        ("empty.obj", "", r"empty\.obj: no geometry could be read"),
        ("junk.obj", "this is not an obj file\n", r"junk\.obj: no geometry could be read"),
        ("junk.stl", b"solid x\nfacet normal 0 0 1\n outer loop\n vertex 0 0", r"junk\.stl: truncated or corrupted STL file: 1 'vertex' lines is not a multiple of 3"),
        ("t.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                  "end_header\n0 0 0\n1 0", r"t\.ply: truncated PLY file: the header declares 3 vertex = 3 data lines, but only 2 follow"),
        ("tf.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                   "element face 2\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
         r"tf\.ply: truncated PLY file: the header declares 3 vertex \+ 2 face = 5 data lines, but only 4 follow"),
        ("short.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                      "element face 2\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
                      "3 0 1 2\n3 0 1\n", r"short\.ply: line 14: the 'vertex_indices' list declares 3 entries, found 2"),
        ("nomagic.ply", b"\x00\x01garbage", r"nomagic\.ply: not a PLY file \(no 'ply' magic on line 1\)"),
        ("bad.npz", b"PK\x03\x04 definitely not a zip archive", r"bad\.npz: cannot read as NumPy archive: not a NumPy file or a truncated one"),
        ("bad.npy", b"\x93NUMPY garbage", r"bad\.npy: cannot read as NumPy array: truncated or corrupted file"),
        ("ragged.xyz", "0 0 0\n1 0 0\n1 2\n", r"ragged\.xyz: line 3: expected 3 columns like line 1, found 2: '1 2'"),
        ("four.xyz", "0 0 0 1\n1 0 0 1\n", r"four\.xyz: line 1: expected 3 \(x y z\) or 6 \(x y z nx ny nz\) columns, got 4"),
        ("bad.pcd", "hello\n", r"bad\.pcd: open3d read no points"),
        ("bad.gii", "<xml>not gifti", r"bad\.gii: cannot read as GIFTI"),
        ("bad.gii.gz", gzip.compress(b"<?xml version='1.0'?><GIFTI></GIFTI>"), r"bad\.gii\.gz: cannot read|no NIFTI"),
    ],
)
def test_corrupted_files_raise_file_format_error(tmp_path, name, content, match):
    if name.endswith(".pcd"):
        pytest.importorskip("open3d")
    if ".gii" in name:
        pytest.importorskip("nibabel")
    with pytest.raises(FileFormatError, match=match):
        load(_write(tmp_path, name, content))


def test_truncated_binary_files(tmp_path, sphere_mesh):
    for suffix in [".ply", ".stl", ".npz"]:
        if suffix == ".stl":
            with pytest.warns(UserWarning, match="STL stores no shared vertices"):
                full = save(sphere_mesh, tmp_path / f"full{suffix}").read_bytes()
        else:
            full = save(sphere_mesh, tmp_path / f"full{suffix}").read_bytes()
        p = _write(tmp_path, f"cut{suffix}", full[: len(full) // 2])
        with pytest.raises(FileFormatError, match=rf"cut\{suffix}"):
            load(p)
    pytest.importorskip("open3d")
    full = save(_cloud(), tmp_path / "full.pcd").read_bytes()
    with pytest.raises(FileFormatError, match=r"cut\.pcd: open3d read no points"):
        load(_write(tmp_path, "cut.pcd", full[: len(full) - 40]))


@pytest.mark.parametrize(
    ("name", "content", "err", "match"),
    [
        ("neg.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 -1\n", FileFormatError, r"neg\.off: line 6: a face refers to vertex -1, but the file has 3 vertices \(0\.\.2\)"),
        ("oor.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", FileFormatError, r"oor\.off: line 6: a face refers to vertex 7, but the file has 3 vertices"),
        ("oor.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", FileFormatError, r"oor\.obj: line 4: a face refers to vertex 9 \(1-based\), but the file has 3 vertices"),
        ("zero.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", FileFormatError, r"zero\.obj: line 4: OBJ indices are 1-based"),
        ("rel.obj", "v 0 0 0\nv 1 0 0\nf -1 -2 -4\n", FileFormatError, r"rel\.obj: line 3: relative index -4"),
        ("short.obj", "v 0 0\nv 1 0 0\n", FileFormatError, r"short\.obj: line 1: a vertex needs 3 coordinates"),
        ("word.obj", "v 0 0 x\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", FileFormatError, r"word\.obj: line 1: expected a number in a vertex \(x y z\), found 'x'"),
        ("oor.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                    "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n",
         FileFormatError, r"oor\.ply: a face refers to vertex 5, but the file has 3 vertices"),
        ("nan.off", "OFF\n3 1 0\n0 0 nan\n1 0 0\n0 1 0\n3 0 1 2\n", FileFormatError, r"nan\.off: verts: contains 1 NaN/Inf"),
        ("inf.obj", "v 0 0 inf\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", FileFormatError, r"inf\.obj: verts: contains 1 NaN/Inf"),
        ("inf.xyz", "0 0 0\n1 inf 0\n", FileFormatError, r"inf\.xyz: points: contains 1 NaN/Inf"),
    ],
)
def test_bad_geometry_names_the_file(tmp_path, name, content, err, match):
    with pytest.raises(err, match=match):
        load(_write(tmp_path, name, content))


def test_bad_npz_and_npy_contents(tmp_path):
    v = np.eye(3)
    np.savez(tmp_path / "neg.npz", verts=v, faces=np.array([[0, 1, -1]]))
    with pytest.raises(FileFormatError, match=r"neg\.npz: faces: negative index -1"):
        load(tmp_path / "neg.npz")
    np.savez(tmp_path / "oor.npz", verts=v, faces=np.array([[0, 1, 3]]))
    with pytest.raises(FileFormatError, match=r"oor\.npz: faces: index 3 out of range for 3 vertices"):
        load(tmp_path / "oor.npz")
    np.savez(tmp_path / "float_faces.npz", verts=v, faces=np.array([[0.0, 1.0, 2.0]]))
    with pytest.raises(FileFormatError, match=r"float_faces\.npz: array 'faces' must be an integer"):
        load(tmp_path / "float_faces.npz")
    np.savez(tmp_path / "keys.npz", a=v)
    with pytest.raises(FileFormatError, match=r"keys\.npz: expected arrays 'verts' \+ 'faces'.*found \['a'\]"):
        load(tmp_path / "keys.npz")
    np.savez(tmp_path / "obj.npz", points=np.array([None, 1], dtype=object))
    with pytest.raises(FileFormatError, match=r"obj\.npz: cannot read as NumPy archive: it holds Python objects \(pickled data\), which geomot never"):
        load(tmp_path / "obj.npz")
    np.save(tmp_path / "flat.npy", np.zeros((4, 2)))
    with pytest.raises(FileFormatError, match=r"flat\.npy: array 'points' must have shape \(N, 3\) or \(B, N, 3\), got \(4, 2\)"):
        load(tmp_path / "flat.npy")
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    with pytest.raises(FileFormatError, match=r"none\.npy: the file holds no vertices"):
        load(tmp_path / "none.npy")
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(FileFormatError, match=r"nan\.npy: points: contains 1 NaN/Inf"):
        load(tmp_path / "nan.npy")
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as z:
        z.writestr("points.npy", b"not an array")
    with pytest.raises(FileFormatError, match=r"zip\.npz: array .points. must have shape \(N, 3\), got \(\)"):
        load(tmp_path / "zip.npz")


def test_bad_arguments(tmp_path, sphere_mesh):
    p = save(sphere_mesh, tmp_path / "m.off")
    with pytest.raises(ValidationError, match="kind: expected one of None, 'mesh', 'points', got 'cloud'"):
        load(p, kind="cloud")
    with pytest.raises(ValidationError, match=r"dtype: expected a floating torch\.dtype"):
        load(p, dtype=torch.int64)
    with pytest.raises(ValidationError, match=r"path: expected a str or os\.PathLike, got int"):
        load(3)


def test_save_errors(tmp_path, sphere_mesh):
    with pytest.raises(FileFormatError, match=r"c\.stl: STL files cannot hold point clouds; use one of .*\.npy"):
        save(_cloud(), tmp_path / "c.stl")
    with pytest.raises(FileFormatError, match=r"m\.npy: NumPy array files cannot hold meshes; use one of .*\.off"):
        save(sphere_mesh, tmp_path / "m.npy")
    with pytest.raises(FileFormatError, match=r"n\.npy: \.npy stores the points only and would drop the normals"):
        save(_cloud(), tmp_path / "n.npy")
    with pytest.raises(FileFormatError, match=r"the folder .*missing does not exist"):
        save(sphere_mesh, tmp_path / "missing" / "m.off")
    (tmp_path / "d.off").mkdir()
    with pytest.raises(FileFormatError, match=r"d\.off: is a directory"):
        save(sphere_mesh, tmp_path / "d.off")
    batch = Mesh([sphere_mesh.verts, sphere_mesh.verts], [sphere_mesh.faces, sphere_mesh.faces])
    with pytest.raises(ValidationError, match="obj: save writes one mesh per file, got a batch of 2"):
        save(batch, tmp_path / "b.off")
    with pytest.raises(ValidationError, match="obj: save writes one cloud per file, got a batch of 2"):
        save(PointCloud(torch.rand(2, 5, 3)), tmp_path / "b.ply")
    with pytest.raises(ValidationError, match="obj: expected a geomot Mesh or PointCloud, got Tensor"):
        save(torch.rand(5, 3), tmp_path / "t.npy")


@pytest.mark.parametrize(("module", "suffix", "extra"), [("open3d", ".pcd", "o3d"), ("nibabel", ".gii", "neuro")])
def test_missing_backend_names_the_extra(tmp_path, monkeypatch, module, suffix, extra):
    obj = _cloud() if suffix == ".pcd" else Mesh(*icosphere(0))
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=rf"needs the optional package '{module}'.*pip install geomot\[{extra}\]"):
        save(obj, tmp_path / f"x{suffix}")
    _write(tmp_path, f"y{suffix}", "anything")
    with pytest.raises(MissingDependencyError, match=rf"pip install geomot\[{extra}\]"):
        load(tmp_path / f"y{suffix}")


def test_import_stays_light():
    code = (
        "import sys, geomot, geomot.io; geomot.load; "
        "heavy = [m for m in ('trimesh', 'open3d', 'pyvista', 'nibabel', 'nilearn', 'torch_geometric') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


# -- geomot info ----------------------------------------------------------------------------------------
def _info(capsys, *args: str) -> tuple[int, dict[str, str], str]:
    rc = cli_main(["info", *args])
    cap = capsys.readouterr()
    rows = dict(ln.split(":", 1) for ln in cap.out.splitlines() if ":" in ln)
    return rc, {k.strip(): v.strip() for k, v in rows.items()}, cap.err


def test_info_mesh(tmp_path, capsys, sphere_mesh):
    import trimesh

    p = save(sphere_mesh, tmp_path / "s.ply")
    rc, rows, _ = _info(capsys, str(p))
    ref = trimesh.Trimesh(sphere_mesh.verts.numpy(), sphere_mesh.faces.numpy(), process=False)
    assert rc == 0 and rows["vertices"] == "162" and rows["faces"] == "320"
    assert rows["watertight"] == "yes" and ref.is_watertight
    assert float(rows["area"]) == pytest.approx(ref.area, rel=1e-5)
    assert rows["format"] == "PLY (read with trimesh)" and rows["type"] == "triangle mesh"
    assert rows["bounds"].startswith("min (-1, -1, -1)") and rows["bounds"].endswith("max (1, 1, 1)")


def test_info_open_mesh_and_cloud(tmp_path, capsys):
    p = _write(tmp_path, "quad.off", "OFF\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n7 7 7\n3 0 1 2\n3 0 2 3\n")
    rc, rows, _ = _info(capsys, str(p))
    assert rc == 0 and rows["watertight"] == "no (4 boundary edges, 0 non-manifold edges)"
    assert rows["vertices"] == "5 (1 unreferenced)" and float(rows["area"]) == 1.0
    rc, rows, _ = _info(capsys, str(save(_cloud(10), tmp_path / "c.npz")))
    assert rc == 0 and rows["points"] == "10" and rows["normals"] == "yes" and rows["type"] == "point cloud"
    rc, rows, _ = _info(capsys, str(p), "--kind", "points")
    assert rc == 0 and rows["points"] == "5"


def test_info_errors_exit_2(tmp_path, capsys):
    rc, _, err = _info(capsys, str(tmp_path / "missing.off"))
    assert rc == 2 and "geomot info: error:" in err and "missing.off: no such file" in err
    rc, _, err = _info(capsys, str(_write(tmp_path, "x.abc", "1")))
    assert rc == 2 and "unsupported file type" in err
    rc, _, err = _info(capsys, str(_write(tmp_path, "pts.xyz", "0 0 0\n")), "--kind", "mesh")
    assert rc == 2 and "has no faces" in err


def test_obj_relative_indices_and_continuation(tmp_path):
    obj = "# comment\nv 0 0 0\nv 1 0 0 1.0\nv 0 1 0\nf -3 -2 \\\n -1\nvn 0 0 1\nf 1//1 2//1 3//1\n"
    m = load(_write(tmp_path, "rel.obj", obj), dtype=torch.float64)
    assert m.faces.tolist() == [[0, 1, 2], [0, 1, 2]] and m.verts.shape == (3, 3)


def test_obj_fast_and_line_by_line_parsers_agree(tmp_path, sphere_mesh):
    from geomot.io.trimesh_formats import _read_obj_fast

    p = save(sphere_mesh, tmp_path / "s.obj")
    text = p.read_text()
    assert _read_obj_fast(text) is not None  # plain triangles: the vectorised path
    fast = load(p, dtype=torch.float64)
    slow_text = "\r\n".join(ln + ("  # note" if ln.startswith("f ") else "") for ln in text.splitlines())
    assert _read_obj_fast(slow_text.replace("\r\n", "\n")) is None  # comments on data lines: line by line
    slow = load(_write(tmp_path, "slow.obj", slow_text), dtype=torch.float64)
    assert torch.equal(fast.verts, slow.verts) and torch.equal(fast.faces, slow.faces)
    textured = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\nf 1/1/1 2/1/1 3/1/1\n"
    assert _read_obj_fast(textured).faces.tolist() == [[0, 1, 2]]


def test_pcd_with_nan_point_names_the_file(tmp_path):
    o3d = pytest.importorskip("open3d")
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.array([[0.0, 0.0, 0.0], [np.nan, 1.0, 0.0]])))
    o3d.io.write_point_cloud(str(tmp_path / "nan.pcd"), pc)
    with pytest.raises(FileFormatError, match=r"nan\.pcd: points: contains 1 NaN/Inf"):
        load(tmp_path / "nan.pcd")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_to_cuda(tmp_path, sphere_mesh):
    m = load(save(sphere_mesh, tmp_path / "m.off"), device="cuda", dtype=torch.float64)
    assert m.verts.is_cuda and m.faces.is_cuda
    assert torch.allclose(m.total_area().cpu(), sphere_mesh.total_area())
    pc = load(save(_cloud(), tmp_path / "c.npz"), device="cuda")
    assert pc.points_padded().is_cuda and pc.normals_padded().is_cuda


def test_file_format_lookup():
    from geomot.io import file_format

    assert file_format("brain.GII.GZ").name == "GIFTI" and file_format("a.b.off").name == "OFF"
    assert file_format("x.obj").backend == "geomot" and file_format("x.pcd").backend == "open3d"
    with pytest.raises(FileFormatError, match=r"x\.gz: unsupported file type \('\.gz'\)"):
        file_format("x.gz")


def test_register_a_custom_format(tmp_path, monkeypatch):
    from geomot.io import FileFormat, RawShape
    from geomot.io._formats import FORMATS

    def read_pts(path):
        return RawShape(np.loadtxt(path, ndmin=2))

    fmt = FileFormat("points text", (".pts",), read_pts, None, meshes=False, points=False, backend="numpy")
    monkeypatch.setitem(FORMATS._items, ".pts", fmt)  # registered for this test only
    pc = load(_write(tmp_path, "a.pts", "0 0 0\n1 2 3\n"), dtype=torch.float64)
    assert pc.points_list()[0].tolist() == [[0, 0, 0], [1, 2, 3]]
    with pytest.raises(FileFormatError, match=r"b\.pts: geomot can read points text files but not write them"):
        save(pc, tmp_path / "b.pts")


def test_npz_keeps_cloud_weights_and_other_formats_warn(tmp_path, caplog):
    w = torch.linspace(0.5, 2.0, 50, dtype=torch.float64)
    pc = PointCloud(_cloud().points_list()[0], None, w)
    back = load(save(pc, tmp_path / "w.npz"), dtype=torch.float64)
    assert torch.equal(back.weights_padded()[0], w) and back.normals_list() is None
    with caplog.at_level("WARNING", logger="geomot.io.files"):
        save(pc, tmp_path / "w.ply")
    assert "PLY files do not store point weights" in caplog.text
    assert load(tmp_path / "w.ply").weights_padded() is None
    np.savez(tmp_path / "neg.npz", points=np.eye(3), weights=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(FileFormatError, match=r"neg\.npz: weights: must be non-negative, got min -1"):
        load(tmp_path / "neg.npz")
    np.savez(tmp_path / "short.npz", points=np.eye(3), weights=np.ones(2))
    with pytest.raises(FileFormatError, match=r"short\.npz: array 'weights' must be numeric of shape \(3,\)"):
        load(tmp_path / "short.npz")


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=300),
    with_normals=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    suffix=st.sampled_from([".ply", ".npz", ".xyz", ".npy"]),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_cloud_round_trip_property(n, with_normals, dtype, suffix, seed):
    if suffix == ".npy" and with_normals:
        with_normals = False
    g = torch.Generator().manual_seed(seed)
    pts = (torch.randn(n, 3, generator=g, dtype=torch.float64) * 10).to(dtype)
    nrm = torch.randn(n, 3, generator=g, dtype=torch.float64).to(dtype) if with_normals else None
    with tempfile.TemporaryDirectory() as d:
        back = load(save(PointCloud(pts, nrm), Path(d) / f"c{suffix}"), dtype=dtype)
    # binary formats are exact in the saved dtype; .xyz text keeps 9 significant digits (float32-exact)
    rtol = 1e-8 if suffix == ".xyz" else 0.0
    assert back.points_list()[0].shape == (n, 3)
    assert torch.allclose(back.points_list()[0], pts, atol=1e-12 if rtol else 0.0, rtol=rtol)
    assert (back.normals_list() is None) == (nrm is None)


def test_info_vts(tmp_path, capsys):
    from geomot.io import write_vts

    p = write_vts(tmp_path / "a.vts", torch.tensor([4, 0, 4, 9]))
    rc, rows, _ = _info(capsys, str(p))
    assert rc == 0 and rows["entries"] == "4" and rows["unique"] == "3" and rows["range"] == "1 .. 10 (1-based)"
    (tmp_path / "bad.vts").write_text("1\n0\n")
    rc, _, err = _info(capsys, str(tmp_path / "bad.vts"))
    assert rc == 2 and "bad.vts: line 2: indices are 1-based" in err


def test_info_dataset_folder(capsys):
    rc, rows, _ = _info(capsys, str(ROOT / "data" / "pair"))
    assert rc == 0 and rows["shapes"] == "2 (bumps_0 .. bumps_1)" and rows["ground truth"] == "2 .vts files"
    assert rows["classes"] == "1: bumps (2)"
    rc, rows, _ = _info(capsys, str(shared_path("TOSCA_r")))
    assert rc == 0 and rows["shapes"].startswith("76 (cat0 .. ") and rows["classes"].startswith("8: cat (11)")


def test_save_backend_failure_is_a_file_format_error(tmp_path, monkeypatch, sphere_mesh):
    from geomot.io import trimesh_formats

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(trimesh_formats, "_export", broken)
    with pytest.raises(FileFormatError, match=r"m\.off: cannot write as OFF \(RuntimeError: exporter exploded\)"):
        save(sphere_mesh, tmp_path / "m.off")


# -- STL vertex order, .npy batches, reader messages ---------------------------------------------------------
def _first_use_ordered(mesh: Mesh) -> Mesh:
    """The same mesh with its vertices renumbered in the order of their first use by the faces."""
    f = mesh.faces.reshape(-1)
    order = []
    seen = set()
    for i in f.tolist():
        if i not in seen:
            seen.add(i)
            order.append(i)
    new_index = torch.empty(len(order), dtype=torch.long)
    new_index[torch.tensor(order)] = torch.arange(len(order))
    return Mesh(mesh.verts[torch.tensor(order)], new_index[mesh.faces])


def test_stl_round_trip_keeps_first_use_vertex_order(tmp_path, sphere_mesh, recwarn):
    m = _first_use_ordered(sphere_mesh)
    back = load(save(m, tmp_path / "m.stl"), dtype=torch.float64)
    assert not [w for w in recwarn if "STL" in str(w.message)]
    assert torch.equal(back.faces, m.faces)  # same faces, same vertex numbering
    assert torch.allclose(back.verts, m.verts, atol=1e-6, rtol=0)


def test_stl_writer_warns_about_unreferenced_vertices(tmp_path):
    m = Mesh(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]]), torch.tensor([[0, 1, 2]]))
    with pytest.warns(UserWarning, match=r"u\.stl: .*gives 3 vertices, not 4 \(unreferenced vertices"):
        save(m, tmp_path / "u.stl")
    assert load(tmp_path / "u.stl").verts.shape == (3, 3)


def test_ascii_stl_is_read_and_merged_in_first_use_order(tmp_path):
    facet = "facet normal 0 0 1\nouter loop\nvertex {}\nvertex {}\nvertex {}\nendloop\nendfacet\n"
    text = "solid t\n" + facet.format("1 0 0", "0 1 0", "0 0 0") + facet.format("0 0 0", "0 1 0", "1 1 0") + "endsolid\n"
    m = load(_write(tmp_path, "a.stl", text), dtype=torch.float64)
    assert m.verts.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]]
    assert m.faces.tolist() == [[0, 1, 2], [2, 1, 3]]


def test_npy_batch_loads_as_batched_cloud(tmp_path):
    arr = np.random.default_rng(0).normal(size=(4, 30, 3))
    np.save(tmp_path / "b.npy", arr)
    pc = load(tmp_path / "b.npy", dtype=torch.float64)
    assert isinstance(pc, PointCloud) and len(pc) == 4
    assert torch.equal(pc.points_padded(), torch.from_numpy(arr))
    np.save(tmp_path / "e.npy", np.zeros((2, 0, 3)))
    with pytest.raises(FileFormatError, match=r"e\.npy: the file holds no vertices"):
        load(tmp_path / "e.npy")
    np.save(tmp_path / "four.npy", np.zeros((2, 5, 3, 1)))
    with pytest.raises(FileFormatError, match=r"four\.npy: array 'points' must have shape \(N, 3\) or \(B, N, 3\)"):
        load(tmp_path / "four.npy")
    np.save(tmp_path / "n.npy", np.zeros(2, dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match=r"n\.npy: cannot read as NumPy array: it holds Python objects"):
        load(tmp_path / "n.npy")


PLY_HEAD = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
FACE_PROP = "element face 1\nproperty list uchar int vertex_indices\n"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("a.off", "", r"a\.off: empty OFF file \(no 'OFF' header\)"),
        ("b.off", "MESH\n3 1 0\n", r"b\.off: line 1: expected the 'OFF' header keyword, found 'MESH'"),
        ("c.off", "OFF BINARY\n", r"c\.off: line 1: binary OFF files are not supported"),
        ("d.off", "OFF\n", r"d\.off: OFF header without vertex/face counts"),
        ("e.off", "OFF\n3\n", r"e\.off: line 2: bad OFF counts line '3'"),
        ("f.off", "OFF\n-3 1 0\n", r"f\.off: line 2: negative OFF counts -3 vertices, 1 faces"),
        ("g.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\nx 0 1 2\n",
         r"g\.off: line 6: expected the number of corners of a face \(an integer\), found 'x'"),
        ("h.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
         r"h\.off: line 6: a face needs at least 3 vertices, found a count of 2"),
        ("i.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2.5\n",
         r"i\.off: line 6: expected a vertex index \(an integer\), found '2\.5'"),
        ("a.ply", "ply\nend_header\n", r"a\.ply: the PLY header has no 'format' line"),
        ("b.ply", "ply\nformat text 1.0\nend_header\n", r"b\.ply: line 2: unknown PLY format 'format text 1\.0'"),
        ("c.ply", "ply\nformat ascii 1.0\nelement vertex\nend_header\n",
         r"c\.ply: line 3: expected 'element NAME COUNT', found 'element vertex'"),
        ("d.ply", "ply\nformat ascii 1.0\nproperty float x\nend_header\n", r"d\.ply: line 3: a property before any"),
        ("e.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty real x\nend_header\n",
         r"e\.ply: line 4: unknown PLY property type 'real'"),
        ("f.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float\nend_header\n",
         r"f\.ply: line 4: expected 'property TYPE NAME' or 'property list"),
        ("g.ply", "ply\nformat ascii 1.0\nstuff\nend_header\n", r"g\.ply: line 3: unexpected PLY header line 'stuff'"),
        ("h.ply", "ply\nformat ascii 1.0\n", r"h\.ply: not a PLY file or a truncated header \(no 'end_header'"),
        ("i.ply", "ply\nformat ascii 1.0\nelement face 0\nend_header\n", r"i\.ply: the PLY file has no vertex element"),
        ("j.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n",
         r"j\.ply: the PLY vertex element needs scalar x, y, z properties, found \['x'\]"),
        ("k.ply", PLY_HEAD + FACE_PROP + "end_header\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
         r"k\.ply: face 0 has 2 vertices; a face needs at least 3"),
        ("l.ply", PLY_HEAD + FACE_PROP + "end_header\n0 0 0\n1 0 0\n0 1 0\nx 0 1 2\n",
         r"l\.ply: line 13: expected the length of the 'vertex_indices' list \(an integer\), found 'x'"),
        ("m.ply", PLY_HEAD + "element face 1\nproperty uchar flag\nproperty list uchar int vertex_indices\n"
                  "end_header\n0 0 0\n1 0 0\n0 1 0\n1\n",
         r"m\.ply: line 14: the face line ends before its 'vertex_indices' property"),
        ("a.stl", b"short", r"a\.stl: no geometry could be read from the file: 5 bytes is shorter than a binary STL"),
        ("b.stl", b"\0" * 80 + np.array([0], "<u4").tobytes(), r"b\.stl: no geometry .*a binary STL of 0 triangles"),
        ("c.stl", "solid x\nendsolid\n", r"c\.stl: no geometry could be read from the file \(no 'vertex' lines"),
        ("d.stl", b"\0" * 80 + np.array([3], "<u4").tobytes() + b"\0" * 60,
         r"d\.stl: truncated or corrupted binary STL file: the header declares 3 triangles \(234 bytes\), the file "
         r"has 144 bytes"),
        ("bin.off", b"OFF\n\xff\xfe", r"bin\.off: not a text OFF file: byte 0xff at offset 4 is not UTF-8 text"),
        ("bin.obj", b"v \xff", r"bin\.obj: not a text OBJ file: byte 0xff at offset 2"),
        ("e.xyz", "# nothing\n", r"e\.xyz: the file holds no vertices \(empty XYZ file\)"),
        ("w.xyz", "0 0 0\n1 y 0\n", r"w\.xyz: line 2: expected a number in a point, found 'y'"),
        ("one.npz", b"", r"one\.npz: cannot read as NumPy archive"),
    ],
)
def test_reader_messages_name_line_and_expectation(tmp_path, name, content, match):
    with pytest.raises(FileFormatError, match=match):
        load(_write(tmp_path, name, content))


def test_npz_that_is_a_single_array(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 3)))
    (tmp_path / "x.npz").write_bytes((tmp_path / "x.npy").read_bytes())
    with pytest.raises(FileFormatError, match=r"x\.npz: cannot read as NumPy archive: it is a single \.npy array"):
        load(tmp_path / "x.npz")


def test_binary_ply_truncations_and_mixed_polygons(tmp_path, sphere_mesh):
    full = save(sphere_mesh, tmp_path / "full.ply").read_bytes()
    head = full.index(b"end_header\n") + len(b"end_header\n")
    with pytest.raises(FileFormatError, match=r"cut\.ply: truncated binary PLY file: 162 vertex elements need "
                       r"3888 bytes from offset \d+, the file has 100"):
        load(_write(tmp_path, "cut.ply", full[: head + 100]))
    with pytest.raises(FileFormatError, match=r"cut2\.ply: truncated binary PLY file: the 'vertex_indices' list of "
                       r"face 319 declares 3 entries past the end of the file"):
        load(_write(tmp_path, "cut2.ply", full[:-3]))
    with pytest.raises(FileFormatError, match=r"cut3\.ply: truncated binary PLY file: it ends at byte \d+ inside "
                       r"face 319 of 320"):
        load(_write(tmp_path, "cut3.ply", full[:-13]))
    # a quad and a triangle, big-endian: the item-by-item path
    header = (b"ply\nformat binary_big_endian 1.0\nelement vertex 4\nproperty double x\nproperty double y\n"
              b"property double z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n")
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], ">f8").tobytes()
    faces = bytes([4]) + np.array([0, 1, 2, 3], ">i4").tobytes() + bytes([3]) + np.array([0, 2, 3], ">i4").tobytes()
    m = load(_write(tmp_path, "mixed.ply", header + verts + faces), dtype=torch.float64)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]


def test_info_npy_batch(tmp_path, capsys):
    arr = np.zeros((4, 10, 3))
    arr[:, :, 0] = np.arange(10)  # each cloud spans 9 along x
    arr[3, :, 0] *= 2  # the last one 18
    np.save(tmp_path / "b.npy", arr)
    rc, rows, _ = _info(capsys, str(tmp_path / "b.npy"))
    assert rc == 0 and rows["type"] == "batch of 4 point clouds" and rows["points"] == "10 each"
    assert rows["item extents"] == "min 9  mean 11.25  max 18 (bounding-box diagonals)"
