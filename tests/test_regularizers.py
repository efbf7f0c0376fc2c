"""Mesh regularisers: closed forms on planes, regular polyhedra and scaled meshes; gradients; bad input."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
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
    torch.testing.assert_close(edge_length_loss(v, f), torch.tensor(mean_sq, dtype=torch.float64))
    dev = n_diag * (math.sqrt(2) * h - h) ** 2 / (n_axis + n_diag)
    torch.testing.assert_close(edge_length_loss(v, f, target_length=h), torch.tensor(dev, dtype=torch.float64))
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
        assert abs(float(laplacian_smoothing_loss(v, f, method=method, exclude_boundary=True))) < 1e-24
    # cotangent weights reproduce linear functions on any flat mesh: jitter the interior in the plane
    g = torch.Generator().manual_seed(0)
    vj = v.clone()
    vj[inner, :2] += 0.2 * (torch.rand(int(inner.sum()), 2, generator=g, dtype=torch.float64) - 0.5)
    assert float(laplacian_residual(vj, f, method="cotangent")[inner].abs().max()) < 1e-12
    assert float(laplacian_smoothing_loss(vj, f, method="uniform", exclude_boundary=True)) > 1e-4


@pytest.mark.parametrize("method", ["uniform", "cotangent"])
def test_laplacian_icosahedron_closed_form(method: str) -> None:
    # every vertex of the unit icosahedron has 5 neighbours at <v, w> = 1/sqrt(5): delta = (1 - 1/sqrt(5)) v
    v, f = icosphere(0)
    expect = (1 - 1 / math.sqrt(5)) ** 2
    torch.testing.assert_close(laplacian_smoothing_loss(v, f, method=method), torch.tensor(expect, dtype=v.dtype))
    torch.testing.assert_close(laplacian_smoothing_loss(Mesh(2 * v, f), method=method), 4 * torch.tensor(expect,
                               dtype=v.dtype))


def test_normal_consistency_closed_forms() -> None:
    v, f = _grid(5)
    assert abs(float(normal_consistency_loss(v, f))) < 1e-15
    vt, ft = _tetrahedron()  # dihedral: <n_f, n_g> = -1/3 for every pair
    torch.testing.assert_close(normal_consistency_loss(vt, ft), torch.tensor(4 / 3, dtype=torch.float64))
    theta = 0.7  # two triangles folded along the x axis by theta
    vf = torch.tensor([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -math.cos(theta), -math.sin(theta)]],
                      dtype=torch.float64)
    ff = torch.tensor([[0, 1, 2], [1, 0, 3]])
    torch.testing.assert_close(normal_consistency_loss(vf, ff), torch.tensor(1 - math.cos(theta), dtype=torch.float64))
    # non-manifold edge shared by 3 faces: all 3 pairs count
    vn = torch.cat([vf, torch.tensor([[0.5, 0.0, 1.0]], dtype=torch.float64)])
    fn = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    n = torch.nn.functional.normalize(torch.linalg.cross(vn[fn[:, 1]] - vn[fn[:, 0]], vn[fn[:, 2]] - vn[fn[:, 0]]),
                                      dim=-1)
    expect = (3 - (n[0] @ n[1] + n[0] @ n[2] + n[1] @ n[2])) / 3
    torch.testing.assert_close(normal_consistency_loss(vn, fn), expect)


def test_batched_inputs_and_reductions() -> None:
    v, f = icosphere(1)
    g = torch.Generator().manual_seed(1)
    vb = torch.stack([v, 1.3 * v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)])
    v2, f2 = _grid(4)
    for fn in (edge_length_loss, laplacian_smoothing_loss, normal_consistency_loss):
        none = fn(vb, f, reduction="none")
        assert none.shape == (2,)
        torch.testing.assert_close(none[1], fn(vb[1], f))
        assert fn(v, f, reduction="none").shape == ()
        torch.testing.assert_close(fn(vb, f), none.mean())
        torch.testing.assert_close(fn(vb, f, reduction="sum"), none.sum())
        mesh = Mesh([v, v2], [f, f2])
        torch.testing.assert_close(fn(mesh, reduction="none"), torch.stack([fn(v, f), fn(v2, f2)]))


def test_gradcheck_float64() -> None:
    v, f = icosphere(0)
    g = torch.Generator().manual_seed(2)
    x = (v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype)).requires_grad_(True)
    checks = [
        lambda a: edge_length_loss(a, f),
        lambda a: edge_length_loss(a, f, target_length=0.8),
        lambda a: laplacian_smoothing_loss(a, f, method="uniform"),
        lambda a: laplacian_smoothing_loss(a, f, method="cotangent"),
        lambda a: normal_consistency_loss(a, f),
        lambda a: MeshRegularizer(edge=1.0, laplacian=0.5, normal=0.1, method="cotangent")(a, f),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, (x,))


def test_module_shell() -> None:
    v, f = icosphere(1)
    reg = MeshRegularizer(edge=2.0, laplacian=0.0, normal=0.5)
    torch.testing.assert_close(reg(Mesh(v, f)), 2 * edge_length_loss(v, f) + 0.5 * normal_consistency_loss(v, f))
    assert "edge" in repr(reg)
    out = reg(v.float(), f)
    assert out.dtype == torch.float32


def test_bad_input() -> None:
    v, f = icosphere(0)
    with pytest.raises(ValidationError, match="faces: required when verts is a tensor"):
        edge_length_loss(v)
    with pytest.raises(ValidationError, match="faces: not accepted with a Mesh"):
        edge_length_loss(Mesh(v, f), f)
    with pytest.raises(ValidationError, match="faces: index 12 out of range for 12 vertices"):
        laplacian_smoothing_loss(v, torch.tensor([[0, 1, 12]]))
    with pytest.raises(ShapeError, match="faces: expected last dimension 3"):
        normal_consistency_loss(v, f[:, :2])
    with pytest.raises(ShapeError, match="verts: expected last dimension 3"):
        edge_length_loss(v[:, :2], f)
    with pytest.raises(ValidationError, match="faces: the mesh has no faces"):
        edge_length_loss(v, f[:0])
    with pytest.raises(ShapeError, match="verts: expected a non-empty tensor"):
        edge_length_loss(v[:0], f)
    with pytest.raises(ValidationError, match="verts: contains 1 NaN"):
        bad = v.clone()
        bad[0, 0] = float("nan")
        normal_consistency_loss(bad, f)
    with pytest.raises(ValidationError, match="method: unknown laplacian weights 'robust'"):
        laplacian_smoothing_loss(v, f, method="robust")
    with pytest.raises(ValidationError, match="target_length: expected a non-negative value"):
        edge_length_loss(v, f, target_length=-1.0)
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none', got 'max'"):
        normal_consistency_loss(v, f, reduction="max")
    with pytest.raises(ValidationError, match="MeshRegularizer: edge, laplacian and normal are all 0"):
        MeshRegularizer(edge=0, laplacian=0, normal=0)
    with pytest.raises(ShapeError, match="verts: expected a Mesh or a"):
        edge_length_loss([v], f)
