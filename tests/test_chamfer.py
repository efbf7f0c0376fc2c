"""Chamfer and Hausdorff: brute force, scipy, closed forms, padding, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import directed_hausdorff

from geomot._core.errors import ShapeError, ValidationError
from geomot.losses.chamfer import ChamferLoss, HausdorffDistance, chamfer_distance, chamfer_terms, hausdorff_distance
from geomot.structures import Measure, Mesh, PointCloud, mesh_to_measure
from tests.conftest import icosphere, shared_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _brute(x, y, squared=True, nx=None, ny=None, point_reduction="mean"):
    d = ((x[:, None] - y[None]) ** 2).sum(-1)
    dx, ix = d.min(1)
    dy, iy = d.min(0)
    if not squared:
        dx, dy = dx.sqrt(), dy.sqrt()
    red = torch.mean if point_reduction == "mean" else torch.sum
    out = red(dx) + red(dy)
    if nx is None:
        return out, None
    ux, uy = torch.nn.functional.normalize(nx, dim=-1), torch.nn.functional.normalize(ny, dim=-1)
    cn = red(1 - (ux * uy[ix]).sum(-1).abs()) + red(1 - (uy * ux[iy]).sum(-1).abs())
    return out, cn


def _pair(seed: int, n: int = 40, m: int = 33, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype), torch.randn(m, 3, generator=g, dtype=dtype)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("point_reduction", ["mean", "sum"])
def test_matches_brute_force(squared: bool, point_reduction: str) -> None:
    x, y = _pair(0)
    nx, ny = _pair(1)
    got = chamfer_terms(x, y, x_normals=nx, y_normals=ny, squared=squared, point_reduction=point_reduction)
    ref, cn = _brute(x, y, squared, nx, ny, point_reduction)
    torch.testing.assert_close(got.distance, ref)
    torch.testing.assert_close(got.normals, cn)
    total = chamfer_distance(x, y, x_normals=nx, y_normals=ny, squared=squared, normal_weight=0.3,
                             point_reduction=point_reduction)
    torch.testing.assert_close(total, ref + 0.3 * cn)


def test_closed_form_translated_grid_and_symmetry() -> None:
    # a cloud and its copy shifted by t along z with |t| smaller than half the spacing: every NN is the twin
    g = torch.stack(torch.meshgrid(*[torch.arange(4.0, dtype=torch.float64)] * 3, indexing="ij"), -1).reshape(-1, 3)
    t = torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64)
    torch.testing.assert_close(chamfer_distance(g, g + t), torch.tensor(2 * 0.04, dtype=torch.float64))
    torch.testing.assert_close(chamfer_distance(g, g + t, squared=False), torch.tensor(0.4, dtype=torch.float64))
    torch.testing.assert_close(hausdorff_distance(g, g + t), torch.tensor(0.2, dtype=torch.float64))
    x, y = _pair(2)
    torch.testing.assert_close(chamfer_distance(x, y), chamfer_distance(y, x))
    assert float(chamfer_distance(x, x)) == 0.0 and float(hausdorff_distance(x, x)) == 0.0
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    assert float(chamfer_distance(x, x[perm])) == 0.0


def test_hausdorff_matches_scipy() -> None:
    x, y = _pair(3, 300, 200)
    ref = max(directed_hausdorff(x.numpy(), y.numpy())[0], directed_hausdorff(y.numpy(), x.numpy())[0])
    np.testing.assert_allclose(float(hausdorff_distance(x, y)), ref, rtol=1e-12)
    np.testing.assert_allclose(
        float(hausdorff_distance(x, y, directed=True)), directed_hausdorff(x.numpy(), y.numpy())[0], rtol=1e-12
    )


def test_padded_batch_matches_items() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 25, 3, generator=g, dtype=torch.float64)
    xl, yl = torch.tensor([20, 7, 3]), torch.tensor([25, 11, 1])
    x[1, 7:] = 1e3  # garbage in the padding must not matter
    c = chamfer_distance(x, y, x_lengths=xl, y_lengths=yl, reduction="none")
    h = hausdorff_distance(x, y, x_lengths=xl, y_lengths=yl, reduction="none")
    assert c.shape == (3,) and h.shape == (3,)
    for b in range(3):
        xb, yb = x[b, : xl[b]], y[b, : yl[b]]
        torch.testing.assert_close(c[b], _brute(xb, yb)[0])
        torch.testing.assert_close(h[b], hausdorff_distance(xb, yb))
    torch.testing.assert_close(chamfer_distance(x, y, x_lengths=xl, y_lengths=yl), c.mean())
    torch.testing.assert_close(chamfer_distance(x, y, x_lengths=xl, y_lengths=yl, reduction="sum"), c.sum())
    pcx = PointCloud(x, lengths=xl)
    pcy = PointCloud(y, lengths=yl)
    torch.testing.assert_close(chamfer_distance(pcx, pcy, reduction="none"), c)


def test_mesh_and_pointcloud_inputs() -> None:
    v, f = icosphere(1)
    mesh = Mesh(v, f)
    vn = mesh.vertex_normals_list()[0]
    # a sphere scaled by s: every vertex's NN is its twin (|s - 1| small), squared distance (s - 1)^2
    out = chamfer_terms(mesh, Mesh(1.01 * v, f), measure="vertices")
    torch.testing.assert_close(out.distance, torch.tensor(2 * 1e-4, dtype=torch.float64))
    torch.testing.assert_close(out.normals, torch.tensor(0.0, dtype=torch.float64), atol=1e-12, rtol=0)
    pc = PointCloud(v, vn)
    torch.testing.assert_close(
        chamfer_distance(pc, mesh, normal_weight=1.0, measure="vertices"), chamfer_distance(mesh, pc, measure="vertices")
    )
    assert chamfer_terms(v, 1.01 * v).normals is None
    torch.testing.assert_close(chamfer_distance(Measure(v), Measure(1.01 * v)), out.distance)


@pytest.mark.parametrize("squared", [True, False])
def test_gradcheck_float64(squared: bool) -> None:
    x, y = _pair(5, 9, 7)
    nx, ny = _pair(6, 9, 7)
    x.requires_grad_(True)
    y.requires_grad_(True)
    nx.requires_grad_(True)

    def fn(x, y, nx):
        return chamfer_distance(x, y, x_normals=nx, y_normals=ny, squared=squared, normal_weight=0.5)

    assert torch.autograd.gradcheck(fn, (x, y, nx))
    assert torch.autograd.gradcheck(lambda a, b: hausdorff_distance(a, b), (x, y))


def test_gradient_at_zero_is_finite_and_module_shells() -> None:
    x, _ = _pair(7, 10, 10)
    x.requires_grad_(True)
    chamfer_distance(x, x.detach().clone(), squared=False).backward()
    assert bool(torch.isfinite(x.grad).all())
    loss = ChamferLoss(squared=False)
    torch.testing.assert_close(loss(x, 2 * x), chamfer_distance(x, 2 * x, squared=False))
    assert "squared=False" in repr(loss)
    torch.testing.assert_close(HausdorffDistance(directed=True)(x, 2 * x), hausdorff_distance(x, 2 * x, directed=True))
    out = chamfer_distance(x.float(), 2 * x.float(), reduction="none")
    assert out.shape == () and out.dtype == torch.float32


def test_bad_input() -> None:
    x, y = _pair(8, 5, 6)
    with pytest.raises(ShapeError, match="y: expected points of dimension 3"):
        chamfer_distance(x, y[:, :2])
    with pytest.raises(ShapeError, match="y: expected batch size 1"):
        chamfer_distance(x, y.expand(2, -1, -1))
    with pytest.raises(ShapeError, match=r"y: expected dtype torch\.float64"):
        chamfer_distance(x, y.float())
    with pytest.raises(ValidationError, match="x: contains 1 NaN"):
        bad = x.clone()
        bad[1, 2] = float("nan")
        chamfer_distance(bad, y)
    with pytest.raises(ValidationError, match="y: contains 1 NaN"):
        bad = y.clone()
        bad[0, 0] = float("inf")
        hausdorff_distance(x, bad)
    with pytest.raises(ShapeError, match="x: expected a non-empty tensor"):
        chamfer_distance(x[:0], y)
    with pytest.raises(ShapeError, match="x_normals: expected shape"):
        chamfer_distance(x, y, x_normals=y, y_normals=y)
    with pytest.raises(ValidationError, match="normal_weight: > 0 needs normals"):
        chamfer_distance(x, y, normal_weight=1.0)
    with pytest.raises(ValidationError, match="normal_weight: expected a non-negative value"):
        chamfer_distance(x, y, normal_weight=-1.0)
    with pytest.raises(ValidationError, match="point_reduction: expected 'mean' or 'sum', got 'max'"):
        chamfer_distance(x, y, point_reduction="max")
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none'"):
        chamfer_distance(x, y, reduction="avg")
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none'"):
        hausdorff_distance(x, y, reduction="avg")
    with pytest.raises(ValidationError, match="backend: unknown knn backend"):
        chamfer_distance(x, y, backend="faiss")
    with pytest.raises(ValidationError, match="x_lengths: only accepted with a tensor x"):
        chamfer_distance(PointCloud(x), y, x_lengths=torch.tensor([5]))
    with pytest.raises(ShapeError, match="y: expected a tensor, PointCloud, Measure or Mesh"):
        chamfer_distance(x, y.numpy())


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    squared=st.booleans(),
)
def test_properties_symmetry_permutation_triangle(n: int, m: int, seed: int, squared: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(m, 3, generator=g, dtype=torch.float64)
    px, py = torch.randperm(n, generator=g), torch.randperm(m, generator=g)
    c = chamfer_distance(x, y, squared=squared)
    torch.testing.assert_close(chamfer_distance(y, x, squared=squared), c)
    torch.testing.assert_close(chamfer_distance(x[px], y[py], squared=squared), c)
    h = hausdorff_distance(x, y)
    torch.testing.assert_close(hausdorff_distance(y[py], x[px]), h)
    # every nearest-neighbour distance is bounded by the Hausdorff distance
    assert float(chamfer_distance(x, y, squared=False)) <= 2 * float(h) + 1e-12
    assert float(c) >= 0


@pytest.mark.data
def test_shapenet_clouds_match_dense_and_scipy() -> None:
    """Real ShapeNet clouds (2048 points: the auto k-NN path is the k-d tree) against dense torch and scipy."""
    clouds = np.load(shared_path("shapenet50", "reconstruct_random_50_shapenetcore55.npy"))
    x = torch.from_numpy(clouds[0]).double()
    y = torch.from_numpy(clouds[1]).double()
    d = torch.cdist(x, y)
    dx, dy = d.min(1).values, d.min(0).values
    torch.testing.assert_close(chamfer_distance(x, y), (dx**2).mean() + (dy**2).mean())
    torch.testing.assert_close(chamfer_distance(x, y, squared=False), dx.mean() + dy.mean())
    ref = max(directed_hausdorff(clouds[0], clouds[1])[0], directed_hausdorff(clouds[1], clouds[0])[0])
    np.testing.assert_allclose(float(hausdorff_distance(x, y)), ref, rtol=1e-6)
    batch = torch.from_numpy(clouds[:4]).double()
    none = chamfer_distance(batch[[0, 2]], batch[[1, 3]], reduction="none")
    torch.testing.assert_close(none[0], (dx**2).mean() + (dy**2).mean())


def test_mesh_follows_the_measure_rule() -> None:
    v, f = icosphere(1)
    g = torch.Generator().manual_seed(6)
    m1, m2 = Mesh(v, f), Mesh(v + 0.03 * torch.randn(v.shape, generator=g, dtype=v.dtype), f)
    # default: each mesh becomes its 6-D varifold (face centroids + unit normals)
    s1, s2 = (mesh_to_measure(m, "varifold").support for m in (m1, m2))
    torch.testing.assert_close(chamfer_distance(m1, m2), chamfer_distance(s1, s2))
    torch.testing.assert_close(hausdorff_distance(m1, m2), hausdorff_distance(s1, s2))
    c1, c2 = (mesh_to_measure(m, "faces").support for m in (m1, m2))
    torch.testing.assert_close(chamfer_distance(m1, m2, measure="faces"), chamfer_distance(c1, c2))
    # the normal term uses the face normals for "faces"/"varifold"
    n1, n2 = (m.face_normals_list()[0] for m in (m1, m2))
    torch.testing.assert_close(
        chamfer_distance(m1, m2, measure="faces", normal_weight=0.5),
        chamfer_distance(c1[0], c2[0], x_normals=n1, y_normals=n2, normal_weight=0.5),
    )
    samples = chamfer_distance(m1, v, measure="samples", n_samples=300, generator=torch.Generator().manual_seed(0))
    pts = mesh_to_measure(m1, "samples", n_samples=300, generator=torch.Generator().manual_seed(0)).support[0]
    torch.testing.assert_close(samples, chamfer_distance(pts, v))
    # measure= is irrelevant for tensors and point clouds
    x, y = _pair(7, 6, 5)
    for measure in ("vertices", "faces", "samples", "varifold"):
        torch.testing.assert_close(chamfer_distance(x, PointCloud(y), measure=measure), chamfer_distance(x, y))
    fix = r"pass measure='vertices', 'faces' or 'samples' to compare a mesh with a point cloud"
    with pytest.raises(ShapeError, match=r"y: expected points of dimension 6 \(that of x, a Mesh turned into its "
                       r"6-D varifold by default\), got 3; " + fix):
        chamfer_distance(m1, v)
    with pytest.raises(ShapeError, match=r"got 6 \(y is a Mesh turned into its 6-D varifold by default\); " + fix):
        hausdorff_distance(v, m1)
    with pytest.raises(ValidationError, match="measure: unknown mesh measure 'verts'"):
        chamfer_distance(m1, m2, measure="verts")
    with pytest.raises(ValidationError, match="n_samples: expected an integer >= 1, got 0"):
        chamfer_distance(m1, m2, measure="samples", n_samples=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["x", "y"])
def test_non_finite_points_give_non_finite_values_without_checks(value: float, where: str) -> None:
    import geomot

    x, y = _pair(9, 6, 8)
    bad = (x if where == "x" else y).clone()
    bad[2, 1] = value
    args = (bad, y) if where == "x" else (x, bad)
    with geomot.data_checks(False):
        for backend in ("torch", "kdtree"):
            for squared in (True, False):
                assert not bool(torch.isfinite(chamfer_distance(*args, squared=squared, backend=backend)))
            assert not bool(torch.isfinite(hausdorff_distance(*args, backend=backend)))
            assert not bool(torch.isfinite(hausdorff_distance(*args, directed=True, backend=backend)))


def test_huge_float32_coordinates_do_not_give_a_finite_wrong_value() -> None:
    x, y = _pair(10, 20, 30)
    ref = chamfer_distance(x, y, squared=False)
    for scale in (1e19, 1e20):
        out = chamfer_distance((scale * x).float(), (scale * y).float(), squared=False)
        assert not bool(torch.isfinite(out)) or abs(float(out) / scale - float(ref)) < 1e-4 * float(ref)
        h = hausdorff_distance((scale * x).float(), (scale * y).float())
        assert not bool(torch.isfinite(h)) or abs(float(h) / scale - float(hausdorff_distance(x, y))) < 1e-3


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ChamferLoss, {"reduction": "avg"}, "reduction: expected 'mean', 'sum' or 'none', got 'avg'"),
        (ChamferLoss, {"normal_weight": -1.0}, "normal_weight: expected a non-negative value"),
        (ChamferLoss, {"point_reduction": "max"}, "point_reduction: expected 'mean' or 'sum', got 'max'"),
        (ChamferLoss, {"backend": "faiss"}, "backend: unknown knn backend 'faiss'"),
        (ChamferLoss, {"measure": "verts"}, "measure: unknown mesh measure 'verts'"),
        (ChamferLoss, {"n_samples": 0}, "n_samples: expected an integer >= 1"),
        (ChamferLoss, {"sqaured": True}, "ChamferLoss: unknown setting\\(s\\) 'sqaured'"),
        (ChamferLoss, {"x_normals": None}, "ChamferLoss: 'x_normals' is a per-call input"),
        (HausdorffDistance, {"reduction": "max"}, "reduction: expected 'mean', 'sum' or 'none', got 'max'"),
        (HausdorffDistance, {"backend": "faiss"}, "backend: unknown knn backend 'faiss'"),
        (HausdorffDistance, {"directd": True}, "HausdorffDistance: unknown setting\\(s\\) 'directd'"),
    ],
)
def test_shells_check_settings_at_construction(cls, kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        cls(**kwargs)


def test_shells_forward_inputs() -> None:
    v, f = icosphere(1)
    x, y = _pair(11, 6, 8)
    nx, ny = _pair(12, 6, 8)
    loss = ChamferLoss(normal_weight=0.3, measure="vertices")
    torch.testing.assert_close(loss(x, y, x_normals=nx, y_normals=ny),
                               chamfer_distance(x, y, x_normals=nx, y_normals=ny, normal_weight=0.3))
    mesh_loss = ChamferLoss(measure="vertices")
    torch.testing.assert_close(mesh_loss(Mesh(v, f), 1.1 * v), chamfer_distance(v, 1.1 * v))
    with pytest.raises(ValidationError, match=r"ChamferLoss\.forward: 'squared': set it at construction"):
        loss(x, y, squared=False)
    with pytest.raises(TypeError):
        ChamferLoss(True)
