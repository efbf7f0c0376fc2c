"""Backends of geomot.sinkhorn: the numba streaming kernels of the online backend (CPU) and the Triton kernels
(``backend="triton"``), the latter run through Triton's CPU interpreter in a subprocess (``TRITON_INTERPRET`` is
read when triton is first imported), against the dense torch path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import geomot
from geomot._core.accel import numba_available
from geomot._core.errors import ValidationError
from geomot.transport import _numba_softmin

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba is not installed")


def _clouds(dtype, b=2, n=60, m=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, 3, generator=g, dtype=dtype), torch.rand(b, m, 3, generator=g, dtype=dtype)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_row_sums_match_dense(dtype):
    x, y = _clouds(dtype, b=1, n=70, m=530)  # more columns than one block of the kernel
    g = torch.Generator().manual_seed(1)
    h = torch.randn(530, generator=g, dtype=dtype)
    w = torch.rand(530, generator=g, dtype=dtype)
    eps = 0.01
    c = torch.cdist(x[0].double(), y[0].double()) ** 2
    ref = torch.logsumexp(h.double() - c / eps + w.double().log(), 1)
    shift = (0.5 - ref).to(dtype)
    s, sc = _numba_softmin.row_sums(x[0], y[0], h, shift, w, eps, with_cost=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    torch.testing.assert_close(s.double().log() - shift.double(), ref, atol=tol * 100, rtol=0)
    p = torch.exp(h.double() - c / eps + w.double().log() + shift.double()[:, None])
    torch.testing.assert_close(sc.double(), (p * c).sum(1), rtol=tol * 10, atol=0)
    rows = torch.tensor([0, 5, 69])
    mx = _numba_softmin.row_max(x[0], y[0], h, eps, rows)
    torch.testing.assert_close(mx.double(), (h.double() - c / eps).amax(1)[rows], atol=tol * 100, rtol=0)


@needs_numba
def test_numba_exp_clamps_and_propagates_nan():
    x, y = _clouds(torch.float32, b=1, n=4, m=9)
    h = torch.zeros(9)
    h[3] = float("nan")
    s, _ = _numba_softmin.row_sums(x[0], y[0], h, torch.zeros(4), torch.ones(9), 1.0)
    assert torch.isnan(s).all()
    h = torch.full((9,), -1e30)  # every term underflows: clamped at exp(log(tiny) + 2), never 0 or subnormal
    s, _ = _numba_softmin.row_sums(x[0], y[0], h, torch.zeros(4), torch.ones(9), 1.0)
    assert bool((s > 0).all()) and bool((s < 1e-35).all())


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_online_numba_matches_dense_batched(dtype):
    x, y = _clouds(dtype)
    xl, yl = torch.tensor([60, 37]), torch.tensor([45, 20])
    kw = dict(x_lengths=xl, y_lengths=yl, eps=0.02, tol=1e-6)
    d = geomot.sinkhorn(x, y, backend="dense", **kw)
    o = geomot.sinkhorn(x, y, backend="online", **kw)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(o.value, d.value, atol=tol, rtol=0)
    # <P, C> is not stationary in the potentials: it differs at the order of the marginal error (1e-6)
    torch.testing.assert_close(o.transport_cost, d.transport_cost, atol=max(tol, 1e-7), rtol=0)
    # same iteration schedule (over-relaxation, stopping rule): the same number of iterations, up to the
    # rounding of the error near the threshold (float32 stops near its precision floor, where it is noisy)
    assert abs(o.n_iters - d.n_iters) <= (2 if dtype == torch.float64 else max(2, d.n_iters // 4))


@needs_numba
def test_online_numba_same_as_torch_chunks(monkeypatch):
    x, y = _clouds(torch.float64, b=1, n=80, m=70)
    kw = dict(eps=0.01, tol=1e-9, backend="online", grad="none")
    a = geomot.sinkhorn(x, y, **kw)
    monkeypatch.setattr(_numba_softmin, "available", lambda t: False)
    b = geomot.sinkhorn(x, y, **kw)
    assert a.n_iters == b.n_iters
    torch.testing.assert_close(a.value, b.value, atol=1e-12, rtol=0)


def test_triton_backend_refuses_what_it_cannot_run():
    x, y = _clouds(torch.float32, b=1)
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValidationError, match="backend: 'triton' needs a CUDA tensor"):
            geomot.sinkhorn(x, y, eps=0.01, backend="triton")
    with pytest.raises(ValidationError, match="backend: 'triton' supports cost='sqeuclidean' only"):
        geomot.sinkhorn(x, y, eps=0.01, backend="triton", cost="euclidean")
    with pytest.raises(ValidationError, match="backend: expected one of"):
        geomot.sinkhorn(x, y, eps=0.01, backend="keops")


_TRITON_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TRITON_INTERPRET"] = "1"
    import torch, geomot
    from geomot.transport._triton_softmin import softmin_bary
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 40, 3, generator=g); y = torch.rand(2, 50, 3, generator=g)
    xl = torch.tensor([40, 27]); yl = torch.tensor([50, 33])
    out = {}
    # the kernel alone: log-sum-exp, barycentre and weighted cost of each row against torch
    h = torch.randn(2, 50, generator=g)
    lse, bary, cost = softmin_bary(x, y, h, 0.05, xl, yl, extra=True)
    ref_err = 0.0
    for k in range(2):
        c = torch.cdist(x[k, :xl[k]].double(), y[k, :yl[k]].double()) ** 2
        t = h[k, :yl[k]].double() - c / 0.05
        w = torch.softmax(t, 1)
        ref_err = max(ref_err, float((lse[k, :xl[k]] - torch.logsumexp(t, 1)).abs().max()),
                      float((bary[k, :xl[k]] - w @ y[k, :yl[k]].double()).abs().max()),
                      float((cost[k, :xl[k]] - (w * c).sum(1)).abs().max()))
    out["kernel_err"] = ref_err
    torch.set_num_threads(1)
    for be in ("dense", "triton"):
        xx = x.clone().requires_grad_(True); yy = y.clone().requires_grad_(True)
        r = geomot.sinkhorn(xx, yy, x_lengths=xl, y_lengths=yl, eps=0.05, tol=1e-5, backend=be)
        (r.value.sum() + 0.5 * r.transport_cost.sum()).backward()
        out[be] = dict(value=r.value.tolist(), cost=r.transport_cost.tolist(), n_iters=r.n_iters,
                       gx=xx.grad.tolist(), gy=yy.grad.tolist())
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_triton_interpreter_matches_dense():
    pytest.importorskip("triton")
    res = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GEOMOT_TRITON": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["kernel_err"] < 1e-4
    d, t = out["dense"], out["triton"]
    torch.testing.assert_close(torch.tensor(t["value"]), torch.tensor(d["value"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(t["cost"]), torch.tensor(d["cost"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(t["gx"]), torch.tensor(d["gx"]), atol=2e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(t["gy"]), torch.tensor(d["gy"]), atol=2e-5, rtol=0)
    assert abs(t["n_iters"] - d["n_iters"]) <= 2


@needs_numba
@pytest.mark.parametrize("need_col_error", [False, True])
def test_numba_sweep_redoes_overflowing_rows_like_torch(monkeypatch, need_col_error):
    from geomot.transport._kernels import OnlineGeometry

    x, y = _clouds(torch.float64, b=2, n=30, m=25)
    row_mask = torch.ones(2, 30, dtype=torch.bool)
    col_mask = torch.arange(25)[None, :] < torch.tensor([[25], [18]])
    a = torch.full((2, 30), 1 / 30, dtype=torch.float64)
    b = col_mask.double() / col_mask.sum(1, keepdim=True)
    eps = 0.01
    g = torch.where(col_mask, torch.rand(2, 25, generator=torch.Generator().manual_seed(3), dtype=torch.float64), 0.0)
    f = torch.zeros(2, 30, dtype=torch.float64)
    f[0, 3] = 1e3  # exp((f + g - C) / eps) overflows on this row, underflows on the next
    f[1, 4] = -1e3
    kw = dict(omega=1.3, lx=1.0, ly=1.0, row_target=1.0, col_target=1.0, row_mask=row_mask, col_mask=col_mask,
              need_col_error=need_col_error)
    geom = OnlineGeometry(x, y, "sqeuclidean")
    f1, g1, e1 = geom.sweep(f, g, a, b, eps, **kw)
    monkeypatch.setattr(_numba_softmin, "available", lambda t: False)
    f2, g2, e2 = OnlineGeometry(x, y, "sqeuclidean").sweep(f, g, a, b, eps, **kw)
    torch.testing.assert_close(f1, f2, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(g1, g2, atol=1e-9, rtol=1e-9)
    assert torch.isinf(e1).all() and torch.isinf(e2).all()  # the error of a redone sweep is unknown


@needs_numba
def test_divergence_streams_with_numba_only_when_the_kernel_needs_several_blocks(monkeypatch):
    """A batch whose kernel fits one block runs one batched GEMM + exp pass (faster than the per-item streaming
    kernels there); a kernel larger than ``chunk_bytes`` streams, with the same value."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 40, 3, generator=g), torch.rand(2, 30, 3, generator=g)
    calls = []
    real = _numba_softmin.softmin
    monkeypatch.setattr(_numba_softmin, "softmin", lambda *a, **k: calls.append(1) or real(*a, **k))
    whole = geomot.sinkhorn_divergence(x, y, eps=0.01, reduction="none")
    assert not calls
    streamed = geomot.sinkhorn_divergence(x, y, eps=0.01, reduction="none", chunk_bytes=2 * 30 * 4 * 8)
    assert calls
    torch.testing.assert_close(streamed, whole, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_narrow_products_equal_bmm(transposed, k):
    # the row-vector / narrow-left forms of the kernel products are the same products, views included
    from geomot.ops._products import gemv, narrow_bmm

    g = torch.Generator().manual_seed(k)
    mat = torch.rand(3, 40, 30, generator=g, dtype=torch.float64)
    if transposed:
        mat = mat.transpose(1, 2)
    rhs = torch.randn(3, mat.shape[2], k, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(narrow_bmm(mat, rhs), torch.bmm(mat, rhs), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gemv(mat, rhs[..., 0]), torch.bmm(mat, rhs[..., :1])[..., 0], rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda r: narrow_bmm(mat, r), (rhs,))


@needs_numba
def test_numba_kernels_written_for_the_disk_cache_and_fallback(tmp_path):
    """The kernels' source goes to a file named by its hash (numba caches their machine code next to it); an
    unusable directory falls back to compiling in memory."""
    kernels = _numba_softmin.compile_kernels("float32", {"contract"}, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("geomot_softmin_float32_*.py"))
    assert len(files) == 1 and len(kernels) == len(_numba_softmin._NAMES)
    again = _numba_softmin.compile_kernels("float32", {"contract"}, cache_dir=tmp_path / "cache")
    assert again[0] is kernels[0]  # the same module, not a second copy
    blocker = tmp_path / "file"
    blocker.write_text("")
    fallback = _numba_softmin.compile_kernels("float64", {"contract"}, cache_dir=blocker / "sub")
    assert len(fallback) == len(_numba_softmin._NAMES) and not (blocker / "sub").exists()
