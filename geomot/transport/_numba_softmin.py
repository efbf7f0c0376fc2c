"""Streaming soft-min kernels for the squared Euclidean cost on CPU, compiled with numba (no ``N x M`` storage).

For point sets ``p (N, D)``, ``q (M, D)``, a column term ``h (M,)`` and a row shift ``s (N,)``, the kernels stream
over the pairs, block of columns by block of columns, and never store a cost or kernel matrix:

- :func:`row_sums`: ``S_i = sum_j w_j exp(t_ij)`` with ``t_ij = h_j + s_i - |p_i - q_j|^2 / eps`` (and optionally
  ``sum_j w_j exp(t_ij) |p_i - q_j|^2``); with ``s_i = hint_i / eps`` near the result, ``S_i ~ 1`` and the soft-min
  ``-eps log sum_j exp(h_j - C_ij / eps) = hint_i - eps log S_i`` needs no max pass;
- :func:`row_max`: ``max_j (h_j - |p_i - q_j|^2 / eps)``, the shift of the exact (max-stabilised) fallback for rows
  whose sum over- or underflows;
- :func:`sweep`: one alternating Sinkhorn iteration with one exp per pair: the row sums of
  ``E_ij = exp((f_i + g_j - C_ij) / eps)`` give the (over-relaxed) row update, and the same ``E_ij`` times the
  updated row factors accumulate the column sums from which the column update follows;
- :func:`sparse_row_sums`: ``S_i`` (and optionally ``sum_j exp(t_ij) q_j``) over the kept column ranges of the
  row's cluster only, and :func:`seg_max`: the cluster-wise maxima behind the truncation bound of
  :mod:`geomot.transport._multiscale`.

The cost is formed from the coordinate differences (``sum_d (p_id - q_jd)^2``: no cancellation), and ``exp`` is a
Cody-Waite range reduction with a Taylor polynomial (degree 6 in float32, 12 in float64; 1-2 ulp) written so
that LLVM vectorises it (numba has no vector ``exp`` without Intel's SVML). Its argument is clamped below at
``log(tiny) + 2`` (-85 in float32, -706 in float64), as :func:`geomot.transport._kernels.safe_exp` does, so that
it never takes the subnormal path. Of the fast-math flags only ``contract`` is on (a multiply and an add may
fuse into one FMA, which rounds once: 1.4-1.8x faster kernels, results within an ulp); NaN and infinities
propagate as in IEEE arithmetic.

Rows are split over ``torch.get_num_threads()`` threads (the kernels release the GIL); each thread accumulates its
own column sums. Cost: ``~(3 D + 25)`` flops per pair and ``O((N + M) D)`` memory. Kernels are compiled on first
use for each dtype (float32, float64; a few seconds) and cached on disk by numba when this package's
``__pycache__`` is writable (later processes load them); without numba or with ``GEOMOT_NUMBA=0``
:func:`available` is False and callers use torch.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from geomot._core.accel import numba_available

__all__ = ["available", "row_max", "row_sums", "seg_max", "softmin", "sparse_row_sums", "sparse_sweep", "sweep"]

_BLOCK = 256  # columns per block: the distances and exponentials of a block stay in the L1 cache
_TINY = 1e-20  # row or column sums below this (or non-finite) are redone with the exact log-sum-exp
_MIN_PAIRS_PER_THREAD = 1 << 18  # below this many pairs per thread a second thread costs more than it saves


def available(t: torch.Tensor) -> bool:
    """Whether the kernels can run on ``t``: a float32/float64 CPU tensor, with numba installed and enabled."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and numba_available()


