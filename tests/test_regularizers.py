"""Mesh regularisers: closed forms on planes, regular polyhedra and scaled meshes; gradients; bad input."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot.losses.regularizers import (
    MeshRegularizer,
    edge_length_loss,
    laplacian_residual,
    laplacian_smoothing_loss,
    normal_consistency_loss,
)
from geomot.structures import Mesh
from tests.conftest import icosphere

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grid(n: int, h: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat n x n grid in the plane z = 0, spacing h, two triangles per cell (same diagonal)."""
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    v = torch.stack([ii.flatten() * h, jj.flatten() * h, torch.zeros(n * n)], -1).double()
    idx = lambda i, j: i * n + j  # noqa: E731
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            f += [[idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)], [idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)]]
    return v, torch.tensor(f)


def _interior(n: int) -> torch.Tensor:
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((ii > 0) & (ii < n - 1) & (jj > 0) & (jj < n - 1)).flatten()


def _tetrahedron() -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    return v, f


def test_edge_length_closed_forms() -> None:
    n, h = 5, 0.3
    v, f = _grid(n, h)
    n_axis, n_diag = 2 * n * (n - 1), (n - 1) ** 2
    mean_sq = (n_axis * h**2 + n_diag * 2 * h**2) / (n_axis + n_diag)
    torch.testing.assert_close(edge_length_loss(v, faces=f), torch.tensor(mean_sq, dtype=torch.float64))
    dev = n_diag * (math.sqrt(2) * h - h) ** 2 / (n_axis + n_diag)
    torch.testing.assert_close(edge_length_loss(v, faces=f, target_length=h), torch.tensor(dev, dtype=torch.float64))
    vs, fs = icosphere(1)
    for s in (0.5, 3.0):
        torch.testing.assert_close(edge_length_loss(Mesh(s * vs, fs)), s**2 * edge_length_loss(Mesh(vs, fs)))


def test_laplacian_flat_grid_interior_is_zero() -> None:
    n = 6
    v, f = _grid(n)
    inner = _interior(n)
    for method in ("uniform", "cotangent"):
        r = laplacian_residual(v, f, method=method)
        assert float(r[inner].abs().max()) < 1e-12
        assert float(r[~inner].abs().max()) > 1e-3  # boundary vertices are pulled inwards
        assert abs(float(laplacian_smoothing_loss(v, faces=f, method=method, exclude_boundary=True))) < 1e-24
    # cotangent weights reproduce linear functions on any flat mesh: jitter the interior in the plane
    g = torch.Generator().manual_seed(0)
    vj = v.clone()
    vj[inner, :2] += 0.2 * (torch.rand(int(inner.sum()), 2, generator=g, dtype=torch.float64) - 0.5)
    assert float(laplacian_residual(vj, f, method="cotangent")[inner].abs().max()) < 1e-12
    assert float(laplacian_smoothing_loss(vj, faces=f, method="uniform", exclude_boundary=True)) > 1e-4


@pytest.mark.parametrize("method", ["uniform", "cotangent"])
def test_laplacian_icosahedron_closed_form(method: str) -> None:
    # every vertex of the unit icosahedron has 5 neighbours at <v, w> = 1/sqrt(5): delta = (1 - 1/sqrt(5)) v
    v, f = icosphere(0)
    expect = (1 - 1 / math.sqrt(5)) ** 2
    torch.testing.assert_close(laplacian_smoothing_loss(v, faces=f, method=method), torch.tensor(expect, dtype=v.dtype))
    torch.testing.assert_close(laplacian_smoothing_loss(Mesh(2 * v, f), method=method), 4 * torch.tensor(expect,
                               dtype=v.dtype))


def test_normal_consistency_closed_forms() -> None:
    v, f = _grid(5)
    assert abs(float(normal_consistency_loss(v, faces=f))) < 1e-15
    vt, ft = _tetrahedron()  # dihedral: <n_f, n_g> = -1/3 for every pair
    torch.testing.assert_close(normal_consistency_loss(vt, faces=ft), torch.tensor(4 / 3, dtype=torch.float64))
    theta = 0.7  # two triangles folded along the x axis by theta
    vf = torch.tensor([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -math.cos(theta), -math.sin(theta)]],
                      dtype=torch.float64)
    ff = torch.tensor([[0, 1, 2], [1, 0, 3]])
    torch.testing.assert_close(normal_consistency_loss(vf, faces=ff), torch.tensor(1 - math.cos(theta), dtype=torch.float64))
    # non-manifold edge shared by 3 faces: all 3 pairs count
    vn = torch.cat([vf, torch.tensor([[0.5, 0.0, 1.0]], dtype=torch.float64)])
    fn = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    n = torch.nn.functional.normalize(torch.linalg.cross(vn[fn[:, 1]] - vn[fn[:, 0]], vn[fn[:, 2]] - vn[fn[:, 0]]),
                                      dim=-1)
    expect = (3 - (n[0] @ n[1] + n[0] @ n[2] + n[1] @ n[2])) / 3
    torch.testing.assert_close(normal_consistency_loss(vn, faces=fn), expect)


