"""1-D exact OT: closed forms, SciPy/POT oracles, gradients through the numpy sort, ties, bad input."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.stats
import torch

import geomot
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


def test_safe_root_guards_genuine_zeros_only():
    """NaN stays NaN (value and gradient), +inf stays +inf, -inf becomes NaN; only 0 and finite negative values
    (an estimator's undershoot) give 0 with a zero gradient."""
    s = t([float("nan"), float("inf"), float("-inf"), -0.5, 0.0, 9.0]).requires_grad_(True)
    r = safe_root(s, 2.0)
    assert torch.isnan(r[0]) and r[1] == float("inf") and torch.isnan(r[2])
    torch.testing.assert_close(r[3:].detach(), t([0.0, 0.0, 3.0]))
    (g,) = torch.autograd.grad(r[[0, 3, 4, 5]].sum(), s)
    assert torch.isnan(g[0])
    torch.testing.assert_close(g[3:], t([0.0, 0.0, 1.0 / 6.0]))


@pytest.mark.parametrize("backend", ["radix", "numpy"])
@pytest.mark.parametrize(("n", "m", "weighted"), [(700, 700, False), (9, 9, False), (9, 6, False), (9, 9, True)])
@pytest.mark.parametrize("dtype", [torch.float32, D64])
def test_nan_in_nan_out_unchecked(backend, n, m, weighted, dtype, monkeypatch):
    """With value checks off a NaN atom gives NaN (value and gradient) on every path, never 0 or a finite
    number; checks on raise."""
    _set_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, n, generator=g, dtype=dtype)
    y = torch.randn(2, m, generator=g, dtype=dtype)
    x[0, 5] = float("nan")
    w = torch.rand(2, n, generator=g, dtype=dtype) + 0.1 if weighted else None
    with pytest.raises(ValidationError, match="x: contains 1 NaN/Inf"):
        wasserstein_1d(x, y, x_weights=w)
    xr = x.clone().requires_grad_(True)
    with geomot.data_checks(False):
        for root in (True, False):
            val = wasserstein_1d(xr, y, x_weights=w, root=root)
            assert torch.isnan(val[0]) and torch.isfinite(val[1]), (root, val)
        (gx,) = torch.autograd.grad(val.sum(), xr)
    assert torch.isnan(gx[0]).any() and torch.isfinite(gx[1]).all()


@pytest.mark.parametrize("backend", ["radix", "numpy"])
@pytest.mark.parametrize(("n", "m"), [(700, 700), (9, 9), (9, 6)])
def test_float32_overflow_gives_inf_or_nan(backend, n, m, monkeypatch):
    _set_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=g) * 1e20
    y = torch.randn(m, generator=g)
    with np.errstate(over="ignore", invalid="ignore"):
        for root in (True, False):
            assert not torch.isfinite(wasserstein_1d(x, y, root=root))


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
    with pytest.raises(ShapeError, match=r"y: expected dtype torch\.float32 and device cpu \(those of x\)"):
        wasserstein_1d(x, x.double())


def _rows(*shape):
    return np.zeros(shape, dtype=np.float32)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: r.sort_rows(_rows(2, 3).astype(np.float64), with_indices=True), TypeError, "2-D float32"),
        (lambda r: r.sort_rows(_rows(2, 3, 1), with_indices=True), TypeError, "2-D float32"),
        (lambda r: r.sorted_power_rows(_rows(2, 3), _rows(2, 4), 2.0, need_gx=True, need_gy=True), ValueError,
         "rows must match"),
        (lambda r: r.projected_power(_rows(2, 3), _rows(2, 3), _rows(1, 3), 2.0, need_gx=True, need_gy=True),
         TypeError, "3-D float32"),
        (lambda r: r.projected_power(_rows(2, 5, 3), _rows(2, 4, 3), _rows(1, 2, 3), 2.0, need_gx=True, need_gy=True),
         ValueError, "shapes do not match"),
        (lambda r: r.projected_power(_rows(2, 5, 3), _rows(2, 5, 3), _rows(3, 2, 3), 2.0, need_gx=True, need_gy=True),
         ValueError, "shapes do not match"),
    ],
)
def test_radix_kernel_errors(call, error, match):
    from geomot.transport import _radix

    if not _radix.AVAILABLE:
        pytest.skip("numba is not installed")
    with pytest.raises(error, match=match):
        call(_radix)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.sort_rows(_rows(2, 3), with_indices=True),
        lambda r: r.sorted_power_rows(_rows(2, 3), _rows(2, 3), 2.0, need_gx=True, need_gy=True),
        lambda r: r.projected_power(_rows(2, 5, 3), _rows(2, 5, 3), _rows(1, 2, 3), 2.0, need_gx=True, need_gy=True),
    ],
)
def test_radix_kernels_without_numba_raise(call, monkeypatch):
    from geomot.transport import _radix

    monkeypatch.setattr(_radix, "AVAILABLE", False)
    with pytest.raises(RuntimeError, match="numba is not installed"):
        call(_radix)


