"""L2: Mesh, PointCloud, Measure and mesh -> measure conversions."""

from __future__ import annotations

import warnings

import pytest
import torch

from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot.structures import Measure, Mesh, PointCloud, as_measure, check_pair_dims, mesh_to_measure
from tests.conftest import icosphere


def test_measure_layouts_and_normalisation():
    m = Measure([torch.randn(3, 2), torch.randn(5, 2)], [torch.ones(3), torch.arange(1.0, 6.0)])
    assert m.support.shape == (2, 5, 2) and m.lengths.tolist() == [3, 5]
    assert torch.allclose(m.weights.sum(1), torch.ones(2))
    assert m.weights[0, 3:].abs().sum() == 0
    assert m[1].support.shape == (1, 5, 2)
    assert not m.is_uniform() and Measure(torch.randn(4, 2)).is_uniform()
    m64 = m.to(torch.float64)
    assert m64.dtype == torch.float64 and m64.weights.dtype == torch.float64 and m64.lengths.dtype == torch.long


def test_measure_padding_may_hold_anything():
    sup = torch.randn(2, 4, 3)
    sup[0, 2:] = float("nan")
    m = Measure(sup, lengths=torch.tensor([2, 4]))
    assert torch.allclose(m.weights[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))


@pytest.mark.parametrize(
    ("kwargs", "match", "err"),
    [
        ({"support": torch.tensor([[0.0, float("inf")]])}, "support: contains 1 NaN/Inf", ValidationError),
        ({"support": torch.randn(3, 2), "weights": torch.tensor([1.0, -1.0, 1.0])}, "weights: weights must be non-negative", ValidationError),
        ({"support": torch.randn(3, 2), "weights": torch.ones(2)}, r"weights: expected shape \(1, 3\)", ShapeError),
        ({"support": torch.randn(3, 2), "weights": torch.ones(3), "normalize": False}, "weights must sum to 1", ValidationError),
        ({"support": torch.randn(2, 3, 2), "lengths": torch.tensor([0, 3])}, r"lengths: values must lie in \[1, 3\]", ValidationError),
        ({"support": torch.randn(3, 2), "weights": torch.ones(3, dtype=torch.float64)}, "weights: expected dtype torch.float32", ShapeError),
        ({"support": torch.randn(3)}, r"support: expected a 2-D or 3-D tensor", ShapeError),
    ],
)
def test_measure_bad_input(kwargs, match, err):
    with pytest.raises(err, match=match):
        Measure(**kwargs)


def test_pointcloud_views():
    pc = PointCloud([torch.randn(3, 3), torch.randn(6, 3)], normals=[torch.randn(3, 3), torch.randn(6, 3)])
    assert pc.points_padded().shape == (2, 6, 3) and pc.points_packed().shape == (9, 3)
    assert [p.shape[0] for p in pc.points_list()] == [3, 6]
    assert pc[0].points_padded().shape == (1, 3, 3)
    m = pc.to_measure()
    assert torch.allclose(m.weights[0, :3], torch.full((3,), 1 / 3))
    with pytest.raises(ShapeError, match=r"points: expected last dimension 3"):
        PointCloud(torch.randn(4, 2))
    with pytest.raises(ShapeError, match="normals: item sizes"):
        PointCloud([torch.randn(3, 3)], normals=[torch.randn(4, 3)])


def test_mesh_views_like_pytorch3d():
    v1, f1 = icosphere(0)
    v2, f2 = icosphere(1)
    m = Mesh([v1, v2], [f1, f2])
    assert len(m) == 2 and m.num_verts_per_mesh().tolist() == [12, 42]
    assert m.verts_padded().shape == (2, 42, 3)
    fp = m.faces_padded()
    assert fp.shape == (2, 80, 3) and (fp[0, 20:] == -1).all()
    packed_v, packed_f = m.verts_packed(), m.faces_packed()
    assert packed_v.shape == (54, 3) and int(packed_f[20:].min()) == 12
    assert torch.allclose(m.total_area()[1], m[1].total_area()[0])
    with pytest.raises(ShapeError, match=r"Mesh.verts: only defined for a single mesh"):
        _ = m.verts


def test_mesh_gradients_reach_vertices():
    v, f = icosphere(1)
    v = v.clone().requires_grad_(True)
    m = Mesh(v, f)
    m.total_area().sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("verts", "faces", "match", "err"),
    [
        (torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long), "verts: the mesh has no vertices", ValidationError),
        (torch.randn(4, 3), torch.zeros(0, 3, dtype=torch.long), "faces: the mesh has no faces", ValidationError),
        (torch.randn(4, 3), torch.tensor([[0, 1, 4]]), "faces: index 4 out of range for 4 vertices", ValidationError),
        (torch.randn(4, 3), torch.tensor([[0, -1, 2]]), "faces: negative index -1", ValidationError),
        (torch.randn(4, 3), torch.tensor([[0, 1, 2, 3]]), "triangulate first", ShapeError),
        (torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, float("nan"), 0]]), torch.tensor([[0, 1, 2]]), "verts: contains 1 NaN", ValidationError),
        (torch.randn(4, 3), torch.tensor([[0.0, 1, 2]]), "faces: expected an integer tensor", ShapeError),
        (torch.randn(4, 2), torch.tensor([[0, 1, 2]]), "verts: expected last dimension 3", ShapeError),
    ],
)
def test_mesh_bad_input(verts, faces, match, err):
    with pytest.raises(err, match=match):
        Mesh(verts, faces)


