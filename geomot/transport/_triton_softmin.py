"""Streaming soft-min kernels for the squared Euclidean cost in Triton (CUDA, or Triton's CPU interpreter).

One kernel, :func:`softmin_bary`, streams over tiles of the ``N x M`` interaction of padded batches ``p (B, N, D)``,
``q (B, M, D)`` (``lengths`` per item) without storing it, with float32 accumulation and an online (running-max)
log-sum-exp; for each row ``i`` it returns

    lse_i  = log sum_j exp(t_ij),   t_ij = h_j - |p_i - q_j|^2 / eps,
    bary_i = sum_j w_ij q_j,        cost_i = sum_j w_ij |p_i - q_j|^2,   w_ij = exp(t_ij - lse_i),

so ``-eps lse`` is the soft-min of Sinkhorn's updates (``h = g / eps + log b``), and with ``r_i = a_i exp((f_i +
eps lse_i) / eps)`` (the row marginal of the plan) ``P y = r * bary`` and ``sum_j P_ij C_ij = r_i cost_i``: what the
value ``<a, f> + <b, g> - eps (sum P - 1)`` and its envelope-theorem gradients need
(``d/dx_i = 2 (r_i x_i - (P y)_i)`` times the derivative of the value in ``C``). Columns are the same kernel with
the roles of ``p`` and ``q`` exchanged. Cost: ``O(N M D)`` flops, ``O((N + M) D)`` memory.

:class:`TritonGeometry` plugs the kernel into the Sinkhorn loops (the one-pass-per-update loop with
over-relaxation, the same schedule as the dense backend), and :class:`TritonSums` is the value's autograd
function. Triton is imported on first use; :func:`geomot._core.accel.triton_usable` says where it runs.
"""

from __future__ import annotations

import functools
import math

import torch

from geomot.transport._kernels import OnlineGeometry

__all__ = ["TritonGeometry", "TritonSums", "softmin_bary"]

_BLOCK_N = 32
_BLOCK_M = 64


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def softmin_kernel(p_ptr, q_ptr, h_ptr, n_len_ptr, m_len_ptr, lse_ptr, bary_ptr, cost_ptr, n, m, inv_eps,
                       D: tl.constexpr, DP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
                       EXTRA: tl.constexpr):  # pragma: no cover - compiled (or interpreted)
        pid = tl.program_id(0)
        b = tl.program_id(1)
        n_b = tl.load(n_len_ptr + b)
        m_b = tl.load(m_len_ptr + b)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        dims = tl.arange(0, DP)
        rmask = rows < n_b
        pt = tl.load(p_ptr + b * n * D + rows[:, None] * D + dims[None, :],
                     mask=rmask[:, None] & (dims[None, :] < D), other=0.0).to(tl.float32)
        mx = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_N,), tl.float32)
        acc = tl.zeros((BLOCK_N, DP), tl.float32)
        accc = tl.zeros((BLOCK_N,), tl.float32)
        for j0 in range(0, m, BLOCK_M):
            cols = j0 + tl.arange(0, BLOCK_M)
            cmask = cols < m_b
            qt = tl.load(q_ptr + b * m * D + cols[:, None] * D + dims[None, :],
                         mask=cmask[:, None] & (dims[None, :] < D), other=0.0).to(tl.float32)
            h = tl.load(h_ptr + b * m + cols, mask=cmask, other=float("-inf")).to(tl.float32)
            diff = pt[:, None, :] - qt[None, :, :]
            c = tl.sum(diff * diff, axis=2)
            t = h[None, :] - c * inv_eps
            t = tl.where(cmask[None, :], t, float("-inf"))
            new = tl.maximum(mx, tl.max(t, axis=1))
            safe = tl.where(new == float("-inf"), 0.0, new)
            scale = tl.exp(mx - safe)
            e = tl.exp(t - safe[:, None])
            s = s * scale + tl.sum(e, axis=1)
            if EXTRA:
                acc = acc * scale[:, None] + tl.sum(e[:, :, None] * qt[None, :, :], axis=1)
                accc = accc * scale + tl.sum(e * c, axis=1)
            mx = new
        lse = mx + tl.log(s)
        tl.store(lse_ptr + b * n + rows, lse, mask=rmask)
        if EXTRA:
            inv = 1.0 / s
            tl.store(bary_ptr + b * n * D + rows[:, None] * D + dims[None, :], acc * inv[:, None],
                     mask=rmask[:, None] & (dims[None, :] < D))
            tl.store(cost_ptr + b * n + rows, accc * inv, mask=rmask)

    return softmin_kernel


