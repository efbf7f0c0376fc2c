"""The three entropic problems of the debiased Sinkhorn divergence, solved together in one eps-annealing loop.

``S_eps(alpha, beta) = OT_eps(alpha, beta) - OT_eps(alpha, alpha) / 2 - OT_eps(beta, beta) / 2`` (Feydy et al.,
"Interpolating between Optimal Transport and MMD using Sinkhorn Divergences", AISTATS 2019) needs the potentials
``(f, g)`` of ``alpha -> beta`` and the symmetric potentials ``p`` of ``alpha -> alpha`` and ``q`` of
``beta -> beta``. All four are updated in the same loop, on the same schedule:

1. **eps schedule** from the data's diameter ``d`` (largest extent of the bounding box of both supports):
   ``eps_0 = d^r`` (``r = 2`` for the squared Euclidean cost, 1 for the Euclidean one), then
   ``eps_{k+1} = eps_k * eps_scaling`` down to the target ``eps``, one iteration per level (Feydy 2020, Sec. 3.3;
   GeomLoss's ``diameter``/``blur``/``scaling``). At ``eps_0`` the potentials are the exact soft c-transforms of 0.
2. **annealing updates** (one per level, all four potentials from the same state, averaged):
   ``f <- (f + l S_xy(g)) / 2``, ``g <- (g + l S_yx(f)) / 2``, ``p <- (p + l S_xx(p)) / 2``,
   ``q <- (q + l S_yy(q)) / 2`` with ``S_xy(g)_i = -eps log sum_j b_j exp((g_j - C(x_i, y_j)) / eps)`` and
   ``l = tau / (tau + eps)`` (1 when balanced).
3. **final level**: alternating updates for ``(f, g)``, over-relaxed with the adaptive factor of
   :class:`geomot.transport._sinkhorn_loops._AutoRelax` (``f <- f + w (l S_xy(g) - f)``, the log-domain form of
   Thibault et al. 2021), and averaged ones for ``p``, ``q`` until every
   marginal error is below ``tol`` (raised to the dtype's floor, :func:`tolerance_floor`), or until the
   divergence's value ``<a, f - p> + <b, g - q>`` changes by less than ``rtol`` (relative) over two successive
   iterations in every item, or ``max_iter``; a problem that has converged is no longer updated. The value is
   stationary in the potentials (the envelope theorem), so it settles long before the marginals: the value
   criterion is what a training step needs, the marginal one what a transport plan needs.
4. **value** with envelope gradients: one last update of every potential with autograd on, from detached
   potentials, and with the second argument of the cost detached (``C(x, y.detach())`` for ``f``,
   ``C(y, x.detach())`` for ``g``, ...), so that ``d S / d x_i = sum_j P_ij d_1 C(x_i, y_j) -
   sum_k P^xx_ik d_1 C(x_i, x_k)`` exactly at convergence; the backward pass costs one pass over each kernel.
   Balanced: ``S = <a, f - p> + <b, g - q>``; unbalanced: ``S = (tau + eps / 2) (<a, e^{-p/tau} - e^{-f/tau}> +
   <b, e^{-q/tau} - e^{-g/tau}>)`` (Séjourné et al. 2019), differentiated with the factor ``tau + eps``.

Soft-mins of the annealing levels are computed by row blocks of at most ``chunk_bytes`` (one GEMM on augmented
coordinates for the squared Euclidean cost, written in base 2 so that one ``exp2`` pass follows, shifted by the
previous potential; on CUDA with Triton the kernels of :mod:`geomot.transport._triton_softmin`; on CPU with numba,
when the batch's kernel does not fit one block, the streaming kernels of :mod:`geomot.transport._numba_softmin`).
At the final ``eps`` each problem whose kernel fits in ``chunk_bytes`` (the three together) stores it once
(:class:`_Frozen`): an iteration is then a vector-kernel product, no exp pass. The backward of the squared
Euclidean value is a custom autograd function that recomputes the blocks, so memory is ``O((N + M) D)`` plus at
most two ``chunk_bytes`` for any size. Large items on CPU (squared Euclidean cost, numba) are solved one by one on
clustered supports instead (:func:`_clustered`): coarse annealing on cluster centroids, then block-sparse
soft-mins under a certified truncation bound (:mod:`geomot.transport._multiscale`).
"""

from __future__ import annotations

import math
import os
import sys
from typing import NamedTuple

import numpy as np
import torch

from geomot._core.accel import triton_usable
from geomot._core.checks import data_checks_enabled
from geomot._core.errors import ShapeError, ValidationError
from geomot.ops._products import gemv, narrow_bmm
from geomot.structures.convert import as_measure
from geomot.transport import _numba_softmin
from geomot.transport._kernels import COSTS, LOG2E, _points_log_kernel, safe_exp2
from geomot.transport._multiscale import JUMP, MIN_POINTS, Clusters, SparseSoftmin, multiscale_usable
from geomot.transport._sinkhorn_loops import _PROBE, _AutoRelax
from geomot.transport._triton_softmin import softmin_bary

__all__ = ["DebiasedResult", "debiased_sinkhorn", "dimension_error", "measure_pair", "screen_inputs",
           "tolerance_floor", "user_stacklevel"]

