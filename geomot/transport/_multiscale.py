"""Clustered supports for large Sinkhorn problems on CPU: a coarse measure for the annealing levels at large
``eps`` and a block-sparse soft-min with a certified truncation bound for the levels at small ``eps``.

**Clusters.** :func:`kd_clusters` splits a point set at the median of its longest bounding-box side, recursively,
into clusters of at most ``size`` points (a k-d tree's leaves, in tree order, so neighbouring clusters are close
in memory); each cluster ``I`` has a centre ``c_I`` (its bounding-box centre), a radius ``r_I`` (largest distance
of its points to ``c_I``), a mass and a weighted centroid. The centroids with the cluster masses form the coarse
measure of the annealing at large ``eps`` (Schmitzer 2019, Sec. 3.2; Feydy 2020, Sec. 3.3.3: GeomLoss's
multiscale scheme).

**Truncation bound.** For the shifted soft-min sum ``S_i = sum_j exp(E_ij)``,
``E_ij = s_i + h_j - |p_i - q_j|^2 / eps``, write ``A_i = s_i - |p_i|^2 / eps`` and ``B_j = h_j - |q_j|^2 / eps``.
The identity ``<p_i, q_j> = <p_i, c_J> + <c_I, q_j> - <c_I, c_J> + <p_i - c_I, q_j - c_J>`` gives, for every pair
of the block ``(I, J)``,

``E_ij <= P_IJ + Q_JI - 2 <c_I, c_J> / eps + 2 r_I r_J / eps``, with ``P_IJ = max_{i in I} (A_i + 2 <p_i, c_J> /
eps)`` and ``Q_JI = max_{j in J} (B_j + 2 <q_j, c_I> / eps)``

(``N L + M K`` work for ``K`` row and ``L`` column clusters). The bound keeps the cancellation between the
potentials and the cost inside a block (the potential's slope is the cost's), so it stays tight where the plan
is. A block is skipped when its bound is below ``log(u) - margin - log(M)`` (``u``: the dtype's unit roundoff):
the skipped terms of a row then add less than ``u e^{-margin}`` to ``S_i``, a relative error below ``u`` wherever
``S_i >= e^{-margin}``, which holds when the shift ``s_i`` is the previous potential (``S_i ~ 1`` near
convergence). Rows with a smaller (or non-finite) sum are recomputed exactly over all columns.

**Fused sweeps.** :class:`SparseSweep` runs the online backend's one-exp-per-pair Sinkhorn iteration over the kept
blocks only; its blocks are kept for the row sums and for the column sums of the same terms (with the rows' new
factors), both certified by the same bound (see the class).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from geomot.transport import _numba_softmin

__all__ = ["Clusters", "SparseSoftmin", "SparseSweep", "block_ranges", "kd_clusters", "kept_fraction",
           "multiscale_usable"]

MARGIN = 4.0  # nats by which a shifted row sum may fall below 1 and keep the relative truncation error below u
CLUSTER_SIZE = 32  # points per cluster: the cost of the bound (N L) against its slack (2 r_I r_J / eps)
MIN_POINTS = 16 * CLUSTER_SIZE  # below this a clustered solve has too few clusters to skip anything
JUMP = 1.0  # the coarse levels are those with eps >= (JUMP * the median cluster radius)^2
REUSE = 2.0  # nats the stored block bounds may loosen before they are recomputed
ROUNDING = 1e-2  # nats added to the float32 block bounds (their rounding is ~1e-6 relative)
SWEEP_COL_CLUSTER = 16  # column cluster size of the sparse sweep: finer skipping (measured at N = 10k: 47% of the
# pairs kept instead of 52%, 0.53-0.55x the dense sweep's time instead of 0.57-0.60x); the row clusters stay at
# CLUSTER_SIZE, since each row cluster gathers its kept columns once
SLACK = 1e-3  # nats taken off the skip thresholds when they are compared in float32 (rounding ~1e-5 nats there)
SWEEP_MIN_PAIRS = 6_000_000  # smallest N M for the block-sparse sweep (one sweep, float64, 2 threads: 0.73x the dense
# sweep at N = M = 2,500 with 64% of the pairs kept, 0.65x at 5,000, 0.53-0.55x at 10,000)
SWEEP_MAX_KEPT = 0.7  # above this kept fraction of the pairs a sweep runs dense (gathering costs more than it saves)


def kd_clusters(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Median splits along the longest bounding-box side down to clusters of at most ``size`` points.

    Args:
        x: ``(N, D)`` points.
        size: largest cluster (clusters hold between ``size / 2`` and ``size`` points when ``N >= size``).

    Returns:
        ``(perm (N,), ptr (K + 1,))``: ``x[perm]`` lists the clusters one after the other (in tree order),
        cluster ``I`` is ``x[perm][ptr[I]:ptr[I + 1]]``. Cost ``O(N log(N / size))``.
    """
    n = x.shape[0]
    perm = np.arange(n, dtype=np.int64)
    stack = [(0, n)]
    bounds = []
    while stack:
        s0, s1 = stack.pop()
        if s1 - s0 <= size:
            bounds.append(s0)
            continue
        idx = perm[s0:s1]
        pts = x[idx]
        axis = int(np.argmax(pts.max(0) - pts.min(0)))
        half = (s1 - s0) // 2
        perm[s0:s1] = idx[np.argpartition(pts[:, axis], half)]
        stack.append((s0 + half, s1))
        stack.append((s0, s0 + half))
    ptr = np.array([*sorted(bounds), n], dtype=np.int64)
    return perm, ptr


