"""The numba radix kernels on long rows: the bucket sort (one pass on the value, then cache-sized LSD sorts of each
interval) against numpy on uniform and skewed rows, and the fused sliced kernel (buffered point derivatives)
against the numpy path and a float64 torch.sort reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geomot
from geomot.transport import _radix

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not _radix.AVAILABLE, reason="numba is not installed"),
]

D64 = torch.float64
F32 = np.float32


def _keys(arr: np.ndarray) -> np.ndarray:
    """The order-preserving uint32 keys of float32 values (-inf < ... < -0.0 < +0.0 < ... < +inf < +NaN)."""
    b = arr.view(np.uint32)
    return b ^ ((np.uint32(0) - (b >> np.uint32(31))) | np.uint32(0x80000000))


def _row(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.random(n, dtype=F32)
    if kind == "gaussian":
        return rng.standard_normal(n, dtype=F32) * F32(3)
    if kind == "clustered":  # two clusters six orders of magnitude apart: nearly all values in two buckets
        return np.where(rng.random(n) < 0.5, rng.standard_normal(n) * 1e-3, 1e6 + rng.standard_normal(n)).astype(F32)
    if kind == "duplicates":
        return rng.integers(-5, 5, n).astype(F32)
    if kind == "constant":
        return np.full(n, 2.5, F32)
    if kind == "signed zeros":  # +0.0 and -0.0 share a bucket: the keys order them
        v = rng.standard_normal(n, dtype=F32)
        v[::3] = F32(0.0)
        v[1::3] = F32(-0.0)
        return v
    if kind == "only zeros":
        return np.where(rng.random(n) < 0.5, F32(0.0), F32(-0.0)).astype(F32)
    if kind == "infinities":
        v = rng.random(n, dtype=F32)
        v[rng.integers(0, n, 5)] = np.inf
        v[rng.integers(0, n, 5)] = -np.inf
        return v
    if kind == "nan":
        v = rng.random(n, dtype=F32)
        v[rng.integers(0, n, 5)] = np.nan
        return v
    if kind == "huge range":  # max - min overflows float32
        v = rng.standard_normal(n, dtype=F32)
        v[0], v[1] = F32(-3e38), F32(3e38)
        return v
    if kind == "outlier":  # one far value: all others in the first bucket
        v = rng.random(n, dtype=F32)
        v[n // 2] = F32(1e30)
        return v
    if kind == "subnormal":
        return (rng.standard_normal(n) * 1e-41).astype(F32)
    if kind == "adjacent":  # a few adjacent floats: a tiny range
        return np.nextafter(F32(1.0), F32(2.0), dtype=F32) * F32(1) + rng.integers(0, 3, n).astype(F32) * F32(2**-23)
    if kind == "descending":
        return np.sort(rng.standard_normal(n, dtype=F32))[::-1].copy()
    raise AssertionError(kind)


KINDS = ["uniform", "gaussian", "clustered", "duplicates", "constant", "signed zeros", "only zeros", "infinities",
         "nan", "huge range", "outlier", "subnormal", "adjacent", "descending"]


@pytest.mark.parametrize("n", [_radix.BUCKET_MIN - 1, _radix.BUCKET_MIN, 200_003])
def test_long_rows_sort_like_numpy(n):
    """Sorted values equal numpy's, the permutation reproduces them and is the stable key order (ties by column),
    for every row kind, on both sides of the bucket-sort switch."""
    rng = np.random.default_rng(n)
    arr = np.stack([_row(kind, n, rng) for kind in KINDS])
    srt, idx = _radix.sort_rows(arr, with_indices=True)
    np.testing.assert_array_equal(srt, np.sort(arr, axis=-1))  # NaNs last, as numpy puts them
    np.testing.assert_array_equal(np.take_along_axis(arr, idx, axis=-1).view(np.uint32), srt.view(np.uint32))
    for r, kind in enumerate(KINDS):
        np.testing.assert_array_equal(idx[r], np.argsort(_keys(arr[r]), kind="stable"), err_msg=kind)
    values, none = _radix.sort_rows(arr, with_indices=False)
    assert none is None
    np.testing.assert_array_equal(values.view(np.uint32), srt.view(np.uint32))


def test_bucket_sort_takes_finite_rows_and_declines_the_others():
    """The bucket pass runs on finite, non-constant rows (skewed ones included) and leaves rows with a non-finite
    value, a constant row, a row of signed zeros, an overflowing range or a subnormal one (whose bucket scale
    overflows) to the LSD passes."""
    n = _radix.BUCKET_MIN
    rng = np.random.default_rng(0)
    lw = _radix._bucket_workspace(n)
    keys, idx = np.empty(n, np.uint32), np.empty(n, np.int32)
    taken = {kind: _radix._bucket_sort_row(_row(kind, n, rng).view(np.uint32), keys, idx, lw, True)
             for kind in KINDS}
    declined = {"constant", "only zeros", "infinities", "nan", "huge range", "subnormal"}
    assert {k for k, v in taken.items() if not v} == declined


def _sliced_pair(n: int, dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g)
    y = torch.randn(n, dim, generator=g) * 0.3 + 0.5
    x[: n // 10] = x[n // 10 : 2 * (n // 10)]  # duplicated points: tied projections
    theta = torch.nn.functional.normalize(torch.randn(dim, 4, generator=g), dim=0)
    return x, y, theta


@pytest.mark.parametrize(("n", "dim", "p"), [(_radix.BUCKET_MIN + 7, 3, 2.0), (_radix.BUCKET_MIN + 7, 3, 1.5),
                                             (9_000, 2, 2.0)])
def test_sliced_long_rows_match_numpy_path(n, dim, p, monkeypatch):
    """sliced_wasserstein through the fused kernel (bucket sort, buffered derivatives in x, y and the directions)
    against the same call on the numpy path (matmul + numpy sorts): value and gradients to float32 tolerance."""
    x, y, theta = _sliced_pair(n, dim, seed=n + dim)

    def run():
        args = [a.clone().requires_grad_(True) for a in (x, y, theta)]
        val = geomot.sliced_wasserstein(args[0], args[1], projections=args[2], p=p)
        return (val, *torch.autograd.grad(val, args))

    fused = run()
    monkeypatch.setattr(_radix, "AVAILABLE", False)
    ref = run()
    # the numpy path sums |diff|^p in float32 (relative error ~1e-5 over 1e5 terms), the kernel in float64
    torch.testing.assert_close(fused[0], ref[0], rtol=1e-4, atol=0)
    for a, b in zip(fused[1:], ref[1:]):
        assert torch.linalg.vector_norm(a - b) <= 1e-4 * torch.linalg.vector_norm(b)


def test_buffered_point_derivatives_match_float64_reference():
    """Rows long enough for the buffered derivatives (p = 2 fast loop and the general loop), non-uniform direction
    weights (the kernel runs again in backward with them): against matmul + torch.sort in float64."""
    from geomot.transport.ot1d import projected_sorted_power

    g = torch.Generator().manual_seed(5)
    n = _radix.ACC_BUFFER_MIN + 3
    x64 = torch.randn(2, n, 3, generator=g, dtype=D64).float().double()
    y64 = (torch.randn(2, n, 3, generator=g, dtype=D64) * 1.5).float().double()
    t64 = torch.nn.functional.normalize(torch.randn(3, 3, generator=g, dtype=D64), dim=-1).float().double()
    w = torch.rand(2, 3, generator=g, dtype=D64)
    for p in (2.0, 3.0):
        args32 = [a.float().requires_grad_(True) for a in (x64, y64, t64)]
        args64 = [a.clone().requires_grad_(True) for a in (x64, y64, t64)]
        val = projected_sorted_power(*args32, p)
        assert "ProjectedPower" in type(val.grad_fn).__name__
        xp, yp = (torch.matmul(args64[2], a.transpose(-1, -2)) for a in args64[:2])
        ref = (torch.sort(xp, dim=-1)[0] - torch.sort(yp, dim=-1)[0]).abs().pow(p).mean(-1)
        torch.testing.assert_close(val.double(), ref, rtol=1e-5, atol=1e-7)
        got = torch.autograd.grad((val.double() * w).sum(), args32)
        want = torch.autograd.grad((ref * w).sum(), args64)
        for a, b in zip(got, want):
            torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-7)
        # x alone: the branch-free loop for p = 2 gives the general loop's float32 sums exactly
        x_only = x64.float().requires_grad_(True)
        val_x = projected_sorted_power(x_only, y64.float(), t64.float(), p)
        assert torch.equal(val_x, val.detach())
        assert torch.equal(torch.autograd.grad((val_x.double() * w).sum(), x_only)[0], got[0])


def test_numpy_sorted_second_rows_give_the_kernel_sums():
    """From PRESORT_MIN values, with the derivatives of x alone, the rows of y are sorted by numpy.sort outside the
    kernel: the same costs and float32 derivative sums as the all-numba block."""
    n = _radix.PRESORT_MIN
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, n, 3, generator=g).numpy()
    y = (torch.randn(2, n, 3, generator=g) * 0.2).numpy()
    # 5 directions per item: 4 rows added at once, then 1, then the next item's rows
    theta = torch.nn.functional.normalize(torch.randn(2, 5, 3, generator=g), dim=-1).numpy()
    cost, dx, dy, dt = _radix.projected_power_grads(x, y, theta, 2.0, need_x=True, need_y=False, need_theta=False)
    assert dy is None and dt is None
    ref_cost, ref_dx = np.empty(10), np.zeros((2, n, 3), np.float32)
    _radix._projected_grads_block(x, y, theta, np.ones((2, 5), np.float32), 0, 10, 0, 2.0, ref_cost, ref_dx,
                                  np.zeros((0, 0, 3), np.float32), np.zeros((10, 3)), True, False, False)
    np.testing.assert_array_equal(cost.ravel(), ref_cost)
    np.testing.assert_array_equal(dx, ref_dx)


def test_nan_in_nan_out_on_long_rows():
    """A NaN coordinate in either cloud gives a NaN loss and NaN derivatives on the long-row paths (the bucket pass
    declines the row; numpy.sort puts the NaN last)."""
    n = _radix.PRESORT_MIN
    g = torch.Generator().manual_seed(8)
    for side in (0, 1):
        x, y = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
        (x, y)[side][n // 3, 1] = float("nan")
        xx = x.clone().requires_grad_(True)
        with geomot.data_checks(False):  # with the checks on, NaN input raises before the kernels
            val = geomot.sliced_wasserstein(xx, y, projections=torch.eye(3)[:, :2])
        val.backward()
        assert torch.isnan(val)
        assert torch.isnan(xx.grad).any()


@pytest.mark.parametrize("n", [100, _radix.ACC_BUFFER_MIN])
def test_point_derivatives_with_and_without_buffer(n):
    """projected_power_grads below ACC_BUFFER_MIN (derivatives added at their points one by one) and from it
    (through the buffer): weighted derivative sums in x, y and the directions against float64 torch.sort."""
    g = torch.Generator().manual_seed(n)
    x64 = torch.randn(2, n, 3, generator=g, dtype=D64).float().double()
    y64 = (torch.randn(2, n, 3, generator=g, dtype=D64) + 0.3).float().double()
    t64 = torch.nn.functional.normalize(torch.randn(2, 4, 3, generator=g, dtype=D64), dim=-1).float().double()
    w = torch.rand(2, 4, generator=g, dtype=D64).float().double()
    cost, dx, dy, dt = _radix.projected_power_grads(
        *(a.float().numpy() for a in (x64, y64, t64)), 1.5, weights=w.float().numpy(), need_x=True, need_y=True,
        need_theta=True,
    )
    args = [a.clone().requires_grad_(True) for a in (x64, y64, t64)]
    xp, yp = (torch.matmul(args[2], a.transpose(-1, -2)) for a in args[:2])
    ref = (torch.sort(xp, dim=-1)[0] - torch.sort(yp, dim=-1)[0]).abs().pow(1.5).mean(-1)
    np.testing.assert_allclose(cost, ref.detach().numpy(), rtol=1e-5)
    gx, gy = torch.autograd.grad((ref * w).sum(), args[:2], retain_graph=True)
    (gt,) = torch.autograd.grad(ref.sum(), args[2])  # dtheta is returned unweighted
    for got, want in ((dx, gx), (dy, gy), (dt, gt)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-7)


def test_first_threaded_call_gives_the_later_calls_sums():
    """In a fresh process on two threads, the first call compiles (or loads) the kernels before splitting the rows:
    its float32 sums equal a later call's bit for bit, on the numpy-sorted path and the all-numba one."""
    import subprocess
    import sys

    code = """
import numpy as np, torch
torch.set_num_threads(2)
from geomot.transport import _radix
rng = np.random.default_rng(0)
for n, grads in ((_radix.PRESORT_MIN, (True, False, False)), (4096, (True, True, True))):
    x, y = rng.random((2, 1, n, 3), dtype=np.float32)
    t = rng.standard_normal((1, 6, 3)).astype(np.float32)
    kw = dict(need_x=grads[0], need_y=grads[1], need_theta=grads[2])
    first = _radix.projected_power_grads(x, y, t, 2.0, **kw)
    again = _radix.projected_power_grads(x, y, t, 2.0, **kw)
    for a, b in zip(first, again):
        assert (a is None and b is None) or np.array_equal(a, b), n
print("same")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "same"