SORT_BACKENDS = ["radix", "numpy"]


def _set_backend(monkeypatch, backend):
    """Select the CPU sort backend of ot1d: numba's radix kernels or numpy (what runs without numba)."""
    from geomot.transport import _radix

    if backend == "radix" and not _radix.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_radix, "AVAILABLE", backend == "radix")


def _awkward_rows(shape, seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.standard_normal(shape).astype(np.float32) * 10
    arr[:, ::7] = np.round(arr[:, ::7])  # ties
    arr[:, 1] = -0.0
    arr[:, 2] = 0.0
    arr[0, 3] = np.inf
    arr[-1, 4] = -np.inf
    arr[:, 5] = np.finfo(np.float32).tiny * np.array(-1.0, dtype=np.float32)  # negative subnormal boundary
    return arr


@pytest.mark.parametrize("backend", SORT_BACKENDS)
@pytest.mark.parametrize("shape", [(3, 17), (3, 600), (700, 2048), (2, 300_000)])
def test_float32_sort_matches_numpy(shape, backend, monkeypatch):
    """Both float32 sorts with indices (radix; one packed uint64 numpy sort) return numpy's sorted values and a
    stable permutation, across signs, signed zeros, infinities, ties and several cache blocks / threads."""
    from geomot._core import parallel
    from geomot.transport import ot1d

    _set_backend(monkeypatch, backend)
    arr = _awkward_rows(shape)
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 1 << 16)  # many blocks even for small arrays
    monkeypatch.setattr(parallel, "SERIAL_BYTES", 0)
    srt, idx = ot1d._np_sort(arr, with_indices=True)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(srt, np.sort(arr, axis=-1))
    np.testing.assert_array_equal(np.take_along_axis(arr, idx, axis=-1), srt)
    np.testing.assert_array_equal(np.sort(idx, axis=-1), np.broadcast_to(np.arange(shape[1]), shape))
    # stable: equal values keep their column order (+0.0 and -0.0 may be ordered by sign)
    same = (srt[:, 1:] == srt[:, :-1]) & (np.signbit(srt[:, 1:]) == np.signbit(srt[:, :-1]))
    assert (idx[:, 1:][same] > idx[:, :-1][same]).all()
    srt2, none = ot1d._np_sort(arr, with_indices=False)
    assert none is None
    np.testing.assert_array_equal(srt2, srt)


def test_radix_sort_constant_and_sorted_rows():
    """Rows whose keys share bytes skip radix passes; the permutation must still be right (identity here)."""
    from geomot.transport import _radix

    if not _radix.AVAILABLE:
        pytest.skip("numba is not installed")
    arr = np.stack([np.full(500, 3.5), np.arange(500.0), -np.arange(500.0), np.full(500, -0.0)]).astype(np.float32)
    srt, idx = _radix.sort_rows(arr, with_indices=True)
    np.testing.assert_array_equal(srt, np.sort(arr, axis=-1))
    np.testing.assert_array_equal(idx[0], np.arange(500))
    np.testing.assert_array_equal(idx[1], np.arange(500))
    np.testing.assert_array_equal(idx[2], np.arange(500)[::-1])
    np.testing.assert_array_equal(idx[3], np.arange(500))
    with pytest.raises(TypeError, match="float32"):
        _radix.sort_rows(arr.astype(np.float64), with_indices=False)


