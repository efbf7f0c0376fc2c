"""Row-wise LSD radix sort of float32 values (and their permutation), compiled with numba when it is installed.

The CPU sort path of the sliced losses spends most of its time sorting ``L x N`` projected values. A least-
significant-digit radix sort does it in ``O(N)`` per row: each float32 is mapped to an unsigned 32-bit key with the
same order (flip every bit of a negative number, only the sign bit of a non-negative one, so that ``-inf < ... <
-0.0 < +0.0 < ... < +inf``), then 3 stable counting passes of 11, 11 and 10 bits move the keys (and the column indices)
between two buffers; a pass whose digit is the same for the whole row is skipped. Measured on the 2-core
development machine (one thread): 100 x 100,000 rows with their permutation in 0.06 s, against 0.39 s for numpy's
SIMD sort of packed uint64 words and 0.23 s for ``numpy.sort`` of the values alone; 6,400 x 2,048 rows in 0.08 s
(0.12 s for ``numpy.sort`` of the values).

Long rows with their permutation (from :data:`BUCKET_MIN` values) no longer fit the cache across three passes; they
are sorted by one pass on the value instead: ``~n / 1024`` equal-width intervals of ``[min, max]`` are counted, the
``key << 32 | column`` items moved there in column order, and each interval (a few thousand bytes) is LSD-sorted in
the cache on the bits its keys span (:func:`_bucket_pass`, :func:`_sort_buckets`; rows with a non-finite value, a
constant row or a range that overflows keep the three passes). Same order as the LSD sort: keys, ties by column.
Measured (one thread, shared machine): 1,000,000 values with their permutation in 9.4-11 ms against 21-28 ms for
the three passes and 8.2-8.7 ms for ``numpy.sort`` of the values alone.

:func:`sorted_power_rows` fuses the sort path of ``W_p^p`` on the line: both rows are sorted, the cost
``(1/n) sum_i |x_(i) - y_(i)|^p`` is summed in float64, and the derivatives ``d/dx_k`` are written straight back to
the original positions through the permutation (no sorted copy and no scatter pass in torch).

:func:`projected_power_grads` reduces the derivatives to the points inside the kernel, through a length-``n``
buffer per row (scattered 4-byte stores, then one sequential pass over ``(n, D)``); from :data:`PRESORT_MIN` values,
when only the first point set needs derivatives, the projected rows of the second one are sorted by ``numpy.sort``
outside the kernel (numpy's SIMD sort beats the LSD passes once the rows leave the cache).

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
    "ACC_BUFFER_MIN", "AVAILABLE", "BUCKET_MIN", "BUCKET_MIN_VALUES", "MIN_LENGTH", "MIN_LENGTH_VALUES", "PRESORT_MIN",
    "projected_power", "projected_power_grads", "sort_rows", "sorted_power_rows",
]

# Shorter rows are left to numpy, whose small-array sorts win there (the 3 x 2048 histogram work per row dominates
# the radix sort): measured break-even ~400 values with the permutation, ~1,000 for values alone.
MIN_LENGTH = 512
MIN_LENGTH_VALUES = 1024
# From this row length the point derivatives go through a length-n buffer (see _power_row_acc): measured faster from
# 512 values (one thread, forward + derivatives: 0.92x the time at n = 512, 0.76x at 2,048, 0.66x at 32,768).
ACC_BUFFER_MIN = 512
# From these row lengths rows are sorted by one bucket pass on the value then cache-sized LSD sorts
# (_bucket_sort_row) instead of three LSD passes over the whole row, whose keys and columns no longer stay in the
# cache. Measured crossovers (one thread): 100,000-130,000 values with the permutation; without it the LSD passes
# were as fast up to 1,000,000 values (the bucket pass moves 4-byte keys but pays a counting pass and per-bucket
# sorts).
BUCKET_MIN = 131072
BUCKET_MIN_VALUES = 1 << 21
# From this row length projected_power_grads sorts the second row of a pair with numpy.sort (in place, GIL released)
# when only the first one needs its permutation: numpy's SIMD sort beats the LSD passes once the rows leave the cache.
PRESORT_MIN = 1 << 19

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
    _U64 = np.uint64
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
                pos = _U32(hist[d, b])  # unsigned: no negative-index handling in the stores
                hist[d, b] = pos + _U32(1)
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

    _KEY_NEG_INF = np.uint32(0x007FFFFF)  # keys of -inf and +inf: anything outside (KEY_NEG_INF, KEY_POS_INF) is
    _KEY_POS_INF = np.uint32(0xFF800000)  # not finite
    _LOW = np.uint64(0xFFFFFFFF)

    @_jit
    def _bucket_workspace(n):  # pragma: no cover - compiled
        """Buffers of :func:`_bucket_sort_row` for rows of ``n`` values (empty below :data:`BUCKET_MIN`)."""
        m = n if n >= min(BUCKET_MIN, BUCKET_MIN_VALUES) else 0
        nbuck = 64
        while nbuck < 4096 and nbuck * 1024 < m:
            nbuck *= 2
        # items (key << 32 | column), a scratch buffer for one bucket, bucket bounds, one-value float scratch
        return np.empty(m, np.uint64), np.empty(m, np.uint64), np.empty(nbuck + 1, np.int64), np.empty(2, np.uint32)

    @_jit
    def _lsd_items(a, lo, hi, shift, tmp, hist, keys, idx, s0, with_idx):  # pragma: no cover - compiled
        """Stable LSD sort of the items ``a`` by their keys ``(a >> shift) - lo`` (all in ``[0, hi - lo]``, ``hi >
        lo``): as many counting passes of at most 11 bits as the span needs, between ``a`` and ``tmp``; the last
        pass writes the values (float32 bit patterns; and the columns, the low 32 bits of the items, when
        ``with_idx``) straight to ``keys[s0:]`` / ``idx[s0:]``."""
        m = a.shape[0]
        span = hi - lo
        nbits = 0
        while span > 0:
            nbits += 1
            span >>= _U32(1)
        passes = (nbits + 10) // 11
        dbits = (nbits + passes - 1) // passes
        nb = 1 << dbits
        dmask = _U32(nb - 1)
        src, dst = a, tmp[:m]
        for p in range(passes):  # uint32 counts and positions: no sign handling in the loops (~15% faster)
            sh = _U32(p * dbits)
            for b in range(nb):
                hist[b] = 0
            for j in range(m):
                hist[(_U32(_U32(src[j] >> shift) - lo) >> sh) & dmask] += _U32(1)
            total = _U32(s0) if p == passes - 1 else _U32(0)  # the last pass writes at s0 in keys / idx
            for b in range(nb):
                c = hist[b]
                hist[b] = total
                total += c
            if p < passes - 1:
                for j in range(m):
                    it = src[j]
                    d = (_U32(_U32(it >> shift) - lo) >> sh) & dmask
                    pos = hist[d]
                    hist[d] = pos + _U32(1)
                    dst[pos] = it
                src, dst = dst, src
            else:
                for j in range(m):
                    it = src[j]
                    d = (_U32(_U32(it >> shift) - lo) >> sh) & dmask
                    pos = hist[d]
                    hist[d] = pos + _U32(1)
                    keys[pos] = _to_float_bits(_U32(it >> shift))
                    if with_idx:
                        idx[pos] = np.int32(it & _LOW)

    @_jit
    def _insertion_items(a):  # pragma: no cover - compiled
        """Insertion sort of a few items (stable: equal keys keep their columns' order, which is the item order)."""
        for i in range(1, a.shape[0]):
            it = a[i]
            j = i - 1
            while j >= 0 and a[j] > it:
                a[j + 1] = a[j]
                j -= 1
            a[j + 1] = it

    @_jit
    def _bucket_sort_row(bits, keys, idx, lw, with_idx):  # pragma: no cover - compiled
        """Sort one long row of float32 bit patterns into ``keys`` (sorted bit patterns) and the permutation into
        ``idx``.

        One pass counts the values in ``nbuck`` equal-width intervals of ``[min, max]`` (``nbuck ~ n / 1024``), a
        second one moves ``key << 32 | column`` items there (stable); each interval (a few thousand bytes, in the
        cache) is then sorted by :func:`_lsd_items` on the bits its keys span, or by insertion when it holds at
        most 16 items. Bucket of a value: ``min(int((v - min) * nbuck / (max - min)), nbuck - 1)``, non-decreasing
        in ``v`` (float32 subtraction and scaling round monotonically), equal for ``-0.0`` and ``+0.0``, so the
        whole row ends in key order, ties in column order. Returns False (nothing written) when the row holds a
        non-finite value, is constant, or its range overflows: the LSD path sorts those rows.
        """
        items, scratch, bounds, one = lw
        n = bits.shape[0]
        nbuck = bounds.shape[0] - 1
        if items.shape[0] < n:  # a workspace for shorter rows
            return False
        klo, khi = _U32(0xFFFFFFFF), _U32(0)
        for j in range(n):
            mask = _U32(_U32(_U32(0) - (bits[j] >> _U32(31))) | _SIGN)
            k = _U32(bits[j] ^ mask)
            klo = min(klo, k)
            khi = max(khi, k)
        if klo <= _KEY_NEG_INF or khi >= _KEY_POS_INF or klo == khi:
            return False
        one[0] = _to_float_bits(klo)
        one[1] = _to_float_bits(khi)
        lohi = one.view(np.float32)
        lo = lohi[0]
        width = lohi[1] - lo
        if not (width > 0.0 and width < np.inf):  # only -0.0 and +0.0, or an overflow
            return False
        scale = np.float32(nbuck) / width
        if not scale < np.inf:
            return False
        vals = bits.view(np.float32)
        top = _U32(nbuck - 1)  # unsigned indices: no negative-index wraparound in the two loops below
        bounds[:] = 0
        count = bounds[1:]
        for j in range(n):
            count[min(_U32(np.int32((vals[j] - lo) * scale)), top)] += 1
        for b in range(nbuck):
            bounds[b + 1] += bounds[b]
        fill = bounds[:nbuck].astype(np.uint64)
        if with_idx:  # items: key << 32 | column
            for j in range(n):
                b = min(_U32(np.int32((vals[j] - lo) * scale)), top)
                pos = fill[b]
                fill[b] = pos + _U64(1)
                mask = _U32(_U32(_U32(0) - (bits[j] >> _U32(31))) | _SIGN)
                items[pos] = (_U64(_U32(bits[j] ^ mask)) << _U64(32)) | _U64(j)
            _sort_buckets(items, bounds, scratch, keys, idx, _U64(32), True)
        else:  # items: the keys alone (half the bytes to move)
            items32, scratch32 = items.view(np.uint32), scratch.view(np.uint32)
            for j in range(n):
                b = min(_U32(np.int32((vals[j] - lo) * scale)), top)
                pos = fill[b]
                fill[b] = pos + _U64(1)
                mask = _U32(_U32(_U32(0) - (bits[j] >> _U32(31))) | _SIGN)
                items32[pos] = _U32(bits[j] ^ mask)
            _sort_buckets(items32, bounds, scratch32, keys, idx, _U32(0), False)
        return True

    @_jit
    def _sort_buckets(items, bounds, scratch, keys, idx, sh, with_idx):  # pragma: no cover - compiled
        """Sort each bucket ``items[bounds[b]:bounds[b + 1]]`` (by the keys ``items >> sh``) and write the values
        (float32 bit patterns; and the columns, the low 32 bits, when ``with_idx``) to ``keys`` / ``idx`` at the same
        positions."""
        hist = np.empty(2048, np.uint32)
        for b in range(bounds.shape[0] - 1):
            s0, s1 = bounds[b], bounds[b + 1]
            m = s1 - s0
            if m == 0:
                continue
            a = items[s0:s1]
            if m <= 16:
                _insertion_items(a)
            else:
                blo, bhi = _U32(0xFFFFFFFF), _U32(0)
                for j in range(m):
                    k = _U32(a[j] >> sh)
                    blo = min(blo, k)
                    bhi = max(bhi, k)
                if bhi > blo:
                    _lsd_items(a, blo, bhi, sh, scratch, hist, keys, idx, s0, with_idx)
                    continue
            for j in range(m):
                keys[s0 + j] = _to_float_bits(_U32(a[j] >> sh))
            if with_idx:
                for j in range(m):
                    idx[s0 + j] = np.int32(a[j] & _LOW)

    @_jit
    def _row_sort(bits, keys, idx, kbuf, ibuf, hist, lw, with_idx):  # pragma: no cover - compiled
        """Sort one row of float32 bit patterns: the sorted bit patterns (and the permutation when ``with_idx``) in
        the returned pair of arrays (``keys, idx`` or ``kbuf, ibuf``). Long rows go through
        :func:`_bucket_sort_row` (the LSD passes when it declines), others through :func:`_keys_and_histograms` and
        :func:`_radix_row`."""
        n = bits.shape[0]
        if lw[0].shape[0] == n and n >= (BUCKET_MIN if with_idx else BUCKET_MIN_VALUES):
            if _bucket_sort_row(bits, keys, idx, lw, with_idx):
                return keys, idx
        _keys_and_histograms(bits, keys, hist)
        sk, si = _radix_row(keys, idx, kbuf, ibuf, hist, with_idx)
        for j in range(sk.shape[0]):
            sk[j] = _to_float_bits(sk[j])
        return sk, si

    @_jit
    def _sort_block(bits, out_bits, out_idx, with_idx):  # pragma: no cover - compiled
        rows, n = bits.shape
        keys = np.empty(n, np.uint32)
        kbuf = np.empty(n, np.uint32)
        idx = np.empty(n, np.int32)
        ibuf = np.empty(n, np.int32)
        hist = np.empty((3, 2048), np.int32)
        lw = _bucket_workspace(n)
        for r in range(rows):
            sk, si = _row_sort(bits[r], keys, idx, kbuf, ibuf, hist, lw, with_idx)
            for j in range(n):
                out_bits[r, j] = sk[j]
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
            _bucket_workspace(n),  # shared by the bucket sorts of x and y
        )

    @_jit
    def _power_row(p, ws, xbits, ybits, gx, gy, r, need_gx, need_gy):  # pragma: no cover - compiled
        """Cost of one pair of rows of float32 bit patterns (sorted with the buffers of ``ws``); derivatives written
        to row ``r`` of gx / gy."""
        kx, kxb, ix, ixb, ky, kyb, iy, iyb, hx, hy, lw = ws
        n = kx.shape[0]
        sx, px = _row_sort(xbits, kx, ix, kxb, ixb, hx, lw, need_gx)
        sy, py = _row_sort(ybits, ky, iy, kyb, iyb, hy, lw, need_gy)
        xs, ys = sx.view(np.float32), sy.view(np.float32)
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
            cost[r] = _power_row(p, ws, xbits[r], ybits[r], gx, gy, r, need_gx, need_gy)

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
            cost[r] = _power_row(p, ws, xbits, ybits, gx, gy, r, need_gx, need_gy)


    @_jit
    def _power_row_acc(p, ws, xbits, ybits, xb, yb, t, wl, ax, ay, bl, tg, need_ax, need_ay, need_t, gbx, gby):
        """:func:`_power_row` that adds ``wl * d cost / d x_k * theta`` into ``ax[bl, k]`` (``ay`` likewise) and
        ``sum_k d cost / d <theta, x_k> x_k + d cost / d <theta, y_k> y_k`` into ``tg`` instead of storing the
        derivatives of the row.

        With non-empty ``gbx`` / ``gby`` (length ``n``) the scaled derivatives are first scattered there through the
        permutation (4-byte stores), then added to ``ax`` / ``ay`` in one sequential pass: cheaper than
        read-modify-writes of ``(n, D)`` rows at random positions (the stores do not wait on loads; ~10x on rows of
        1,000,000 points, whose ``(n, 3)`` rows leave the cache). The sums are the same, in the same float32
        operations."""
        kx, kxb, ix, ixb, ky, kyb, iy, iyb, hx, hy, lw = ws
        with_x = need_ax or need_t
        with_y = need_ay or need_t
        sx, px = _row_sort(xbits, kx, ix, kxb, ixb, hx, lw, with_x)
        sy, py = _row_sort(ybits, ky, iy, kyb, iyb, hy, lw, with_y)
        return _combine_acc(p, sx.view(np.float32), sy.view(np.float32), px, py, xb, yb, t, wl, ax, ay, bl, tg, need_ax,
                            need_ay, need_t, gbx, gby, False)

    @_jit
    def _presorted_row_acc(p, ws, xbits, ys, xb, t, wl, ax, bl, need_ax, gbx, defer):  # pragma: no cover - compiled
        """:func:`_power_row_acc` for the point derivatives of ``x`` alone, the sorted values ``ys`` of the other
        row given (the caller sorts them with ``numpy.sort``); ``xbits`` holds the projected ``x`` row. With
        ``defer`` the derivatives are left in ``gbx`` (the caller adds them, :func:`_add_outer_rows`)."""
        kx, kxb, ix, ixb, _, _, iy, _, hx, _, lw = ws
        sx, px = _row_sort(xbits, kx, ix, kxb, ixb, hx, lw, need_ax)
        no_t = np.zeros(0, np.float64)
        return _combine_acc(p, sx.view(np.float32), ys, px, iy, xb, xb, t, wl, ax, ax, bl, no_t, need_ax, False, False,
                            gbx, gbx, defer)

    @_jit
    def _project_row(xb, t, out):  # pragma: no cover - compiled
        """``out = xb @ t`` (float32, ``xb`` ``(n, dim)``)."""
        n, dim = xb.shape
        if dim == 3:
            t0, t1, t2 = t[0], t[1], t[2]
            for j in range(n):
                out[j] = t0 * xb[j, 0] + t1 * xb[j, 1] + t2 * xb[j, 2]
        else:
            for j in range(n):
                v = np.float32(0.0)
                for d in range(dim):
                    v += t[d] * xb[j, d]
                out[j] = v

    @_jit
    def _combine_acc(p, xs, ys, px, py, xb, yb, t, wl, ax, ay, bl, tg, need_ax, need_ay, need_t, gbx, gby, defer):
        """The cost of two sorted rows and the derivative sums of :func:`_power_row_acc` (with ``defer``, buffered
        derivatives stay in ``gbx`` / ``gby``)."""  # pragma: no cover
        n = xs.shape[0]
        dim = xb.shape[1]
        scale = p / n
        acc = 0.0
        t0, t1, t2 = np.float32(0.0), np.float32(0.0), np.float32(0.0)
        if dim == 3:
            t0, t1, t2 = t[0], t[1], t[2]
        buf_x = need_ax and gbx.shape[0] == n
        buf_y = need_ay and gby.shape[0] == n
        if p == 2.0 and buf_x and not (need_ay or need_t):  # the common case, without a branch in the loop
            for j in range(n):
                d = np.float64(xs[j]) - np.float64(ys[j])
                acc += d * d
                gbx[_U32(px[j])] = np.float32(wl * np.float32(scale * d))
            if not defer:
                _add_outer(ax[bl], gbx, t, np.float32(1.0))
            return acc / n
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
        if buf_x and not defer:
            _add_outer(ax[bl], gbx, t, np.float32(1.0))
        if buf_y and not defer:
            _add_outer(ay[bl], gby, t, np.float32(-1.0))
        return acc / n

    @_jit
    def _add_outer_rows(a, g, t):  # pragma: no cover - compiled
        """``a[k] += g[0, k] t[0]``, then ``+= g[1, k] t[1]``, ...: :func:`_add_outer` of several rows in one pass
        over ``a`` (the same float32 operations in the same order)."""
        n, dim = a.shape
        rows = g.shape[0]
        if dim == 3:
            for k in range(n):
                s0, s1, s2 = a[k, 0], a[k, 1], a[k, 2]
                for r in range(rows):
                    c = g[r, k]
                    s0 += c * t[r, 0]
                    s1 += c * t[r, 1]
                    s2 += c * t[r, 2]
                a[k, 0], a[k, 1], a[k, 2] = s0, s1, s2
        else:
            for k in range(n):
                for r in range(rows):
                    c = g[r, k]
                    for e in range(dim):
                        a[k, e] += c * t[r, e]

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
            cost[r] = _power_row_acc(p, ws, xbits, ybits, xb, yb, t, w[b, l], ax, ay, b - b0, tg[r], need_ax, need_ay,
                                     need_t, gbx, gby)