_TEMPLATE = """
def exp_rows(x, kb, bl):
    # exp(x[j]) = x[j] * bits_as_float(kb[j]) after the call: Cody-Waite reduction, Taylor polynomial
    for j in range(bl):
        u = x[j]
        v = min(max(u, {F}({LO})), {F}({HI}))
        kf = np.floor(v * {F}(1.4426950408889634) + {F}(0.5))
        r = v - kf * {F}(0.693145751953125) - kf * {F}(1.4286068203094173e-06)
        e = {POLY}
        x[j] = np.inf if u > {F}({HI}) else e  # overflow stays visible (the caller redoes such rows)
        kb[j] = ({I}(kf) + {BIAS}) << {MANT}


def sq_dists(p, i, q, j0, c, bl):
    # c[j] = |p_i - q_(j0 + j)|^2 for j < bl, from the coordinate differences (q: (D, M) columns; 1-D slices of
    # contiguous rows keep numba's contiguous layout, so the loops vectorise)
    for j in range(bl):
        c[j] = 0
    for d in range(p.shape[1]):
        pd = p[i, d]
        qd = q[d, j0:j0 + bl]
        for j in range(bl):
            df = pd - qd[j]
            c[j] += df * df


def exp_block(p, i, q, h, j0, s, inv_eps, t, kb, bl):
    # t[j] * bits_as_float(kb[j]) = exp(h[j0 + j] + s - |p_i - q_(j0 + j)|^2 / eps) for j < bl (q: (D, M) columns)
    hs = h[j0:j0 + bl]
    sq_dists(p, i, q, j0, t, bl)
    for j in range(bl):
        t[j] = hs[j] + s - t[j] * inv_eps
    exp_rows(t, kb, bl)


def weighted_row(p, i, q, h, w, m, s, inv_eps, t, kb, e, acc):
    # e[j] = exp(h_j + s - |p_i - q_j|^2 / eps) for j < m (q: (D, >= m) columns); returns sum_j e_j w_j (8 lanes)
    sc = kb.view({F})
    for lane in range(8):
        acc[lane] = 0
    for j0 in range(0, m, BLOCK):
        bl = min(BLOCK, m - j0)
        wb = w[j0:j0 + bl]
        eb = e[j0:j0 + bl]
        exp_block(p, i, q, h, j0, s, inv_eps, t, kb, bl)
        for j in range(bl):
            eb[j] = t[j] * sc[j]
        jj = 0
        while jj + 8 <= bl:
            for lane in range(8):
                acc[lane] += eb[jj + lane] * wb[jj + lane]
            jj += 8
        for j in range(jj, bl):
            acc[0] += eb[j] * wb[j]
    return acc.sum()


def relaxed_potential(fi, tot, omega, lx, eps):
    # f + w (lx f_hat - f) with f_hat = f - eps log(tot), as an increment (the potentials are far larger than
    # eps: the convex combination would round at their scale)
    return fi + omega * ((lx - 1) * fi - lx * eps * np.log(tot))


def kept_capacity(groups, kptr, c0s, c1s):
    # scratch length for the kept columns of any row cluster of groups, with 8 of padding
    cap = 8
    for g in range(groups.shape[0]):
        cl = groups[g]
        tot = 0
        for k in range(kptr[cl], kptr[cl + 1]):
            tot += c1s[k] - c0s[k]
        cap = max(cap, tot + 8)
    return cap


def gather_kept(cl, kptr, c0s, c1s, qT, h, w, qb, hb, wb, with_w):
    # the kept columns of row cluster cl into contiguous scratch, padded to a multiple of 8 (h = -inf, w = 0,
    # q = 0); returns the padded length
    dim = qT.shape[0]
    tot = 0
    for k in range(kptr[cl], kptr[cl + 1]):
        for j in range(c0s[k], c1s[k]):
            hb[tot] = h[j]
            if with_w:
                wb[tot] = w[j]
            for d in range(dim):
                qb[d, tot] = qT[d, j]
            tot += 1
    totp = (tot + 7) // 8 * 8
    for j in range(tot, totp):
        hb[j] = -np.inf
        if with_w:
            wb[j] = 0
        for d in range(dim):
            qb[d, j] = 0
    return totp


def row_sums_k(p, qT, h, shift, w, inv_eps, rows, out, out_cost, with_cost):
    m = qT.shape[1]
    t = np.empty(BLOCK, dtype={F})
    c = np.empty(BLOCK, dtype={F})
    kb = np.empty(BLOCK, dtype={I})
    acc = np.zeros(8, dtype={F})
    accc = np.zeros(8, dtype={F})
    for i in rows:
        for lane in range(8):
            acc[lane] = 0
            accc[lane] = 0
        s = shift[i]
        for j0 in range(0, m, BLOCK):
            bl = min(BLOCK, m - j0)
            hb = h[j0:j0 + bl]
            wb = w[j0:j0 + bl]
            sq_dists(p, i, qT, j0, t, bl)
            if with_cost:
                for j in range(bl):
                    c[j] = t[j]
            for j in range(bl):
                t[j] = hb[j] + s - t[j] * inv_eps
            exp_rows(t, kb, bl)
            sc = kb.view({F})
            jj = 0
            while jj + 8 <= bl:
                for lane in range(8):
                    acc[lane] += t[jj + lane] * sc[jj + lane] * wb[jj + lane]
                jj += 8
            for j in range(jj, bl):
                acc[0] += t[j] * sc[j] * wb[j]
            if with_cost:
                jj = 0
                while jj + 8 <= bl:
                    for lane in range(8):
                        accc[lane] += t[jj + lane] * sc[jj + lane] * wb[jj + lane] * c[jj + lane]
                    jj += 8
                for j in range(jj, bl):
                    accc[0] += t[j] * sc[j] * wb[j] * c[j]
        out[i] = acc.sum()
        out_cost[i] = accc.sum()


def row_max_k(p, qT, h, inv_eps, rows, out):
    m = qT.shape[1]
    c = np.empty(BLOCK, dtype={F})
    for i in rows:
        best = -np.inf
        for j0 in range(0, m, BLOCK):
            bl = min(BLOCK, m - j0)
            hb = h[j0:j0 + bl]
            sq_dists(p, i, qT, j0, c, bl)
            for j in range(bl):
                v = hb[j] - c[j] * inv_eps
                if v > best or v != v:
                    best = v
        out[i] = best


def sweep_k(p, qT, h, shift, a, b, pot, mask, omega, lx, eps, r0, r1, rs, fn, bad, col, col_old, erow, need_old):
    m = qT.shape[1]
    t = np.empty(BLOCK, dtype={F})
    kb = np.empty(BLOCK, dtype={I})
    acc = np.zeros(8, dtype={F})
    one = {F}(1.0)
    inv_eps = one / eps
    for i in range(r0, r1):
        tot = weighted_row(p, i, qT, h, b, m, shift[i], inv_eps, t, kb, erow, acc)
        rs[i] = tot
        if not mask[i]:
            fn[i] = 0
            continue
        if not (tot > TINY and tot < np.inf):
            bad[i] = True
            continue
        fi = pot[i]
        new = relaxed_potential(fi, tot, omega, lx, eps)
        fn[i] = new
        wi = a[i] * np.exp((new - fi) * inv_eps)
        for j in range(m):
            col[j] += wi * erow[j]
        if need_old:
            ai = a[i]
            for j in range(m):
                col_old[j] += ai * erow[j]


def seg_max_k(x, a, ptr, cT, k2, groups, out):
    # out[I, J] = max over the rows i of cluster I of a_i + k2 <x_i, c_J> (float64; cT: (D, K) centres)
    dim = x.shape[1]
    kc = cT.shape[1]
    v = np.empty(kc, dtype=np.float64)
    for g in range(groups.shape[0]):
        cl = groups[g]
        o = out[cl]
        for J in range(kc):
            o[J] = -np.inf
        for i in range(ptr[cl], ptr[cl + 1]):
            ai = a[i]
            for J in range(kc):
                v[J] = ai
            for d in range(dim):
                xd = k2 * x[i, d]
                cd = cT[d]
                for J in range(kc):
                    v[J] += xd * cd[J]
            for J in range(kc):
                o[J] = max(o[J], v[J])


def sparse_sums_k(p, qT, h, shift, rptr, kptr, c0s, c1s, inv_eps, groups, out, bary, with_bary):
    # out_i = sum over the kept column ranges of row i's cluster of exp(h_j + shift_i - |p_i - q_j|^2 / eps),
    # bary_i = the same sum of exp(...) q_j (with_bary). The kept columns of a row cluster are gathered once into
    # contiguous scratch padded to a multiple of 8 (h = -inf), then every row of the cluster runs over full blocks
    # and keeps 8 lanes of partial sums: no array slices in the loops (each costs reference counting), no
    # remainder loops, and short ranges cost what long ones do.
    dim = p.shape[1]
    rmax = 1
    for g in range(groups.shape[0]):
        rmax = max(rmax, rptr[groups[g] + 1] - rptr[groups[g]])
    cap = kept_capacity(groups, kptr, c0s, c1s)
    t = np.empty(BLOCK, dtype={F})
    kb = np.empty(BLOCK, dtype={I})
    sc = kb.view({F})
    qb = np.empty((dim, cap), dtype={F})
    hb = np.empty(cap, dtype={F})
    qs = np.empty((dim, BLOCK), dtype={F})
    hs = np.empty(BLOCK, dtype={F})
    acc = np.empty((rmax, 8), dtype={F})
    accb = np.empty((rmax, dim, 8) if with_bary else (1, 1, 8), dtype={F})
    for g in range(groups.shape[0]):
        cl = groups[g]
        r0 = rptr[cl]
        r1 = rptr[cl + 1]
        acc[:r1 - r0] = 0
        if with_bary:
            accb[:r1 - r0] = 0
        totp = gather_kept(cl, kptr, c0s, c1s, qT, h, h, qb, hb, hb, False)
        for j0 in range(0, totp, BLOCK):
            bl = min(BLOCK, totp - j0)
            for j in range(bl):  # the block in L1-sized buffers (faster inner loops than offsets into the scratch)
                hs[j] = hb[j0 + j]
            for d in range(dim):
                for j in range(bl):
                    qs[d, j] = qb[d, j0 + j]
            for i in range(r0, r1):
                s = shift[i]
                for j in range(bl):
                    t[j] = 0
                for d in range(dim):
                    pd = p[i, d]
                    for j in range(bl):
                        df = pd - qs[d, j]
                        t[j] += df * df
                for j in range(bl):
                    t[j] = hs[j] + s - t[j] * inv_eps
                exp_rows(t, kb, bl)
                ai = i - r0
                for j in range(bl):
                    t[j] = t[j] * sc[j]
                for jj in range(0, bl, 8):
                    for lane in range(8):
                        acc[ai, lane] += t[jj + lane]
                if with_bary:
                    for d in range(dim):
                        for jj in range(0, bl, 8):
                            for lane in range(8):
                                accb[ai, d, lane] += t[jj + lane] * qs[d, jj + lane]
        for i in range(r0, r1):
            out[i] = acc[i - r0].sum()
            if with_bary:
                for d in range(dim):
                    bary[i, d] = accb[i - r0, d].sum()


def sparse_sweep_k(p, qT, h, shift, a, b, pot, omega, lx, eps, low, rptr, kptr, c0s, c1s, groups, rs, fn, flag,
                   dmax, col, col_old, need_old):
    # sweep_k over the kept column ranges of each row cluster: the kept columns of a cluster are gathered once
    # into contiguous scratch padded to a multiple of 8 (h = -inf, b = 0), each row of the cluster takes one exp
    # per kept pair for its row sum and accumulates the same E_ij times its new factor into cluster-local column
    # sums, which are added to col range by range after the cluster. flag: 0 ok, 1 sum outside (TINY, inf),
    # 2 sum in (TINY, low) (not accumulated; the caller redoes both); dmax[I]: the largest (fn_i - f_i) / eps
    # over the cluster's accumulated rows (-inf if none).
    dim = p.shape[1]
    cap = kept_capacity(groups, kptr, c0s, c1s)
    t = np.empty(BLOCK, dtype={F})
    kb = np.empty(BLOCK, dtype={I})
    qb = np.empty((dim, cap), dtype={F})
    hb = np.empty(cap, dtype={F})
    bb = np.empty(cap, dtype={F})
    er = np.empty(cap, dtype={F})
    lc = np.empty(cap, dtype={F})
    lco = np.empty(cap if need_old else 1, dtype={F})
    acc = np.zeros(8, dtype={F})
    one = {F}(1.0)
    inv_eps = one / eps
    for g in range(groups.shape[0]):
        cl = groups[g]
        totp = gather_kept(cl, kptr, c0s, c1s, qT, h, b, qb, hb, bb, True)
        for j in range(totp):
            lc[j] = 0
        if need_old:
            for j in range(totp):
                lco[j] = 0
        dm = -np.inf
        for i in range(rptr[cl], rptr[cl + 1]):
            tot_i = weighted_row(p, i, qb, hb, bb, totp, shift[i], inv_eps, t, kb, er, acc)
            rs[i] = tot_i
            fi = pot[i]
            fn[i] = fi
            if not (tot_i > TINY and tot_i < np.inf):
                flag[i] = 1
                continue
            if tot_i < low:
                flag[i] = 2
                continue
            flag[i] = 0
            new = relaxed_potential(fi, tot_i, omega, lx, eps)
            fn[i] = new
            dd = (new - fi) * inv_eps
            dm = max(dm, dd)
            wi = a[i] * np.exp(dd)
            for j in range(totp):
                lc[j] += wi * er[j]
            if need_old:
                ai = a[i]
                for j in range(totp):
                    lco[j] += ai * er[j]
        dmax[cl] = dm
        pos = 0
        for k in range(kptr[cl], kptr[cl + 1]):
            for j in range(c0s[k], c1s[k]):
                col[j] += lc[pos]
                if need_old:
                    col_old[j] += lco[pos]
                pos += 1
"""


