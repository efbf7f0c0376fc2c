"""Ground costs and the two "geometries" the Sinkhorn solvers run on.

A geometry answers the few questions a Sinkhorn loop asks about the cost ``C (B, N, M)``:

- the soft-min (soft c-transform) along rows or columns,
  ``softmin_rows(g)_i = -eps log sum_j exp((g_j - C_ij) / eps + log b_j)``;
- products with the plan ``P_ij = exp((f_i + g_j - C_ij) / eps + log a_i + log b_j)``: ``P V``, ``P^T U``,
  ``sum_ij P_ij`` and ``sum_ij P_ij C_ij``.

:class:`DenseGeometry` stores ``C``; :class:`OnlineGeometry` keeps the point sets and recomputes blocks of ``C``
on the fly (row or column chunks of at most ``chunk_bytes``), so that memory stays ``O((N + M) D + chunk)``: the
log-sum-exp over ``j`` of a row chunk is exact because every row of the chunk sees all ``M`` columns. On CPU float
tensors with the squared Euclidean cost and no autograd, its soft-mins, fused sweeps and sums run in the streaming
numba kernels of :mod:`geomot.transport._numba_softmin` instead (no block buffer) when numba is available; large
items (:data:`~geomot.transport._multiscale.SWEEP_MIN_PAIRS` pairs and more) take the block-sparse fused sweep of
:class:`~geomot.transport._multiscale.SparseSweep`, which skips the cluster pairs whose terms are below roundoff.
Padding is handled through the log-weights: ``log b_j = -inf`` on padded columns (and ``log a_i`` on rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from geomot._core.registry import Registry
from geomot.ops._products import gemv, narrow_bmm
from geomot.transport import _multiscale, _numba_softmin

__all__ = ["COSTS", "DenseGeometry", "OnlineGeometry", "pairwise_cost"]


COSTS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("cost")


@COSTS.register("sqeuclidean")
def _sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``C_ij = ||x_i - y_j||^2`` for ``x (B, N, D)``, ``y (B, M, D)`` -> ``(B, N, M)``.

    Uses ``|x|^2 + |y|^2 - 2 <x, y>`` (one batched matmul); callers centre the points first so that the
    cancellation costs no more than the float rounding of ``C`` itself. Clamped at 0.
    """
    x2 = (x * x).sum(-1)
    y2 = (y * y).sum(-1)
    c = torch.baddbmm(x2[:, :, None] + y2[:, None, :], x, y.transpose(1, 2), alpha=-2.0)
    return c.clamp_min(0.0)


