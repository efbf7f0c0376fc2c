"""Block-sparse fused sweep of the online Sinkhorn backend on CPU (:class:`geomot.transport._multiscale.SparseSweep`):
one sweep against the dense numba sweep (row sums, potentials, column sums, marginal errors; rows and columns with
small or out-of-range sums), and whole solves against the streamed online path and the dense backend: balanced,
unbalanced, over-relaxed, padded batches with lengths, float32, NaN inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import geomot
from geomot._core.accel import numba_available
from geomot.transport import _multiscale, _numba_softmin
from geomot.transport._kernels import OnlineGeometry
from geomot.transport._multiscale import SparseSweep

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")

EPS = 0.03**2


def _clouds(n, m, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(m, 3, generator=g, dtype=torch.float64) * 0.15 + 0.5
    return x.to(dtype), y.to(dtype)


@pytest.fixture
def sparse_on(monkeypatch):
    """The block-sparse sweep on every item of at least MIN_POINTS points a side, whatever its kept fraction."""
    monkeypatch.setattr(_multiscale, "SWEEP_MIN_PAIRS", 1)
    monkeypatch.setattr(_multiscale, "SWEEP_MAX_KEPT", 1.0)


def _streamed(monkeypatch):
    monkeypatch.setattr(_multiscale, "SWEEP_MIN_PAIRS", math.inf)


def _near_solution(x, y, eps, iters=20):
    """Potentials near the Sinkhorn solution (uniform weights), float64 dense log-sum-exps."""
    c = torch.cdist(x.double(), y.double()) ** 2
    la, lb = -math.log(x.shape[0]), -math.log(y.shape[0])
    f = torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(iters):
        g = -eps * torch.logsumexp((f[:, None] - c) / eps + la, 0)
        f = -eps * torch.logsumexp((g[None] - c) / eps + lb, 1)
    return f, g


def _dense_sweep(x, y, f, g, a, b, eps, **kw):
    mask = torch.ones(x.shape[0], dtype=torch.bool)
    return _numba_softmin.sweep(x, y, f, g, a, b, mask, eps, **kw)


@pytest.mark.parametrize(("omega", "lx", "need_old"), [(1.0, 1.0, False), (1.6, 0.8, True)])
def test_one_sparse_sweep_matches_the_dense_sweep_and_skips_blocks(sparse_on, omega, lx, need_old):
    x, y = _clouds(1500, 1300)
    a, b = torch.full((1500,), 1 / 1500, dtype=torch.float64), torch.full((1300,), 1 / 1300, dtype=torch.float64)
    f, g = _near_solution(x, y, EPS)
    sp = SparseSweep(x, y, a, b)
    for shake in (0.0, 3.0):  # near the solution, then potentials a few eps off (larger row factors)
        noise = shake * EPS * torch.rand(1500, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        fk = f + noise
        out = sp.sweep(fk.numpy(), g.numpy(), EPS, omega=omega, lx=lx, need_old=need_old)
        ref = _dense_sweep(x, y, fk, g, a, b, EPS, omega=omega, lx=lx, need_old=need_old)
        assert sp.kept_fraction < 0.8  # the sweep skipped blocks
        rs, fn, bad, col, old = out
        assert not bad.any() and not ref[2].any()
        np.testing.assert_allclose(rs, ref[0].numpy(), rtol=1e-12)
        np.testing.assert_allclose(fn, ref[1].numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(col, ref[3].numpy(), rtol=1e-12)
        if need_old:
            np.testing.assert_allclose(old, ref[4].numpy(), rtol=1e-12)
        else:
            assert old is None


def test_truncation_error_stays_below_roundoff_of_each_sum(sparse_on):
    """The skipped terms of every row and column are below u e^-MARGIN; against float64 sums over all pairs
    computed with torch (no shared code), every sum agrees to a few ulps relative."""
    x, y = _clouds(1500, 1300, seed=5)
    a, b = torch.full((1500,), 1 / 1500, dtype=torch.float64), torch.full((1300,), 1 / 1300, dtype=torch.float64)
    f, g = _near_solution(x, y, EPS)
    sp = SparseSweep(x, y, a, b)
    rs, fn, _, col, old = sp.sweep(f.numpy(), g.numpy(), EPS, omega=1.0, lx=1.0, need_old=True)
    assert sp.kept_fraction < 0.8
    e = torch.exp((f[:, None] + g[None] - ((x[:, None] - y[None]) ** 2).sum(-1)) / EPS)
    rs_ref = e @ b
    np.testing.assert_allclose(rs, rs_ref.numpy(), rtol=1e-12)
    fn_ref = f - EPS * torch.log(rs_ref)
    np.testing.assert_allclose(fn, fn_ref.numpy(), rtol=1e-12, atol=1e-15)
    col_ref = (a * torch.exp((fn_ref - f) / EPS)) @ e
    np.testing.assert_allclose(col, col_ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(old, (a @ e).numpy(), rtol=1e-12)


def test_rows_and_columns_with_small_or_out_of_range_sums_are_redone_exactly(sparse_on, monkeypatch):
    """Rows whose sum falls below e^-MARGIN (potential lowered by 8 eps) or below 1e-20 (lowered by 60 eps), and
    columns whose sum falls below e^-MARGIN: the sweep of the geometry equals the streamed one."""
    x, y = _clouds(1000, 900)
    f, g = _near_solution(x, y, EPS)
    f[:40] -= 8 * EPS
    f[40:45] -= 60 * EPS
    g[:30] -= 8 * EPS
    a = torch.full((1, 1000), 1 / 1000, dtype=torch.float64)
    b = torch.full((1, 900), 1 / 900, dtype=torch.float64)
    rmask, cmask = torch.ones(1, 1000, dtype=torch.bool), torch.ones(1, 900, dtype=torch.bool)
    kw = dict(omega=1.5, lx=1.0, ly=1.0, row_target=1.0, col_target=1.0, row_mask=rmask, col_mask=cmask,
              need_col_error=True)
    geom = OnlineGeometry(x[None], y[None], "sqeuclidean")
    f1, g1, e1 = geom.sweep(f[None], g[None], a, b, EPS, **kw)
    sweeper = geom._sparse[4][0][2]
    assert sweeper.stats["sweeps"] == 1 and sweeper.stats["dense"] == 0
    assert sweeper.stats["rows_redone"] >= 45 and sweeper.stats["cols_redone"] > 0
    _streamed(monkeypatch)
    f2, g2, e2 = OnlineGeometry(x[None], y[None], "sqeuclidean").sweep(f[None], g[None], a, b, EPS, **kw)
    torch.testing.assert_close(f1, f2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-14)
    assert math.isinf(float(e1[0])) and math.isinf(float(e2[0]))  # an out-of-range row: error unknown


def _solve_both(monkeypatch, x, y, **kw):
    monkeypatch.setattr(_multiscale, "SWEEP_MIN_PAIRS", 1)
    monkeypatch.setattr(_multiscale, "SWEEP_MAX_KEPT", 1.0)
    sparse = geomot.sinkhorn(x, y, backend="online", grad="none", **kw)
    _streamed(monkeypatch)
    streamed = geomot.sinkhorn(x, y, backend="online", grad="none", **kw)
    return sparse, streamed


@pytest.mark.parametrize("tau", [None, 0.05])
def test_solve_matches_streamed_online_and_dense_backend(monkeypatch, tau):
    x, y = _clouds(900, 800, seed=1)
    kw = dict(eps=EPS, tol=1e-7, tau=tau)  # relaxation="auto": over-relaxed sweeps that need the column error
    sparse, streamed = _solve_both(monkeypatch, x, y, **kw)
    dense = geomot.sinkhorn(x, y, backend="dense", grad="none", **kw)
    assert sparse.n_iters == streamed.n_iters
    assert float(sparse.value) == pytest.approx(float(streamed.value), rel=1e-10)
    # the dense backend stops on its own error estimate: equal to the tolerance
    assert float(sparse.value) == pytest.approx(float(dense.value), rel=1e-8)
    torch.testing.assert_close(sparse.g - sparse.g.mean(), dense.g - dense.g.mean(), rtol=0.0, atol=1e-7)
    torch.testing.assert_close(sparse.f, streamed.f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sparse.g, streamed.g, rtol=1e-10, atol=1e-12)
    p = torch.exp((sparse.f[:, None] + sparse.g[None] - torch.cdist(x, y) ** 2) / EPS) / (900 * 800)
    if tau is None:  # marginal errors of the sparse solve, from the dense plan
        assert float((p.sum(1) - 1 / 900).abs().sum() + (p.sum(0) - 1 / 800).abs().sum()) < 1e-6


def test_padded_batch_with_lengths(monkeypatch):
    x0, y0 = _clouds(700, 640, seed=2)
    x1, y1 = _clouds(600, 560, seed=3)
    x = torch.zeros(2, 700, 3, dtype=torch.float64)
    y = torch.zeros(2, 640, 3, dtype=torch.float64)
    x[0], y[0], x[1, :600], y[1, :560] = x0, y0, x1, y1
    kw = dict(eps=EPS, tol=1e-8, x_lengths=torch.tensor([700, 600]), y_lengths=torch.tensor([640, 560]))
    sparse, streamed = _solve_both(monkeypatch, x, y, **kw)
    torch.testing.assert_close(sparse.value, streamed.value, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(sparse.f, streamed.f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sparse.g, streamed.g, rtol=1e-10, atol=1e-12)
    single = geomot.sinkhorn(x1, y1, backend="online", grad="none", eps=EPS, tol=1e-8)
    assert float(sparse.value[1]) == pytest.approx(float(single.value), rel=1e-8)


def test_float32_matches_streamed(monkeypatch):
    x, y = _clouds(1000, 1000, dtype=torch.float32, seed=4)
    sparse, streamed = _solve_both(monkeypatch, x, y, eps=EPS, tol=1e-4)
    assert sparse.n_iters == streamed.n_iters
    assert float(sparse.value) == pytest.approx(float(streamed.value), rel=1e-5)
    torch.testing.assert_close(sparse.f, streamed.f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("where", ["points", "potentials"])
def test_nan_in_gives_nan_out(sparse_on, where):
    """A NaN point or potential makes the sparse path decline the item: the sweep's output is the streamed one's
    (NaN)."""
    x, y = _clouds(800, 700)
    f, g = _near_solution(x, y, EPS, iters=3)
    if where == "points":
        x[5, 1] = float("nan")
    else:
        f[7] = float("nan")
    a = torch.full((1, 800), 1 / 800, dtype=torch.float64)
    b = torch.full((1, 700), 1 / 700, dtype=torch.float64)
    rmask, cmask = torch.ones(1, 800, dtype=torch.bool), torch.ones(1, 700, dtype=torch.bool)
    geom = OnlineGeometry(x[None], y[None], "sqeuclidean")
    f1, g1, err = geom.sweep(f[None], g[None], a, b, EPS, omega=1.0, lx=1.0, ly=1.0, row_target=1.0, col_target=1.0,
                             row_mask=rmask, col_mask=cmask, need_col_error=False)
    assert torch.isnan(f1[0, 5 if where == "points" else 7]) and torch.isnan(g1).all()
    assert not torch.isfinite(err).any()