@pytest.mark.parametrize("backend", SORT_BACKENDS)
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("grads", [(True, True), (True, False), (False, True)])
def test_sorted_power_float32_matches_float64_reference(backend, p, grads, monkeypatch):
    """The CPU float32 sort path (fused radix kernel or numpy sorts + scatter) gives the value and both gradients
    of ``mean |sort(x) - sort(y)|^p`` computed in float64 with torch.sort, batched over leading dimensions."""
    from geomot.transport.ot1d import sorted_power

    _set_backend(monkeypatch, backend)
    g = torch.Generator().manual_seed(3)
    x64 = torch.randn(2, 3, 600, generator=g, dtype=D64)
    y64 = torch.randn(2, 3, 600, generator=g, dtype=D64) * 2 + 0.5
    x64[..., :50] = x64[..., 50:100]  # ties
    x64, y64 = x64.float().double(), y64.float().double()  # float32-representable
    x = x64.float().requires_grad_(grads[0])
    y = y64.float().requires_grad_(grads[1])
    x64.requires_grad_(grads[0])
    y64.requires_grad_(grads[1])
    w = torch.rand(2, 3, generator=g, dtype=D64)
    from geomot.transport import _radix

    calls = []
    if backend == "radix":
        kernel = _radix.sorted_power_rows
        monkeypatch.setattr(_radix, "sorted_power_rows", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    val = sorted_power(x, y, p)
    assert len(calls) == (backend == "radix")
    # stable sorts: at ties the (sub)gradient depends on the order, and both CPU paths sort stably
    ref = ((torch.sort(x64, dim=-1, stable=True)[0] - torch.sort(y64, dim=-1, stable=True)[0]).abs().pow(p)).mean(-1)
    assert val.shape == (2, 3) and val.dtype == torch.float32
    torch.testing.assert_close(val.double(), ref, rtol=1e-6, atol=1e-7)
    inputs = [t_ for t_, need in ((x, grads[0]), (y, grads[1])) if need]
    refs = [t_ for t_, need in ((x64, grads[0]), (y64, grads[1])) if need]
    got = torch.autograd.grad((val.double() * w).sum(), inputs)
    want = torch.autograd.grad((ref * w).sum(), refs)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("batched_theta", "dim"), [(False, 3), (True, 3), (False, 6), (True, 2)])
def test_projected_sorted_power_fused_matches_reference(batched_theta, dim, monkeypatch):
    """The fused CPU kernel (projections computed inside, float32) against matmul + torch.sort in float64: value
    and the gradients in x, y and the directions (as max-SW and the distributional variants need)."""
    from geomot.transport import _radix
    from geomot.transport.ot1d import projected_sorted_power

    if not _radix.AVAILABLE:
        pytest.skip("numba is not installed")
    g = torch.Generator().manual_seed(11)
    x64 = torch.randn(3, 600, dim, generator=g, dtype=D64).float().double()
    y64 = (torch.randn(3, 600, dim, generator=g, dtype=D64) * 1.5 + 0.2).float().double()
    shape = (3, 5, dim) if batched_theta else (5, dim)
    t64 = torch.nn.functional.normalize(torch.randn(shape, generator=g, dtype=D64), dim=-1).float().double()
    # weights of the directions: the same for all directions of an item (the in-kernel sums are scaled), or not
    # (the backward pass runs the kernel again with them)
    w_rows = torch.rand(3, 1, generator=g, dtype=D64).expand(3, 5)
    w_any = torch.rand(3, 5, generator=g, dtype=D64)
    for p, w in ((1.5, w_any), (2.0, w_any), (2.0, w_rows), (1.0, w_rows)):
        args32 = [a.float().requires_grad_(True) for a in (x64, y64, t64)]
        args64 = [a.clone().requires_grad_(True) for a in (x64, y64, t64)]
        val = projected_sorted_power(*args32, p)
        assert val.shape == (3, 5) and val.dtype == torch.float32
        assert "ProjectedPower" in type(val.grad_fn).__name__  # the fused kernel ran
        xp, yp = (torch.matmul(args64[2], a.transpose(-1, -2)) for a in args64[:2])
        ref = (torch.sort(xp, dim=-1)[0] - torch.sort(yp, dim=-1)[0]).abs().pow(p).mean(-1)
        torch.testing.assert_close(val.double(), ref, rtol=1e-5, atol=1e-6)
        got = torch.autograd.grad((val.double() * w).sum(), args32)
        want = torch.autograd.grad((ref * w).sum(), args64)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == torch.float32
            torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)
    # the same call without numba takes matmul + sorted_power and agrees
    x32, y32, t32 = (a.float() for a in (x64, y64, t64))
    fused = projected_sorted_power(x32, y32, t32, 2.0)
    monkeypatch.setattr(_radix, "AVAILABLE", False)
    torch.testing.assert_close(projected_sorted_power(x32, y32, t32, 2.0), fused, rtol=1e-5, atol=1e-6)
