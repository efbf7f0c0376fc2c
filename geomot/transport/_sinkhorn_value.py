"""The Sinkhorn value (dual objective at the potentials, with envelope or unrolled gradients) and the lazy plan."""

from __future__ import annotations

import copy
import math

import torch

from geomot._core.errors import ShapeError
from geomot.transport._kernels import safe_exp

__all__ = ["SinkhornPlan", "dual_value"]


def _phi(f: torch.Tensor, tau: float) -> torch.Tensor:
    """``phi(f) = f`` (hard marginal) or ``tau (1 - exp(-f / tau))`` (KL-relaxed marginal)."""
    return f if math.isinf(tau) else tau * (1.0 - torch.exp(-f / tau))


def _dense_sums(geom, f, g, a, b, row_mask, col_mask, eps, unrolled):
    """``(sum_ij P_ij, sum_ij P_ij C_ij)`` on a stored cost; autograd reaches ``C``, ``a``, ``b`` (and the
    potentials when unrolled); the transport cost treats ``P`` as fixed unless unrolled."""
    pair = row_mask[:, :, None] & col_mask[:, None, :]
    lp = ((f[:, :, None] + g[:, None, :] - geom.cost) / eps).masked_fill(~pair, float("-inf"))
    p = safe_exp(lp) * a[:, :, None] * b[:, None, :]
    pc = ((p if unrolled else p.detach()) * geom.cost).sum((1, 2))
    return p.sum((1, 2)), pc


class _OnlineSums(torch.autograd.Function):
    """``(sum P, sum P C)`` on the online backend with a chunked backward (envelope gradients only):
    ``d sum P / d C = -P / eps``, ``d sum P C / d C = P`` (``P`` fixed), ``d sum P / d a_i = sum_j b_j E_ij``."""

    @staticmethod
    def forward(ctx, x, y, a, b, geom, f, g, la, lb, eps):
        ctx.geom, ctx.eps = geom, eps
        ctx.save_for_backward(x, y, a, b, f, g, la, lb)
        pc, mass = geom.plan_sums(f, g, la, lb, eps)
        return mass, pc

    @staticmethod
    def backward(ctx, g_mass, g_pc):
        x, y, a, b, f, g, la, lb = ctx.saved_tensors
        geom, eps = ctx.geom, ctx.eps
        scale = (-g_mass / eps + g_pc)[:, None, None]

        def weight(s, c):
            lp = (f[:, s, None] + g[:, None, :] - c) / eps + la[:, s, None] + lb[:, None, :]
            return safe_exp(lp) * scale

        gx = gy = ga = gb = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            gx, gy = geom.cost_vjp(weight, x, y)
        zero_a = torch.where(torch.isfinite(la), 0.0, float("-inf"))
        zero_b = torch.where(torch.isfinite(lb), 0.0, float("-inf"))
        if ctx.needs_input_grad[2]:
            ones = b.new_ones(b.shape[0], b.shape[1], 1)
            ga = geom.plan_matmul(f, g, zero_a, lb, eps, ones).squeeze(2) * g_mass[:, None]
        if ctx.needs_input_grad[3]:
            ones = a.new_ones(a.shape[0], a.shape[1], 1)
            gb = geom.plan_rmatmul(f, g, la, zero_b, eps, ones).squeeze(2) * g_mass[:, None]
        return gx, gy, ga, gb, None, None, None, None, None, None


def dual_value(geom, f, g, a, b, row_mask, col_mask, *, eps, tau_x, tau_y, track, unrolled, sums=None):
    """``(value, transport_cost)``, each ``(B,)``.

    ``value = sum_i a_i phi(f_i) + sum_j b_j phi(g_j) - eps (sum_ij P_ij - |a| |b|)`` is the dual objective; at
    the optimum it equals the primal ``<P, C> + eps KL(P | a x b) + tau KL(P 1 | a) + tau KL(P^T 1 | b)``, and
    its gradient at fixed potentials is the gradient of the optimal value (envelope theorem). ``sums``: the
    ``(sum P, sum P C)`` already known from the loop, used when no gradient is tracked.
    """
    track = track and torch.is_grad_enabled()
    with torch.set_grad_enabled(track):
        lin = (a * _phi(f, tau_x)).sum(1) + (b * _phi(g, tau_y)).sum(1)
        if sums is not None and not track:
            mass, pc = sums
        elif geom.online:
            la = torch.log(a.detach()).masked_fill(~row_mask, float("-inf"))
            lb = torch.log(b.detach()).masked_fill(~col_mask, float("-inf"))
            mass, pc = _OnlineSums.apply(geom.x, geom.y, a, b, geom, f.detach(), g.detach(), la, lb, eps)
        else:
            mass, pc = _dense_sums(geom, f, g, a, b, row_mask, col_mask, eps, unrolled)
        value = lin - eps * (mass - a.sum(1) * b.sum(1))
    return value, pc


