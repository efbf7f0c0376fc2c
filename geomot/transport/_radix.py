"""Row-wise LSD radix sort of float32 values (and their permutation), compiled with numba when it is installed.

The CPU sort path of the sliced losses spends most of its time sorting ``L x N`` projected values. A least-
significant-digit radix sort does it in ``O(N)`` per row: each float32 is mapped to an unsigned 32-bit key with the
same order (flip every bit of a negative number, only the sign bit of a non-negative one, so that ``-inf < ... <
-0.0 < +0.0 < ... < +inf``), then 3 stable counting passes of 11, 11 and 10 bits move the keys (and the column indices)
between two buffers; a pass whose digit is the same for the whole row is skipped. Measured on the 2-core
development machine (one thread): 100 x 100,000 rows with their permutation in 0.06 s, against 0.39 s for numpy's
SIMD sort of packed uint64 words and 0.23 s for ``numpy.sort`` of the values alone; 6,400 x 2,048 rows in 0.08 s
(0.12 s for ``numpy.sort`` of the values).

:func:`sorted_power_rows` fuses the sort path of ``W_p^p`` on the line: both rows are sorted, the cost
``(1/n) sum_i |x_(i) - y_(i)|^p`` is summed in float64, and the derivatives ``d/dx_k`` are written straight back to
the original positions through the permutation (no sorted copy and no scatter pass in torch).

The kernels release the GIL and run over blocks of rows on ``torch.get_num_threads()`` threads.
Without numba (or with ``GEOMOT_NUMBA=0`` in the environment) :data:`AVAILABLE` is False and callers use numpy.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from geomot._core.accel import numba_available
from geomot._core.parallel import SERIAL_BYTES, run_row_blocks

__all__ = [
    "AVAILABLE", "MIN_LENGTH", "MIN_LENGTH_VALUES", "projected_power", "projected_power_grads", "sort_rows",
    "sorted_power_rows",
]

# Shorter rows are left to numpy, whose small-array sorts win there (the 3 x 2048 histogram work per row dominates
# the radix sort): measured break-even ~400 values with the permutation, ~1,000 for values alone.
MIN_LENGTH = 512
MIN_LENGTH_VALUES = 1024
# From this row length the point derivatives go through a length-n buffer (see _power_row_acc).
ACC_BUFFER_MIN = 8192

try:  # pragma: no cover - exercised through AVAILABLE
    if not numba_available():  # not installed, or turned off by GEOMOT_NUMBA=0
        raise ImportError("numba is not available")
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

AVAILABLE = numba is not None

if AVAILABLE:
    _jit = numba.njit(nogil=True, cache=True, boundscheck=False)
    _U32 = np.uint32
    _SIGN = np.uint32(0x80000000)
    _DIGIT = np.uint32(0x7FF)  # 11-bit digits: 3 passes (11 + 11 + 10 bits), 2048 buckets

    @_jit
    def _add_key(keys, hist, j, b):  # pragma: no cover - compiled
        """Store the order-preserving uint32 key of the float32 bit pattern ``b`` at ``keys[j]``; count its digits."""
        mask = _U32(_U32(_U32(0) - (b >> _U32(31))) | _SIGN)
        k = _U32(b ^ mask)
        keys[j] = k
        hist[0, k & _DIGIT] += 1
        hist[1, (k >> _U32(11)) & _DIGIT] += 1
        hist[2, k >> _U32(22)] += 1

    @_jit
    def _keys_and_histograms(bits, keys, hist):  # pragma: no cover - compiled
        """Keys of one row of float32 bit patterns, and the 3 digit histograms."""
        hist[:] = 0
        for j in range(bits.shape[0]):
            _add_key(keys, hist, j, bits[j])

    @_jit
    def _radix_row(keys, idx, kbuf, ibuf, hist, with_idx):  # pragma: no cover - compiled
        """Sort ``keys`` (histograms already in ``hist``), carrying the column index when ``with_idx``.

        Returns the buffers that hold the result: ``(keys, idx)`` or ``(kbuf, ibuf)``.
        """
        n = keys.shape[0]
        src_k, src_i, dst_k, dst_i = keys, idx, kbuf, ibuf
        first = True
        for d in range(3):
            shift = _U32(11 * d)
            digit0 = (src_k[0] >> shift) & _DIGIT if n > 0 else _U32(0)
            if hist[d, digit0] == n:  # one bucket holds the whole row: the pass would not move anything
                continue
            total = 0
            for b in range(2048):
                c = hist[d, b]
                hist[d, b] = total
                total += c
            for j in range(n):
                k = src_k[j]
                b = (k >> shift) & _DIGIT
                pos = hist[d, b]
                hist[d, b] = pos + 1
                dst_k[pos] = k
                if with_idx:
                    dst_i[pos] = j if first else src_i[j]
            first = False
            src_k, src_i, dst_k, dst_i = dst_k, dst_i, src_k, src_i
        if first and with_idx:  # no pass ran: all keys share every digit (a constant row)
            for j in range(n):
                src_i[j] = j
        return src_k, src_i

    @_jit
    def _to_float_bits(k):  # pragma: no cover - compiled
        """Inverse of the key map (as a uint32 bit pattern)."""
        mask = _U32(_U32(_U32(0) - ((k >> _U32(31)) ^ _U32(1))) | _SIGN)
        return _U32(k ^ mask)

    @_jit
    def _sort_block(bits, out_bits, out_idx, with_idx):  # pragma: no cover - compiled
        rows, n = bits.shape
        keys = np.empty(n, np.uint32)
        kbuf = np.empty(n, np.uint32)
        idx = np.empty(n, np.int32)
        ibuf = np.empty(n, np.int32)
        hist = np.empty((3, 2048), np.int32)
        for r in range(rows):
            _keys_and_histograms(bits[r], keys, hist)
            sk, si = _radix_row(keys, idx, kbuf, ibuf, hist, with_idx)
            for j in range(n):
                out_bits[r, j] = _to_float_bits(sk[j])
            if with_idx:
                for j in range(n):
                    out_idx[r, j] = si[j]

    @_jit
    def _power_workspace(n):  # pragma: no cover - compiled
        u, i = np.uint32, np.int32
        return (
            np.empty(n, u), np.empty(n, u), np.empty(n, i), np.empty(n, i),  # x: keys, key buffer, index, buffer
            np.empty(n, u), np.empty(n, u), np.empty(n, i), np.empty(n, i),  # y: the same
            np.empty((3, 2048), np.int32), np.empty((3, 2048), np.int32),  # digit histograms of x and y
            np.empty(n, u), np.empty(n, u),  # sorted x and y values (float32 bit patterns)
        )

    @_jit
    def _power_row(p, ws, gx, gy, r, need_gx, need_gy):  # pragma: no cover - compiled
        """Cost of one pair of rows whose keys and histograms are in ``ws``; derivatives written to row ``r`` of
        gx / gy."""
        kx, kxb, ix, ixb, ky, kyb, iy, iyb, hx, hy, xs_bits, ys_bits = ws
        n = kx.shape[0]
        sx, px = _radix_row(kx, ix, kxb, ixb, hx, need_gx)
        sy, py = _radix_row(ky, iy, kyb, iyb, hy, need_gy)
        for j in range(n):
            xs_bits[j] = _to_float_bits(sx[j])
            ys_bits[j] = _to_float_bits(sy[j])
        xs, ys = xs_bits.view(np.float32), ys_bits.view(np.float32)
        scale = p / n
        acc = 0.0
        # one loop per exponent (and per gradient need) so that the common cases carry no branch inside
        if p == 2.0 and need_gx and not need_gy:
            for j in range(n):
                d = np.float64(xs[j]) - np.float64(ys[j])
                acc += d * d
                gx[r, px[j]] = scale * d
            return acc / n
        if p == 2.0 and not (need_gx or need_gy):
            for j in range(n):
                d = np.float64(xs[j]) - np.float64(ys[j])
                acc += d * d
            return acc / n
        for j in range(n):
            d = np.float64(xs[j]) - np.float64(ys[j])
            a = abs(d)
            if p == 2.0:
                acc += d * d
                g = scale * d
            elif p == 1.0:
                acc += a
                g = scale * (1.0 if d > 0 else (-1.0 if d < 0 else 0.0))
            else:
                acc += a**p
                g = scale * a ** (p - 1.0) * (1.0 if d > 0 else (-1.0 if d < 0 else 0.0))
            if need_gx:
                gx[r, px[j]] = g
            if need_gy:
                gy[r, py[j]] = -g
        return acc / n

    @_jit
    def _sorted_power_block(xbits, ybits, p, cost, gx, gy, need_gx, need_gy):  # pragma: no cover - compiled
        ws = _power_workspace(xbits.shape[1])
        for r in range(xbits.shape[0]):
            _keys_and_histograms(xbits[r], ws[0], ws[8])
            _keys_and_histograms(ybits[r], ws[4], ws[9])
            cost[r] = _power_row(p, ws, gx, gy, r, need_gx, need_gy)

    @_jit
    def _project_pair(xb, yb, t, xp, yp):  # pragma: no cover - compiled
        """``xp = xb @ t``, ``yp = yb @ t`` for one direction ``t`` (float32 rows of ``(n, dim)`` points)."""
        n, dim = xb.shape
        if dim == 3:  # unrolled: the common case, ~3x faster than the generic loop
            t0, t1, t2 = t[0], t[1], t[2]
            for j in range(n):
                xp[j] = t0 * xb[j, 0] + t1 * xb[j, 1] + t2 * xb[j, 2]
                yp[j] = t0 * yb[j, 0] + t1 * yb[j, 1] + t2 * yb[j, 2]
        else:
            for j in range(n):
                vx = np.float32(0.0)
                vy = np.float32(0.0)
                for d in range(dim):
                    vx += t[d] * xb[j, d]
                    vy += t[d] * yb[j, d]
                xp[j] = vx
                yp[j] = vy

    @_jit
    def _projected_power_block(x, y, theta, r0, r1, p, cost, gx, gy, need_gx, need_gy):  # pragma: no cover
        """Rows ``r0 <= r < r1`` of the flattened ``(B, L)`` grid: row ``r = b L + l`` projects ``x[b]`` and
        ``y[b]`` on ``theta[b or 0, l]`` (float32 dot products), then :func:`_power_row`. (Computing the keys in
        the projection loop measured slower: it no longer vectorises.)"""
        n = x.shape[1]
        n_dir = theta.shape[1]
        ws = _power_workspace(n)
        xbits = np.empty(n, np.uint32)  # projected values (as bits), then keys and histograms in ws
        ybits = np.empty(n, np.uint32)
        xp = xbits.view(np.float32)
        yp = ybits.view(np.float32)
        for r in range(r0, r1):
            b, l = r // n_dir, r % n_dir
            t = theta[b if theta.shape[0] > 1 else 0, l]
            xb, yb = x[b], y[b]
            _project_pair(xb, yb, t, xp, yp)
            _keys_and_histograms(xbits, ws[0], ws[8])
            _keys_and_histograms(ybits, ws[4], ws[9])
            cost[r] = _power_row(p, ws, gx, gy, r, need_gx, need_gy)


    @_jit
    def _power_row_acc(p, ws, xb, yb, t, wl, ax, ay, bl, tg, need_ax, need_ay, need_t, gbx, gby):  # pragma: no cover
        """:func:`_power_row` that adds ``wl * d cost / d x_k * theta`` into ``ax[bl, k]`` (``ay`` likewise) and
        ``sum_k d cost / d <theta, x_k> x_k + d cost / d <theta, y_k> y_k`` into ``tg`` instead of storing the
        derivatives of the row.

        With non-empty ``gbx`` / ``gby`` (length ``n``) the scaled derivatives are first scattered there through the
        permutation (4-byte stores), then added to ``ax`` / ``ay`` in one sequential pass: on long rows this is ~10x
        cheaper than read-modify-writes of ``(n, D)`` rows at random positions (the stores do not wait on loads).
        The sums are the same, in the same float32 operations."""
        kx, kxb, ix, ixb, ky, kyb, iy, iyb, hx, hy, xs_bits, ys_bits = ws
        n = kx.shape[0]
        dim = xb.shape[1]
        with_x = need_ax or need_t
        with_y = need_ay or need_t
        sx, px = _radix_row(kx, ix, kxb, ixb, hx, with_x)
        sy, py = _radix_row(ky, iy, kyb, iyb, hy, with_y)
        for j in range(n):
            xs_bits[j] = _to_float_bits(sx[j])
            ys_bits[j] = _to_float_bits(sy[j])
        xs, ys = xs_bits.view(np.float32), ys_bits.view(np.float32)
        scale = p / n
        acc = 0.0
        t0, t1, t2 = np.float32(0.0), np.float32(0.0), np.float32(0.0)
        if dim == 3:
            t0, t1, t2 = t[0], t[1], t[2]
        buf_x = need_ax and gbx.shape[0] == n
        buf_y = need_ay and gby.shape[0] == n
        for j in range(n):
            d = np.float64(xs[j]) - np.float64(ys[j])
            if p == 2.0:
                acc += d * d
                g = scale * d
            elif p == 1.0:
                acc += abs(d)
                g = scale * (1.0 if d > 0 else (-1.0 if d < 0 else 0.0))
            else:
                a = abs(d)
                acc += a**p
                g = scale * a ** (p - 1.0) * (1.0 if d > 0 else (-1.0 if d < 0 else 0.0))
            gf = np.float32(g)  # the derivative as the stored-row path keeps it
            if need_ax:
                c = np.float32(wl * gf)
                k = px[j]
                if buf_x:
                    gbx[k] = c
                elif dim == 3:
                    ax[bl, k, 0] += c * t0
                    ax[bl, k, 1] += c * t1
                    ax[bl, k, 2] += c * t2
                else:
                    for e in range(dim):
                        ax[bl, k, e] += c * t[e]
            if need_ay:
                c = np.float32(wl * gf)
                k = py[j]
                if buf_y:
                    gby[k] = c
                elif dim == 3:
                    ay[bl, k, 0] -= c * t0
                    ay[bl, k, 1] -= c * t1
                    ay[bl, k, 2] -= c * t2
                else:
                    for e in range(dim):
                        ay[bl, k, e] -= c * t[e]
            if need_t:
                kx_, ky_ = px[j], py[j]
                for e in range(dim):
                    tg[e] += np.float64(gf) * (np.float64(xb[kx_, e]) - np.float64(yb[ky_, e]))
        if buf_x:
            _add_outer(ax[bl], gbx, t, np.float32(1.0))
        if buf_y:
            _add_outer(ay[bl], gby, t, np.float32(-1.0))
        return acc / n

    @_jit
    def _add_outer(a, g, t, sign):  # pragma: no cover - compiled
        """``a[k] += sign * g[k] t`` (``a`` ``(n, D)``, ``g`` ``(n,)``): ``ax[k, e] += c * t[e]`` or ``-= c * t[e]``
        as the unbuffered loop does."""
        n, dim = a.shape
        if dim == 3:
            t0, t1, t2 = sign * t[0], sign * t[1], sign * t[2]
            for k in range(n):
                c = g[k]
                a[k, 0] += c * t0
                a[k, 1] += c * t1
                a[k, 2] += c * t2
        else:
            for k in range(n):
                c = g[k]
                for e in range(dim):
                    a[k, e] += c * (sign * t[e])

    @_jit
    def _projected_grads_block(x, y, theta, w, r0, r1, b0, p, cost, ax, ay, tg, need_ax, need_ay, need_t):
        """Rows ``r0 <= r < r1`` of the flattened ``(B, L)`` grid (see :func:`_projected_power_block`); the point
        derivatives go to ``ax[b - b0]`` / ``ay[b - b0]`` (this block's own buffers), the direction ones to
        ``tg[r]``."""  # pragma: no cover - compiled
        n = x.shape[1]
        n_dir = theta.shape[1]
        ws = _power_workspace(n)
        xbits = np.empty(n, np.uint32)
        ybits = np.empty(n, np.uint32)
        xp = xbits.view(np.float32)
        yp = ybits.view(np.float32)
        long_rows = n >= ACC_BUFFER_MIN
        gbx = np.empty(n if need_ax and long_rows else 0, np.float32)
        gby = np.empty(n if need_ay and long_rows else 0, np.float32)
        for r in range(r0, r1):
            b, l = r // n_dir, r % n_dir
            t = theta[b if theta.shape[0] > 1 else 0, l]
            xb, yb = x[b], y[b]
            _project_pair(xb, yb, t, xp, yp)
            _keys_and_histograms(xbits, ws[0], ws[8])
            _keys_and_histograms(ybits, ws[4], ws[9])
            cost[r] = _power_row_acc(p, ws, xb, yb, t, w[b, l], ax, ay, b - b0, tg[r], need_ax, need_ay, need_t,
                                     gbx, gby)


def _check_rows(*arrays: np.ndarray) -> None:
    for a in arrays:
        if a.dtype != np.float32 or a.ndim != 2 or not a.flags.c_contiguous:
            raise TypeError(f"radix kernels take C-contiguous 2-D float32 arrays, got {a.dtype} {a.shape}")
        if a.shape[-1] >= (1 << 31):
            raise ValueError(f"rows of {a.shape[-1]} values are too long for 32-bit indices")


def sort_rows(arr: np.ndarray, *, with_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Sort each row of ``arr`` ``(R, N)`` float32 (stable; ``-0.0`` before ``+0.0``; NaNs are not expected).

    Returns:
        ``(sorted (R, N) float32, permutation (R, N) int64 or None)`` with ``sorted = take_along_axis(arr, perm)``.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed: the radix kernels are unavailable")
    _check_rows(arr)
    out = np.empty_like(arr)
    idx = np.empty(arr.shape, dtype=np.int64) if with_indices else np.empty((0, 0), dtype=np.int64)
    bits, out_bits = arr.view(np.uint32), out.view(np.uint32)

    def job(sl: slice) -> None:
        _sort_block(bits[sl], out_bits[sl], idx[sl] if with_indices else idx, with_indices)

    if arr.size:
        run_row_blocks(arr.shape[0], arr.shape[1] * 4, job, first_alone=not _sort_block.signatures)
    return out, (idx if with_indices else None)


def sorted_power_rows(
    x: np.ndarray, y: np.ndarray, p: float, *, need_gx: bool, need_gy: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``W_p^p`` between the empirical measures of the rows of ``x`` and ``y`` ``(R, n)`` float32 (uniform weights),
    and its derivatives.

    ``cost_r = (1/n) sum_i |x_r(i) - y_r(i)|^p`` (sorted values), summed in float64; ``gx[r, k] = d cost_r / d
    x[r, k] = (p/n) |x_k - y_(rank(k))|^(p-1) sign(x_k - y_(rank(k)))`` and ``gy`` its negative at the matched
    positions (the derivative through the sort is the derivative at the sorted order, as in ``torch.sort``).

    Returns:
        ``(cost (R,) float64, gx (R, n) float32 or None, gy (R, n) float32 or None)``.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed: the radix kernels are unavailable")
    _check_rows(x, y)
    if x.shape != y.shape:
        raise ValueError(f"rows must match, got {x.shape} and {y.shape}")
    rows = x.shape[0]
    cost = np.empty(rows, dtype=np.float64)
    gx = np.empty_like(x) if need_gx else np.empty((0, 0), np.float32)
    gy = np.empty_like(y) if need_gy else np.empty((0, 0), np.float32)
    xb, yb = x.view(np.uint32), y.view(np.uint32)

    def job(sl: slice) -> None:
        _sorted_power_block(
            xb[sl], yb[sl], float(p), cost[sl], gx[sl] if need_gx else gx, gy[sl] if need_gy else gy,
            need_gx, need_gy,
        )

    if x.size:
        run_row_blocks(rows, x.shape[1] * 8, job, first_alone=not _sorted_power_block.signatures)
    return cost, (gx if need_gx else None), (gy if need_gy else None)


def projected_power(
    x: np.ndarray, y: np.ndarray, theta: np.ndarray, p: float, *, need_gx: bool, need_gy: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`sorted_power_rows` of the projections ``x[b] @ theta[b, l]`` and ``y[b] @ theta[b, l]``, computed on
    the fly (the ``(B, L, n)`` projected values are never stored).

    Args:
        x, y: ``(B, n, D)`` float32, C-contiguous.
        theta: ``(B, L, D)`` or ``(1, L, D)`` float32 directions.

    Returns:
        ``(cost (B, L) float64, gx (B, L, n) or None, gy (B, L, n) or None)``: the derivatives with respect to the
        projected values, at the original positions of the points.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed: the radix kernels are unavailable")
    for a in (x, y, theta):
        if a.dtype != np.float32 or a.ndim != 3 or not a.flags.c_contiguous:
            raise TypeError(f"projected_power takes C-contiguous 3-D float32 arrays, got {a.dtype} {a.shape}")
    bsz, n, dim = x.shape
    if y.shape != x.shape or theta.shape[-1] != dim or theta.shape[0] not in (1, bsz):
        raise ValueError(f"shapes do not match: x {x.shape}, y {y.shape}, theta {theta.shape}")
    if n >= (1 << 31):
        raise ValueError(f"rows of {n} values are too long for 32-bit indices")
    rows = bsz * theta.shape[1]
    cost = np.empty(rows, dtype=np.float64)
    gx = np.empty((rows, n), np.float32) if need_gx else np.empty((0, 0), np.float32)
    gy = np.empty((rows, n), np.float32) if need_gy else np.empty((0, 0), np.float32)

    def job(sl: slice) -> None:
        _projected_power_block(x, y, theta, sl.start, sl.stop, float(p), cost, gx, gy, need_gx, need_gy)

    if rows and n:
        run_row_blocks(rows, n * 8, job, first_alone=not _projected_power_block.signatures)
    shape = (bsz, theta.shape[1])
    return (
        cost.reshape(shape),
        gx.reshape(*shape, n) if need_gx else None,
        gy.reshape(*shape, n) if need_gy else None,
    )


def projected_power_grads(
    x: np.ndarray, y: np.ndarray, theta: np.ndarray, p: float, *, weights: np.ndarray | None = None,
    need_x: bool, need_y: bool, need_theta: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """:func:`projected_power` with the derivatives reduced inside the kernel: nothing of size ``(B, L, n)`` is
    stored.

    With ``G[b, l, k] = d cost[b, l] / d <theta_l, x_bk>`` (and ``H`` for ``y``), the kernel accumulates
    ``dx[b, k] = sum_l w[b, l] G[b, l, k] theta_l``, ``dy[b, k] = sum_l w[b, l] H[b, l, k] theta_l`` and
    ``dtheta[b, l] = sum_k G[b, l, k] x_bk + H[b, l, k] y_bk`` while it walks each sorted row. The rows are split
    into one contiguous range per thread, each with its own ``dx`` / ``dy`` buffer over the items it touches (summed
    at the end), so the memory is ``O(threads n D)`` instead of ``O(B L n)``.

    Args:
        x, y: ``(B, n, D)`` float32, C-contiguous.
        theta: ``(B, L, D)`` or ``(1, L, D)`` float32 directions.
        p: order.
        weights: ``(B, L)`` float32 weights ``w`` of the rows in ``dx``, ``dy`` (default 1).
        need_x, need_y, need_theta: which derivatives to accumulate.

    Returns:
        ``(cost (B, L) float64, dx (B, n, D) float32 | None, dy (B, n, D) float32 | None,
        dtheta (B, L, D) float64 | None)`` (``dtheta`` unweighted).
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed: the radix kernels are unavailable")
    for a in (x, y, theta):
        if a.dtype != np.float32 or a.ndim != 3 or not a.flags.c_contiguous:
            raise TypeError(f"projected_power_grads takes C-contiguous 3-D float32 arrays, got {a.dtype} {a.shape}")
    bsz, n, dim = x.shape
    if y.shape != x.shape or theta.shape[-1] != dim or theta.shape[0] not in (1, bsz):
        raise ValueError(f"shapes do not match: x {x.shape}, y {y.shape}, theta {theta.shape}")
    if n >= (1 << 31):
        raise ValueError(f"rows of {n} values are too long for 32-bit indices")
    n_dir = theta.shape[1]
    rows = bsz * n_dir
    w = np.ones((bsz, n_dir), np.float32) if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
    if w.shape != (bsz, n_dir):
        raise ValueError(f"weights: expected shape {(bsz, n_dir)}, got {w.shape}")
    cost = np.empty(rows, dtype=np.float64)
    tg = np.zeros((rows, dim) if need_theta else (0, dim), np.float64)
    dx = np.zeros((bsz, n, dim), np.float32) if need_x else None
    dy = np.zeros((bsz, n, dim), np.float32) if need_y else None
    if not (rows and n):
        return cost.reshape(bsz, n_dir), dx, dy, tg.reshape(bsz, n_dir, dim) if need_theta else None
    empty = np.zeros((0, 0, dim), np.float32)

    def job(sl: slice) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        b0, b1 = sl.start // n_dir, (sl.stop - 1) // n_dir + 1
        ax = np.zeros((b1 - b0, n, dim), np.float32) if need_x else empty
        ay = np.zeros((b1 - b0, n, dim), np.float32) if need_y else empty
        _projected_grads_block(x, y, theta, w, sl.start, sl.stop, b0, float(p), cost, ax, ay, tg, need_x, need_y,
                               need_theta)
        return b0, (ax if need_x else None), (ay if need_y else None)

    compiled = bool(_projected_grads_block.signatures)
    workers = min(torch.get_num_threads(), rows) if compiled and rows * n * 8 >= SERIAL_BYTES else 1
    bounds = [rows * i // workers for i in range(workers + 1)]
    blocks = [slice(bounds[i], bounds[i + 1]) for i in range(workers)]
    if workers == 1:
        parts = [job(blocks[0])]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(job, blocks))
    for b0, ax, ay in parts:
        if ax is not None:
            dx[b0 : b0 + ax.shape[0]] += ax
        if ay is not None:
            dy[b0 : b0 + ay.shape[0]] += ay
    return cost.reshape(bsz, n_dir), dx, dy, tg.reshape(bsz, n_dir, dim) if need_theta else None
