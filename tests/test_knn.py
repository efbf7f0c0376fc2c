"""geomot.ops.knn_points against brute force and scipy's cKDTree; gradients; padding; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geomot._core.errors import GeomotError, ShapeError, ValidationError
from geomot.ops import knn_points
from geomot.ops.knn import KNN_BACKENDS, knn_gather

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _brute(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    v, i = torch.sort(d, dim=1)
    return v[:, :k], i[:, :k]


@pytest.mark.parametrize("backend", ["torch", "kdtree"])
@pytest.mark.parametrize("k", [1, 4])
def test_matches_brute_force(backend: str, k: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    y = torch.randn(250, 3, generator=g, dtype=torch.float64)
    res = knn_points(x, y, k=k, backend=backend, chunk_size=37, return_nn=True)
    d, i = _brute(x, y, k)
    assert res.dists.shape == (300, k) and res.idx.shape == (300, k) and res.knn.shape == (300, k, 3)
    torch.testing.assert_close(res.dists, d)
    assert torch.equal(res.idx, i)
    torch.testing.assert_close(res.knn, y[i])


def test_matches_ckdtree_float32_high_dim() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 5, generator=g)
    y = torch.randn(500, 5, generator=g)
    res = knn_points(x, y, k=3, backend="torch", chunk_size=64)
    dd, ii = cKDTree(y.numpy().astype(np.float64)).query(x.numpy().astype(np.float64), k=3)
    np.testing.assert_allclose(res.dists.numpy(), dd**2, rtol=1e-4, atol=1e-5)
    assert (res.idx.numpy() == ii).mean() > 0.999  # float32 ties aside


@pytest.mark.parametrize("k", [1, 2])  # k = 1 takes the argmin path, which must also skip padded columns
def test_padded_batch_equals_per_item(k: int) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    xl = torch.tensor([40, 17, 5])
    yl = torch.tensor([30, 9, 2])
    for backend in ("torch", "kdtree"):
        res = knn_points(x, y, k=k, x_lengths=xl, y_lengths=yl, backend=backend, chunk_size=7)
        for b in range(3):
            nx, ny = int(xl[b]), int(yl[b])
            d, i = _brute(x[b, :nx], y[b, :ny], k)
            torch.testing.assert_close(res.dists[b, :nx], d)
            assert torch.equal(res.idx[b, :nx], i)
            assert bool((res.dists[b, nx:] == 0).all()) and bool((res.idx[b, nx:] == 0).all())


def test_auto_backend_large_cpu_uses_tree_and_agrees() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1200, 3, generator=g, dtype=torch.float64)
    y = torch.rand(1000, 3, generator=g, dtype=torch.float64)
    a = knn_points(x, y, k=2)  # 1.2e6 pairs > KDTREE_MIN_PAIRS
    b = knn_points(x, y, k=2, backend="torch")
    torch.testing.assert_close(a.dists, b.dists)
    assert torch.equal(a.idx, b.idx)


@pytest.mark.parametrize("backend", ["torch", "kdtree"])
def test_gradients_flow_to_both_inputs(backend: str) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: knn_points(a, b, k=3, backend=backend).dists, (x, y), fast_mode=True)
    # closed form for k = 1: d/dx |x - y_nn|^2 = 2 (x - y_nn)
    x1 = x.detach().clone().requires_grad_(True)
    res = knn_points(x1, y.detach(), backend=backend, return_nn=True)
    res.dists.sum().backward()
    torch.testing.assert_close(x1.grad, 2 * (x1.detach() - res.knn[..., 0, :]))


def test_knn_gather_and_dtype_device() -> None:
    y = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)
    idx = torch.tensor([[[3, 0], [1, 1]]])
    out = knn_gather(y, idx)
    assert out.shape == (1, 2, 2, 3)
    assert torch.equal(out[0, 0, 0], y[0, 3]) and torch.equal(out[0, 1, 1], y[0, 1])
    res = knn_points(torch.rand(5, 3), torch.rand(6, 3))
    assert res.dists.dtype == torch.float32 and res.idx.dtype == torch.int64 and res.knn is None


def test_registry_lists_backends() -> None:
    assert {"torch", "kdtree", "pytorch3d"} <= set(KNN_BACKENDS.names())


def test_bad_input() -> None:
    x = torch.rand(5, 3)
    with pytest.raises(ShapeError, match="y: expected last dimension 3"):
        knn_points(x, torch.rand(5, 2))
    with pytest.raises(ShapeError, match="y: expected a 2-D tensor"):
        knn_points(x, torch.rand(1, 5, 3))
    with pytest.raises(ShapeError, match="y: expected dtype"):
        knn_points(x, torch.rand(5, 3, dtype=torch.float64))
    with pytest.raises(ShapeError, match="y: expected batch size 2"):
        knn_points(torch.rand(2, 5, 3), torch.rand(3, 5, 3))
    with pytest.raises(ShapeError, match="x: expected a non-empty tensor"):
        knn_points(torch.rand(0, 3), x)
    with pytest.raises(ValidationError, match=r"x: contains 1 NaN"):
        knn_points(torch.tensor([[0.0, float("nan"), 0.0]]), x)
    with pytest.raises(ValidationError, match=r"y: contains 1 NaN"):
        knn_points(x, torch.tensor([[0.0, float("inf"), 0.0]]))
    with pytest.raises(ValidationError, match="k: expected k <= the smallest y length 5"):
        knn_points(x, x, k=6)
    with pytest.raises(ValidationError, match="k: expected a positive integer"):
        knn_points(x, x, k=0)
    with pytest.raises(ValidationError, match="chunk_size: expected a positive integer"):
        knn_points(x, x, chunk_size=0)
    with pytest.raises(ValidationError, match="backend: unknown knn backend 'faiss'"):
        knn_points(x, x, backend="faiss")
    with pytest.raises(ValidationError, match="x_lengths: values must lie in"):
        knn_points(torch.rand(1, 5, 3), torch.rand(1, 5, 3), x_lengths=torch.tensor([7]))
    with pytest.raises(GeomotError, match=r"x: expected a torch\.Tensor"):
        knn_points(np.zeros((5, 3)), x)


@pytest.mark.parametrize("backend", ["torch", "kdtree"])
def test_non_finite_points_give_non_finite_distances_without_checks(backend) -> None:
    import geomot

    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 6, 3, generator=g), torch.rand(2, 7, 3, generator=g)
    xb, yb = x.clone(), y.clone()
    xb[0, 2, 1] = float("nan")
    yb[1, 4, 0] = float("inf")
    with geomot.data_checks(False):
        res = knn_points(xb, yb, backend=backend)
    ref = knn_points(x, y, backend=backend)
    assert torch.isnan(res.dists[0, 2]).all()  # the NaN query
    torch.testing.assert_close(res.dists[0, [0, 1, 3, 4, 5]], ref.dists[0, [0, 1, 3, 4, 5]])
    assert torch.isnan(res.dists[1]).all()  # an item whose y holds an Inf point: no nearest neighbour is defined


def test_huge_float32_coordinates_find_the_true_neighbours() -> None:
    # |x|^2 - 2 <x, y> + |y|^2 overflows float32 at 1e19; the search must still return the nearest points
    g = torch.Generator().manual_seed(5)
    x64, y64 = torch.rand(40, 3, generator=g, dtype=torch.float64), torch.rand(50, 3, generator=g, dtype=torch.float64)
    for scale in (1e19, 1e-15):
        res = knn_points((scale * x64).float(), (scale * y64).float(), backend="torch")
        ref = knn_points(x64, y64, backend="torch")
        assert torch.equal(res.idx, ref.idx)
        torch.testing.assert_close(res.dists.double() / scale**2, ref.dists, rtol=1e-3, atol=0)
    big = knn_points(torch.full((2, 3), 1e20), torch.zeros(3, 3), backend="torch")
    assert torch.isinf(big.dists).all()