_ADD_ROWS = 4


def _presorted_rows(x, y, theta, w, r0, r1, b0, p, cost, ax, need_x) -> None:
    """Rows ``r0 <= r < r1`` of :func:`projected_power_grads` with the point derivatives of ``x`` alone: each
    projected ``y`` row is sorted by ``numpy.sort`` (in place), then one kernel projects and sorts the ``x`` row
    and leaves its derivatives in a buffer; the buffers of up to :data:`_ADD_ROWS` rows of one item are added to
    the ``(n, D)`` sums in one pass (a quarter of the read-modify-write traffic)."""
    n = x.shape[1]
    n_dir = theta.shape[1]
    ws = _power_workspace(n)
    xbits = np.empty(n, np.uint32)
    ys = np.empty(n, np.float32)
    gbuf = np.empty((_ADD_ROWS, n) if need_x else (1, 0), np.float32)
    tbuf = np.empty((_ADD_ROWS, x.shape[2]), np.float32)
    held = 0
    for r in range(r0, r1):
        b, l = divmod(r, n_dir)
        t = theta[b if theta.shape[0] > 1 else 0, l]
        _project_row(y[b], t, ys)
        ys.sort()
        _project_row(x[b], t, xbits.view(np.float32))
        cost[r] = _presorted_row_acc(p, ws, xbits, ys, x[b], t, w[b, l], ax, b - b0, need_x, gbuf[held], True)
        if need_x:
            tbuf[held] = t
            held += 1
            if held == _ADD_ROWS or r + 1 == r1 or (r + 1) // n_dir != b:
                _add_outer_rows(ax[b - b0], gbuf[:held], tbuf[:held])
                held = 0


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

    presort = n >= PRESORT_MIN and not (need_y or need_theta)

    def job(sl: slice) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        b0, b1 = sl.start // n_dir, (sl.stop - 1) // n_dir + 1
        ax = np.zeros((b1 - b0, n, dim), np.float32) if need_x else empty
        ay = np.zeros((b1 - b0, n, dim), np.float32) if need_y else empty
        if presort:
            _presorted_rows(x, y, theta, w, sl.start, sl.stop, b0, float(p), cost, ax, need_x)
            return b0, (ax if need_x else None), None
        _projected_grads_block(x, y, theta, w, sl.start, sl.stop, b0, float(p), cost, ax, ay, tg, need_x, need_y,
                               need_theta)
        return b0, (ax if need_x else None), (ay if need_y else None)

    workers = min(torch.get_num_threads(), rows) if rows * n * 8 >= SERIAL_BYTES else 1
    if workers > 1 and not (_presorted_row_acc if presort else _projected_grads_block).signatures:
        # compile (or load from the disk cache) once, in this thread, on two points: the same row split as later
        # calls, so the float32 sums do not depend on whether the kernels were ready
        tiny = np.zeros((1, 2, dim), np.float32)
        job_on = _presorted_rows if presort else _projected_grads_block
        args = (tiny, tiny, np.zeros((1, 1, dim), np.float32), np.ones((1, 1), np.float32), 0, 1, 0, float(p),
                np.empty(1))
        if presort:
            job_on(*args, np.zeros((1, 2, dim), np.float32) if need_x else empty, need_x)
        else:
            job_on(*args, np.zeros((1, 2, dim), np.float32) if need_x else empty,
                   np.zeros((1, 2, dim), np.float32) if need_y else empty, np.zeros((1 if need_theta else 0, dim)),
                   need_x, need_y, need_theta)
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