@COSTS.register("euclidean")
def _euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``C_ij = ||x_i - y_j||`` (differentiable away from coincident points)."""
    return _sqeuclidean(x, y).clamp_min(1e-30).sqrt()


def pairwise_cost(x: torch.Tensor, y: torch.Tensor, cost: str = "sqeuclidean") -> torch.Tensor:
    """Dense cost matrix ``(B, N, M)`` between ``x (B, N, D)`` and ``y (B, M, D)`` for a registered cost."""
    return COSTS.get(cost, arg="cost")(x, y)


def exp_floor(dtype: torch.dtype) -> float:
    """Smallest argument passed to ``exp``: ``log(tiny) + 2`` (-85 in float32, -706 in float64).

    ``exp`` of arguments below the normal range is 5-20x slower on CPU (subnormal/underflow path); clamping
    there changes each entry by less than ``1e-37`` (float32) relative to the largest one.
    """
    return math.log(torch.finfo(dtype).tiny) + 2.0


LOG2E = 1.0 / math.log(2.0)  # exp(t) = exp2(t * LOG2E)


def exp2_floor(dtype: torch.dtype) -> float:
    """Smallest argument passed to ``exp2``: ``log2(tiny) + 3`` (-123 in float32, -1019 in float64), the base-2
    counterpart of :func:`exp_floor`."""
    return math.log2(torch.finfo(dtype).tiny) + 3.0


def safe_exp2(t: torch.Tensor) -> torch.Tensor:
    """``2^max(t, exp2_floor)`` in place on ``t``.

    The streaming soft-mins write their exponents in base 2 (``log2(e)`` folded into the GEMM's coefficients):
    on x86 CPUs torch's ``exp2`` runs 1.3-1.6x faster than ``exp`` (float32, AVX2), the largest single cost of a
    soft-min pass.
    """
    return t.clamp_min_(exp2_floor(t.dtype)).exp2_()


def safe_exp(t: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """``exp(max(t, exp_floor))`` (in place on ``t`` when allowed)."""
    lo = exp_floor(t.dtype)
    if inplace:
        return t.clamp_min_(lo).exp_()
    return t.clamp_min(lo).exp()


def _lse(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``log sum exp`` along ``dim`` of a temporary ``t`` (overwritten when no gradient is tracked), with the
    clamped fast ``exp``; a slice of only ``-inf`` gives a finite, very negative value (callers mask it)."""
    m = t.detach().amax(dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    inplace = not (torch.is_grad_enabled() and t.requires_grad)
    s = safe_exp(t.sub_(m) if inplace else t - m, inplace=inplace).sum(dim)
    return s.log() + m.squeeze(dim)


def _plan_product(mat: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``mat @ rhs`` for a plan block and ``rhs (B, M, K)``: :func:`narrow_bmm` up to 16 columns, ``bmm`` beyond."""
    return narrow_bmm(mat, rhs) if rhs.shape[-1] <= 16 else torch.bmm(mat, rhs)


def _points_log_kernel(p: torch.Tensor, q: torch.Tensor, fp: torch.Tensor, gq: torch.Tensor, eps: float,
                       out: torch.Tensor | None) -> torch.Tensor:
    """Into ``out (B, N, M)`` (a new tensor when None): ``(fp_i + gq_j - |p_i - q_j|^2) / eps`` for
    ``p (B, N, D)``, ``q (B, M, D)``, as one GEMM ``[2 p / eps, (fp - |p|^2) / eps, 1] [q, 1, (gq - |q|^2) / eps]^T``
    (no cost matrix; no autograd)."""
    p, q = p.detach(), q.detach()
    pa = torch.cat([p * (2.0 / eps), ((fp - (p * p).sum(-1)) / eps)[..., None], p.new_ones(*p.shape[:2], 1)], -1)
    qa = torch.cat([q, q.new_ones(*q.shape[:2], 1), ((gq - (q * q).sum(-1)) / eps)[..., None]], -1)
    return torch.bmm(pa, qa.transpose(1, 2), out=out)


class DenseGeometry:
    """A stored cost matrix ``C (B, N, M)``, or point sets whose squared Euclidean cost is formed on first use.

    With ``points=(x, y)`` (squared Euclidean cost only) the scaling loop never needs ``C``: its kernels
    ``exp((f_i + g_j - C_ij) / eps)`` come from one GEMM on augmented coordinates and ``<P, C>`` from the
    expansion ``sum_i r_i |x_i|^2 + sum_j c_j |y_j|^2 - 2 <x, P y>`` (``r, c``: marginals of ``P``), which saves
    building, storing and reading an ``N x M`` cost; other paths build ``C`` lazily (``cost`` attribute).

    Args:
        cost: ``(B, N, M)`` cost; padding entries may hold anything finite. None with ``points``.
        points: ``(x (B, N, D), y (B, M, D))`` for the squared Euclidean cost.
        track: build the lazy cost with autograd enabled (gradients to the points).
    """

    online = False

    def __init__(self, cost: torch.Tensor | None = None, *, points: tuple[torch.Tensor, torch.Tensor] | None = None,
                 track: bool = False) -> None:
        self._cost = cost
        self._track = track
        self._buf: torch.Tensor | None = None  # reused by the no-autograd softmin passes
        if cost is not None:
            self.x = self.y = None
            self.shape = tuple(cost.shape)
        else:
            self.x, self.y = points
            self.shape = (self.x.shape[0], self.x.shape[1], self.y.shape[1])

    @property
    def cost(self) -> torch.Tensor:
        """``(B, N, M)`` cost (built on first access for point sets)."""
        if self._cost is None:
            with torch.set_grad_enabled(self._track):
                self._cost = _sqeuclidean(self.x, self.y)
        return self._cost

    def leaves(self) -> tuple[torch.Tensor, ...]:
        """The tensors gradients of the value may reach through the cost."""
        return (self.x, self.y) if self.x is not None else (self._cost,)

    def max_cost(self, row_mask: torch.Tensor, col_mask: torch.Tensor) -> float:
        """Largest cost over real (unpadded) pairs, for the eps-scaling start."""
        if bool(row_mask.all()) and bool(col_mask.all()):
            return float(self.cost.detach().amax())
        m = row_mask[:, :, None] & col_mask[:, None, :]
        return float(self.cost.detach().masked_fill(~m, float("-inf")).amax())

    def _tracked(self, v: torch.Tensor) -> bool:
        """Whether autograd must see the softmin (unrolled gradients): then no buffer is reused in place."""
        return torch.is_grad_enabled() and (v.requires_grad or self._track
                                            or (self._cost is not None and self._cost.requires_grad))

    def _exponents(self, v: torch.Tensor, lv: torch.Tensor, eps: float, *, rows: bool) -> torch.Tensor:
        """``(v_j - C_ij) / eps + lv_j`` into a reused buffer, ``(B, N, M)`` for ``rows`` (``j`` over ``y``), else
        ``(B, M, N)`` for point sets (one GEMM on augmented coordinates, reduced along the contiguous axis) or the
        ``(B, N, M)`` buffer with ``i`` and ``j`` exchanged for a stored cost. One pass instead of three."""
        if self._cost is None:
            p, q = (self.x, self.y) if rows else (self.y, self.x)
            buf = self._buffer((p.shape[0], p.shape[1], q.shape[1]), p)
            return _points_log_kernel(p, q, p.new_zeros(p.shape[:2]), v + eps * lv, eps, buf)
        buf = self._buffer(self.shape, self._cost)
        shift = (v / eps + lv)[:, None, :] if rows else (v / eps + lv)[:, :, None]
        return torch.add(shift, self._cost.detach(), alpha=-1.0 / eps, out=buf)

    def _buffer(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        buf = self._buf
        if buf is None or buf.numel() < math.prod(shape) or buf.dtype != like.dtype:
            buf = self._buf = torch.empty(math.prod(shape), dtype=like.dtype, device=like.device)
        return buf[: math.prod(shape)].view(shape)

    def softmin_rows(self, g: torch.Tensor, lb: torch.Tensor, eps: float, hint=None) -> torch.Tensor:
        """``(B, N)``: ``-eps logsumexp_j((g_j - C_ij) / eps + lb_j)`` (``hint`` is unused here)."""
        if not self._tracked(g):
            return -eps * _lse(self._exponents(g, lb, eps, rows=True), 2)
        t = (g[:, None, :] - self.cost) / eps + lb[:, None, :]
        return -eps * _lse(t, 2)

    def softmin_cols(self, f: torch.Tensor, la: torch.Tensor, eps: float, hint=None) -> torch.Tensor:
        """``(B, M)``: ``-eps logsumexp_i((f_i - C_ij) / eps + la_i)``."""
        if not self._tracked(f):
            return -eps * _lse(self._exponents(f, la, eps, rows=False), 2 if self._cost is None else 1)
        t = (f[:, :, None] - self.cost) / eps + la[:, :, None]
        return -eps * _lse(t, 1)

    def log_plan(self, f, g, la, lb, eps: float) -> torch.Tensor:
        """``(B, N, M)`` log of the plan ``(f_i + g_j - C_ij) / eps + la_i + lb_j``."""
        return (f[:, :, None] + g[:, None, :] - self.cost) / eps + la[:, :, None] + lb[:, None, :]

    def log_kernel_(self, f: torch.Tensor, g: torch.Tensor, eps: float, out: torch.Tensor) -> torch.Tensor:
        """In place into ``out (B, N, M)``: ``(f_i + g_j - C_ij) / eps`` (no autograd).

        Point sets: one GEMM ``[2 x / eps, (f - |x|^2) / eps, 1] [y, 1, (g - |y|^2) / eps]^T`` (no ``C``)."""
        if self._cost is None:
            return _points_log_kernel(self.x, self.y, f, g, eps, out)
        torch.add(f[:, :, None] / eps, self._cost.detach(), alpha=-1.0 / eps, out=out)
        return out.add_(g[:, None, :] / eps)

    def kernel_(self, f: torch.Tensor, g: torch.Tensor, eps: float, out: torch.Tensor) -> torch.Tensor:
        """In place into ``out (B, N, M)``: ``exp((f_i + g_j - C_ij) / eps)`` (no autograd)."""
        return safe_exp(self.log_kernel_(f, g, eps, out), inplace=True)

    def kernel_sums(self, kernel: torch.Tensor, au: torch.Tensor, bv: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_ij P_ij, sum_ij P_ij C_ij)`` for ``P = diag(au) E diag(bv)``, ``E = kernel`` (``(B,)`` each).

        A stored cost is multiplied into the kernel buffer (overwritten); point sets use the expansion of
        ``C_ij = |x_i|^2 + |y_j|^2 - 2 <x_i, y_j>`` and leave the kernel intact."""
        if self._cost is None:
            x, y = self.x.detach(), self.y.detach()
            rows = au * gemv(kernel, bv)
            cols = bv * gemv(kernel.transpose(1, 2), au)
            # <x, P y> = sum_d <au x_d, E (bv y_d)>: D matrix-vector products for small D (GEMMs with 2-4 columns
            # are far slower than GEMVs on CPU), one GEMM beyond
            if x.shape[-1] <= 4:
                cross = sum((au * x[..., d] * gemv(kernel, bv * y[..., d])).sum(1) for d in range(x.shape[-1]))
            else:
                cross = (au[..., None] * x * narrow_bmm(kernel, bv[..., None] * y)).sum((1, 2))
            pc = (rows * (x * x).sum(-1)).sum(1) + (cols * (y * y).sum(-1)).sum(1) - 2.0 * cross
            return rows.sum(1), pc
        mass = (au * gemv(kernel, bv)).sum(1)
        ec = kernel.mul_(self._cost.detach())
        return mass, (torch.bmm(au[:, None, :], ec).squeeze(1) * bv).sum(1)

    def plan_matmul(self, f, g, la, lb, eps: float, v: torch.Tensor) -> torch.Tensor:
        """``P V`` for ``v (B, M, K)`` -> ``(B, N, K)``."""
        return _plan_product(safe_exp(self.log_plan(f, g, la, lb, eps)), v)

    def plan_rmatmul(self, f, g, la, lb, eps: float, u: torch.Tensor) -> torch.Tensor:
        """``P^T U`` for ``u (B, N, K)`` -> ``(B, M, K)``."""
        return _plan_product(safe_exp(self.log_plan(f, g, la, lb, eps)).transpose(1, 2), u)

    def plan_sums(self, f, g, la, lb, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_ij P_ij C_ij, sum_ij P_ij)``, each ``(B,)`` (differentiable in ``C`` and the potentials)."""
        p = safe_exp(self.log_plan(f, g, la, lb, eps))
        return (p * self.cost).sum((1, 2)), p.sum((1, 2))

    def dense_plan(self, f, g, la, lb, eps: float) -> torch.Tensor:
        return self.log_plan(f, g, la, lb, eps).exp()  # exact zeros on padding


class OnlineGeometry:
    """Cost blocks recomputed on the fly from the point sets, chunk by chunk (bounded memory).

    Args:
        x: ``(B, N, D)`` source points.
        y: ``(B, M, D)`` target points.
        cost: a name of :data:`COSTS`.
        chunk_bytes: target size of one ``(B, n, M)`` or ``(B, N, m)`` block.
    """

    online = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor, cost: str, *, chunk_bytes: int = 64 * 2**20) -> None:
        self.x, self.y = x, y
        self.cost_fn = COSTS.get(cost, arg="cost")
        self.shape = (x.shape[0], x.shape[1], y.shape[1])
        self.chunk_bytes = int(chunk_bytes)
        self._ya_cache = None
        self._eps = 1.0
        self._buf: torch.Tensor | None = None
        self._soft_cache = None
        self._sparse = None  # (a, b, row_mask, col_mask, {item: (rows, cols, SparseSweep) or None})

    def _step(self, other: int) -> int:
        per_row = self.shape[0] * other * self.x.element_size() * 3  # cost + a temporary or two
        return max(1, self.chunk_bytes // max(per_row, 1))

    def _row_chunks(self):
        n, step = self.shape[1], self._step(self.shape[2])
        for i in range(0, n, step):
            yield slice(i, min(i + step, n))

    def _col_chunks(self):
        m, step = self.shape[2], self._step(self.shape[1])
        for j in range(0, m, step):
            yield slice(j, min(j + step, m))

    def max_cost(self, row_mask: torch.Tensor, col_mask: torch.Tensor) -> float:
        out = float("-inf")
        with torch.no_grad():
            for s in self._row_chunks():
                c = self.cost_fn(self.x[:, s], self.y)
                m = row_mask[:, s, None] & col_mask[:, None, :]
                out = max(out, float(c.masked_fill(~m, float("-inf")).amax()))
        return out

    def _compiled(self, *ts: torch.Tensor) -> bool:
        """Whether the numba streaming kernels apply: squared Euclidean cost, CPU float tensors, no autograd."""
        return (self.fused and _numba_softmin.available(self.x)
                and not (torch.is_grad_enabled() and any(t.requires_grad for t in (self.x, self.y, *ts))))

    def _compiled_softmin(self, p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, eps: float, hint) -> torch.Tensor:
        return _numba_softmin.softmin(p, q, h, eps, hint)

    def softmin_rows(self, g: torch.Tensor, lb: torch.Tensor, eps: float, hint=None) -> torch.Tensor:
        h = g / eps + lb
        if self._compiled(h):
            return self._compiled_softmin(self.x, self.y, h, eps, hint)
        parts = [self._softmin(self.x[:, s], self.y, h, eps, None if hint is None else hint[:, s])
                 for s in self._row_chunks()]
        return torch.cat(parts, 1)

    def softmin_cols(self, f: torch.Tensor, la: torch.Tensor, eps: float, hint=None) -> torch.Tensor:
        h = f / eps + la
        if self._compiled(h):
            return self._compiled_softmin(self.y, self.x, h, eps, hint)
        parts = [self._softmin(self.y[:, s], self.x, h, eps, None if hint is None else hint[:, s])
                 for s in self._col_chunks()]
        return torch.cat(parts, 1)

    def _softmin(self, xs: torch.Tensor, ys: torch.Tensor, h: torch.Tensor, eps: float, hint) -> torch.Tensor:
        """``-eps log sum_j exp(h_j - c(xs_i, ys_j) / eps)`` for one chunk ``xs (B, n, D)``: ``(B, n)``.

        Fast path (squared Euclidean cost, no autograd): one GEMM on augmented coordinates writes
        ``t_ij = h_j - C_ij / eps + hint_i / eps`` (``hint`` ~ the previous potential, so that
        ``sum_j exp(t_ij)`` is ~1 and needs no max pass), then one in-place exp and a sum; rows that
        overflow or underflow are redone with the max-stabilised log-sum-exp.
        """
        generic = (self.cost_fn is not COSTS.get("sqeuclidean") or hint is None
                   or (torch.is_grad_enabled() and (xs.requires_grad or ys.requires_grad or h.requires_grad)))
        if generic:
            return -eps * _lse(h[:, None, :] - self.cost_fn(xs, ys) / eps, 2)
        key = (h, ys, eps)
        if self._soft_cache is None or any(u is not v for u, v in zip(self._soft_cache[0], key)):
            hf = torch.where(torch.isfinite(h), h, -1e30)
            ones_y = ys.new_ones(*ys.shape[:2], 1)
            self._soft_cache = (key, torch.cat([ys, ones_y, ((hf - (ys * ys).sum(-1) / eps) * LOG2E)[..., None]], -1))
        ya = self._soft_cache[1]
        ones_x = xs.new_ones(*xs.shape[:2], 1)
        k = LOG2E / eps  # base-2 exponents: one exp2 pass (see safe_exp2)
        xa = torch.cat([xs * (2.0 * k), ((hint - (xs * xs).sum(-1)) * k)[..., None], ones_x], -1)
        t = torch.bmm(xa, ya.transpose(1, 2), out=self._block(xs.shape[0], xs.shape[1], ys.shape[1], xs))
        ssum = safe_exp2(t).sum(2)
        bad = ~torch.isfinite(ssum) | (ssum < 1e-20)
        out = hint - eps * ssum.log()
        if bool(bad.any()):
            exact = -eps * _lse(h[:, None, :] - self.cost_fn(xs, ys) / eps, 2)
            out = torch.where(bad, exact, out)
        return out

    @property
    def fused(self) -> bool:
        """Whether :meth:`sweep` and the GEMM form of :meth:`plan_sums` apply (squared Euclidean cost)."""
        return self.cost_fn is COSTS.get("sqeuclidean")

    def _exp_block(self, s: slice, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``exp(rows_i + cols_j + 2 <x_i, y_j> / eps)`` for row chunk ``s`` (one GEMM on augmented coordinates
        scaled by ``log2(e)``, and one in-place ``exp2``); ``rows``/``cols`` hold ``(f - |x|^2) / eps``,
        ``(g - |y|^2) / eps`` (``-1e30`` on padding: the clamped exp gives ~1e-37 there, always multiplied by a zero
        weight)."""
        xs = self.x[:, s]
        xa = torch.cat([xs * (2.0 * LOG2E / self._eps), rows[:, s, None] * LOG2E, xs.new_ones(*xs.shape[:2], 1)], -1)
        out = self._block(xs.shape[0], xs.shape[1], self.shape[2], xs)
        return safe_exp2(torch.bmm(xa, self._ya(cols).transpose(1, 2), out=out))  # base-2 exponents

    def _block(self, b: int, n: int, m: int, like: torch.Tensor) -> torch.Tensor:
        """A ``(b, n, m)`` view of one reused buffer (a fresh large tensor per chunk costs its page faults every
        time); the buffer only grows."""
        size = b * n * m
        buf = self._buf
        if buf is None or buf.numel() < size or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buf = like.new_empty(size)
        return buf[:size].view(b, n, m)

    def _ya(self, cols: torch.Tensor) -> torch.Tensor:
        if self._ya_cache is None or self._ya_cache[0] is not cols:
            y = self.y
            self._ya_cache = (cols, torch.cat([y, y.new_ones(*y.shape[:2], 1), (cols * LOG2E)[..., None]], -1))
        return self._ya_cache[1]

    def sweep(self, f, g, a, b, eps: float, *, omega: float, lx: float, ly: float, row_target, col_target,
              row_mask, col_mask, need_col_error: bool):
        """One alternating Sinkhorn iteration ``f <- (1 - w) f + w lx softmin_rows(g)``, then
        ``g <- (1 - w) g + w ly softmin_cols(f)``, with a single exp pass over the kernel (no autograd).

        Row chunk by chunk: ``E_ij = exp((f_i + g_j - C_ij) / eps)`` (current potentials as the shift, so that
        ``sum_j b_j E_ij ~ 1`` near convergence), ``s = E b`` gives the row update of the chunk exactly
        (``softmin_rows(g)_i = f_i - eps log s_i``), and ``E^T (a * exp((f'_i - f_i) / eps))`` accumulates the column
        sums of the *updated* rows, from which the column update follows after the last chunk. Rows or columns
        whose sums over- or underflow are redone with the exact log-sum-exp.

        Returns ``(f', g', err)`` with ``err (B,)`` the marginal error of the input ``(f, g)``: row violation
        ``sum_i a_i |s_i - row_target_i|`` (plus the column one when ``need_col_error``; ``inf`` if unknown).
        """
        if self._compiled(f, g):
            return self._compiled_sweep(f, g, a, b, eps, omega=omega, lx=lx, ly=ly, row_target=row_target,
                                        col_target=col_target, row_mask=row_mask, col_mask=col_mask,
                                        need_col_error=need_col_error)
        self._eps = eps
        big = -1e30
        x2, y2 = (self.x * self.x).sum(-1), (self.y * self.y).sum(-1)
        rows0 = torch.where(row_mask, (f - x2) / eps, big)
        cols0 = torch.where(col_mask, (g - y2) / eps, big)
        f_new = torch.empty_like(f)
        col_acc = torch.zeros_like(g)
        col_old = torch.zeros_like(g) if need_col_error else None
        err = torch.zeros_like(a[:, 0])
        tiny = 1e-20
        for s in self._row_chunks():
            e = self._exp_block(s, rows0, cols0)
            rs = gemv(e, b)  # (B, n): sum_j b_j E_ij
            ok = torch.isfinite(rs) & (rs > tiny) | ~row_mask[:, s]
            fs = f[:, s]
            if bool(ok.all()):
                err = err + (a[:, s] * (rs - row_target[:, s] if torch.is_tensor(row_target) else rs - row_target)
                             .abs()).sum(1)
                # f + w (lx f_hat - f) with f_hat = f - eps log s, as an increment: the potentials (~|x|^2) are
                # far larger than eps, and (1 - w) f + w f_hat would round both terms at that scale
                fn = torch.where(row_mask[:, s], fs + omega * ((lx - 1.0) * fs - lx * eps * rs.log()), 0.0)
                factor = torch.exp((fn - fs) / eps)
                et = e.transpose(1, 2)
                if need_col_error:
                    col_old += gemv(et, a[:, s])
                col_acc += gemv(et, a[:, s] * factor)
            else:  # exact log-sum-exp rows, then the column sums from a re-shifted block
                err = err + math.inf
                lb = torch.where(col_mask, torch.log(b), -math.inf)
                f_hat = self._softmin(self.x[:, s], self.y, g / eps + lb, eps, None)
                fn = torch.where(row_mask[:, s], (1.0 - omega) * fs + omega * lx * f_hat, 0.0)
                rows1 = rows0.clone()
                rows1[:, s] = torch.where(row_mask[:, s], (fn - x2[:, s]) / eps, big)
                e = self._exp_block(s, rows1, cols0)
                col_acc += gemv(e.transpose(1, 2), a[:, s])
                if need_col_error:
                    col_old += math.inf
            f_new[:, s] = fn
        return self._finish_sweep(f_new, g, col_acc, col_old, a, b, eps, err, tiny=tiny, omega=omega, ly=ly,
                                  col_target=col_target, row_mask=row_mask, col_mask=col_mask)

    def _compiled_sweep(self, f, g, a, b, eps: float, *, omega, lx, ly, row_target, col_target, row_mask, col_mask,
                        need_col_error):
        """:meth:`sweep` by the numba streaming kernel (one exp per pair), item by item; rows whose sums leave the
        float range are redone exactly (and the error of that sweep is reported as unknown, ``inf``)."""
        bsz = g.shape[0]
        f_new = torch.empty_like(f)
        col_acc = torch.empty_like(g)
        col_old = torch.empty_like(g) if need_col_error else None
        err = torch.zeros_like(a[:, 0])
        for k in range(bsz):
            tgt = row_target[k] if torch.is_tensor(row_target) else row_target
            sparse = self._sparse_sweep(k, f, g, a, b, eps, omega=omega, lx=lx, row_mask=row_mask,
                                        col_mask=col_mask, need_old=need_col_error)
            if sparse is not None:
                rs, fn, bad, col, old = sparse
                err[k] = math.inf if bool(bad.any()) else (a[k] * (rs - tgt).abs()).sum()
                f_new[k] = fn
                col_acc[k] = col
                if col_old is not None:
                    col_old[k] = old
                continue
            rs, fn, bad, col, old = _numba_softmin.sweep(
                self.x[k], self.y[k], f[k], torch.where(col_mask[k], g[k], -1e30 * eps), a[k], b[k], row_mask[k],
                eps, omega=omega, lx=lx, need_old=need_col_error)
            if bool(bad.any()):
                err[k] = math.inf
                rows = bad.nonzero().flatten()
                lb = torch.where(col_mask[k], torch.log(b[k]), -math.inf)
                f_hat = self._compiled_softmin(self.x[k:k + 1, rows], self.y[k:k + 1], (g[k] / eps + lb)[None], eps,
                                               None)[0]
                fn[rows] = (1.0 - omega) * f[k, rows] + omega * lx * f_hat
                # column sums of the exactly updated rows: sum_i a_i exp((fn_i + g_j - C_ij) / eps)
                gs = torch.where(col_mask[k], g[k] / eps, 0.0)
                extra, _ = _numba_softmin.row_sums(self.y[k], self.x[k, rows], fn[rows] / eps, gs, a[k, rows], eps)
                col = col + extra
                if old is not None:
                    old = old + math.inf
            else:
                err[k] = (a[k] * (rs - tgt).abs()).sum()
            f_new[k] = fn
            col_acc[k] = col
            if col_old is not None:
                col_old[k] = old
        return self._finish_sweep(f_new, g, col_acc, col_old, a, b, eps, err, tiny=1e-20, omega=omega, ly=ly,
                                  col_target=col_target, row_mask=row_mask, col_mask=col_mask)

    def _sparse_sweep(self, k: int, f, g, a, b, eps: float, *, omega, lx, row_mask, col_mask, need_old):
        """The fused sweep of item ``k`` by :class:`~geomot.transport._multiscale.SparseSweep` (block-sparse, exact to
        roundoff), as ``(rs, f_new, bad, col, col_old)`` over the padded item; None where it does not apply (fewer
        than :data:`~geomot.transport._multiscale.SWEEP_MIN_PAIRS` real pairs, non-finite points or potentials,
        or too many blocks kept at this ``eps``): the caller then runs the dense sweep."""
        st = self._sparse
        if st is None or st[0] is not a or st[1] is not b or st[2] is not row_mask or st[3] is not col_mask:
            st = self._sparse = (a, b, row_mask, col_mask, {})
        items = st[4]
        if k not in items:
            rows, cols = row_mask[k].nonzero().flatten().numpy(), col_mask[k].nonzero().flatten().numpy()
            xr, yc = self.x[k].detach().numpy()[rows], self.y[k].detach().numpy()[cols]
            usable = (rows.size * cols.size >= _multiscale.SWEEP_MIN_PAIRS
                      and min(rows.size, cols.size) >= _multiscale.MIN_POINTS
                      and bool(np.isfinite(xr).all()) and bool(np.isfinite(yc).all()))
            items[k] = (rows, cols, _multiscale.SparseSweep(torch.from_numpy(xr), torch.from_numpy(yc),
                                                            torch.from_numpy(a[k].numpy()[rows]),
                                                            torch.from_numpy(b[k].numpy()[cols]))) if usable else None
        if items[k] is None:
            return None
        rows, cols, sweeper = items[k]
        fr, gc = f[k].detach().numpy()[rows], g[k].detach().numpy()[cols]
        if not (bool(np.isfinite(fr).all()) and bool(np.isfinite(gc).all())):
            return None
        out = sweeper.sweep(fr, gc, eps, omega=omega, lx=lx, need_old=need_old)
        if out is None:
            return None
        rs_r, fn_r, bad_r, col_c, old_c = out
        n, m = self.shape[1], self.shape[2]
        rs, fn, col = np.zeros(n, dtype=rs_r.dtype), np.zeros(n, dtype=rs_r.dtype), np.zeros(m, dtype=rs_r.dtype)
        bad = np.zeros(n, dtype=np.bool_)
        rs[rows], fn[rows], bad[rows], col[cols] = rs_r, fn_r, bad_r, col_c
        old = None
        if old_c is not None:
            old = np.zeros(m, dtype=rs_r.dtype)
            old[cols] = old_c
        return (torch.from_numpy(rs), torch.from_numpy(fn), torch.from_numpy(bad), torch.from_numpy(col),
                None if old is None else torch.from_numpy(old))

    def _finish_sweep(self, f_new, g, col_acc, col_old, a, b, eps: float, err, *, tiny: float, omega, ly, col_target,
                      row_mask, col_mask):
        """The column half of a sweep from the column sums ``col_acc = sum_i a_i exp((f_new_i + g_j - C_ij) / eps)``
        of the new rows: ``g <- g + omega (ly (g - eps log col_acc) - g)`` (an exact column soft-min where a sum
        left the float range), and the column part of the marginal error from ``col_old`` (when given)."""
        okc = torch.isfinite(col_acc) & (col_acc > tiny) | ~col_mask
        if bool(okc.all()):
            step = (ly - 1.0) * g - ly * eps * col_acc.log()
        else:
            la = torch.where(row_mask, torch.log(a), -math.inf)
            step = ly * self.softmin_cols(f_new, la, eps) - g
        g_new = torch.where(col_mask, g + omega * step, 0.0)
        if col_old is not None:
            tgt = col_target if torch.is_tensor(col_target) else torch.full_like(b, col_target)
            err = err + (b * (col_old - tgt).abs()).masked_fill(~col_mask, 0.0).sum(1)
        return f_new, g_new, err

    def col_hint(self, f: torch.Tensor, la: torch.Tensor, eps: float, rows: int = 2048) -> torch.Tensor:
        """Cheap estimate ``(B, M)`` of ``softmin_cols(f)`` from an evenly strided subsample of at most ``rows``
        source points (re-weighted): a shift that keeps the exact pass's sums in the float range."""
        n = self.shape[1]
        idx = torch.arange(0, n, max(1, n // rows), device=f.device)
        la_s = la[:, idx]
        la_s = la_s - torch.logsumexp(la_s, 1, keepdim=True)
        la_s = torch.where(torch.isfinite(la_s), la_s, -math.inf)
        h = f[:, idx] / eps + la_s
        if self._compiled(h):  # max pass + exact pass of the streaming kernels (no (M, rows) blocks)
            out = _numba_softmin.softmin(self.y, self.x[:, idx].contiguous(), h, eps, None)
        else:
            out = torch.cat([-eps * _lse(h[:, None, :] - self.cost_fn(self.y[:, s], self.x[:, idx]) / eps, 2)
                             for s in self._col_chunks_for(idx.numel())], 1)
        return torch.where(torch.isfinite(out), out, 0.0)

    def _col_chunks_for(self, other: int):
        m, step = self.shape[2], self._step(other)
        for j in range(0, m, step):
            yield slice(j, min(j + step, m))

    def fused_sums(self, f, g, a, b, eps: float, row_mask, col_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum_ij P_ij, sum_ij P_ij C_ij)`` in one pass (no autograd), ``C`` expanded as in
        :class:`DenseGeometry`: ``sum_i r_i |x_i|^2 + sum_j c_j |y_j|^2 - 2 <x, P y>``."""
        if self._compiled(f, g):
            mass = torch.zeros_like(a[:, 0])
            pc = torch.zeros_like(a[:, 0])
            for k in range(a.shape[0]):
                h = torch.where(col_mask[k], g[k] / eps, -1e30)
                shift = torch.where(row_mask[k], f[k] / eps, -1e30)
                s, sc = _numba_softmin.row_sums(self.x[k], self.y[k], h, shift, b[k], eps, with_cost=True)
                mass[k] = (a[k] * s).sum()
                pc[k] = (a[k] * sc).sum()
            return mass, pc
        self._eps = eps
        x2, y2 = (self.x * self.x).sum(-1), (self.y * self.y).sum(-1)
        rows0 = torch.where(row_mask, (f - x2) / eps, -1e30)
        cols0 = torch.where(col_mask, (g - y2) / eps, -1e30)
        by = [b * self.y[..., d] for d in range(self.y.shape[-1])]
        mass = torch.zeros_like(a[:, 0])
        pc = torch.zeros_like(a[:, 0])
        cols = torch.zeros_like(g)
        for s in self._row_chunks():
            e = self._exp_block(s, rows0, cols0)
            ra = a[:, s] * gemv(e, b)
            mass += ra.sum(1)
            pc += (ra * x2[:, s]).sum(1)
            for d, v in enumerate(by):
                pc -= 2.0 * (a[:, s] * self.x[:, s, d] * gemv(e, v)).sum(1)
            cols += gemv(e.transpose(1, 2), a[:, s])
        pc += (b * cols * y2).sum(1)
        return mass, pc

    def _log_plan_rows(self, s: slice, f, g, la, lb, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cost_fn(self.x[:, s], self.y)
        lp = (f[:, s, None] + g[:, None, :] - c) / eps + la[:, s, None] + lb[:, None, :]
        return lp, c

    def plan_matmul(self, f, g, la, lb, eps: float, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([_plan_product(safe_exp(self._log_plan_rows(s, f, g, la, lb, eps)[0]), v)
                          for s in self._row_chunks()], 1)

    def plan_rmatmul(self, f, g, la, lb, eps: float, u: torch.Tensor) -> torch.Tensor:
        out = None
        for s in self._row_chunks():
            p = safe_exp(self._log_plan_rows(s, f, g, la, lb, eps)[0])
            part = _plan_product(p.transpose(1, 2), u[:, s])
            out = part if out is None else out + part
        return out

    def plan_sums(self, f, g, la, lb, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused and not (torch.is_grad_enabled() and any(t.requires_grad for t in (f, g, self.x, self.y))):
            mass, pc = self.fused_sums(f, g, la.exp(), lb.exp(), eps, torch.isfinite(la), torch.isfinite(lb))
            return pc, mass
        pc = f.new_zeros(self.shape[0])
        mass = f.new_zeros(self.shape[0])
        for s in self._row_chunks():
            lp, c = self._log_plan_rows(s, f, g, la, lb, eps)
            p = safe_exp(lp)
            pc = pc + (p * c).sum((1, 2))
            mass = mass + p.sum((1, 2))
        return pc, mass

    def dense_plan(self, f, g, la, lb, eps: float) -> torch.Tensor:
        return torch.cat([self._log_plan_rows(s, f, g, la, lb, eps)[0].exp() for s in self._row_chunks()], 1)

    def cost_vjp(self, weight_fn, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of ``sum_ij W_ij C_ij(x, y)`` w.r.t. ``x`` and ``y``, chunk by chunk.

        ``weight_fn(s, c)`` returns the detached ``(B, n, M)`` weights of row chunk ``s`` given its cost block.
        """
        gx = torch.zeros_like(x)
        gy = torch.zeros_like(y)
        for s in self._row_chunks():
            with torch.enable_grad():
                xs = x[:, s].detach().requires_grad_(True)
                yd = y.detach().requires_grad_(True)
                c = self.cost_fn(xs, yd)
                w = weight_fn(s, c.detach())
                dx, dy = torch.autograd.grad((w * c).sum(), (xs, yd))
            gx[:, s] += dx
            gy += dy
        return gx, gy