_FASTMATH = {"contract"}  # FMA contraction only: NaN / Inf semantics and the order of the sums are kept


# helpers inlined into the kernels
_INLINE = ("exp_rows", "sq_dists", "exp_block", "weighted_row", "relaxed_potential", "kept_capacity", "gather_kept")
_NAMES = ("row_sums_k", "row_max_k", "sweep_k", "seg_max_k", "sparse_sums_k", "sparse_sweep_k")


@functools.cache
def _kernels(dtype: str):
    """The compiled kernels for ``dtype`` ("float32" or "float64"), from :data:`_TEMPLATE`; compiled lazily, and
    cached on disk by numba next to this module when its ``__pycache__`` is writable (see :func:`compile_kernels`)."""
    return compile_kernels(dtype, _FASTMATH, cache_dir=Path(__file__).resolve().parent / "__pycache__")


def _source(dtype: str) -> str:
    f32 = dtype == "float32"
    f_name = "np.float32" if f32 else "np.float64"
    info = np.finfo(np.float32 if f32 else np.float64)
    degree = 6 if f32 else 12
    poly = f"{f_name}({1.0 / math.factorial(degree)!r})"
    for k in range(degree - 1, -1, -1):
        poly = f"({poly} * r + {f_name}({1.0 / math.factorial(k)!r}))"
    return _TEMPLATE.format(F=f_name, I="np.int32" if f32 else "np.int64", BIAS=127 if f32 else 1023,
                            MANT=23 if f32 else 52, LO=repr(math.log(info.tiny) + 2.0),
                            HI=repr(math.log(info.max) - 1.0), POLY=poly)