class SinkhornPlan:
    """The entropic plan ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, applied lazily.

    Point-set problems recompute cost blocks on the fly (memory ``O(chunk)``, any ``N, M``); cost-matrix
    problems reuse the given matrix. Shapes below are batched; unbatched problems drop the leading ``B``.
    """

    def __init__(self, geom, f, g, la, lb, eps, *, batched, y, shift, row_lengths, col_lengths) -> None:
        self._geom, self._f, self._g, self._la, self._lb, self._eps = geom, f, g, la, lb, eps
        self._batched, self._y, self._shift = batched, y, shift
        self.row_lengths, self.col_lengths = row_lengths, col_lengths

    def _unbatch(self) -> SinkhornPlan:
        """The same plan for an unbatched problem (shapes without the leading ``B = 1``)."""
        out = copy.copy(self)
        out._batched = False
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        s = self._geom.shape
        return tuple(s) if self._batched else tuple(s[1:])

    def _in(self, v: torch.Tensor, size: int, name: str) -> tuple[torch.Tensor, bool]:
        if not isinstance(v, torch.Tensor):
            raise ShapeError(f"{name}: expected a tensor, got {type(v).__name__}")
        vec = v.dim() == (2 if self._batched else 1)
        vb = v.unsqueeze(-1) if vec else v
        if not self._batched:
            vb = vb.unsqueeze(0)
        if vb.dim() != 3 or vb.shape[0] != self._geom.shape[0] or vb.shape[1] != size:
            raise ShapeError(f"{name}: expected {'(B, ' if self._batched else '('}{size}[, K]), got {tuple(v.shape)}")
        return vb.to(self._f.dtype), vec

    def _out(self, r: torch.Tensor, vec: bool) -> torch.Tensor:
        r = r.squeeze(-1) if vec else r
        return r if self._batched else r[0]

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """``P v``: ``v (B, M)`` or ``(B, M, K)`` -> ``(B, N)`` or ``(B, N, K)``."""
        vb, vec = self._in(v, self._geom.shape[2], "v")
        return self._out(self._geom.plan_matmul(self._f, self._g, self._la, self._lb, self._eps, vb), vec)

    matmul = __matmul__

    def rmatmul(self, u: torch.Tensor) -> torch.Tensor:
        """``P^T u``: ``u (B, N)`` or ``(B, N, K)`` -> ``(B, M)`` or ``(B, M, K)``."""
        ub, vec = self._in(u, self._geom.shape[1], "u")
        return self._out(self._geom.plan_rmatmul(self._f, self._g, self._la, self._lb, self._eps, ub), vec)

    def row_marginal(self) -> torch.Tensor:
        """``P 1``: ``(B, N)``."""
        ones = self._f.new_ones(self._geom.shape[0], self._geom.shape[2])
        return self @ (ones if self._batched else ones[0])

    def col_marginal(self) -> torch.Tensor:
        """``P^T 1``: ``(B, M)``."""
        ones = self._f.new_ones(self._geom.shape[0], self._geom.shape[1])
        return self.rmatmul(ones if self._batched else ones[0])

    def dense(self) -> torch.Tensor:
        """The full plan ``(B, N, M)`` (materialised: use ``@`` for large problems)."""
        p = self._geom.dense_plan(self._f, self._g, self._la, self._lb, self._eps)
        return p if self._batched else p[0]

    def barycentric_map(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """``T(x_i) = sum_j P_ij y_j / sum_j P_ij``: ``(B, N, D)``, the soft image of each source point.

        Args:
            y: ``(B, M, D)`` target coordinates; default: the target points of :func:`sinkhorn` (required for a
                cost-matrix problem).
        """
        shift: torch.Tensor | float = 0.0
        if y is None:
            if self._y is None:
                raise ShapeError("y: barycentric_map needs target coordinates for a cost-matrix problem")
            yb, shift = self._y, self._shift
        else:
            yb, _ = self._in(y, self._geom.shape[2], "y")
        ones = yb.new_ones(*yb.shape[:2], 1)
        num = self._geom.plan_matmul(self._f, self._g, self._la, self._lb, self._eps, torch.cat([yb, ones], -1))
        out = num[..., :-1] / num[..., -1:].clamp_min(torch.finfo(num.dtype).tiny) + shift
        return out if self._batched else out[0]