def test_zero_area_faces_stay_finite():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]], requires_grad=True)
    f = torch.tensor([[0, 1, 2], [0, 1, 3]])  # second face is degenerate (collinear)
    m = Mesh(v, f)
    assert torch.isfinite(m.face_normals_list()[0]).all()
    mu = mesh_to_measure(m, "varifold")
    assert torch.isfinite(mu.support).all() and torch.allclose(mu.weights[0], torch.tensor([1.0, 0.0]))
    mu.support.sum().backward()
    assert torch.isfinite(v.grad).all()


@pytest.mark.parametrize("kind", ["vertices", "faces", "samples", "varifold"])
def test_mesh_to_measure_kinds(kind):
    v, f = icosphere(2)
    mu = mesh_to_measure(Mesh(v, f), kind, n_samples=300, normal_weight=0.5, generator=torch.Generator().manual_seed(0))
    dim = 6 if kind == "varifold" else 3
    assert mu.support.shape[-1] == dim and torch.allclose(mu.weights.sum(), torch.tensor(1.0, dtype=v.dtype))
    if kind == "varifold":
        nrm = mu.support[0, :, 3:]
        assert torch.allclose(nrm.norm(dim=-1), torch.full((nrm.shape[0],), 0.5, dtype=v.dtype), atol=1e-12)
        # outward normals on a sphere centred at the origin
        assert ((nrm * mu.support[0, :, :3]).sum(-1) > 0).all()
    if kind == "vertices":
        assert torch.allclose(mu.support[0], v)


def test_mesh_to_measure_unknown_kind():
    v, f = icosphere(0)
    with pytest.raises(ValidationError, match=r"measure: unknown mesh measure 'edges'; valid: faces, samples"):
        mesh_to_measure(Mesh(v, f), "edges")


def test_as_measure_dispatch():
    v, f = icosphere(1)
    mu, batched = as_measure(torch.randn(5, 3))
    assert not batched and len(mu) == 1
    mu, batched = as_measure(Mesh(v, f), measure="faces")
    assert batched and mu.support.shape == (1, 80, 3)
    mu, _ = as_measure(PointCloud(torch.randn(7, 3)))
    assert mu.support.shape == (1, 7, 3)
    with pytest.raises(ShapeError, match=r"y_weights: expected shape \(5,\)"):
        as_measure(torch.randn(5, 3), weights=torch.ones(4), name="y")
    with pytest.raises(ValidationError, match="y: empty point set"):
        as_measure(torch.zeros(0, 3), name="y")
    with pytest.raises(ShapeError, match="x: expected a tensor, PointCloud, Measure or Mesh"):
        as_measure([1, 2, 3])
    with pytest.raises(ValidationError, match="x_weights: weights must be non-negative"):
        as_measure(torch.randn(3, 3), weights=torch.tensor([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("measure", [None, "vertices", "faces", "samples", "varifold"])
def test_measure_is_irrelevant_for_non_mesh_inputs(measure):
    x = torch.randn(5, 3)
    for inp in (x, PointCloud(x), Measure(x)):
        mu, _ = as_measure(inp, measure=measure)
        assert torch.equal(mu.support[0], x)


def test_mesh_becomes_its_varifold_by_default():
    v, f = icosphere(1)
    mu, _ = as_measure(Mesh(v, f))
    ref = mesh_to_measure(Mesh(v, f), "varifold")
    assert mu.dim == 6 and torch.equal(mu.support, ref.support) and torch.equal(mu.weights, ref.weights)
    assert as_measure(Mesh(v, f), measure="vertices")[0].dim == 3


def test_as_measure_unknown_measure_raises_for_every_input():
    with pytest.raises(ValidationError, match=r"measure: unknown mesh measure 'verts'; valid: faces, samples"):
        as_measure(torch.randn(5, 3), measure="verts")


def test_default_mesh_measure_is_deprecated():
    v, f = icosphere(0)
    with pytest.warns(GeomotDeprecationWarning, match="default_mesh_measure"):
        mu, _ = as_measure(Mesh(v, f), default_mesh_measure="vertices")
    assert mu.dim == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_measure(Mesh(v, f))


def test_check_pair_dims_names_the_mesh_and_the_fix():
    v, f = icosphere(0)
    mesh, cloud = Mesh(v, f), torch.randn(7, 3, dtype=v.dtype)
    mm, mc = as_measure(mesh)[0], as_measure(cloud)[0]
    assert check_pair_dims(mc, mc, cloud, cloud) == 3
    fix = r"pass measure='vertices', 'faces' or 'samples' to compare a mesh with a point cloud"
    with pytest.raises(ShapeError, match=r"y: expected points of dimension 6 \(that of x, a Mesh turned into its 6-D "
                       r"varifold by default\), got 3; " + fix):
        check_pair_dims(mm, mc, mesh, cloud)
    with pytest.raises(ShapeError, match=r"y: expected points of dimension 3 \(that of x\), got 6 \(y is a Mesh "
                       r"turned into its 6-D varifold by measure='varifold'\); " + fix):
        check_pair_dims(mc, mm, cloud, mesh, measure="varifold")
    with pytest.raises(ShapeError, match=r"b: expected points of dimension 3 \(that of a\), got 4$"):
        check_pair_dims(mc, torch.randn(2, 4), cloud, None, names=("a", "b"))
    with pytest.raises(ShapeError, match=r"a Mesh side is vertices in R\^3, so the other side must hold 3-D points"):
        check_pair_dims(3, 6, mesh, torch.randn(2, 6), measure="vertices")