def _cached_module(src: str, dtype: str, fastmath: bool | set[str], cache_dir: Path):
    """The kernels as a module written once to ``cache_dir`` (named by a hash of its text), so that numba's
    ``cache=True`` can keep their machine code across processes (exec'd code has no file to cache against)."""
    import numba

    flags = f"set({sorted(fastmath)!r})" if isinstance(fastmath, set) else repr(bool(fastmath))
    text = (f"import numba\nimport numpy as np\n\nBLOCK = {_BLOCK}\nTINY = {_TINY!r}\n{src}\n"
            f"_opts = dict(nogil=True, fastmath={flags}, boundscheck=False)\n"
            + "".join(f"{n} = numba.njit(inline='always', **_opts)({n})\n" for n in _INLINE)
            + "".join(f"{n} = numba.njit(cache=True, **_opts)({n})\n" for n in _NAMES))
    digest = hashlib.sha1((text + numba.__version__).encode()).hexdigest()[:12]
    name = f"geomot_softmin_{dtype}_{digest}"
    path = cache_dir / f"{name}.py"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # imported by name: numba's cache rebuilds the kernels' environment from it
    spec.loader.exec_module(module)
    return module


def compile_kernels(dtype: str, fastmath: bool | set[str], *, cache_dir: Path | None = None):
    """``(row_sums_k, row_max_k, sweep_k, seg_max_k, sparse_sums_k, sparse_sweep_k)`` compiled from
    :data:`_TEMPLATE` for ``dtype`` with numba's ``fastmath`` setting (the shipped kernels: :func:`_kernels`;
    another setting is for comparisons). With ``cache_dir`` the source is written there and numba caches the
    machine code on disk (the first use in a later process loads it instead of compiling for seconds); an
    unwritable directory falls back
    to in-memory compilation."""
    import numba

    src = _source(dtype)
    if cache_dir is not None:
        try:
            module = _cached_module(src, dtype, fastmath, cache_dir)
            return tuple(getattr(module, n) for n in _NAMES)
        except OSError:  # read-only install: compile in memory
            pass
    jit = numba.njit(nogil=True, fastmath=fastmath, boundscheck=False)
    scope = {"np": np, "BLOCK": _BLOCK, "TINY": _TINY}
    exec(compile(src, f"<geomot numba softmin {dtype}>", "exec"), scope)
    inline = numba.njit(nogil=True, fastmath=fastmath, boundscheck=False, inline="always")
    for name in _INLINE:
        scope[name] = inline(scope[name])
    for name in _NAMES:
        scope[name] = jit(scope[name])
    return tuple(scope[name] for name in _NAMES)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _threads(work: float) -> int:
    """Threads for ``work`` pairs: ``torch.get_num_threads()``, fewer below :data:`_MIN_PAIRS_PER_THREAD` each."""
    return max(1, min(torch.get_num_threads(), int(work // _MIN_PAIRS_PER_THREAD)))


def _splits(n: int, m: int) -> list[tuple[int, int]]:
    """Contiguous row ranges, one per thread (:func:`_threads`, at most one per row)."""
    workers = max(1, min(_threads(n * m), n))
    bounds = [round(k * n / workers) for k in range(workers + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(workers) if bounds[k + 1] > bounds[k]]


def _run(jobs) -> None:
    """Run the jobs (kernels that release the GIL) at once: the first on the calling thread, the others on as many
    short-lived threads (one fewer thread to start per call than a pool of ``len(jobs)``)."""
    if len(jobs) == 1:
        jobs[0]()
        return
    with ThreadPoolExecutor(len(jobs) - 1) as pool:
        futures = [pool.submit(j) for j in jobs[1:]]
        jobs[0]()
        for fut in futures:
            fut.result()


def row_sums(p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, shift: torch.Tensor, w: torch.Tensor, eps: float,
             *, with_cost: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``S_i = sum_j w_j exp(h_j + shift_i - |p_i - q_j|^2 / eps)`` for one item (no autograd).

    Args:
        p: ``(N, D)`` row points.
        q: ``(M, D)`` column points.
        h: ``(M,)`` column terms (``-inf`` allowed: clamped like :func:`~geomot.transport._kernels.safe_exp`).
        shift: ``(N,)`` row shifts.
        w: ``(M,)`` column weights.
        eps: the temperature.
        with_cost: also return ``sum_j w_j exp(...) |p_i - q_j|^2``.

    Returns:
        ``(S (N,), S_C (N,) or None)`` in the dtype of ``p``.
    """
    k = _kernels(str(p.dtype).removeprefix("torch."))[0]
    pn, qT, hn, sn, wn = _np(p), np.ascontiguousarray(_np(q).T), _np(h), _np(shift), _np(w)
    out = np.empty(pn.shape[0], dtype=pn.dtype)
    out_c = np.empty_like(out)
    inv = pn.dtype.type(1.0 / eps)
    jobs = [functools.partial(k, pn, qT, hn, sn, wn, inv, np.arange(r0, r1), out, out_c, with_cost)
            for r0, r1 in _splits(pn.shape[0], qT.shape[1])]
    _run(jobs)
    return torch.from_numpy(out), (torch.from_numpy(out_c) if with_cost else None)


def row_max(p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, eps: float, rows: torch.Tensor) -> torch.Tensor:
    """``max_j (h_j - |p_i - q_j|^2 / eps)`` for the row indices ``rows (K,)`` of one item: ``(K,)``."""
    k = _kernels(str(p.dtype).removeprefix("torch."))[1]
    pn, qT, hn = _np(p), np.ascontiguousarray(_np(q).T), _np(h)
    out = np.full(pn.shape[0], -np.inf, dtype=pn.dtype)
    idx = rows.cpu().numpy().astype(np.int64)
    k(pn, qT, hn, pn.dtype.type(1.0 / eps), idx, out)
    return torch.from_numpy(out[idx])


def sweep(p: torch.Tensor, q: torch.Tensor, f: torch.Tensor, g: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
          mask: torch.Tensor, eps: float, *, omega: float, lx: float, need_old: bool):
    """Row half of one fused Sinkhorn sweep for one item (no autograd), ``E_ij = exp((f_i + g_j - C_ij) / eps)``.

    Args:
        p: ``(N, D)`` source points; ``q``: ``(M, D)`` target points.
        f: ``(N,)``, ``g``: ``(M,)`` current potentials (``g`` may be ``-inf``-like on padding).
        a: ``(N,)``, ``b``: ``(M,)`` weights (0 on padding).
        mask: ``(N,)`` real rows.
        eps: the temperature; ``omega``: over-relaxation; ``lx``: ``tau / (tau + eps)`` (1 when balanced).
        need_old: also return the column sums of the input plan.

    Returns:
        ``(rs (N,), f_new (N,), bad (N,) bool, col (M,), col_old (M,) or None)`` with ``rs_i = sum_j b_j E_ij``,
        ``f_new_i = f_i + omega (lx (f_i - eps log rs_i) - f_i)``, ``col_j = sum_i a_i exp((f_new_i - f_i) / eps)
        E_ij`` over the rows not flagged ``bad`` (row sums outside ``(1e-20, inf)``), ``col_old_j = sum_i a_i E_ij``.
    """
    k = _kernels(str(p.dtype).removeprefix("torch."))[2]
    pn, qT = _np(p), np.ascontiguousarray(_np(q).T)
    fn_, gn, an, bn, mn = _np(f), _np(g), _np(a), _np(b), _np(mask).astype(np.bool_)
    n, m = pn.shape[0], qT.shape[1]
    ft = pn.dtype.type
    h = gn / ft(eps)
    shift = fn_ / ft(eps)
    rs = np.empty(n, dtype=pn.dtype)
    fnew = np.zeros(n, dtype=pn.dtype)
    bad = np.zeros(n, dtype=np.bool_)
    parts = _splits(n, m)
    col = np.zeros((len(parts), m), dtype=pn.dtype)
    col_old = np.zeros((len(parts), m), dtype=pn.dtype) if need_old else np.zeros((len(parts), 1), dtype=pn.dtype)
    erow = np.empty((len(parts), m), dtype=pn.dtype)
    jobs = [functools.partial(k, pn, qT, h, shift, an, bn, fn_, mn, ft(omega), ft(lx), ft(eps), r0, r1, rs, fnew,
                              bad, col[t], col_old[t], erow[t], need_old)
            for t, (r0, r1) in enumerate(parts)]
    _run(jobs)
    return (torch.from_numpy(rs), torch.from_numpy(fnew), torch.from_numpy(bad), torch.from_numpy(col.sum(0)),
            torch.from_numpy(col_old.sum(0)) if need_old else None)


def softmin(p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, eps: float, hint: torch.Tensor | None) -> torch.Tensor:
    """``-eps log sum_j exp(h_j - |p_i - q_j|^2 / eps)`` for ``p (B, N, D)``, ``q (B, M, D)``, ``h (B, M)``: ``(B, N)``.

    One pass shifted by ``hint (B, N)`` (~ the result; then ``sum_j ~ 1``), and a max pass then an exact pass for
    the rows whose sum leaves ``(1e-20, inf)`` (all rows when ``hint`` is None). ``h = -inf`` entries are clamped
    like :func:`~geomot.transport._kernels.safe_exp` (they add ``exp(log(tiny) + 2)`` relative to the largest term).
    """
    out = torch.empty(p.shape[:2], dtype=p.dtype)
    ones = q.new_ones(q.shape[1])
    for k in range(p.shape[0]):
        hk = torch.where(torch.isnan(h[k]), h[k], h[k].clamp_min(-1e30))
        rows = torch.arange(p.shape[1])
        if hint is not None:
            shift = torch.where(torch.isfinite(hint[k]), hint[k] / eps, 0.0)
            s, _ = row_sums(p[k], q[k], hk, shift, ones, eps)
            out[k] = -eps * (s.log() - shift)
            rows = (~((s > _TINY) & (s < math.inf))).nonzero().flatten()
            if rows.numel() == 0:
                continue
        mx = row_max(p[k], q[k], hk, eps, rows)
        shift = torch.where(torch.isfinite(mx), -mx, 0.0)
        s, _ = row_sums(p[k][rows], q[k], hk, shift, ones, eps)
        out[k, rows] = -eps * (s.log() - shift)
    return out


def _balanced_groups(work: np.ndarray, parts: int) -> list[np.ndarray]:
    """Cluster indices split into at most ``parts`` contiguous groups of about equal total ``work``."""
    idx = np.arange(work.shape[0], dtype=np.int64)
    if parts <= 1 or work.shape[0] <= 1:
        return [idx]
    cum = np.cumsum(work, dtype=np.float64)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts)
    return [g for g in np.split(idx, cuts) if g.size]


def seg_max(x: np.ndarray, a: np.ndarray, ptr: np.ndarray, centres: np.ndarray, k2: float) -> np.ndarray:
    """``out[I, J] = max_{i in I} (a_i + k2 <x_i, c_J>)`` over the rows ``ptr[I]:ptr[I + 1]`` of cluster ``I``.

    Args:
        x: ``(N, D)`` float64 points sorted by cluster; ``a``: ``(N,)`` float64.
        ptr: ``(K + 1,)`` int64 cluster offsets into ``x``.
        centres: ``(L, D)`` float64 vectors ``c_J``.
        k2: the factor of the inner product.

    Returns:
        ``(K, L)`` float64. Cost ``N L (D + 2)`` flops.
    """
    k = _kernels("float64")[3]
    kc = centres.shape[0]
    out = np.empty((ptr.shape[0] - 1, kc), dtype=np.float64)
    cT = np.ascontiguousarray(centres.T)
    groups = _balanced_groups(np.diff(ptr).astype(np.float64), _threads(x.shape[0] * kc))
    _run([functools.partial(k, x, a, ptr, cT, np.float64(k2), g, out) for g in groups])
    return out


def sparse_row_sums(p: torch.Tensor, qT: np.ndarray, h: np.ndarray, shift: np.ndarray, rptr: np.ndarray,
                    kptr: np.ndarray, c0s: np.ndarray, c1s: np.ndarray, eps: float, *, with_bary: bool = False
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Block-sparse ``S_i = sum_j exp(h_j + shift_i - |p_i - q_j|^2 / eps)`` over kept column ranges.

    The rows of ``p`` are grouped in clusters (``rptr``, ``(K + 1,)``); the row cluster ``I`` sums over the column
    ranges ``c0s[k]:c1s[k]`` for ``k`` in ``kptr[I]:kptr[I + 1]`` and skips the others. Work is
    ``(3 D + 25)`` flops per kept pair (``3 D`` more with ``with_bary``), split over threads by kept pairs.

    Args:
        p: ``(N, D)`` row points (float32/float64); ``qT``: ``(D, M)`` column points, transposed, same dtype.
        h: ``(M,)`` column terms; ``shift``: ``(N,)`` row shifts (same dtype).
        rptr, kptr, c0s, c1s: int64 cluster offsets and kept column ranges.
        eps: the temperature.
        with_bary: also return ``sum_j exp(...) q_j`` ``(N, D)``.

    Returns:
        ``(S (N,), bary (N, D) or None)``.
    """
    pn = _np(p)
    k = _kernels(str(pn.dtype))[4]
    n, dim = pn.shape
    out = np.zeros(n, dtype=pn.dtype)
    bary = np.zeros((n, dim) if with_bary else (1, 1), dtype=pn.dtype)
    owner = np.repeat(np.arange(kptr.shape[0] - 1), np.diff(kptr))
    kept = np.bincount(owner, weights=(c1s - c0s).astype(np.float64), minlength=kptr.shape[0] - 1)
    work = kept * np.diff(rptr)
    groups = _balanced_groups(work, _threads(float(work.sum())))
    inv = pn.dtype.type(1.0 / eps)
    _run([functools.partial(k, pn, qT, h, shift, rptr, kptr, c0s, c1s, inv, g, out, bary, with_bary)
          for g in groups])
    return out, (bary if with_bary else None)


def sparse_sweep(p: np.ndarray, qT: np.ndarray, h: np.ndarray, shift: np.ndarray, a: np.ndarray, b: np.ndarray,
                 pot: np.ndarray, rptr: np.ndarray, kptr: np.ndarray, c0s: np.ndarray, c1s: np.ndarray, eps: float, *,
                 omega: float, lx: float, low: float, need_old: bool):
    """Row half of one fused Sinkhorn sweep (as :func:`sweep`) over the kept column ranges of each row cluster.

    ``E_ij = exp(h_j + shift_i - |p_i - q_j|^2 / eps)`` is formed once per kept pair: ``rs_i = sum_j b_j E_ij``,
    ``fn_i = pot_i + omega ((lx - 1) pot_i - lx eps log rs_i)``, ``col_j = sum_i a_i exp((fn_i - pot_i) / eps) E_ij``
    (and ``col_old_j = sum_i a_i E_ij``), all over the kept blocks only; the row cluster ``I`` (rows
    ``rptr[I]:rptr[I + 1]``) keeps the column ranges ``c0s[k]:c1s[k]``, ``k`` in ``kptr[I]:kptr[I + 1]``. Rows whose
    sum is outside ``(1e-20, inf)`` (flag 1) or below ``low`` (flag 2) keep ``fn_i = pot_i`` and add nothing to the
    columns. Work ``(3 D + 27)`` flops per kept pair, split over threads by kept pairs (each thread its own column
    sums).

    Args:
        p: ``(N, D)`` row points; ``qT``: ``(D, M)`` column points, transposed (float32/float64 numpy, one dtype
            for all float arrays).
        h: ``(M,)`` column terms ``g / eps``; ``shift``: ``(N,)`` row terms ``f / eps``; ``pot``: ``(N,)`` ``f``.
        a: ``(N,)``, ``b``: ``(M,)`` weights.
        rptr, kptr, c0s, c1s: int64 cluster offsets and kept column ranges.
        eps: the temperature; ``omega``: over-relaxation; ``lx``: the row update's factor; ``low``: see above.
        need_old: also accumulate ``col_old``.

    Returns:
        ``(rs (N,), fn (N,), flag (N,) int8, dmax (K,), col (M,), col_old (M,) or None)``, ``dmax[I]`` the largest
        ``(fn_i - pot_i) / eps`` over the rows of cluster ``I`` with flag 0 (``-inf`` if none).
    """
    k = _kernels(str(p.dtype))[5]
    n, m = p.shape[0], qT.shape[1]
    kc = rptr.shape[0] - 1
    ft = p.dtype.type
    owner = np.repeat(np.arange(kptr.shape[0] - 1), np.diff(kptr))
    kept = np.bincount(owner, weights=(c1s - c0s).astype(np.float64), minlength=kc)
    work = kept * np.diff(rptr)
    groups = _balanced_groups(work, _threads(float(work.sum())))
    rs = np.zeros(n, dtype=p.dtype)
    fn = np.zeros(n, dtype=p.dtype)
    flag = np.zeros(n, dtype=np.int8)
    dmax = np.full(kc, -np.inf, dtype=p.dtype)
    col = np.zeros((len(groups), m), dtype=p.dtype)
    col_old = np.zeros((len(groups), m if need_old else 1), dtype=p.dtype)
    _run([functools.partial(k, p, qT, h, shift, a, b, pot, ft(omega), ft(lx), ft(eps), ft(low), rptr, kptr, c0s,
                            c1s, grp, rs, fn, flag, dmax, col[t], col_old[t], need_old)
          for t, grp in enumerate(groups)])
    return rs, fn, flag, dmax, col.sum(0), (col_old.sum(0) if need_old else None)
