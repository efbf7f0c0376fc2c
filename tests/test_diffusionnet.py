"""DiffusionNet and its operators: closed-form gradients on a plane and a sphere, frames, the on-disk cache, the
robust fallback on non-manifold meshes, padded batches, invariances of the network (vertex order, rigid motions,
padding), float64 end to end, gradients, seeded construction and every error message."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.io.synthetic import bumpy_sphere
from geomot.models import DiffusionNet
from geomot.models.diffusionnet import (
    DIFFUSIONS,
    DiffusionNetBlock,
    _NonNegative,
    learned_diffusion,
    wks_input,
    xyz_input,
)
from geomot.ops import operators as op_module
from geomot.ops.operators import (
    DiffusionBatch,
    DiffusionOperators,
    batch_operators,
    diffusion_operators,
    spatial_gradient,
    tangent_frames,
)
from geomot.ops.spectral import laplacian_and_mass
from tests.conftest import SHARED_DATA, icosphere

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 24


def _random_rotation(seed: int) -> torch.Tensor:
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).Q
    return q * torch.sign(torch.linalg.det(q))


def _permuted(verts: torch.Tensor, faces: torch.Tensor, seed: int = 0):
    perm = torch.randperm(verts.shape[0], generator=torch.Generator().manual_seed(seed))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0])
    return verts[perm], inv[faces], perm


def _net(in_channels: int = 8, **kw) -> DiffusionNet:
    """A small float64 network in eval mode with random positive diffusion times (at 0 they would make every block
    a plain projection onto the basis)."""
    g = torch.Generator().manual_seed(1)
    kw = {"width": 12, "n_blocks": 2, "k_eig": K, "mlp_hidden": (16,), **kw}
    net = DiffusionNet(in_channels, 6, generator=g, **kw).double().eval()
    with torch.no_grad():
        for blk in net.blocks:
            blk.diffusion_time.copy_(torch.rand(blk.width, generator=g, dtype=torch.float64) * 0.05)
    return net


@pytest.fixture(scope="module")
def bumpy():
    m = bumpy_sphere(200)
    return m.verts, m.faces


@pytest.fixture(scope="module")
def bumpy_ops(bumpy):
    return diffusion_operators(*bumpy, k_eig=K)


@pytest.fixture(scope="module")
def sphere_ops():
    v, f = icosphere(3)
    return v, f, diffusion_operators(v, f, k_eig=10)


# ---------------------------------------------------------------------------------------------------------------
# operators


def _planar_mesh(n: int = 12, seed: int = 0):
    """A jittered grid triangulation of the unit square, rotated into a random plane of R^3."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.linspace(0, 1, n, dtype=torch.float64)
    uv = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    interior = ((uv > 0) & (uv < 1)).all(-1)
    uv = uv + interior[:, None] * 0.2 / n * (torch.rand(uv.shape, generator=g, dtype=torch.float64) - 0.5)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].flatten(), idx[1:, :-1].flatten(), idx[1:, 1:].flatten(), idx[:-1, 1:].flatten()
    faces = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    verts = torch.cat([uv, torch.zeros(n * n, 1, dtype=torch.float64)], 1) @ _random_rotation(seed).T + 0.3
    return verts, faces, interior


def test_gradient_of_a_linear_function_on_a_plane():
    v, f, interior = _planar_mesh()
    ops = diffusion_operators(v, f, k_eig=8)
    a = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    u = v @ a
    gx, gy = ops.grad_x @ u, ops.grad_y @ u
    want_x, want_y = ops.frames[:, 0] @ a, ops.frames[:, 1] @ a  # the tangent part of a in the frame
    err = ((gx - want_x) ** 2 + (gy - want_y) ** 2).sqrt() / a.norm()
    assert float(err[interior].max()) < 1e-5  # exact up to the 1e-6 regularisation
    assert float(err.max()) < 1e-3
    # the normal is the plane's normal; constants have zero gradient
    n_plane = torch.linalg.cross(v[1] - v[0], v[12] - v[0])
    assert torch.allclose((ops.frames[:, 2] @ n_plane).abs(), n_plane.norm().expand(v.shape[0]), rtol=1e-10)
    ones = torch.ones_like(u)
    assert float((ops.grad_x @ ones).abs().max()) < 1e-12 and float((ops.grad_y @ ones).abs().max()) < 1e-12