def softmin_bary(p: torch.Tensor, q: torch.Tensor, h: torch.Tensor, eps: float, p_len: torch.Tensor,
                 q_len: torch.Tensor, *, extra: bool = False):
    """Row log-sum-exp of ``t_ij = h_j - |p_i - q_j|^2 / eps`` (and the weighted means, see the module docstring).

    Args:
        p: ``(B, N, D)`` row points; ``q``: ``(B, M, D)`` column points (float32 or float64; accumulated in float32).
        h: ``(B, M)`` column terms (``-inf`` allowed).
        eps: the temperature.
        p_len: ``(B,)`` real rows per item; ``q_len``: ``(B,)`` real columns per item.
        extra: also return ``bary (B, N, D)`` and ``cost (B, N)``.

    Returns:
        ``lse (B, N)`` (``-inf`` for a row without any finite term; padded rows hold garbage), and with ``extra``
        ``(lse, bary, cost)``, in the dtype of ``p``.
    """
    bsz, n, d = p.shape
    m = q.shape[1]
    pc, qc = p.detach().contiguous(), q.detach().contiguous()
    hc = h.detach().contiguous()
    lse = torch.zeros(bsz, n, dtype=torch.float32, device=p.device)
    bary = torch.zeros(bsz, n, d, dtype=torch.float32, device=p.device) if extra else lse
    cost = torch.zeros(bsz, n, dtype=torch.float32, device=p.device) if extra else lse
    grid = (max(1, math.ceil(n / _BLOCK_N)), bsz)
    _kernel()[grid](pc, qc, hc, p_len.to(torch.int32).contiguous(), q_len.to(torch.int32).contiguous(), lse, bary,
                    cost, n, m, 1.0 / eps, D=d, DP=max(2, 1 << (d - 1).bit_length()), BLOCK_N=_BLOCK_N,
                    BLOCK_M=_BLOCK_M, EXTRA=extra)
    lse = lse.to(p.dtype)
    return (lse, bary.to(p.dtype), cost.to(p.dtype)) if extra else lse