def test_batched_inputs_and_reductions() -> None:
    v, f = icosphere(1)
    g = torch.Generator().manual_seed(1)
    vb = torch.stack([v, 1.3 * v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)])
    v2, f2 = _grid(4)
    for fn in (edge_length_loss, laplacian_smoothing_loss, normal_consistency_loss):
        none = fn(vb, faces=f, reduction="none")
        assert none.shape == (2,)
        torch.testing.assert_close(none[1], fn(vb[1], faces=f))
        assert fn(v, faces=f, reduction="none").shape == ()
        torch.testing.assert_close(fn(vb, faces=f), none.mean())
        torch.testing.assert_close(fn(vb, faces=f, reduction="sum"), none.sum())
        mesh = Mesh([v, v2], [f, f2])
        torch.testing.assert_close(fn(mesh, reduction="none"), torch.stack([fn(v, faces=f), fn(v2, faces=f2)]))


def test_gradcheck_float64() -> None:
    v, f = icosphere(0)
    g = torch.Generator().manual_seed(2)
    x = (v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype)).requires_grad_(True)
    checks = [
        lambda a: edge_length_loss(a, faces=f),
        lambda a: edge_length_loss(a, faces=f, target_length=0.8),
        lambda a: laplacian_smoothing_loss(a, faces=f, method="uniform"),
        lambda a: laplacian_smoothing_loss(a, faces=f, method="cotangent"),
        lambda a: normal_consistency_loss(a, faces=f),
        lambda a: MeshRegularizer(edge=1.0, laplacian=0.5, normal=0.1, method="cotangent")(a, faces=f),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, (x,))


def test_module_shell() -> None:
    v, f = icosphere(1)
    reg = MeshRegularizer(edge=2.0, laplacian=0.0, normal=0.5)
    torch.testing.assert_close(reg(Mesh(v, f)), 2 * edge_length_loss(v, faces=f) + 0.5 * normal_consistency_loss(v, faces=f))
    assert "edge" in repr(reg)
    out = reg(v.float(), faces=f)
    assert out.dtype == torch.float32


def test_bad_input() -> None:
    v, f = icosphere(0)
    with pytest.raises(ValidationError, match="faces: required when verts is a tensor"):
        edge_length_loss(v)
    with pytest.raises(ValidationError, match="faces: not accepted with a Mesh"):
        edge_length_loss(Mesh(v, f), faces=f)
    with pytest.raises(ValidationError, match="faces: index 12 out of range for 12 vertices"):
        laplacian_smoothing_loss(v, faces=torch.tensor([[0, 1, 12]]))
    with pytest.raises(ShapeError, match="faces: expected last dimension 3"):
        normal_consistency_loss(v, faces=f[:, :2])
    with pytest.raises(ShapeError, match="verts: expected last dimension 3"):
        edge_length_loss(v[:, :2], faces=f)
    with pytest.raises(ValidationError, match="faces: the mesh has no faces"):
        edge_length_loss(v, faces=f[:0])
    with pytest.raises(ShapeError, match="verts: expected a non-empty tensor"):
        edge_length_loss(v[:0], faces=f)
    with pytest.raises(ValidationError, match="verts: contains 1 NaN"):
        bad = v.clone()
        bad[0, 0] = float("nan")
        normal_consistency_loss(bad, faces=f)
    with pytest.raises(ValidationError, match="method: unknown laplacian weights 'robust'"):
        laplacian_smoothing_loss(v, faces=f, method="robust")
    with pytest.raises(ValidationError, match="target_length: expected a non-negative value"):
        edge_length_loss(v, faces=f, target_length=-1.0)
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none', got 'max'"):
        normal_consistency_loss(v, faces=f, reduction="max")
    with pytest.raises(ValidationError, match="MeshRegularizer: edge, laplacian and normal are all 0"):
        MeshRegularizer(edge=0, laplacian=0, normal=0)
    with pytest.raises(ShapeError, match="verts: expected a Mesh or a"):
        edge_length_loss([v], faces=f)


# -- reference: the per-item formulas, one mesh at a time ------------------------------------------------------------
def _ref_edge(v: torch.Tensor, f: torch.Tensor, target: float) -> torch.Tensor:
    e = torch.unique(torch.sort(torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), dim=1).values, dim=0)
    d = (v[e[:, 0]] - v[e[:, 1]]).norm(dim=-1)
    return (d - target).square().mean()


def _ref_laplacian(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    e = torch.unique(torch.sort(torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), dim=1).values, dim=0)
    nbr = [set() for _ in range(v.shape[0])]
    for i, j in e.tolist():
        nbr[i].add(j)
        nbr[j].add(i)
    res = [v[i] - v[sorted(n)].mean(0) if n else torch.zeros_like(v[i]) for i, n in enumerate(nbr)]
    return torch.stack(res).square().sum(-1).mean()