class Clusters:
    """One point set sorted by k-d clusters: ``points`` ``(N, D)`` (the input's dtype, cluster order) with its
    transpose ``points_t`` ``(D, N)`` (numpy), ``perm`` (``points = x[perm]``), ``ptr`` ``(K + 1,)`` and each point's
    cluster ``seg`` ``(N,)``, float64 copies ``x64`` ``(N, D)`` and squared norms ``sq64`` ``(N,)``, float64
    ``centre`` ``(K, D)`` and ``radius`` ``(K,)``, the coarse measure ``centroid`` ``(K, D)`` / ``mass`` ``(K,)``
    (input dtype), and ``weights`` ``(N,)`` in cluster order."""

    def __init__(self, x: torch.Tensor, w: torch.Tensor, size: int = CLUSTER_SIZE) -> None:
        xd = x.detach().double().numpy()
        perm, ptr = kd_clusters(xd, size)
        self.perm = torch.from_numpy(perm)
        self.ptr = ptr
        xs = xd[perm]
        self.x64 = np.ascontiguousarray(xs)
        self.sq64 = (xs**2).sum(1)
        self.seg = seg = np.repeat(np.arange(ptr.shape[0] - 1), np.diff(ptr))
        k = ptr.shape[0] - 1
        lo = np.full((k, xd.shape[1]), np.inf)
        hi = np.full((k, xd.shape[1]), -np.inf)
        np.minimum.at(lo, seg, xs)
        np.maximum.at(hi, seg, xs)
        self.centre = 0.5 * (lo + hi)
        self.radius = np.zeros(k)
        np.maximum.at(self.radius, seg, np.sqrt(((xs - self.centre[seg]) ** 2).sum(1)))
        self.points = x.detach()[self.perm]
        self.points_t = np.ascontiguousarray(self.points.numpy().T)
        self.weights = w.detach()[self.perm]
        tseg = torch.from_numpy(seg)
        mass = torch.zeros(k, dtype=w.dtype).index_add_(0, tseg, self.weights)
        wsum = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, tseg, self.weights[:, None] * self.points)
        mean = torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, tseg, self.points)
        mean = mean / torch.from_numpy(np.diff(ptr)).to(x.dtype)[:, None]
        self.mass = mass
        self.centroid = torch.where(mass[:, None] > 0, wsum / mass.clamp_min(torch.finfo(w.dtype).tiny)[:, None],
                                    mean)