class TritonGeometry(OnlineGeometry):
    """Point sets whose soft-min passes run in the Triton kernel (squared Euclidean cost, no autograd through the
    iterations); the Sinkhorn loops treat it as the online backend with the fused one-pass iteration."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, row_len: torch.Tensor, col_len: torch.Tensor) -> None:
        super().__init__(x, y, "sqeuclidean")
        self.row_len, self.col_len = row_len, col_len
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (f of the last sweep, soft-min of f)

    def _softmin(self, rows: bool, v: torch.Tensor, lw: torch.Tensor, eps: float) -> torch.Tensor:
        p, q, pl, ql = (self.x, self.y, self.row_len, self.col_len) if rows else (self.y, self.x, self.col_len,
                                                                                 self.row_len)
        return -eps * softmin_bary(p, q, v / eps + lw, eps, pl, ql)

    def softmin_rows(self, g, lb, eps: float, hint=None) -> torch.Tensor:
        return self._softmin(True, g, lb, eps)

    def softmin_cols(self, f, la, eps: float, hint=None) -> torch.Tensor:
        return self._softmin(False, f, la, eps)

    def col_hint(self, f, la, eps: float, rows: int = 2048) -> None:
        return None  # the kernel keeps a running maximum: no shift needed

    def sweep(self, f, g, a, b, eps: float, *, omega: float, lx: float, ly: float, row_target, col_target,
              row_mask, col_mask, need_col_error: bool):
        """One alternating (over-relaxed) iteration, two kernel passes; returns ``(f', g', err)`` with ``err`` the
        marginal error of the input ``(f, g)`` as in :meth:`OnlineGeometry.sweep` (the column marginal comes from
        the previous sweep's soft-min of ``f`` when ``f`` is its output, else from one more pass)."""
        la = torch.where(row_mask, torch.log(a), -math.inf)
        lb = torch.where(col_mask, torch.log(b), -math.inf)
        f_hat = self.softmin_rows(g, lb, eps)
        rs = torch.exp((f - f_hat) / eps)
        err = (a * (rs - row_target).abs()).masked_fill(~row_mask, 0.0).sum(1)
        if need_col_error:
            reuse = self._last is not None and self._last[0] is f
            g_hat_old = self._last[1] if reuse else self.softmin_cols(f, la, eps)
            cs = torch.exp((g - g_hat_old) / eps)
            err = err + (b * (cs - col_target).abs()).masked_fill(~col_mask, 0.0).sum(1)
        f_new = torch.where(row_mask, f + omega * (lx * f_hat - f), 0.0)
        g_hat = self.softmin_cols(f_new, la, eps)
        g_new = torch.where(col_mask, g + omega * (ly * g_hat - g), 0.0)
        self._last = (f_new, g_hat)
        return f_new, g_new, err

    def plan_sums(self, f, g, la, lb, eps: float):
        """``(sum_ij P_ij C_ij, sum_ij P_ij)`` (no autograd; :class:`TritonSums` differentiates them)."""
        mass, pc = TritonSums.apply(self.x, self.y, la.exp(), lb.exp(), f, g, eps, self)
        return pc, mass


class TritonSums(torch.autograd.Function):
    """``(sum_ij P_ij, sum_ij P_ij C_ij)`` at fixed potentials, ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``,
    with the envelope-theorem backward: ``d sum P / d C = -P / eps``, ``d sum P C / d C = P`` (``P`` fixed),
    ``d C_ij / d x_i = 2 (x_i - y_j)`` (so ``d / d x_i = 2 (r_i x_i - (P y)_i)`` times the scale),
    ``d sum P / d a_i = (P 1)_i / a_i``; one kernel pass per side."""

    @staticmethod
    def forward(ctx, x, y, a, b, f, g, eps, geom):
        la = torch.where(a > 0, torch.log(a), -math.inf)
        lb = torch.where(b > 0, torch.log(b), -math.inf)
        lse, bary, cost = softmin_bary(x, y, g / eps + lb, eps, geom.row_len, geom.col_len, extra=True)
        rmask = torch.arange(x.shape[1], device=x.device)[None, :] < geom.row_len[:, None]
        r = torch.where(rmask, torch.exp(f / eps + la + lse), 0.0)  # (P 1)_i
        ctx.save_for_backward(x, y, a, b, f, g, r, bary)
        ctx.eps, ctx.geom = eps, geom
        return r.sum(1), (r * cost).sum(1)

    @staticmethod
    def backward(ctx, g_mass, g_pc):
        x, y, a, b, f, g, r, bary = ctx.saved_tensors
        eps, geom = ctx.eps, ctx.geom
        scale = (-g_mass / eps + g_pc)[:, None]
        gx = gy = ga = gb = None
        if ctx.needs_input_grad[0]:
            gx = 2.0 * (scale * r)[..., None] * (x - bary)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[3]:
            la = torch.where(a > 0, torch.log(a), -math.inf)
            lse, bary_c, _ = softmin_bary(y, x, f / eps + la, eps, geom.col_len, geom.row_len, extra=True)
            cmask = torch.arange(y.shape[1], device=y.device)[None, :] < geom.col_len[:, None]
            ratio = torch.where(cmask, torch.exp(g / eps + lse), 0.0)  # (P^T 1)_j / b_j
            if ctx.needs_input_grad[1]:
                gy = 2.0 * (scale * b * ratio)[..., None] * (y - bary_c)
            if ctx.needs_input_grad[3]:
                gb = g_mass[:, None] * ratio
        if ctx.needs_input_grad[2]:
            ga = g_mass[:, None] * torch.where(a > 0, r / a.clamp_min(torch.finfo(a.dtype).tiny), 0.0)
        return gx, gy, ga, gb, None, None, None, None