@pytest.mark.parametrize(("cloud", "tol", "normal_tol"), [(False, 0.02, 0.02), (True, 0.08, 0.1)])
def test_gradient_of_a_linear_function_on_a_sphere(cloud, tol, normal_tol):
    # on the unit sphere the tangent gradient of u = <a, p> is a - <a, p> p; the O(h) error halves with h
    a = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    errs = []
    for sub in (2, 3):
        v, f = icosphere(sub)
        ops = diffusion_operators(v, None if cloud else f, k_eig=4, n_neighbors=12)
        assert torch.allclose(ops.frames[:, 2], v, atol=normal_tol)  # outward normals
        u = v @ a
        g = (ops.grad_x @ u)[:, None] * ops.frames[:, 0] + (ops.grad_y @ u)[:, None] * ops.frames[:, 1]
        errs.append(float((g - (a - u[:, None] * v)).norm(dim=-1).max() / a.norm()))
    assert errs[1] < tol and errs[1] < 0.6 * errs[0], errs


def test_frames_are_orthonormal_and_right_handed(sphere_ops):
    _, _, ops = sphere_ops
    fr = ops.frames
    eye = torch.eye(3, dtype=torch.float64).expand_as(fr)
    assert torch.allclose(fr @ fr.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(fr), torch.ones(fr.shape[0], dtype=torch.float64))
    again = tangent_frames(fr[:, 2])
    assert torch.equal(again, fr)