def _ref_normal(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    n = torch.nn.functional.normalize(torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), dim=-1)
    by_edge: dict[tuple[int, int], list[int]] = {}
    for k, (a, b, c) in enumerate(f.tolist()):
        for e in ((a, b), (b, c), (c, a)):
            by_edge.setdefault(tuple(sorted(e)), []).append(k)
    vals = [1 - n[p] @ n[q] for fs in by_edge.values() for i, p in enumerate(fs) for q in fs[i + 1:]]
    return torch.stack(vals).mean() if vals else v.new_zeros(())


def _ragged() -> Mesh:
    g = torch.Generator().manual_seed(3)
    v0, f0 = icosphere(1)
    v1, f1 = _grid(4)
    v2, f2 = _tetrahedron()
    vs = [v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype) for v in (v0, v1, v2)]
    return Mesh(vs, [f0, f1, f2])


def test_packed_batch_matches_the_per_item_reference() -> None:
    mesh = _ragged()
    items = list(zip(mesh.verts_list(), mesh.faces_list()))
    for target in (0.0, 0.4):
        expect = torch.stack([_ref_edge(v, f, target) for v, f in items])
        torch.testing.assert_close(edge_length_loss(mesh, target_length=target, reduction="none"), expect)
    expect = torch.stack([_ref_laplacian(v, f) for v, f in items])
    torch.testing.assert_close(laplacian_smoothing_loss(mesh, reduction="none"), expect)
    expect = torch.stack([_ref_normal(v, f) for v, f in items])
    torch.testing.assert_close(normal_consistency_loss(mesh, reduction="none"), expect)
    for method in ("uniform", "cotangent"):
        per_item = [laplacian_smoothing_loss(v, faces=f, method=method, exclude_boundary=True) for v, f in items]
        torch.testing.assert_close(
            laplacian_smoothing_loss(mesh, method=method, exclude_boundary=True, reduction="none"), torch.stack(per_item)
        )


def test_topology_is_built_once_and_survives_update_verts(monkeypatch) -> None:
    import geomot.ops.geometry as geo

    calls = {"edges": 0, "face_adjacency": 0, "boundary_vertices": 0}
    for name in calls:
        original = getattr(geo, name)

        def counting(*a, _orig=original, _name=name, **k):
            calls[_name] += 1
            return _orig(*a, **k)

        monkeypatch.setattr(geo, name, counting)
    mesh = _ragged()
    reg = MeshRegularizer(edge=1.0, laplacian=1.0, normal=1.0, exclude_boundary=True)
    for _ in range(3):
        v = [x.clone().requires_grad_(True) for x in mesh.verts_list()]
        mesh = mesh.update_verts(v)
        reg(mesh).backward()
    assert calls == {"edges": 1, "face_adjacency": 1, "boundary_vertices": 1}


def test_faces_is_keyword_only() -> None:
    v, f = icosphere(0)
    for fn in (edge_length_loss, laplacian_smoothing_loss, normal_consistency_loss):
        with pytest.warns(GeomotDeprecationWarning, match=fn.__name__ + ": passing faces positionally is deprecated"):
            old = fn(v, f)
        torch.testing.assert_close(old, fn(v, faces=f))
        with pytest.raises(ValidationError, match=fn.__name__ + ": takes one positional argument"):
            fn(v, f, "mean")
    reg = MeshRegularizer()
    with pytest.warns(GeomotDeprecationWarning, match=r"MeshRegularizer\.forward: passing faces positionally"):
        reg(v, f)
    with pytest.raises(ValidationError, match=r"MeshRegularizer\.forward: takes one positional argument"):
        reg(v, f, faces=f)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"edge": -1.0}, "edge: expected a non-negative value"),
        ({"laplacian": float("nan")}, "laplacian: expected a finite number"),
        ({"normal": "x"}, "normal: expected a number"),
        ({"target_length": -0.5}, "target_length: expected a non-negative value"),
        ({"method": "robust"}, "method: unknown laplacian weights 'robust'"),
        ({"reduction": "avg"}, "reduction: expected 'mean', 'sum' or 'none', got 'avg'"),
    ],
)
def test_mesh_regularizer_checks_at_construction(kwargs, match) -> None:
    with pytest.raises(ValidationError, match=match):
        MeshRegularizer(**kwargs)
    with pytest.raises(TypeError):
        MeshRegularizer(1.0)  # keyword-only


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_positions_give_nan_without_checks(value) -> None:
    import geomot

    v, f = icosphere(1)
    bad = v.clone()
    bad[3, 1] = value
    with geomot.data_checks(False):
        for fn, kw in [(edge_length_loss, {}), (edge_length_loss, {"target_length": 0.1}),
                       (laplacian_smoothing_loss, {"method": "uniform"}), (laplacian_smoothing_loss, {"method": "cotangent"}),
                       (normal_consistency_loss, {})]:
            out = fn(Mesh(bad, f), **kw)
            assert not bool(torch.isfinite(out)), (fn.__name__, kw)
    big = (v * 1e20).float()  # squared lengths and cross products overflow float32: no finite (wrong) value
    for fn in (edge_length_loss, laplacian_smoothing_loss, normal_consistency_loss):
        assert not bool(torch.isfinite(fn(big, faces=f))), fn.__name__
