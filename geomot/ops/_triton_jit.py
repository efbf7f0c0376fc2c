"""Triton kernels (``@triton.jit``) behind :mod:`geomot.ops._triton_kernels`; this module imports ``triton`` at
import time and is itself only imported by the wrappers there, on first use.

Both kernels take contiguous padded ``(B, N, D)`` / ``(B, M, D)`` tensors and ``(B,)`` int64 lengths, and run on a
grid ``(cdiv(N, BLOCK_N), B)``: one program owns ``BLOCK_N`` rows of one item and streams over the columns of that
item in tiles of ``BLOCK_M`` (nothing of size ``N x M`` is stored). The feature dimension is padded to the power of
two ``DP >= D`` inside the kernel (masked loads). Arithmetic runs in float32, or float64 for float64 inputs.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["knn_rows_kernel", "varifold_rows_kernel"]


@triton.jit
def varifold_rows_kernel(
    x_ptr, n_ptr, a_ptr, y_ptr, m_ptr, b_ptr, xlen_ptr, ylen_ptr,
    s0_ptr, gx_ptr, gn_ptr,
    N, M, inv_s2, alpha, beta,
    D: tl.constexpr, DP: tl.constexpr, KIND: tl.constexpr, GRAD: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Row sums of the varifold kernel ``K_ij = exp(-|x_i - y_j|^2 inv_s2) k_n(<n_i, m_j>)`` of item ``b``:

    ``s0_i = sum_j b_j K_ij``; with ``GRAD``: ``gx_i = sum_j b_j K_ij (x_i - y_j)`` and
    ``gn_i = sum_j b_j exp(-|x_i - y_j|^2 inv_s2) k_n'(<n_i, m_j>) m_j``. ``KIND``: 0 ``k_n(t) = t``, 1 ``t^2``,
    2 ``exp(alpha t + beta)``. Padded rows (``i >= xlen_b``) are not written; padded columns count 0.
    """
    pid = tl.program_id(0)
    bid = tl.program_id(1).to(tl.int64)
    nx = tl.load(xlen_ptr + bid)
    ny = tl.load(ylen_ptr + bid)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < nx
    dims = tl.arange(0, DP)
    dmask = dims < D
    xoff = (bid * N + rows)[:, None] * D + dims[None, :]
    xmask2 = rmask[:, None] & dmask[None, :]
    x = tl.load(x_ptr + xoff, mask=xmask2, other=0.0)
    nrm = tl.load(n_ptr + xoff, mask=xmask2, other=0.0)
    acc = tl.zeros((BLOCK_N,), dtype=x.dtype)
    accx = tl.zeros((BLOCK_N, DP), dtype=x.dtype)
    accn = tl.zeros((BLOCK_N, DP), dtype=x.dtype)
    for start in range(0, ny, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)
        cmask = cols < ny
        yoff = (bid * M + cols)[:, None] * D + dims[None, :]
        ymask2 = cmask[:, None] & dmask[None, :]
        y = tl.load(y_ptr + yoff, mask=ymask2, other=0.0)
        m = tl.load(m_ptr + yoff, mask=ymask2, other=0.0)
        bw = tl.load(b_ptr + bid * M + cols, mask=cmask, other=0.0)
        diff = x[:, None, :] - y[None, :, :]  # (BLOCK_N, BLOCK_M, DP)
        sq = tl.sum(diff * diff, axis=2)
        t = tl.sum(nrm[:, None, :] * m[None, :, :], axis=2)
        g = tl.exp(-sq * inv_s2)
        g = tl.where(cmask[None, :], g * bw[None, :], 0.0)  # b_j exp(-|x_i - y_j|^2 / sigma^2)
        if KIND == 0:
            kn = t
            dkn = tl.full(t.shape, 1.0, t.dtype)
        elif KIND == 1:
            kn = t * t
            dkn = 2.0 * t
        else:
            kn = tl.exp(alpha * t + beta)
            dkn = alpha * kn
        w = g * kn
        acc += tl.sum(w, axis=1)
        if GRAD:
            accx += tl.sum(w[:, :, None] * diff, axis=1)
            accn += tl.sum((g * dkn)[:, :, None] * m[None, :, :], axis=1)
    tl.store(s0_ptr + bid * N + rows, acc, mask=rmask)
    if GRAD:
        tl.store(gx_ptr + xoff, accx, mask=xmask2)
        tl.store(gn_ptr + xoff, accn, mask=xmask2)