def test_spatial_gradient_rows_match_a_dense_least_squares():
    v, f = icosphere(1)
    fr = tangent_frames(v)
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).unique(dim=0)
    pairs = torch.cat([e, e.flip(1)]).unique(dim=0).t()
    gx, gy = spatial_gradient(v, fr, pairs)
    u = torch.randn(v.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    i = 5
    nb = pairs[1][pairs[0] == i]
    E = torch.stack([(v[nb] - v[i]) @ fr[i, 0], (v[nb] - v[i]) @ fr[i, 1]], 1)
    S = E.T @ E
    g = torch.linalg.solve(S + 1e-6 * torch.trace(S) * torch.eye(2, dtype=torch.float64), E.T @ (u[nb] - u[i]))
    assert torch.allclose(torch.stack([(gx @ u)[i], (gy @ u)[i]]), g, rtol=1e-12, atol=1e-14)


def test_frame_and_gradient_errors():
    v, f = icosphere(1)
    fr = tangent_frames(v)
    pairs = torch.stack([f[:, 0], f[:, 1]])
    with pytest.raises(
        ValidationError, match="normals: expected unit vectors, got norms that differ from 1 by up to 1"
    ):
        tangent_frames(2 * v)
    with pytest.raises(ShapeError, match="normals: expected last dimension 3"):
        tangent_frames(v[:, :2])
    with pytest.raises(ShapeError, match=r"frames: expected shape \(42, 3, 3\) and dtype torch.float64"):
        spatial_gradient(v, fr.float(), pairs)
    with pytest.raises(ShapeError, match=r"frames: expected shape \(42, 3, 3\)"):
        spatial_gradient(v, fr[:5], pairs)
    with pytest.raises(ShapeError, match=r"neighbors: expected a \(2, P\) integer tensor"):
        spatial_gradient(v, fr, pairs.t())
    with pytest.raises(ValidationError, match="neighbors: index 42 out of range"):
        spatial_gradient(v, fr, torch.tensor([[0], [42]]))
    with pytest.raises(ShapeError, match="verts: expected last dimension 3"):
        spatial_gradient(v[:, :2], fr, pairs)


def test_operators_shapes_dtypes_and_basis(bumpy, bumpy_ops):
    v, f = bumpy
    ops = bumpy_ops
    V = v.shape[0]
    assert isinstance(ops, DiffusionOperators)
    assert ops.mass.shape == (V,) and ops.evals.shape == (K,) and ops.evecs.shape == (V, K)
    assert ops.frames.shape == (V, 3, 3) and ops.grad_x.shape == (V, V) and ops.laplacian.shape == (V, V)
    assert all(t.dtype == torch.float64 for t in ops)
    gram = ops.evecs.T @ (ops.mass[:, None] * ops.evecs)
    assert torch.allclose(gram, torch.eye(K, dtype=torch.float64), atol=1e-8)
    # L phi = lambda M phi with the stored Laplacian, which is the cotangent one of laplacian_and_mass
    assert torch.allclose(ops.laplacian @ ops.evecs, ops.mass[:, None] * ops.evecs * ops.evals, atol=1e-7)
    L, mass = laplacian_and_mass(v, f, method="cotan")
    assert np.allclose(ops.laplacian.to_dense().numpy(), L.toarray(), atol=1e-12)
    assert torch.allclose(ops.mass, torch.from_numpy(mass))
    # float32 input: float64 operators, no gradient
    ops32 = diffusion_operators(v.float().requires_grad_(), f, k_eig=4)
    assert ops32.evecs.dtype == torch.float64 and not any(t.requires_grad for t in ops32)


def test_point_cloud_operators(bumpy):
    v, _ = bumpy
    ops = diffusion_operators(v, None, k_eig=6, n_neighbors=10)
    assert ops.evecs.shape == (v.shape[0], 6) and ops.grad_x._nnz() == v.shape[0] * 11
    assert float((ops.frames[:, 2] * (v - v.mean(0))).sum(-1).min()) > 0  # oriented away from the centroid


def test_non_manifold_mesh_falls_back_to_robust_and_says_so(caplog):
    v, f = icosphere(2)
    # a fin: one more triangle on the edge (f[0, 0], f[0, 1]) makes it shared by three faces
    tip = (v[f[0, 0]] + v[f[0, 1]]) / 2 * 1.3
    v2 = torch.cat([v, tip[None]])
    f2 = torch.cat([f, torch.tensor([[f[0, 0], f[0, 1], v.shape[0]]])])
    with caplog.at_level(logging.WARNING, logger="geomot.ops.operators"):
        ops = diffusion_operators(v2, f2, k_eig=6)
    assert "non-manifold" in caplog.text and "robust" in caplog.text
    L, mass = laplacian_and_mass(v2, f2, method="robust")
    assert np.allclose(ops.laplacian.to_dense().numpy(), L.toarray(), atol=1e-12)
    assert torch.allclose(ops.mass, torch.from_numpy(mass))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geomot.ops.operators"):
        diffusion_operators(v, f, k_eig=6)
    assert "non-manifold" not in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# cache


def test_cache_hit_slicing_and_invalidation(bumpy, tmp_path, monkeypatch):
    v, f = bumpy
    first = diffusion_operators(v, f, k_eig=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob("*.tmp"))
    calls = []

    def boom(*a, **k):
        calls.append(1)
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(op_module, "spectral_basis", boom)
    hit = diffusion_operators(v, f, k_eig=8, cache_dir=tmp_path)
    sliced = diffusion_operators(v, f, k_eig=5, cache_dir=tmp_path)
    for a, b in zip(first, hit):
        assert torch.equal(a.to_dense(), b.to_dense()) if a.is_sparse else torch.equal(a, b)
    assert torch.equal(sliced.evecs, first.evecs[:, :5]) and torch.equal(
        sliced.grad_y.to_dense(), first.grad_y.to_dense()
    )
    # a moved vertex, other faces, another method, more eigenpairs: all recompute
    moved = v.clone()
    moved[3] += 1e-3
    for args, kw in [((moved, f), {}), ((v, f.flip(1)), {}), ((v, f), {"method": "robust"}), ((v, f), {"k_eig": 9})]:
        with pytest.raises(AssertionError, match="cache should have been used"):
            diffusion_operators(*args, **{"k_eig": 8, "cache_dir": tmp_path, **kw})
    assert len(calls) == 4


def test_corrupted_cache_file_is_recomputed(bumpy, tmp_path, caplog):
    v, f = bumpy
    first = diffusion_operators(v, f, k_eig=6, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with caplog.at_level(logging.WARNING, logger="geomot.ops.operators"):
        again = diffusion_operators(v, f, k_eig=6, cache_dir=tmp_path)
    assert "unreadable cache file" in caplog.text
    assert torch.allclose(again.evals, first.evals) and torch.equal(again.mass, first.mass)
    np.load(path)["evecs"]  # rewritten in full
    # a readable file with arrays of the wrong shapes is recomputed too
    np.savez(path, mass=np.ones(3))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geomot.ops.operators"):
        diffusion_operators(v, f, k_eig=6, cache_dir=tmp_path)
    assert "unreadable cache file" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# operator errors


def test_operator_errors(bumpy):
    v, f = bumpy
    V = v.shape[0]
    with pytest.raises(ValidationError, match=rf"has {V} vertices, fewer than the {V + 1} eigenpairs"):
        diffusion_operators(v, f, k_eig=V + 1)
    with pytest.raises(ValidationError, match="k_eig: expected an integer >= 1"):
        diffusion_operators(v, f, k_eig=0)
    with pytest.raises(ValidationError, match="n_neighbors"):
        diffusion_operators(v, None, k_eig=4, n_neighbors=1)
    with pytest.raises(ShapeError, match="verts: expected last dimension 3"):
        diffusion_operators(v[:, :2], f)
    with pytest.raises(ShapeError, match="verts: expected a floating-point tensor"):
        diffusion_operators(v.long(), f)
    with pytest.raises(ShapeError, match="faces: expected an integer tensor"):
        diffusion_operators(v, f.double())
    with pytest.raises(ShapeError, match=r"faces: expected a non-empty \(F, 3\)"):
        diffusion_operators(v, f[:0])
    with pytest.raises(ValidationError, match=f"faces: index {V} out of range"):
        diffusion_operators(v, torch.cat([f, torch.tensor([[0, 1, V]])]))
    bad = v.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValidationError, match="verts: contains 1 NaN"):
        diffusion_operators(bad, f)
    with pytest.raises(ValidationError, match="method: unknown laplacian 'nope'; valid: cotan"):
        diffusion_operators(v, f, method="nope")


def test_batch_errors(bumpy_ops, sphere_ops):
    with pytest.raises(ShapeError, match="operators: expected at least one"):
        batch_operators([])
    with pytest.raises(ShapeError, match=r"operators\[1\]: expected 24 eigenpairs"):
        batch_operators([bumpy_ops, sphere_ops[2]])
    with pytest.raises(ShapeError, match=r"operators\[1\]: expected a DiffusionOperators"):
        batch_operators([bumpy_ops, "x"])
    with pytest.raises(ShapeError, match="dtype: expected a floating"):
        batch_operators([bumpy_ops], dtype=torch.int64)


# ---------------------------------------------------------------------------------------------------------------
# batches


@pytest.fixture(scope="module")
def two_shapes(bumpy, bumpy_ops):
    v2, f2 = icosphere(2)
    v2 = v2 * torch.tensor([1.2, 0.9, 0.8], dtype=torch.float64)
    return [(bumpy[0], bumpy_ops), (v2, diffusion_operators(v2, f2, k_eig=K))]


def test_batch_layout(two_shapes):
    ops = [o for _, o in two_shapes]
    b = batch_operators(ops)
    n = [o.evecs.shape[0] for o in ops]
    B, Vm = 2, max(n)
    assert isinstance(b, DiffusionBatch) and b.lengths.tolist() == n
    assert b.evecs.shape == (B, Vm, K) and b.mass.shape == (B, Vm) and b.evals.shape == (B, K)
    assert (
        b.gradient.layout == torch.sparse_coo and b.gradient.is_coalesced() and b.gradient.shape == (2 * B * Vm, B * Vm)
    )
    assert float(b.mass[1, n[1] :].abs().sum()) == 0 and float(b.evecs[1, n[1] :].abs().sum()) == 0
    dense = b.gradient.to_dense()
    assert torch.equal(b.gradient_t.to_dense(), dense.T)
    for i, o in enumerate(ops):
        rows = slice(i * Vm, i * Vm + n[i])
        rows_y = slice((B + i) * Vm, (B + i) * Vm + n[i])
        assert torch.equal(dense[rows, i * Vm : i * Vm + n[i]], o.grad_x.to_dense())
        assert torch.equal(dense[rows_y, i * Vm : i * Vm + n[i]], o.grad_y.to_dense())
    assert dense[:, n[1] + Vm :].abs().sum() == 0  # padding columns are empty
    b32 = b.to(dtype=torch.float32)
    assert b32.evecs.dtype == b32.gradient.dtype == torch.float32 and b32.lengths.dtype == torch.int64


# ---------------------------------------------------------------------------------------------------------------
# network


def test_invariant_to_vertex_order(bumpy, bumpy_ops):
    v, f = bumpy
    net = _net(8)
    x = torch.randn(v.shape[0], 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = net(x, bumpy_ops)
    v2, f2, perm = _permuted(v, f)
    y2 = net(x[perm], diffusion_operators(v2, f2, k_eig=K))
    assert torch.allclose(y2, y[perm], atol=1e-5 * float(y.detach().abs().max()), rtol=0)
    assert float(y.detach().std(0).min()) > 1e-3  # not a constant output


@pytest.mark.parametrize("features", ["wks", "mass"])
def test_invariant_to_rigid_motions(bumpy, bumpy_ops, features):
    v, f = bumpy
    moved = v @ _random_rotation(4).T + torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    ops2 = diffusion_operators(moved, f, k_eig=K)

    def inputs(ops):
        if features == "wks":
            return wks_input(ops, n_scales=8)
        return (ops.mass / ops.mass.mean())[:, None].expand(-1, 8)  # vertex areas: intrinsic, not constant

    net = _net(8)
    y, y2 = net(inputs(bumpy_ops), bumpy_ops), net(inputs(ops2), ops2)
    assert torch.allclose(y, y2, atol=1e-6 * float(y.detach().abs().max()), rtol=0)
    assert float(y.detach().std(0).min()) > 1e-4


def test_gradient_features_ignore_the_tangent_basis(bumpy, bumpy_ops):
    # rotating every vertex's frame by its own angle changes grad_x, grad_y but not the network's output
    net = _net(8)
    x = torch.randn(bumpy[0].shape[0], 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    theta = torch.rand(x.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 2 * math.pi
    c, s = theta.cos()[:, None], theta.sin()[:, None]
    gx, gy = bumpy_ops.grad_x.to_dense(), bumpy_ops.grad_y.to_dense()
    turned = bumpy_ops._replace(grad_x=(c * gx + s * gy).to_sparse(), grad_y=(c * gy - s * gx).to_sparse())
    assert torch.allclose(net(x, turned), net(x, bumpy_ops), atol=1e-12)


def test_padding_changes_nothing(two_shapes):
    net = _net(3)
    singles = [net(xyz_input(v, o), o) for v, o in two_shapes]
    b = batch_operators([o for _, o in two_shapes])
    n = b.lengths.tolist()
    x = torch.full((2, max(n), 3), float("nan"), dtype=torch.float64)  # NaN padding must not leak
    for i, (v, o) in enumerate(two_shapes):
        x[i, : n[i]] = xyz_input(v, o)
    y = net(x, b).detach()
    assert y.shape == (2, max(n), 6)
    for i in range(2):
        assert torch.allclose(y[i, : n[i]], singles[i], atol=1e-12)
    assert float(y[1, n[1] :].abs().sum()) == 0


def test_nan_in_gives_nan_out_for_its_item_only(two_shapes):
    net = _net(3)
    b = batch_operators([o for _, o in two_shapes])
    x = torch.zeros(2, b.evecs.shape[1], 3, dtype=torch.float64)
    x[0, 0, 0] = float("nan")
    y = net(x, b)
    assert bool(torch.isnan(y[0, : b.lengths[0]]).all()) and bool(torch.isfinite(y[1]).all())


def test_float64_end_to_end_and_gradients_reach_every_parameter(bumpy, bumpy_ops):
    for rotations in (True, False):
        net = _net(8, with_gradient_rotations=rotations, dropout=0.5).train()
        x = wks_input(bumpy_ops, n_scales=8)
        y = net(x, bumpy_ops)
        assert y.dtype == torch.float64
        y.square().sum().backward()
        for name, p in net.named_parameters():
            assert p.dtype == torch.float64 and p.grad is not None and float(p.grad.abs().max()) > 0, name


def test_without_gradient_features_and_last_activation(bumpy_ops):
    net = (
        DiffusionNet(
            8,
            5,
            width=8,
            n_blocks=1,
            k_eig=K,
            with_gradient_features=False,
            last_activation=lambda t: torch.log_softmax(t, -1),
            generator=torch.Generator().manual_seed(0),
        )
        .double()
        .eval()
    )
    assert not any("a_re" in n for n, _ in net.named_parameters())
    y = net(wks_input(bumpy_ops, n_scales=8), bumpy_ops)
    assert torch.allclose(y.exp().sum(-1), torch.ones(y.shape[0], dtype=torch.float64))


def test_gradcheck_network(bumpy_ops):
    v, f = icosphere(1)
    ops = diffusion_operators(v, f, k_eig=6)
    net = DiffusionNet(
        2, 2, width=3, n_blocks=1, k_eig=6, mlp_hidden=(4,), dropout=0.0, generator=torch.Generator().manual_seed(0)
    ).double()
    with torch.no_grad():
        net.blocks[0].diffusion_time.fill_(0.1)
    b = batch_operators([ops])
    x = torch.randn(1, v.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = net.blocks[0].diffusion_time
    u = torch.randn(1, v.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(lambda x: net(x, b), (x.requires_grad_(),))
    assert torch.autograd.gradcheck(
        lambda tt: learned_diffusion(u, tt, evals=b.evals, evecs=b.evecs, mass=b.mass),
        (t.detach().clone().requires_grad_(),),
    )


def test_diffusion_time_is_clamped_with_a_projected_gradient(bumpy_ops):
    # a negative stored time acts as 0; its gradient survives only where it points towards larger times
    t = torch.tensor([-1.0, -1.0, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    out = _NonNegative.apply(t)
    assert out.tolist() == [0.0, 0.0, 0.5, 0.5]
    out.sum().backward()  # descent lowers every time: blocked where t <= 0
    assert t.grad.tolist() == [0.0, 0.0, 1.0, 1.0]
    t.grad = None
    (-_NonNegative.apply(t).sum()).backward()  # descent raises every time: passes everywhere
    assert t.grad.tolist() == [-1.0, -1.0, -1.0, -1.0]
    # in a block; at t = 0 the diffusion is the projection on the basis
    b = batch_operators([bumpy_ops])
    u = torch.randn(1, b.evecs.shape[1], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    proj = b.evecs @ (b.evecs.transpose(1, 2) @ (b.mass[..., None] * u))
    zero = torch.zeros(4, dtype=torch.float64)
    assert torch.allclose(learned_diffusion(u, zero, evals=b.evals, evecs=b.evecs, mass=b.mass), proj, atol=1e-12)
    blk = DiffusionNetBlock(4, mlp_hidden=(4,), dropout=0.0, generator=torch.Generator().manual_seed(0)).double()
    at_zero = blk(u, b.evals, b.evecs, b.mass, b.gradient, b.gradient_t)
    with torch.no_grad():
        blk.diffusion_time.fill_(-1.0)
    assert torch.equal(blk(u, b.evals, b.evecs, b.mass, b.gradient, b.gradient_t), at_zero)


def test_seeded_construction_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a = DiffusionNet(5, 7, width=8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = DiffusionNet(5, 7, width=8, generator=torch.Generator().manual_seed(3))
    c = DiffusionNet(5, 7, width=8, generator=torch.Generator().manual_seed(4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert len(a.blocks) == 4 and a.k_eig == 128 and a.blocks[0].mlp[0].in_features == 3 * 8


def test_input_features(bumpy, bumpy_ops, two_shapes):
    v, _ = bumpy
    x = xyz_input(v, bumpy_ops)
    assert torch.allclose((bumpy_ops.mass[:, None] * x).sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(xyz_input(v + 3.0, bumpy_ops), x)
    w = wks_input(bumpy_ops, n_scales=16)
    assert w.shape == (v.shape[0], 16)
    assert torch.allclose((bumpy_ops.mass[:, None] * w * w).sum(0), torch.ones(16, dtype=torch.float64))
    b = batch_operators([o for _, o in two_shapes])
    wb = wks_input(b, n_scales=16)
    n = b.lengths.tolist()
    assert torch.allclose(wb[0, : n[0]], w) and float(wb[1, n[1] :].abs().sum()) == 0
    with pytest.raises(ShapeError, match=r"verts: expected shape \(162, 3\)"):
        xyz_input(v, two_shapes[1][1])
    with pytest.raises(ValidationError, match="n_scales: expected an integer >= 1"):
        wks_input(bumpy_ops, n_scales=0)


def test_network_errors(bumpy_ops, two_shapes):
    net = _net(8)
    V = bumpy_ops.evecs.shape[0]
    x = torch.zeros(V, 8, dtype=torch.float64)
    b = batch_operators([o for _, o in two_shapes])
    with pytest.raises(ShapeError, match="x: expected last dimension 8"):
        net(x[:, :3], bumpy_ops)
    with pytest.raises(ShapeError, match=r"x: expected shape \(200, 8\)"):
        net(torch.zeros(V + 1, 8, dtype=torch.float64), bumpy_ops)
    with pytest.raises(ShapeError, match=r"x: a \(V, C\) input needs operators of one shape, got a batch of 2"):
        net(x, b)
    with pytest.raises(ShapeError, match=r"x: expected dtype torch.float64 on cpu .* got torch.float32"):
        net(torch.zeros(2, b.evecs.shape[1], 8), b)
    with pytest.raises(ShapeError, match="operators: expected a DiffusionBatch or DiffusionOperators"):
        net(x, {"evecs": 1})
    with pytest.raises(ShapeError, match="the model uses k_eig=30 eigenpairs but the operators hold 24"):
        _net(8, k_eig=30)(x, bumpy_ops)
    with pytest.raises(ShapeError, match="x: expected a 2-D or 3-D tensor"):
        net(x[None, None], bumpy_ops)
    with pytest.raises(ValidationError, match="in_channels: expected an integer >= 1"):
        DiffusionNet(0)
    with pytest.raises(ValidationError, match="width: expected an integer >= 1"):
        DiffusionNet(3, width=0)
    with pytest.raises(ValidationError, match="mlp_hidden: expected an integer >= 1"):
        DiffusionNet(3, mlp_hidden=(8, 0))
    with pytest.raises(ValidationError, match=r"dropout: expected a probability in \[0, 1\)"):
        DiffusionNet(3, dropout=1.0)
    with pytest.raises(ValidationError, match="diffusion: unknown diffusion 'implicit'; valid: spectral"):
        DiffusionNet(3, diffusion="implicit")
    with pytest.raises(ValidationError, match="last_activation: expected a callable"):
        DiffusionNet(3, last_activation="relu")
    assert "spectral" in DIFFUSIONS


def test_single_operators_follow_the_input_dtype(bumpy_ops):
    net = _net(8).float()
    y = net(torch.zeros(bumpy_ops.evecs.shape[0], 8), bumpy_ops)
    assert y.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------------
# real data


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "FAUST_r" / "off" / "tr_reg_000.off").is_file(),
    reason="../shared/data/FAUST_r is absent (see its README)",
)
def test_faust_default_model(tmp_path):
    from geomot.io import load

    m = load(SHARED_DATA / "FAUST_r" / "off" / "tr_reg_000.off", dtype=torch.float64)
    ops = diffusion_operators(m.verts, m.faces, k_eig=128, cache_dir=tmp_path)
    assert ops.evecs.shape == (m.verts.shape[0], 128) and float(ops.evals[1]) > 0
    b = batch_operators([ops], dtype=torch.float32)
    net = DiffusionNet(128, generator=torch.Generator().manual_seed(0))
    y = net(wks_input(b), b)
    y.square().mean().backward()
    assert y.shape == (1, m.verts.shape[0], 256) and bool(torch.isfinite(y).all())
    assert all(p.grad is not None for p in net.parameters())