_FLOOR_FACTOR = 16.0  # marginal-error floor = this * float eps * (1 + cost scale / eps); see tolerance_floor
_BIG = 1e30  # stands for -log(0) on padding (finite: keeps GEMMs free of inf * 0)


class DebiasedResult(NamedTuple):
    """Output of :func:`debiased_sinkhorn` (batched shapes).

    Attributes:
        value: ``(B,)`` the divergence ``S_eps`` (differentiable in points and weights).
        n_iters: iterations run (annealing levels and final-level iterations).
        converged: ``(B,)`` bool, every marginal error below ``tol``, or the divergence's value settled (its change
            over each of the last two iterations below ``rtol`` relative).
        marginal_error: ``(B,)`` largest L1 marginal error of the three problems.
        tol: the tolerance applied (the requested one, raised to the dtype's floor).
        eps_list: the schedule run.
    """

    value: torch.Tensor
    n_iters: int
    converged: torch.Tensor
    marginal_error: torch.Tensor
    tol: float
    eps_list: list[float]


def tolerance_floor(dtype: torch.dtype, scale: float, eps: float) -> float:
    """Smallest L1 marginal error that log-domain Sinkhorn can certify in ``dtype``.

    A soft-min ``-eps log sum_j exp((g_j - C_ij) / eps)`` adds arguments of size ``scale / eps`` (``scale``: the
    largest cost, ``diameter^r``), each rounded to a relative ``u = torch.finfo(dtype).eps``, so the potentials
    carry an error ``~ u scale`` and the marginals ``a_i exp((f_i - S(g)_i) / eps)`` a relative error
    ``~ u scale / eps``. The floor is ``16 u (1 + scale / eps)``: float32 at ``scale / eps = 1200`` (unit cube,
    ``eps = 0.05^2``) gives ``2.3e-3``; float64 stays below ``1e-11`` up to ``scale / eps = 10^4``.
    """
    return _FLOOR_FACTOR * torch.finfo(dtype).eps * (1.0 + scale / eps)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # geomot/
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))


