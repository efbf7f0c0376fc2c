"""1-D exact OT: closed forms, SciPy/POT oracles, gradients through the numpy sort, ties, bad input."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.stats
import torch

from geomot._core.errors import GeomotError, ShapeError, ValidationError
from geomot.transport.ot1d import safe_root, sort_last, sort_values, wasserstein_1d

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def t(v):
    return torch.tensor(v, dtype=D64)


@pytest.mark.parametrize(
    ("x", "y", "xw", "yw", "p", "expected"),
    [
        ([0.0, 1.0], [2.0, 3.0], None, None, 1, 2.0),  # shift by 2
        ([0.0, 1.0], [2.0, 3.0], None, None, 2, 4.0),
        ([0.0], [-1.0, 1.0], None, None, 2, 1.0),  # a Dirac against two halves
        ([0.0, 1.0], [0.0], [0.25, 0.75], None, 1, 0.75),
        ([0.0, 1.0], [0.0], [0.25, 0.75], None, 3, 0.75),
        ([0.0, 1.0, 2.0], [0.0, 2.0], None, None, 2, (1.0 / 3.0) * 1.0 * 0.5 * 2),  # mass 1/6 moves by 1 twice
    ],
)
def test_exact_values(x, y, xw, yw, p, expected):
    val = wasserstein_1d(t(x), t(y), x_weights=None if xw is None else t(xw), y_weights=None if yw is None else t(yw),
                         p=p, root=False)
    assert float(val) == pytest.approx(expected, abs=1e-12)


def test_matches_scipy_and_pot_with_weights():
    rng = np.random.default_rng(0)
    for n, m in [(7, 7), (13, 5), (40, 71)]:
        x, y = rng.normal(size=n), rng.normal(size=m) + 0.3
        a, b = rng.random(n), rng.random(m)
        w1 = wasserstein_1d(t(x), t(y), x_weights=t(a), y_weights=t(b), p=1)
        assert float(w1) == pytest.approx(scipy.stats.wasserstein_distance(x, y, a, b), rel=1e-10)
        for p in (2.0, 3.0):
            ref = ot.wasserstein_1d(x, y, a / a.sum(), b / b.sum(), p=p)
            got = wasserstein_1d(t(x), t(y), x_weights=t(a), y_weights=t(b), p=p, root=False)
            assert float(got) == pytest.approx(float(ref), rel=1e-10)


def test_batched_leading_dims_equal_loop():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 9, generator=g, dtype=D64), torch.randn(2, 3, 4, generator=g, dtype=D64)
    out = wasserstein_1d(x, y, p=2)
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert float(out[i, j]) == pytest.approx(float(wasserstein_1d(x[i, j], y[i, j])), rel=1e-12)


def test_sort_path_equals_quantile_path():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(5, 30, generator=g, dtype=D64), torch.randn(5, 30, generator=g, dtype=D64)
    w = torch.full((5, 30), 1.0 / 30, dtype=D64)
    a = wasserstein_1d(x, y, p=2.5)
    b = wasserstein_1d(x, y, x_weights=w, y_weights=w, p=2.5)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_gradcheck_sort_path(p):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, generator=g, dtype=D64, requires_grad=True)
    y = torch.randn(2, 6, generator=g, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: wasserstein_1d(a, b, p=p), (x, y))


def test_gradcheck_quantile_path_values_and_weights():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, generator=g, dtype=D64, requires_grad=True)
    y = torch.randn(2, 4, generator=g, dtype=D64, requires_grad=True)
    a = (torch.rand(2, 5, generator=g, dtype=D64) + 0.5).requires_grad_(True)
    b = (torch.rand(2, 4, generator=g, dtype=D64) + 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x_, y_, a_, b_: wasserstein_1d(x_, y_, x_weights=a_, y_weights=b_, p=2), (x, y, a, b)
    )


def test_sort_last_matches_torch_and_scatters_gradient():
    g = torch.Generator().manual_seed(5)
    v = torch.randn(4, 50, generator=g, requires_grad=True)
    srt, idx = sort_last(v)
    ref, _ = torch.sort(v.detach(), dim=-1)
    torch.testing.assert_close(srt.detach(), ref)
    torch.testing.assert_close(v.detach().gather(-1, idx), ref)
    w = torch.randn(4, 50, generator=g)
    (srt * w).sum().backward()
    expected = torch.zeros_like(w).scatter_(-1, idx, w)
    torch.testing.assert_close(v.grad, expected)
    torch.testing.assert_close(sort_values(v.detach()), ref)


def test_ties_and_duplicates_give_finite_gradients():
    x = t([0.0, 0.0, 1.0, 1.0, 1.0]).requires_grad_(True)
    y = t([0.5, 0.5, 0.5, 2.0, 2.0]).requires_grad_(True)
    for p in (1.0, 2.0, 1.5):
        val = wasserstein_1d(x, y, p=p)
        gx, gy = torch.autograd.grad(val, (x, y))
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    same = wasserstein_1d(x, x.detach().clone(), p=2)
    (gs,) = torch.autograd.grad(same, x)
    assert float(same.detach()) == 0.0 and torch.isfinite(gs).all()


def test_safe_root_zero_gradient_at_zero():
    s = t([0.0, 4.0]).requires_grad_(True)
    r = safe_root(s, 2.0)
    r.sum().backward()
    torch.testing.assert_close(r.detach(), t([0.0, 2.0]))
    torch.testing.assert_close(s.grad, t([0.0, 0.25]))


def test_bad_input():
    x, y = torch.randn(2, 5), torch.randn(3, 5)
    with pytest.raises(ShapeError, match="y: expected leading shape"):
        wasserstein_1d(x, y)
    with pytest.raises(ValidationError, match="p: expected a value >= 1"):
        wasserstein_1d(x, x, p=0.5)
    with pytest.raises(ValidationError, match="x_weights: weights must be non-negative"):
        wasserstein_1d(x, x, x_weights=-torch.ones(2, 5))
    with pytest.raises(GeomotError, match="x: contains 1 NaN/Inf"):
        wasserstein_1d(torch.tensor([0.0, float("nan")]), torch.zeros(2))
    with pytest.raises(ShapeError, match="x: expected a non-empty tensor"):
        wasserstein_1d(torch.zeros(0), torch.zeros(2))


@pytest.mark.parametrize("shape", [(3, 17), (700, 2048), (2, 300_000)])
def test_packed_float32_sort_matches_numpy(shape, monkeypatch):
    """The one-uint64-sort path (float32 with indices) returns numpy's sorted values and a valid permutation,
    across signs, signed zeros, infinities, ties and several cache blocks / threads."""
    from geomot.transport import ot1d

    rng = np.random.default_rng(0)
    arr = rng.standard_normal(shape).astype(np.float32) * 10
    arr[:, ::7] = np.round(arr[:, ::7])  # ties
    arr[:, 1] = -0.0
    arr[:, 2] = 0.0
    arr[0, 3] = np.inf
    arr[-1, 4] = -np.inf
    arr[:, 5] = np.finfo(np.float32).tiny * np.array(-1.0, dtype=np.float32)  # negative subnormal boundary
    monkeypatch.setattr(ot1d, "_BLOCK_BYTES", 1 << 16)  # many blocks even for small arrays
    srt, idx = ot1d._np_sort(arr, with_indices=True)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(srt, np.sort(arr, axis=-1))
    np.testing.assert_array_equal(np.take_along_axis(arr, idx, axis=-1), srt)
    np.testing.assert_array_equal(np.sort(idx, axis=-1), np.broadcast_to(np.arange(shape[1]), shape))
