"""Clustered (multiscale, block-sparse) Sinkhorn divergence on CPU: k-d clusters, the certified truncation bound,
the block-sparse soft-min and barycentres against dense log-sum-exps, and the divergence's value and gradient
against the batched (stored / streamed kernel) path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import geomot
from geomot._core.accel import numba_available
from geomot.transport import _debiased, _multiscale
from geomot.transport._multiscale import MIN_POINTS, Clusters, SparseSoftmin, kd_clusters

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba is not installed")
SMALL_CHUNK = 1 << 16  # forces the clustered path for N >= MIN_POINTS


def _clouds(n, m, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(m, 3, generator=g, dtype=torch.float64) * 0.15 + 0.5
    return x.to(dtype), y.to(dtype)


def test_kd_clusters_partition_into_compact_clusters():
    x = np.random.default_rng(0).random((1000, 3))
    perm, ptr = kd_clusters(x, 32)
    assert sorted(perm.tolist()) == list(range(1000))
    sizes = np.diff(ptr)
    assert ptr[0] == 0 and ptr[-1] == 1000 and sizes.max() <= 32 and sizes.min() >= 16
    xs = x[perm]
    # a k-d leaf is much smaller than the cloud: mean bounding-box diagonal below a third of the cloud's
    diag = [np.linalg.norm(xs[a:b].max(0) - xs[a:b].min(0)) for a, b in itertools.pairwise(ptr)]
    assert np.mean(diag) < np.sqrt(3) / 3
    assert kd_clusters(x[:10], 32)[1].tolist() == [0, 10]


def test_clusters_coarse_measure_and_radius():
    x, _ = _clouds(700, 10)
    w = torch.rand(700, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    c = Clusters(x, w, size=32)
    torch.testing.assert_close(c.points, x[c.perm])
    torch.testing.assert_close(c.mass.sum(), w.sum())
    for k in range(c.mass.shape[0]):
        a, b = c.ptr[k], c.ptr[k + 1]
        pts, ww = c.points[a:b], c.weights[a:b]
        torch.testing.assert_close(c.centroid[k], (ww[:, None] * pts).sum(0) / ww.sum())
        dist = np.linalg.norm(pts.numpy() - c.centre[k], axis=1)
        assert dist.max() == pytest.approx(c.radius[k])


def _potentials(sp: SparseSoftmin, eps: float, dtype=torch.float64):
    """Potentials near a Sinkhorn solution between the clustered supports (a few dense iterations)."""
    p, q = sp.p.points.to(torch.float64), sp.q.points.to(torch.float64)
    la, lb = torch.log(sp.p.weights.double()), torch.log(sp.q.weights.double())
    c = torch.cdist(p, q) ** 2
    f = torch.zeros(p.shape[0], dtype=torch.float64)
    for _ in range(30):
        g = -eps * torch.logsumexp((f[:, None] - c) / eps + la[:, None], 0)
        f = -eps * torch.logsumexp((g[None] - c) / eps + lb[None], 1)
    return f.to(dtype), g.to(dtype)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sparse_softmin_and_barycentres_match_dense(dtype):
    g = torch.Generator().manual_seed(2)
    centres = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    x = (centres.repeat_interleave(225, 0) + 0.05 * torch.randn(900, 3, generator=g, dtype=torch.float64)).to(dtype)
    y = (centres.repeat_interleave(175, 0) + 0.05 * torch.randn(700, 3, generator=g, dtype=torch.float64)).to(dtype)
    a = torch.full((900,), 1 / 900, dtype=dtype)
    b = torch.full((700,), 1 / 700, dtype=dtype)
    eps = 0.002
    sp = SparseSoftmin(Clusters(x, a), Clusters(y, b))
    f, g = _potentials(sp, eps, dtype)
    logw = torch.log(sp.q.weights)
    out, bary = sp.softmin(g, f, logw, eps, with_bary=True)
    assert sp.kept_fraction < 0.7  # blocks were skipped
    p, q = sp.p.points.double(), sp.q.points.double()
    t = (g.double() / eps + logw.double())[None] - torch.cdist(p, q) ** 2 / eps
    ref = -eps * torch.logsumexp(t, 1)
    ref_bary = torch.softmax(t, 1) @ q
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol * 10)
    torch.testing.assert_close(bary.double(), ref_bary, rtol=0, atol=tol * 10)
    # a hint far from the result: every row is redone exactly, same values
    out2, _ = sp.softmin(g, f + 50 * eps, logw, eps)
    torch.testing.assert_close(out2.double(), ref, rtol=0, atol=tol * 10)


@needs_numba
def test_truncation_bound_holds_for_every_pair():
    """Every pair of a skipped block has an exponent below the threshold; the bound is an upper bound on every
    block, also when reused after the potentials rose."""
    x, y = _clouds(800, 600)
    a = torch.full((800,), 1 / 800, dtype=torch.float64)
    b = torch.full((600,), 1 / 600, dtype=torch.float64)
    eps = 0.003
    sp = SparseSoftmin(Clusters(x, a), Clusters(y, b))
    f, g = _potentials(sp, eps)
    h = (g / eps + torch.log(sp.q.weights)).numpy()
    shift = (f / eps).numpy()
    p, q = sp.p.points.numpy(), sp.q.points.numpy()
    for s, hh in ((shift, h), (shift + 0.5 * np.random.default_rng(0).random(800), h + 0.3)):  # second: reused
        bound = sp.bound(s, hh, eps)
        e = s[:, None] + hh[None, :] - ((p[:, None, :] - q[None]) ** 2).sum(-1) / eps
        for i_cl in range(bound.shape[0]):
            r0, r1 = sp.p.ptr[i_cl], sp.p.ptr[i_cl + 1]
            for j_cl in range(bound.shape[1]):
                c0, c1 = sp.q.ptr[j_cl], sp.q.ptr[j_cl + 1]
                assert e[r0:r1, c0:c1].max() <= bound[i_cl, j_cl] + 1e-9
    assert sp.full_bounds == 1  # the second call reused the stored bounds


def _both_paths(x, y, **kw):
    out = {}
    for name, cb in (("clustered", SMALL_CHUNK), ("standard", 1 << 30)):
        xx = x.clone().requires_grad_(True)
        v = geomot.sinkhorn_divergence(xx, y, chunk_bytes=cb, **kw)
        (gx,) = torch.autograd.grad(v.sum(), xx)
        out[name] = (v.detach(), gx)
    return out


@needs_numba
@pytest.mark.parametrize("eps", [0.05**2, 0.1**2])
def test_clustered_divergence_matches_batched_path(eps, monkeypatch):
    x, y = _clouds(700, 600)
    calls = []
    real = _debiased._clustered_item
    monkeypatch.setattr(_debiased, "_clustered_item", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = _both_paths(x, y, eps=eps, tol=1e-9)
    assert len(calls) == 1
    torch.testing.assert_close(out["clustered"][0], out["standard"][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out["clustered"][1], out["standard"][1], rtol=1e-6, atol=1e-9)


@needs_numba
def test_clustered_weights_unbalanced_and_float32():
    x, y = _clouds(600, 650)
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(600, generator=g, dtype=torch.float64), torch.rand(650, generator=g, dtype=torch.float64)
    grads = {}
    for name, cb in (("clustered", SMALL_CHUNK), ("standard", 1 << 30)):
        aa = a.clone().requires_grad_(True)
        v = geomot.sinkhorn_divergence(x, y, eps=0.003, x_weights=aa, y_weights=b, tol=1e-9, chunk_bytes=cb)
        grads[name] = (v.detach(), torch.autograd.grad(v, aa)[0])
    torch.testing.assert_close(grads["clustered"][0], grads["standard"][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads["clustered"][1], grads["standard"][1], rtol=1e-6, atol=1e-10)
    out = _both_paths(x, y, eps=0.003, tau=0.5, tol=1e-9)
    torch.testing.assert_close(out["clustered"][0], out["standard"][0], rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(out["clustered"][1], out["standard"][1], rtol=1e-5, atol=1e-9)
    out = _both_paths(x.float(), y.float(), eps=0.003)  # the default value stop: agree to its tolerance
    assert abs(float(out["clustered"][0] / out["standard"][0]) - 1) < 2e-3


@needs_numba
def test_clustered_batch_with_padding_identical_and_small_items():
    """Padded items are clustered one by one; an item below MIN_POINTS takes the batched path; identical
    inputs give 0; NaN in gives NaN out (checks off)."""
    x, y = _clouds(700, 650)
    xb = torch.zeros(3, 700, 3, dtype=torch.float64)
    yb = torch.zeros(3, 650, 3, dtype=torch.float64)
    xb[0], yb[0] = x, y
    xb[1, :600], yb[1, :640] = x[:600], y[:640]
    xb[2, :100], yb[2, :90] = x[:100], y[:90]
    lx, ly = torch.tensor([700, 600, 100]), torch.tensor([650, 640, 90])
    kw = dict(eps=0.003, tol=1e-9, reduction="none")
    got = geomot.sinkhorn_divergence(xb, yb, x_lengths=lx, y_lengths=ly, chunk_bytes=SMALL_CHUNK, **kw)
    for k in range(3):
        ref = geomot.sinkhorn_divergence(x[: lx[k]] if k < 2 else x[:100], y[: ly[k]], chunk_bytes=1 << 30, **kw)
        assert float(got[k]) == pytest.approx(float(ref), rel=1e-9, abs=1e-12)
    same = geomot.sinkhorn_divergence(x, x.clone(), eps=0.003, chunk_bytes=SMALL_CHUNK)
    assert abs(float(same)) < 1e-10
    bad = x.clone()
    bad[5, 0] = math.nan
    with geomot.data_checks(False):
        v = geomot.sinkhorn_divergence(bad, y, eps=0.003, chunk_bytes=SMALL_CHUNK)
    assert math.isnan(float(v))


@needs_numba
def test_clustered_path_only_for_large_cpu_problems():
    """Clustered exactly when the three kernels would not be stored (they exceed chunk_bytes)."""
    x, y = _clouds(MIN_POINTS, MIN_POINTS)
    assert _multiscale.multiscale_usable(x[None], y[None], "sqeuclidean", 1000)
    assert not _multiscale.multiscale_usable(x[None], y[None], "euclidean", 1000)
    assert not _multiscale.multiscale_usable(x[None, :-1], y[None], "sqeuclidean", 1000)
    assert not _multiscale.multiscale_usable(x[None], y[None], "sqeuclidean", 3 * MIN_POINTS**2 * 8)
    big = torch.zeros(1, 2400, 3)
    assert _multiscale.multiscale_usable(big, big, "sqeuclidean", 64 << 20)  # 69 MB of float32 kernels
    assert not _multiscale.multiscale_usable(big[:, :2300], big[:, :2300], "sqeuclidean", 64 << 20)
    batch = torch.zeros(16, 512, 3)
    assert not _multiscale.multiscale_usable(batch, batch, "sqeuclidean", 1 << 30)  # a training batch


def test_block_ranges_cover_exactly_the_kept_blocks():
    from geomot.transport._multiscale import block_ranges

    rng = np.random.default_rng(0)
    for trial in range(200):
        n_rows, n_cols = (int(v) for v in rng.integers(1, 25, 2))
        keep = rng.random((n_rows, n_cols)) < rng.random()
        if trial % 5 == 0:
            keep = np.asfortranarray(keep)  # transposed masks are passed too
        col_ptr = np.cumsum(np.r_[0, rng.integers(1, 9, n_cols)])
        kptr, c0s, c1s = block_ranges(keep, col_ptr)
        covered = np.zeros((n_rows, col_ptr[-1]), dtype=bool)
        for i in range(n_rows):
            for k in range(kptr[i], kptr[i + 1]):
                assert c0s[k] < c1s[k]
                assert not covered[i, c0s[k] : c1s[k]].any()  # disjoint ranges
                covered[i, c0s[k] : c1s[k]] = True
            if kptr[i + 1] - kptr[i] > 1:  # runs of consecutive kept blocks are merged
                assert (c0s[kptr[i] + 1 : kptr[i + 1]] > c1s[kptr[i] : kptr[i + 1] - 1]).all()
        expected = np.repeat(keep, np.diff(col_ptr), axis=1)
        assert np.array_equal(covered, expected)