def user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` issued by the caller of this function that points at the first frame
    outside geomot and torch (the user's line), so that Python's default filter shows it once per call site."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(_PACKAGE) or path.startswith(_TORCH)):
            return level
        frame = frame.f_back
        level += 1
    return 2


def dimension_error(dx: int, dy: int, x: object, y: object) -> ShapeError:
    """The error for supports of different dimensions; names ``measure=`` when a Mesh is involved."""
    msg = f"y: expected points of dimension {dx} (that of x), got {dy}"
    if any(type(v).__name__ == "Mesh" for v in (x, y)):
        msg += ('; a Mesh without measure= becomes its 6-D oriented varifold: pass measure="vertices", "faces" or '
                '"samples" to compare it with 3-D points')
    return ShapeError(msg)


def screen_inputs(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, row_mask: torch.Tensor,
                  col_mask: torch.Tensor, *, eps: float, power: float):
    """Find the items that cannot be solved in their dtype and measure the cost scale.

    An item is bad when a real coordinate or weight is NaN/Inf, or when ``8 * diag^power / eps`` overflows the
    dtype (``diag``: the diagonal of the bounding box of both supports; float32 coordinates beyond ~1e18).
    With :func:`geomot.data_checks` on a bad item raises :class:`ValidationError` naming it; otherwise it is
    replaced by a harmless measure (uniform at 0) and flagged, and the caller reports NaN for it.

    Returns:
        ``(bad (B,), x, y, a, b, scale)`` with ``scale = max diag^power`` over the good items (a float).
    """
    bad = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for name, pts, w, mask in (("x", x, a, row_mask), ("y", y, b, col_mask)):
        ok = (torch.isfinite(pts) | ~mask[..., None]).flatten(1).all(1) & (torch.isfinite(w) | ~mask).all(1)
        if data_checks_enabled() and not bool(ok.all()):
            i = int((~ok).nonzero()[0])
            raise ValidationError(f"{name}: item {i} has a non-finite coordinate or weight (NaN or Inf)")
        bad |= ~ok
    big = torch.finfo(x.dtype).max
    xd = torch.where(bad[:, None, None], 0.0, x.detach())
    yd = torch.where(bad[:, None, None], 0.0, y.detach())
    lo = torch.minimum(xd.masked_fill(~row_mask[..., None], big).amin(1),
                       yd.masked_fill(~col_mask[..., None], big).amin(1))
    hi = torch.maximum(xd.masked_fill(~row_mask[..., None], -big).amax(1),
                       yd.masked_fill(~col_mask[..., None], -big).amax(1))
    ext = hi - lo
    sq = (ext * ext).sum(1)  # in the input dtype: inf when squared distances overflow
    size = sq if power == 2.0 else sq.sqrt()
    over = ~torch.isfinite(size * (8.0 / eps)) & ~bad
    if bool(over.any()):
        i = int(over.nonzero()[0])
        if data_checks_enabled():
            raise ValidationError(f"x: item {i}'s squared distances overflow {x.dtype} (coordinates up to "
                                  f"{float(ext[i].abs().max()):.3g} apart); rescale the coordinates or use float64")
        bad |= over
    if bool(bad.any()):
        x = torch.where(bad[:, None, None], 0.0, x)
        y = torch.where(bad[:, None, None], 0.0, y)
        a = torch.where(bad[:, None], row_mask.to(a.dtype) / row_mask.sum(1, keepdim=True).to(a.dtype), a)
        b = torch.where(bad[:, None], col_mask.to(b.dtype) / col_mask.sum(1, keepdim=True).to(b.dtype), b)
    good = size[~bad]
    scale = float(good.max()) if good.numel() else 0.0
    return bad, x, y, a, b, scale


def measure_pair(x: object, y: object, *, x_weights, y_weights, x_lengths, y_lengths, measure, measure_options):
    """Both inputs of a Sinkhorn solve as measures (:func:`geomot.structures.as_measure`, the project's Mesh rule)
    with one batch size, point dimension, dtype and device; returns ``(mx, x_batched, my, y_batched)``."""
    opts = dict(measure_options or {})
    mx, bx = as_measure(x, weights=x_weights, lengths=x_lengths, measure=measure, name="x", **opts)
    my, by = as_measure(y, weights=y_weights, lengths=y_lengths, measure=measure, name="y", **opts)
    xs, ys = mx.support, my.support
    if xs.shape[-1] != ys.shape[-1]:
        raise dimension_error(xs.shape[-1], ys.shape[-1], x, y)
    if xs.shape[0] != ys.shape[0]:
        raise ShapeError(f"y: expected batch size {xs.shape[0]} (that of x), got shape {tuple(ys.shape)}")
    if xs.dtype != ys.dtype or xs.device != ys.device:
        raise ShapeError(f"y: expected dtype {xs.dtype} and device {xs.device} (those of x), got {ys.dtype} on "
                         f"{ys.device}")
    return mx, bx, my, by


def eps_schedule(eps: float, start: float, ratio: float) -> list[float]:
    """``[start, start * ratio, ...]`` (the levels above ``eps``), then ``eps``."""
    out = []
    e = start
    while e > eps and len(out) < 200:
        out.append(e)
        e *= ratio
    return [*out, eps]


def _lam(tau: float, eps: float) -> float:
    return 1.0 if math.isinf(tau) else tau / (tau + eps)


class _Side:
    """Points ``(B, N, D)`` of one measure with what the soft-min needs (squared norms, log-weights)."""

    def __init__(self, pts: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> None:
        self.x = pts
        self.w = w
        self.mask = mask
        self.sq = (pts * pts).sum(-1)
        self.logw = torch.where(mask & (w > 0), torch.log(w), -_BIG)


def _softmin_block(p: torch.Tensor, psq: torch.Tensor, qa: torch.Tensor, eps: float, hint: torch.Tensor | None,
                   buf: torch.Tensor | None) -> torch.Tensor:
    """``-eps log sum_j exp(h_j - |p_i - q_j|^2 / eps)`` for a row block ``p (B, n, D)``; ``qa (B, M, D + 2)`` holds
    ``[q, 1, (h - |q|^2 / eps) log2(e)]``. The exponents are written in base 2 (one GEMM, then ``exp2``), shifted
    by ``hint`` (``~`` the result) to skip a max pass; rows whose sum leaves the float range are redone with a max
    shift."""
    shift = hint if hint is not None else torch.zeros_like(psq)
    k = LOG2E / eps
    pa = torch.cat([p * (2.0 * k), ((shift - psq) * k)[..., None], p.new_ones(*p.shape[:2], 1)], -1)
    t = torch.bmm(pa, qa.transpose(1, 2), out=buf)  # t_ij = log2(e) (h_j + (shift_i - |p_i - q_j|^2) / eps)
    if hint is not None:
        s = safe_exp2(t).sum(2)
        ok = torch.isfinite(s) & (s > 1e-30)
        if bool(ok.all()):
            return shift - eps * s.log()
        t = torch.bmm(pa, qa.transpose(1, 2), out=buf)
    m = t.amax(2, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    s = safe_exp2(t.sub_(m)).sum(2)
    return shift - eps * (s.log() + m.squeeze(2) / LOG2E)


class _Solver:
    """Soft-min operators between the sides, computed by row blocks (no stored kernel)."""

    def __init__(self, cost: str, chunk_bytes: int) -> None:
        self.cost = cost
        self.chunk_bytes = chunk_bytes
        self._buf: torch.Tensor | None = None

    def _rows(self, b: int, n: int, m: int, itemsize: int) -> int:
        return max(1, min(n, self.chunk_bytes // max(1, b * m * itemsize)))

    def _buffer(self, shape: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
        size = math.prod(shape)
        if self._buf is None or self._buf.numel() < size or self._buf.dtype != like.dtype:
            self._buf = like.new_empty(size)
        return self._buf[:size].view(shape)

    def softmin(self, p: _Side, q: _Side, v: torch.Tensor, eps: float, hint: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``(B, N)``: ``-eps log sum_j b_j exp((v_j - C(p_i, q_j)) / eps)`` (no autograd)."""
        h = torch.where(q.mask, v / eps + q.logw, -_BIG)
        bsz, n, m = p.x.shape[0], p.x.shape[1], q.x.shape[1]
        step = self._rows(bsz, n, m, p.x.element_size())
        if self.cost == "sqeuclidean" and p.x.is_cuda and triton_usable(p.x):
            res = -eps * softmin_bary(p.x, q.x, h, eps, p.mask.sum(1), q.mask.sum(1))
        elif self.cost == "sqeuclidean" and step < n and _numba_softmin.available(p.x):  # streaming beats chunks
            res = _numba_softmin.softmin(p.x, q.x, h, eps, hint)
        elif self.cost == "sqeuclidean":
            qa = torch.cat([q.x, q.x.new_ones(bsz, m, 1), ((h - q.sq / eps) * LOG2E)[..., None]], -1)
            out = []
            for i in range(0, n, step):
                s = slice(i, min(n, i + step))
                buf = self._buffer((bsz, s.stop - s.start, m), p.x)
                out.append(_softmin_block(p.x[:, s], p.sq[:, s], qa, eps, None if hint is None else hint[:, s], buf))
            res = torch.cat(out, 1) if len(out) > 1 else out[0]
        else:
            fn = COSTS.get(self.cost)
            res = torch.cat([-eps * torch.logsumexp(h[:, None, :] - fn(p.x[:, i:i + step], q.x) / eps, 2)
                             for i in range(0, n, step)], 1)
        return torch.where(p.mask, res, 0.0)

    def extrapolate(self, x: torch.Tensor, px: _Side, y: torch.Tensor, qy: _Side, v: torch.Tensor, eps: float,
                    hint: torch.Tensor) -> torch.Tensor:
        """One soft-min ``(B, N)`` of the potential ``v`` of ``qy`` with autograd to the points ``x`` of ``px``
        only (``y`` and ``v`` are detached); ``hint``: the current potential of ``px`` (unused here: the blocks
        take a max pass)."""
        h = torch.where(qy.mask, v.detach() / eps + qy.logw, -_BIG)
        if self.cost == "sqeuclidean":
            out = _SqSoftmin.apply(x, y.detach(), h, eps, self)
        else:
            fn = COSTS.get(self.cost)
            out = -eps * torch.logsumexp(h[:, None, :] - fn(x, y.detach()) / eps, 2)
        return torch.where(px.mask, out, 0.0)


class _Frozen:
    """The kernel of one problem at the final ``eps``, stored: ``K_ij = exp((u0_i + v0_j - C(p_i, q_j)) / eps)``
    for anchor potentials ``(u0, v0)``. A soft-min is then one matrix-vector product instead of a pass of ``exp``
    over the pairs (Schmitzer's stabilised scaling, "Stabilized sparse scaling algorithms for entropy regularized
    transport problems", SIAM J. Sci. Comput. 2019):

    ``S_pq(v)_i = u0_i - eps log sum_j b_j exp((v_j - v0_j) / eps) K_ij``

    and the column soft-min ``S_qp(u)`` with ``K^T``. When a potential leaves its anchor by more than ``bound``
    ``eps`` (or a sum leaves the float range) the kernel is rebuilt at the current potentials (absorption): stored
    entries clamped at the floor stay below ``floor * e^bound`` relative to the largest, negligible in float32.
    """

    bound = 40.0

    def __init__(self, solver: _Solver, p: _Side, q: _Side, u: torch.Tensor, v: torch.Tensor, eps: float) -> None:
        self.solver, self.p, self.q, self.eps = solver, p, q, eps
        self.kernel: torch.Tensor | None = None
        self._build(u, v)

    def _build(self, u: torch.Tensor, v: torch.Tensor) -> None:
        p, q, eps = self.p, self.q, self.eps
        self.u0 = torch.where(p.mask, u, -_BIG)
        self.v0 = torch.where(q.mask, v, -_BIG)
        eps2 = eps / LOG2E  # (u0 + v0 - C) / eps2: the exponent in base 2
        if self.solver.cost == "sqeuclidean":
            t = _points_log_kernel(p.x, q.x, self.u0, self.v0, eps2, self.kernel)
        else:
            t = (self.u0[:, :, None] + self.v0[:, None, :] - COSTS.get(self.solver.cost)(p.x, q.x)) / eps2
        self.kernel = safe_exp2(t)

    def _scaling(self, pot: torch.Tensor, anchor: torch.Tensor, side: _Side) -> torch.Tensor | None:
        d = (pot - anchor) / self.eps
        d = torch.where(side.mask, d, 0.0)
        if not bool((d.abs() <= self.bound).all()):
            return None
        return torch.where(side.mask, side.w * torch.exp(d), 0.0)

    def _finish(self, sums: torch.Tensor, anchor: torch.Tensor, side: _Side) -> torch.Tensor | None:
        if not bool((torch.isfinite(sums) & (sums > 1e-30) | ~side.mask).all()):
            return None
        return torch.where(side.mask, anchor - self.eps * torch.log(sums), 0.0)

    def rows(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(B, N)``: ``S_pq(v)`` (``u``: the current row potential, the anchor if the kernel is rebuilt)."""
        for attempt in range(2):
            w = self._scaling(v, self.v0, self.q)
            if w is not None:
                out = self._finish(gemv(self.kernel, w), self.u0, self.p)
                if out is not None:
                    return out
            if attempt == 0:
                self._build(u, v)
        return self.solver.softmin(self.p, self.q, v, self.eps)

    def cols(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(B, M)``: ``S_qp(u)`` (``v``: the current column potential)."""
        for attempt in range(2):
            w = self._scaling(u, self.u0, self.p)
            if w is not None:
                out = self._finish(gemv(self.kernel.transpose(1, 2), w), self.v0, self.q)
                if out is not None:
                    return out
            if attempt == 0:
                self._build(u, v)
        return self.solver.softmin(self.q, self.p, u, self.eps)


class _SqSoftmin(torch.autograd.Function):
    """``f_i = -eps log sum_j exp(h_j - |x_i - y_j|^2 / eps)`` with ``y`` and ``h`` constant; the backward is
    ``d f_i / d x_i = 2 (x_i - sum_j w_ij y_j)`` (``w``: the soft-min weights), by row blocks in the solver's
    buffer."""

    @staticmethod
    def forward(ctx, x, y, h, eps, solver):
        ctx.eps, ctx.solver = eps, solver
        ctx.save_for_backward(x, y, h)
        return _sq_softmin_blocks(x, y, h, eps, solver)[0]

    @staticmethod
    def backward(ctx, grad):
        x, y, h = ctx.saved_tensors
        _, bary = _sq_softmin_blocks(x, y, h, ctx.eps, ctx.solver, bary=True)
        return 2.0 * grad[..., None] * (x - bary), None, None, None, None


def _sq_softmin_blocks(x, y, h, eps, solver, bary=False):
    bsz, n, m = x.shape[0], x.shape[1], y.shape[1]
    step = solver._rows(bsz, n, m, x.element_size())
    k = LOG2E / eps
    ya = torch.cat([y, y.new_ones(bsz, m, 1), ((h - (y * y).sum(-1) / eps) * LOG2E)[..., None]], -1)
    y1 = torch.cat([y, y.new_ones(bsz, m, 1)], -1) if bary else None  # [y, 1]: barycentre and row sum together
    fs, bs = [], []
    for i in range(0, n, step):
        xs = x[:, i:i + step]
        xa = torch.cat([xs * (2.0 * k), (-(xs * xs).sum(-1) * k)[..., None], xs.new_ones(*xs.shape[:2], 1)], -1)
        t = torch.bmm(xa, ya.transpose(1, 2), out=solver._buffer((bsz, xs.shape[1], m), x))  # base-2 exponents
        m_ = t.amax(2, keepdim=True)
        m_ = torch.where(torch.isfinite(m_), m_, 0.0)
        e = safe_exp2(t.sub_(m_))
        if bary:  # [sum_j e_ij y_j, sum_j e_ij]
            r = narrow_bmm(e, y1)
            s = r[..., -1]
            bs.append(r[..., :-1] / s[..., None])
        else:
            s = e.sum(2)
        fs.append(-eps * (s.log() + m_.squeeze(2) / LOG2E))
    f = torch.cat(fs, 1)
    return f, (torch.cat(bs, 1) if bary else None)


class _UnbalancedWeight(torch.autograd.Function):
    """Forward ``(tau + eps / 2) t``, backward ``(tau + eps) g``: the envelope gradient of the unbalanced value
    (Séjourné et al. 2019; GeomLoss)."""

    @staticmethod
    def forward(ctx, t, tau, eps):
        ctx.k = tau + eps
        return (tau + 0.5 * eps) * t

    @staticmethod
    def backward(ctx, g):
        return ctx.k * g, None, None


def _value_estimate(a, b, f, g, p, q, tau: float) -> torch.Tensor:
    """``(B,)`` the divergence at the current potentials (without the final extrapolation)."""
    if math.isinf(tau):
        return (a * (f - p)).sum(1) + (b * (g - q)).sum(1)
    return (a * (torch.exp(-p / tau) - torch.exp(-f / tau))).sum(1) + (
        b * (torch.exp(-q / tau) - torch.exp(-g / tau))).sum(1)


def _error(w: torch.Tensor, pot: torch.Tensor, new: torch.Tensor, eps: float, tau: float) -> torch.Tensor:
    """``sum_i w_i |exp((pot_i - new_i / l) / eps) - exp(-pot_i / tau)|`` (row marginal violation of the plan at
    ``pot``, given its soft-min update ``new = l S(.)``)."""
    lam = _lam(tau, eps)
    target = 1.0 if math.isinf(tau) else torch.exp(-pot / tau)
    return (w * (torch.exp((pot - new / lam) / eps) - target).abs()).sum(1)


def _final_ops(solver: _Solver, sx: _Side, sy: _Side, f, g, p, q, eps: float, live: dict[str, bool],
               budget: int) -> dict:
    """The four soft-mins of the final level, ``ops[k](u, v)``: ``"xy"`` gives ``S_xy(g)`` from ``(f, g)``, ``"yx"``
    gives ``S_yx(f)``, ``"xx"``/``"yy"`` the symmetric ones from ``(p, p)``/``(q, q)``. Each problem whose kernel
    fits the remaining ``budget`` bytes (``xy`` first, then ``xx``, ``yy``) gets a :class:`_Frozen` kernel; the
    others stream (:meth:`_Solver.softmin`, shifted by the current potential)."""
    bsz, n, m, size = sx.x.shape[0], sx.x.shape[1], sy.x.shape[1], sx.x.element_size()
    ops = {"xy": lambda u, v: solver.softmin(sx, sy, v, eps, hint=u),
           "yx": lambda u, v: solver.softmin(sy, sx, u, eps, hint=v),
           "xx": lambda u, v: solver.softmin(sx, sx, u, eps, hint=u),
           "yy": lambda u, v: solver.softmin(sy, sy, u, eps, hint=u)}
    for key, (a, b, u, v, rows, cols) in {"xy": (sx, sy, f, g, n, m), "xx": (sx, sx, p, p, n, n),
                                          "yy": (sy, sy, q, q, m, m)}.items():
        need = bsz * rows * cols * size
        if not live[key] or need > budget:
            continue
        budget -= need
        k = _Frozen(solver, a, b, u, v, eps)
        if key == "xy":
            ops["xy"], ops["yx"] = k.rows, k.cols
        else:
            ops[key] = k.rows
    return ops


def _annealing(solver, sx: _Side, sy: _Side, e0: float, levels: list[float], tau: float, start=None):
    """One averaged update of the four potentials per level of ``levels``, from ``start`` (``(f, g, p, q)``) or,
    when None, from the exact soft c-transforms of 0 at ``e0``. Returns ``(f, g, p, q)``."""
    if start is None:
        lam = _lam(tau, e0)
        zx, zy = torch.zeros_like(sx.sq), torch.zeros_like(sy.sq)
        f = lam * solver.softmin(sx, sy, zy, e0)
        g = lam * solver.softmin(sy, sx, zx, e0)
        p = lam * solver.softmin(sx, sx, zx, e0)
        q = lam * solver.softmin(sy, sy, zy, e0)
    else:
        f, g, p, q = start
    for e in levels:
        lam = _lam(tau, e)
        ft = lam * solver.softmin(sx, sy, g, e, hint=f)
        gt = lam * solver.softmin(sy, sx, f, e, hint=g)
        pt = lam * solver.softmin(sx, sx, p, e, hint=p)
        qt = lam * solver.softmin(sy, sy, q, e, hint=q)
        f, g, p, q = 0.5 * (f + ft), 0.5 * (g + gt), 0.5 * (p + pt), 0.5 * (q + qt)
    return f, g, p, q


def _final_level(solver, sx: _Side, sy: _Side, pots, e: float, tau: float, tol_eff: float, rtol: float,
                 max_iter: int, n_iters: int, budget: int):
    """Iterations at the final ``eps`` until the marginals reach ``tol_eff``, the value settles (``rtol``) or
    ``max_iter``. Returns ``(f, g, p, q, n_iters, error (B,), converged (B,))``."""
    f, g, p, q = pots
    a = sx.w
    lam = _lam(tau, e)
    err = {k: torch.full_like(a[:, 0], math.inf) for k in ("xy", "xx", "yy")}
    # identical inputs: the three problems are one symmetric problem (alternating updates would crawl)
    same = sx.x.shape == sy.x.shape and torch.equal(sx.x, sy.x) and torch.equal(sx.w, sy.w)
    live = {"xy": not same, "xx": True, "yy": not same}
    ops = _final_ops(solver, sx, sy, f, g, p, q, e, live, budget)
    relax = _AutoRelax(_PROBE, torch.finfo(sx.x.dtype).eps)
    omega = 1.0
    use_value = rtol > 0 and not same  # identical inputs: f, g, q are p, checked by the marginal criterion
    previous = torch.full_like(a[:, 0], math.nan)
    settled = torch.zeros_like(a[:, 0], dtype=torch.bool)
    while True:
        if live["xy"]:
            gt = lam * ops["yx"](f, g)
            err_g = _error(sy.w, g, gt, e, tau)
            g = g + omega * (gt - g)
            ft = lam * ops["xy"](f, g)
            err["xy"] = err_g + _error(sx.w, f, ft, e, tau)
            f = f + omega * (ft - f)
            omega = relax(float(err["xy"].max()))
        if live["xx"]:
            pt = lam * ops["xx"](p, p)
            err["xx"] = _error(sx.w, p, pt, e, tau)
            p = 0.5 * (p + pt)
        if live["yy"]:
            qt = lam * ops["yy"](q, q)
            err["yy"] = _error(sy.w, q, qt, e, tau)
            q = 0.5 * (q + qt)
        n_iters += 1
        worst = {k: float(v.max()) for k, v in err.items() if live[k]}
        for k, v in worst.items():
            if not v > tol_eff:
                live[k] = False
        if use_value:
            current = _value_estimate(sx.w, sy.w, f, g, p, q, tau)
            step_ok = (current - previous).abs() <= rtol * current.abs() + tol_eff * e
            stop_value = bool((settled & step_ok).all())
            settled, previous = step_ok, current
        else:
            stop_value = False
        if (not any(live.values()) or stop_value or n_iters >= max_iter
                or any(math.isnan(v) for v in worst.values())):
            break
    if same:
        f = g = q = p
        err["xy"] = err["yy"] = err["xx"]
    error = torch.stack(list(err.values())).amax(0)
    converged = (error <= tol_eff) | (settled if use_value else torch.zeros_like(settled))
    return f, g, p, q, n_iters, error, converged


def _value(solver, x, y, a, b, sx: _Side, sy: _Side, pots, eps: float, tau: float, track: bool) -> torch.Tensor:
    """``(B,)`` the divergence from one last soft-min of each potential with autograd to its points (envelope
    gradients; see the module docstring)."""
    f, g, p, q = pots
    lam = _lam(tau, eps)
    with torch.set_grad_enabled(track):
        fx = lam * solver.extrapolate(x, sx, y, sy, g, eps, f)
        gy = lam * solver.extrapolate(y, sy, x, sx, f, eps, g)
        px = lam * solver.extrapolate(x, sx, x, sx, p, eps, p)
        qy = lam * solver.extrapolate(y, sy, y, sy, q, eps, q)
        if math.isinf(tau):
            return (a * (fx - px)).sum(1) + (b * (gy - qy)).sum(1)
        t = (a * (torch.exp(-px / tau) - torch.exp(-fx / tau))).sum(1) + (
            b * (torch.exp(-qy / tau) - torch.exp(-gy / tau))).sum(1)
        return _UnbalancedWeight.apply(t, tau, eps)


class _SparseSqSoftmin(torch.autograd.Function):
    """``f_i = -eps log sum_j exp(v_j / eps + logw_j - |x_i - y_j|^2 / eps)`` on clustered supports (the truncated
    soft-min of :class:`geomot.transport._multiscale.SparseSoftmin`, ``y``, ``v`` constant); the backward is
    ``d f_i / d x_i = 2 (x_i - sum_j w_ij y_j)`` with the barycentres of the same truncated sums."""

    @staticmethod
    def forward(ctx, x, op, v, hint, logw, eps):
        out, bary = op.softmin(v, hint, logw, eps, with_bary=ctx.needs_input_grad[0])
        ctx.save_for_backward(x, bary if bary is not None else x.new_empty(0))
        return out

    @staticmethod
    def backward(ctx, grad):
        x, bary = ctx.saved_tensors
        return 2.0 * grad[:, None] * (x - bary), None, None, None, None, None


class _ClusteredSolver(_Solver):
    """:class:`_Solver` whose shifted soft-mins between registered clustered sides are block-sparse
    (:class:`~geomot.transport._multiscale.SparseSoftmin`, one item); other calls take the dense paths."""

    def __init__(self, chunk_bytes: int, pairs: dict) -> None:
        super().__init__("sqeuclidean", chunk_bytes)
        self.pairs = pairs  # (id(p side), id(q side)) -> SparseSoftmin

    def softmin(self, p: _Side, q: _Side, v: torch.Tensor, eps: float, hint: torch.Tensor | None = None
                ) -> torch.Tensor:
        op = self.pairs.get((id(p), id(q)))
        if op is None or hint is None:
            return super().softmin(p, q, v, eps, hint)
        return op.softmin(v[0], hint[0], q.logw[0], eps)[0][None]

    def extrapolate(self, x, px, y, qy, v, eps, hint):
        op = self.pairs.get((id(px), id(qy)))
        if op is None:
            return super().extrapolate(x, px, y, qy, v, eps, hint)
        return _SparseSqSoftmin.apply(x[0], op, v[0].detach(), hint[0].detach(), qy.logw[0], eps)[None]


def _clustered(x, y, a, b, row_mask, col_mask, **opts) -> DebiasedResult:
    """The divergence item by item on clustered supports (:mod:`geomot.transport._multiscale`): the annealing
    levels with ``eps >= (JUMP r)^2`` (``r``: the median cluster radius) run on the coarse measures (cluster
    centroids and masses, a few thousand points, stored kernels), the coarse problem is then solved to the stopping
    rule at the next level, its potentials are extended to the points by one soft c-transform, and the remaining
    levels and the final level use block-sparse soft-mins (Schmitzer 2019's multiscale scheme; GeomLoss's
    multiscale backend without its heuristic truncation). Items below ``MIN_POINTS`` take :func:`_standard`.
    ``opts``: the solver settings of :func:`_standard` except ``cost``."""
    parts = []
    for k in range(x.shape[0]):
        rk, ck = row_mask[k], col_mask[k]
        xk, yk, ak, bk = x[k][rk], y[k][ck], a[k][rk], b[k][ck]
        if min(xk.shape[0], yk.shape[0]) < MIN_POINTS:
            one = lambda t: t[None]  # noqa: E731
            parts.append(_standard(one(xk), one(yk), one(ak), one(bk), one(rk[rk]), one(ck[ck]), cost="sqeuclidean",
                                   **opts))
        else:
            parts.append(_clustered_item(xk, yk, ak, bk, **opts))
    return DebiasedResult(torch.cat([r.value for r in parts]), max(r.n_iters for r in parts),
                          torch.cat([r.converged for r in parts]), torch.cat([r.marginal_error for r in parts]),
                          opts["tol_eff"], opts["eps_list"])


def _clustered_item(x, y, a, b, *, eps, tau, eps_list, tol_eff, max_iter, chunk_bytes, track, rtol
                    ) -> DebiasedResult:
    """One item of :func:`_clustered`: ``x (N, D)``, ``y (M, D)``, weights ``a (N,)``, ``b (M,)`` (no padding)."""
    cx, cy = Clusters(x, a), Clusters(y, b)
    d2 = float(JUMP * np.median(np.concatenate([cx.radius, cy.radius]))) ** 2
    coarse = [e for e in eps_list[:-1] if e >= d2]
    fine = eps_list[len(coarse):-1]
    ones = lambda n: torch.ones(1, n, dtype=torch.bool)  # noqa: E731
    sx = _Side(cx.points[None], cx.weights[None], ones(x.shape[0]))
    sy = _Side(cy.points[None], cy.weights[None], ones(y.shape[0]))
    xy = SparseSoftmin(cx, cy)
    pairs = {(id(sx), id(sy)): xy, (id(sy), id(sx)): SparseSoftmin(cy, cx, transposed=xy),
             (id(sx), id(sx)): SparseSoftmin(cx, cx), (id(sy), id(sy)): SparseSoftmin(cy, cy)}
    solver = _ClusteredSolver(chunk_bytes, pairs)
    with torch.no_grad():
        if coarse:
            kx = _Side(cx.centroid[None], cx.mass[None], ones(cx.mass.shape[0]))
            ky = _Side(cy.centroid[None], cy.mass[None], ones(cy.mass.shape[0]))
            coarse_solver = _Solver("sqeuclidean", chunk_bytes)
            pots_c = _annealing(coarse_solver, kx, ky, eps_list[0], coarse, tau)
            # the coarse problem solved at the first fine level: its potentials carry the large-scale structure
            # that the fine iterations would take many sweeps to build
            e, fine = (fine[0], fine[1:]) if fine else (eps, [])
            fc, gc, pc, qc, *_ = _final_level(coarse_solver, kx, ky, pots_c, e, tau, tol_eff, rtol, max_iter, 0,
                                              chunk_bytes)
            lam = _lam(tau, e)
            start = (lam * coarse_solver.softmin(sx, ky, gc, e), lam * coarse_solver.softmin(sy, kx, fc, e),
                     lam * coarse_solver.softmin(sx, kx, pc, e), lam * coarse_solver.softmin(sy, ky, qc, e))
            pots = _annealing(solver, sx, sy, e, fine, tau, start=start)
        else:
            pots = _annealing(solver, sx, sy, eps_list[0], eps_list[:-1], tau)
        *pots, n_iters, error, converged = _final_level(solver, sx, sy, pots, eps, tau, tol_eff, rtol, max_iter,
                                                        len(eps_list) - 1, 0)
    xs, ys = x[cx.perm][None], y[cy.perm][None]
    value = _value(solver, xs, ys, a[cx.perm][None], b[cy.perm][None], sx, sy, pots, eps, tau, track)
    return DebiasedResult(value, n_iters, converged, error, tol_eff, eps_list)


def _standard(x, y, a, b, row_mask, col_mask, *, cost, eps, tau, eps_list, tol_eff, max_iter, chunk_bytes, track,
              rtol) -> DebiasedResult:
    """The batched solve: streamed or stored kernels (see the module docstring)."""
    solver = _Solver(cost, chunk_bytes)
    with torch.no_grad():
        sx = _Side(x.detach(), a.detach(), row_mask)
        sy = _Side(y.detach(), b.detach(), col_mask)
        pots = _annealing(solver, sx, sy, eps_list[0], eps_list[:-1], tau)
        *pots, n_iters, error, converged = _final_level(solver, sx, sy, pots, eps, tau, tol_eff, rtol, max_iter,
                                                        len(eps_list) - 1, chunk_bytes)
    value = _value(solver, x, y, a, b, sx, sy, pots, eps, tau, track)
    return DebiasedResult(value, n_iters, converged, error, tol_eff, eps_list)


def debiased_sinkhorn(
    x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, row_mask: torch.Tensor,
    col_mask: torch.Tensor, *, eps: float, cost: str, tau: float, eps_scaling: float, diameter: float,
    tol: float, max_iter: int, chunk_bytes: int, track: bool, rtol: float = 0.0,
) -> DebiasedResult:
    """Solve the three problems of ``S_eps`` together (see the module docstring). Inputs are batched and padded,
    finite, centred; ``a``, ``b`` are normalised weights (0 on padding); ``diameter^r`` is the cost scale.
    Large squared Euclidean problems on CPU with numba (:func:`~geomot.transport._multiscale.multiscale_usable`)
    are solved item by item on clustered supports (:func:`_clustered`)."""
    r = 2.0 if cost == "sqeuclidean" else 1.0
    scale = diameter**r
    tol_eff = max(tol, tolerance_floor(x.dtype, scale, eps))
    opts = dict(eps=eps, tau=tau, eps_list=eps_schedule(eps, max(scale, eps), eps_scaling), tol_eff=tol_eff,
                max_iter=max_iter, chunk_bytes=chunk_bytes, track=track, rtol=rtol)
    if multiscale_usable(x, y, cost, chunk_bytes):
        return _clustered(x, y, a, b, row_mask, col_mask, **opts)
    return _standard(x, y, a, b, row_mask, col_mask, cost=cost, **opts)