def block_ranges(keep: np.ndarray, col_ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept blocks ``keep (K, L)`` (bool) of each row cluster as column ranges: ``(kptr (K + 1,), c0s, c1s)``
    (int64), the ranges of row cluster ``I`` being ``c0s[k]:c1s[k]`` for ``k`` in ``kptr[I]:kptr[I + 1]``
    (consecutive kept column clusters merged; ``col_ptr`` ``(L + 1,)``: the column clusters' offsets)."""
    k = np.ascontiguousarray(keep, dtype=bool)
    n_rows, n_cols = k.shape
    if n_cols == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(n_rows + 1, dtype=np.int64), empty, empty
    flat = k.reshape(-1)
    # first and last kept block of each run in a row: its left (right) neighbour in the flattened array is not
    # kept, except across rows, where the first (last) column decides alone
    start, end = flat.copy(), flat.copy()
    start[1:] &= ~flat[:-1]
    end[:-1] &= ~flat[1:]
    start.reshape(n_rows, n_cols)[:, 0] = k[:, 0]
    end.reshape(n_rows, n_cols)[:, -1] = k[:, -1]
    s_idx, e_idx = np.flatnonzero(start), np.flatnonzero(end)
    rows = s_idx // n_cols
    kptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=kptr[1:])
    return kptr, col_ptr[s_idx - rows * n_cols], col_ptr[e_idx % n_cols + 1]


def kept_fraction(keep: np.ndarray, row_ptr: np.ndarray, col_ptr: np.ndarray) -> float:
    """The fraction of the pairs in the kept blocks ``keep (K, L)`` of clusters with offsets ``row_ptr``,
    ``col_ptr``."""
    rows, cols = np.diff(row_ptr).astype(np.float64), np.diff(col_ptr).astype(np.float64)
    return float(rows @ keep @ cols / (rows.sum() * cols.sum()))


def multiscale_usable(x: torch.Tensor, y: torch.Tensor, cost: str, chunk_bytes: int) -> bool:
    """Whether the clustered solver applies to the padded batch ``x (B, N, D)``, ``y (B, M, D)``: squared
    Euclidean cost, CPU float tensors with numba, supports of at least :data:`MIN_POINTS` points, and kernels of
    the three problems (``B (N M + N^2 + M^2)`` entries) larger than ``chunk_bytes``, where the batched path
    would stream them instead of storing them (stored kernels are faster while they fit)."""
    n, m = x.shape[1], y.shape[1]
    kernels = x.shape[0] * (n * m + n * n + m * m) * x.element_size()
    return (cost == "sqeuclidean" and _numba_softmin.available(x) and min(n, m) >= MIN_POINTS
            and kernels > chunk_bytes)


class SparseSoftmin:
    """Block-sparse shifted soft-mins from the rows ``p`` to the columns ``q`` of two clustered point sets (see the
    module docstring). The block bounds ``P``, ``Q`` are recomputed when ``eps`` changes or when the shifts or
    column terms have risen by more than :data:`REUSE` nats in some cluster since; in between, the stored bounds
    plus each cluster's largest rise remain upper bounds (``O(N + M)`` work)."""

    def __init__(self, p: Clusters, q: Clusters, transposed: SparseSoftmin | None = None) -> None:
        self.p, self.q = p, q
        # r_I r_J - <c_I, c_J>, shared with the operator of the opposite direction
        self.geo = (p.radius[:, None] * q.radius[None, :] - p.centre @ q.centre.T if transposed is None
                    else transposed.geo.T)
        self._ref: tuple | None = None  # (eps, shift, h, float32 bound) of the last full bound computation
        self.kept_fraction = 1.0
        self.full_bounds = 0

    def _rise(self, new: np.ndarray, old: np.ndarray, ptr: np.ndarray) -> np.ndarray:
        """The largest ``new - old`` in each cluster (clusters are contiguous and non-empty in cluster order)."""
        return np.maximum.reduceat(new - old, ptr[:-1])

    def bound(self, shift: np.ndarray, h: np.ndarray, eps: float) -> np.ndarray:
        """``(K, L)`` float32 upper bounds of ``shift_i + h_j - |p_i - q_j|^2 / eps`` over the blocks (float64
        inputs in cluster order), raised by :data:`ROUNDING` nats to cover the float32 storage."""
        if self._ref is not None and self._ref[0] == eps:
            _, s0, h0, b0 = self._ref
            dp = self._rise(shift, s0, self.p.ptr)
            dq = self._rise(h, h0, self.q.ptr)
            if max(dp.max(), dq.max()) <= REUSE:
                b = b0 + dp[:, None].astype(np.float32)
                b += dq[None, :].astype(np.float32)
                return b
        k2 = 2.0 / eps
        b = _numba_softmin.seg_max(self.p.x64, shift - self.p.sq64 / eps, self.p.ptr, self.q.centre, k2)
        b += _numba_softmin.seg_max(self.q.x64, h - self.q.sq64 / eps, self.q.ptr, self.p.centre, k2).T
        b += k2 * self.geo
        b32 = b.astype(np.float32)
        del b
        b32 += np.float32(ROUNDING)
        self._ref = (eps, shift.copy(), h.copy(), b32)
        self.full_bounds += 1
        return b32

    def pattern(self, shift: np.ndarray, h: np.ndarray, eps: float, dtype: torch.dtype):
        """Kept column ranges ``(kptr, c0s, c1s)`` (int64; ranges ``kptr[I]:kptr[I + 1]`` for the row cluster
        ``I``) for row shifts ``shift (N,)`` and column terms ``h (M,)`` (float64, cluster order)."""
        m = self.q.points.shape[0]
        keep = self.bound(shift, h, eps) >= math.log(torch.finfo(dtype).eps) - MARGIN - math.log(m)
        kptr, c0s, c1s = block_ranges(keep, self.q.ptr)
        self.kept_fraction = kept_fraction(keep, self.p.ptr, self.q.ptr)
        return kptr, c0s, c1s

    def softmin(self, v: torch.Tensor, hint: torch.Tensor, logw: torch.Tensor, eps: float, *,
                with_bary: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``f_i = -eps log sum_j exp(v_j / eps + logw_j - |p_i - q_j|^2 / eps)`` ``(N,)`` shifted by ``hint``
        (``~ f``), truncated with the bound, and with ``with_bary`` the barycentres ``sum_j w_ij q_j`` ``(N, D)``
        of the soft-min weights; exact (all columns) on the rows whose shifted sum is below ``e^{-MARGIN}`` or
        not finite. 1-D inputs in cluster order."""
        dt = self.p.points.dtype
        h = (v / eps + logw).to(dt)
        shift = (hint / eps).to(dt)
        kptr, c0s, c1s = self.pattern(shift.double().numpy(), h.double().numpy(), eps, dt)
        s, bary = _numba_softmin.sparse_row_sums(self.p.points, self.q.points_t, h.numpy(), shift.numpy(), self.p.ptr,
                                                 kptr, c0s, c1s, eps, with_bary=with_bary)
        s = torch.from_numpy(s)
        out = hint - eps * torch.log(s)
        if with_bary:
            bary = torch.from_numpy(bary) / s[:, None]
        redo = ~((s >= math.exp(-MARGIN)) & torch.isfinite(s))
        if bool(redo.any()):
            rows = redo.nonzero().flatten()
            for r in rows.split(max(1, (1 << 22) // max(1, self.q.points.shape[0]))):
                t = h - ((self.p.points[r, None, :] - self.q.points[None]) ** 2).sum(-1) / eps
                out[r] = -eps * torch.logsumexp(t, 1)
                if with_bary:
                    bary[r] = torch.softmax(t, 1) @ self.q.points
        return out, bary


class SparseSweep:
    """Block-sparse fused Sinkhorn sweeps between two point sets ``x (N, D)``, ``y (M, D)`` with weights
    ``a (N,)``, ``b (M,)`` (no padding), clustered once (:class:`Clusters`: rows in clusters of at most ``size``,
    columns of at most ``col_size`` points); the same iteration as
    :func:`geomot.transport._numba_softmin.sweep`, over the kept blocks only.

    With ``E_ij = exp((f_i + g_j - C_ij) / eps)`` and the block bound ``U_IJ >= log E_ij`` of
    :class:`SparseSoftmin` (shift ``f / eps``, column term ``g / eps``), a block is kept when
    ``U_IJ >= log(u) - MARGIN - log(sum b)`` (row sums ``rs_i = sum_j b_j E_ij``) or
    ``U_IJ + D_I >= log(u) - MARGIN - log(sum a)`` (column sums ``col_j = sum_i a_i e^{d_i} E_ij``,
    ``d_i = (f'_i - f_i) / eps``, ``D_I`` the previous sweep's largest ``d_i`` in cluster ``I``, at least 0 when the
    column sums of the input plan are needed too). The skipped terms of a row then add at most
    ``sum_j b_j e^{U} < u e^{-MARGIN}`` to ``rs_i``. After the pass the new ``D_I`` are known; the skipped blocks
    whose column bound ``U_IJ + D_I`` then exceeds the threshold are added to the column sums by a second
    (block-sparse) pass, so that the skipped terms of a column add less than ``u e^{-MARGIN}`` to ``col_j``.
    Rows whose truncated sum is below ``e^{-MARGIN}`` and columns whose sum is below ``e^{-MARGIN}`` are recomputed
    over all pairs: every row and column sum is exact to a relative ``u`` (``u``: the dtype's roundoff).
    Rows whose sum leaves ``(1e-20, inf)`` take the exact (max-shifted) soft-min, as in the dense sweep.

    Work per sweep: the kept pairs (``3 D + 27`` flops each), the bounds (``N L + M K`` when recomputed, see
    :meth:`SparseSoftmin.bound`), ``O(K L)`` for the pattern, plus the redone rows and columns.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *,
                 size: int = CLUSTER_SIZE, col_size: int = SWEEP_COL_CLUSTER) -> None:
        self.p, self.q = Clusters(x, a, size), Clusters(y, b, col_size)
        self.op = SparseSoftmin(self.p, self.q)
        self.a = self.p.weights.contiguous().numpy()
        self.b = self.q.weights.contiguous().numpy()
        self.la = torch.log(self.p.weights)
        self.lb = torch.log(self.q.weights)
        self.log_amass = math.log(float(a.double().sum()))
        self.log_bmass = math.log(float(b.double().sum()))
        self.perm_p, self.perm_q = self.p.perm.numpy(), self.q.perm.numpy()
        self.inv_p, self.inv_q = np.argsort(self.perm_p), np.argsort(self.perm_q)
        self.rise = np.zeros(self.p.ptr.shape[0] - 1)
        self.kept_fraction = 1.0
        self.stats = {"sweeps": 0, "dense": 0, "corrections": 0, "corrected_blocks": 0, "rows_redone": 0,
                      "cols_redone": 0}

    def _col_threshold(self, thr: float, rise: np.ndarray) -> np.ndarray:
        """``(K,)`` float32 thresholds ``log(u) - MARGIN - log(sum a) - D_I`` on the block bounds for the column sums,
        lowered by :data:`SLACK` so that comparing in float32 keeps every block the float64 test would keep."""
        return (thr - self.log_amass - SLACK - rise).astype(np.float32)

    def sweep(self, f: np.ndarray, g: np.ndarray, eps: float, *, omega: float, lx: float, need_old: bool):
        """One fused sweep from ``f (N,)``, ``g (M,)`` (finite numpy arrays of the points' dtype, input order).

        Returns:
            ``(rs, f_new, bad, col, col_old or None)`` (numpy, input order) as
            :func:`geomot.transport._numba_softmin.sweep`, except that ``col`` already holds the exact column sums
            of the rows flagged ``bad``; or None when more than :data:`SWEEP_MAX_KEPT` of the pairs would be kept
            (the caller then sweeps densely).
        """
        dt = self.p.points.dtype
        ft = self.a.dtype.type
        fs = f[self.perm_p]
        gs = g[self.perm_q]
        shift = fs / ft(eps)
        h = gs / ft(eps)
        u = self.op.bound(shift.astype(np.float64), h.astype(np.float64), eps)
        thr = math.log(torch.finfo(dt).eps) - MARGIN
        rise = np.maximum(self.rise, 0.0) if need_old else self.rise
        keep = u >= np.float32(thr - self.log_bmass - SLACK)
        keep |= u >= self._col_threshold(thr, rise)[:, None]
        kptr, c0s, c1s = block_ranges(keep, self.q.ptr)
        owner = np.repeat(np.arange(kptr.shape[0] - 1), np.diff(kptr))
        kept = float(((c1s - c0s) * np.diff(self.p.ptr)[owner]).sum())
        self.kept_fraction = kept / float(self.p.ptr[-1] * self.q.ptr[-1])
        self.stats["sweeps"] += 1
        if self.kept_fraction > SWEEP_MAX_KEPT:
            self.stats["dense"] += 1
            return None
        low = math.exp(-MARGIN)
        rs, fn, flag, dmax, col, col_old = _numba_softmin.sparse_sweep(
            self.p.points.numpy(), self.q.points_t, h, shift, self.a, self.b, fs, self.p.ptr, kptr, c0s, c1s, eps,
            omega=omega, lx=lx, low=low, need_old=need_old)
        dm = dmax.astype(np.float64)
        self.rise = np.where(np.isfinite(dm), dm, 0.0)
        # skipped blocks whose column bound the new row factors lifted over the threshold: their column sums
        miss = u >= self._col_threshold(thr, dm)[:, None]
        miss &= ~keep
        if miss.any():
            self.stats["corrections"] += 1
            self.stats["corrected_blocks"] += int(miss.sum())
            kp, r0s, r1s = block_ranges(miss.T, self.p.ptr)
            hrow = np.where(flag == 0, fn / ft(eps) + self.la.numpy(), -np.inf).astype(fs.dtype)
            extra, _ = _numba_softmin.sparse_row_sums(self.q.points, self.p.points_t, hrow, h, self.q.ptr, kp, r0s,
                                                      r1s, eps)
            col += extra
        ht = torch.from_numpy(h)
        fn_t, fs_t = torch.from_numpy(fn), torch.from_numpy(fs)
        for code in (2, 1):  # rows with a small (2) or out-of-range (1) truncated sum: exact over all columns
            rows_np = np.nonzero(flag == code)[0]
            if rows_np.size == 0:
                continue
            self.stats["rows_redone"] += int(rows_np.size)
            rows = torch.from_numpy(rows_np)
            pr, fr = self.p.points[rows], fs_t[rows]
            if code == 2:
                s_exact, _ = _numba_softmin.row_sums(pr, self.q.points, ht, fr / eps, self.q.weights, eps)
                rs[rows_np] = s_exact.numpy()
                new = fr + omega * ((lx - 1.0) * fr - lx * eps * torch.log(s_exact))
            else:
                f_hat = _numba_softmin.softmin(pr[None], self.q.points[None], (ht + self.lb)[None], eps, None)[0]
                new = (1.0 - omega) * fr + omega * lx * f_hat
            fn_t[rows] = new
            extra, _ = _numba_softmin.row_sums(self.q.points, pr, new / eps, ht, self.p.weights[rows], eps)
            col += extra.numpy()
            if need_old:
                if code == 1:
                    col_old[:] = np.inf  # unknown, as in the dense sweep
                else:
                    old, _ = _numba_softmin.row_sums(self.q.points, pr, fr / eps, ht, self.p.weights[rows], eps)
                    col_old += old.numpy()
        # columns with a small sum: exact over all rows (the skipped terms are only small against sums near 1)
        cols_np = np.nonzero(~(col >= low))[0]
        if cols_np.size:
            self.stats["cols_redone"] += int(cols_np.size)
            cols = torch.from_numpy(cols_np)
            qc = self.q.points[cols]
            exact, _ = _numba_softmin.row_sums(qc, self.p.points, fn_t / eps, ht[cols], self.p.weights, eps)
            col[cols_np] = exact.numpy()
            if need_old and np.isfinite(col_old).all():
                old, _ = _numba_softmin.row_sums(qc, self.p.points, fs_t / eps, ht[cols], self.p.weights, eps)
                col_old[cols_np] = old.numpy()
        ip, iq = self.inv_p, self.inv_q
        return rs[ip], fn[ip], (flag == 1)[ip], col[iq], (col_old[iq] if need_old else None)