@triton.jit
def knn_rows_kernel(
    x_ptr, y_ptr, xlen_ptr, ylen_ptr, dist_ptr, idx_ptr,
    N, M,
    D: tl.constexpr, DP: tl.constexpr, K: tl.constexpr, KP: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """The ``K`` smallest ``|x_i - y_j|^2`` over the real columns of item ``b``, ascending, and their column
    indices (ties to the lower index). NaN distances count as ``+inf``; a row whose distances are all ``+inf``
    keeps index 0 for its remaining slots. Padded rows are not written."""
    pid = tl.program_id(0)
    bid = tl.program_id(1).to(tl.int64)
    nx = tl.load(xlen_ptr + bid)
    ny = tl.load(ylen_ptr + bid)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < nx
    dims = tl.arange(0, DP)
    dmask = dims < D
    x = tl.load(x_ptr + (bid * N + rows)[:, None] * D + dims[None, :], mask=rmask[:, None] & dmask[None, :],
                other=0.0)
    slots = tl.arange(0, KP)
    best_d = tl.full((BLOCK_N, KP), float("inf"), x.dtype)
    best_i = tl.zeros((BLOCK_N, KP), dtype=tl.int64)
    for start in range(0, ny, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)
        cmask = cols < ny
        y = tl.load(y_ptr + (bid * M + cols)[:, None] * D + dims[None, :], mask=cmask[:, None] & dmask[None, :],
                    other=0.0)
        diff = x[:, None, :] - y[None, :, :]
        d = tl.sum(diff * diff, axis=2)
        d = tl.where(cmask[None, :] & (d == d), d, float("inf"))
        if K == 1:
            tmin = tl.min(d, axis=1)
            targ = tl.argmin(d, axis=1).to(tl.int64) + start
            take = tmin < tl.min(best_d, axis=1)
            best_i = tl.where(take[:, None], targ[:, None], best_i)
            best_d = tl.where(take[:, None], tmin[:, None], best_d)
        else:
            # merge the sorted list (best_d) with the tile: K rounds of "take the smaller of both minima"
            old_d = best_d
            old_i = best_i
            new_d = tl.full((BLOCK_N, KP), float("inf"), x.dtype)
            new_i = tl.zeros((BLOCK_N, KP), dtype=tl.int64)
            for r in tl.static_range(K):
                m_old = tl.min(old_d, axis=1)
                a_old = tl.argmin(old_d, axis=1)
                m_new = tl.min(d, axis=1)
                a_new = tl.argmin(d, axis=1)
                from_old = m_old <= m_new
                i_old = tl.sum(tl.where(slots[None, :] == a_old[:, None], old_i, 0), axis=1)
                val = tl.where(from_old, m_old, m_new)
                ind = tl.where(from_old, i_old, a_new.to(tl.int64) + start)
                new_d = tl.where(slots[None, :] == r, val[:, None], new_d)
                new_i = tl.where(slots[None, :] == r, ind[:, None], new_i)
                old_d = tl.where(from_old[:, None] & (slots[None, :] == a_old[:, None]), float("inf"), old_d)
                d = tl.where((~from_old)[:, None] & (tl.arange(0, BLOCK_M)[None, :] == a_new[:, None]),
                             float("inf"), d)
            best_d = tl.where(slots[None, :] < K, new_d, float("inf"))
            best_i = new_i
    out = (bid * N + rows)[:, None] * K + slots[None, :]
    omask = rmask[:, None] & (slots[None, :] < K)
    tl.store(dist_ptr + out, best_d, mask=omask)
    tl.store(idx_ptr + out, best_i, mask=omask)
