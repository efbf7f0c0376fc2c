"""Sinkhorn iterations: the log-domain loop (differentiable, any geometry) and the stabilised scaling loop (dense).

Both solve, for each entropy level ``eps_k`` of an annealing schedule ending at ``eps``, the dual of

    min_P <P, C> + eps KL(P | a x b) + tau_x KL(P 1 | a) + tau_y KL(P^T 1 | b)

(``tau = inf``: hard marginals) by alternating the exact block updates (Chizat et al. 2018, "Scaling algorithms
for unbalanced optimal transport problems", Prop. 2, with ``lambda = tau / (tau + eps)``):

    f_i = lambda_x * (-eps log sum_j b_j exp((g_j - C_ij) / eps))
    g_j = lambda_y * (-eps log sum_i a_i exp((f_i - C_ij) / eps))

``scaling`` runs the same updates in the scaling domain on a stored kernel ``E = exp((f0 + g0 - C) / eps)``
(two matrix-vector products per iteration instead of two log-sum-exp passes, ~10x cheaper on CPU), absorbing
the scalings into ``(f0, g0)`` whenever ``u_i v_j`` leaves ``[e^-40, e^40]`` ("stabilised" Sinkhorn, Schmitzer 2019,
"Stabilized sparse scaling algorithms for entropy regularized transport problems", Alg. 2).

The stopping criterion of both loops is the L1 marginal error after a column update (columns are then exact)
``err = sum_i |(P 1)_i - a_i exp(-f_i / tau_x)|``, which is the row-marginal violation for balanced problems and
the first-order optimality residual for unbalanced ones.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch

from geomot.ops._products import gemv
from geomot.transport._kernels import safe_exp

__all__ = ["LoopState", "log_loop", "scaling_loop", "symmetric_loop"]

_ABSORB = 20.0  # nats: absorb the scalings into the potentials when u_i v_j leaves e^(+-2 * 20); float32
# kernels keep entries down to e^-87, so pairs that matter (P_ij > 1e-10 a_i b_j) stay representable
_ABSORB_ONE = 50.0  # nats: ... or when one scaling leaves e^(+-50)


class LoopState(NamedTuple):
    f: torch.Tensor  # (B, N)
    g: torch.Tensor  # (B, M)
    n_iters: int
    error: torch.Tensor  # (B,)
    sums: tuple[torch.Tensor, torch.Tensor] | None = None  # (sum P, sum P C) at (f, g), (B,) each, if known


_PROBE = 8  # relax="auto": plain iterations before the first rate estimate (dense and online loops)
_OMEGA_MAX = 1.9  # relax="auto": cap of the over-relaxation factor


class _AutoRelax:
    """Adaptive over-relaxation factor for ``relax="auto"``: the adaptive SOR of Hageman & Young (1981, "Applied
    Iterative Methods", ch. 9) applied to Sinkhorn's two-block iteration (Thibault et al. 2021; Lehmann et al.
    2022, "A note on overrelaxation in the Sinkhorn algorithm").

    Near the solution plain (alternating) Sinkhorn contracts the error at a linear rate ``q`` (the square of the
    second singular value of the scaled plan ``diag(a)^-1/2 P diag(b)^-1/2``); over-relaxed by ``w`` it contracts
    at the largest root ``lam`` of ``(lam + w - 1)^2 = lam w^2 q`` while ``w <= w* = 2 / (1 + sqrt(1 - q))``, and
    at ``lam = w - 1`` beyond (complex roots: the error oscillates). ``w*`` is optimal, with rate ``w* - 1``.

    Procedure, fed one marginal error per iteration:

    1. ``probe`` plain iterations; the rate over the last ``window`` of them estimates ``q``. The early rate of
       plain iterations overestimates ``1 - q`` (faster modes have not died out yet: 3-5x on the benchmark
       problems), and too large a ``w`` costs little (rate ``w - 1``) while too small a one costs a lot (the rate
       has a vertical tangent at ``w*``), so the first factor is ``w*`` of ``1 - (1 - q) / boost``, capped at
       ``1 + q`` so that it never contracts slower than plain iterations (``w - 1 <= q``).
    2. At each later iteration (``settle`` iterations after a change of ``w``), if the last ``window`` errors
       decrease monotonically at a rate ``lam > w - 1`` (a real root), ``q = (lam + w - 1)^2 / (lam w^2)`` and
       ``w`` rises to ``w*(q)`` when that is larger. ``w`` never decreases this way: above ``w*`` the error
       oscillates, the windows are not monotone or faster than ``w - 1``, and they are skipped.
    3. Safeguard: no new best error at ``w > 1`` within ``patience`` iterations (counted from the largest error
       since ``w`` changed, as a switch may start with a transient rise; an oscillation too slow to be useful,
       no convergence) or, for errors below ``2^10`` units of the float precision (1.2e-4 in float32), the best
       error not halved (``progress``) within ``patience`` iterations (the creep near the precision floor,
       which relaxation raises and which a slowing decrease makes look like ``q -> 1``), or an error ``blowup``
       times both the lowest seen and the first at this ``w`` (nonlinear divergence far from the solution),
       halves ``w - 1`` and stops the adaptation; after ``backoffs`` halvings, plain Sinkhorn (which converges
       globally) for good. A non-finite error goes back to plain iterations at once.
    """

    window = 5  # error ratios per rate estimate
    settle = 1  # iterations after a change of w before its rate is measured
    boost = 4.0  # the first estimate's 1 - q is divided by this
    patience = 40  # back off when the best error has not fallen by ``progress`` within this many iterations
    progress = 0.5  # ... near the precision floor; above it any new best counts
    backoffs = 2  # halvings of w - 1 before plain iterations for good
    blowup = 100.0  # back off at once when the error exceeds this multiple of the lowest one

    def __init__(self, probe: int, unit: float = 2.0**-52):
        self.probe = probe
        self.floor = 2.0**10 * unit  # errors below this are near the precision floor (float32: 1.2e-4)
        self.omega = 1.0
        self.q = 0.0
        self.frozen = False  # after a back-off omega only decreases
        self.n_backoff = 0
        self.errors: list[float] = []
        self.start = 0  # index in errors of the first error measured at the current omega
        self.peak = 0.0  # largest error at the current w
        self.bests: list[float] = []  # running best error at the current w since that peak
        self.lowest = math.inf  # best error at any w
        self.first = math.inf  # first error at the current w

    def _set(self, omega: float) -> float:
        self.omega = omega
        self.start = len(self.errors)
        self.peak, self.bests = 0.0, []
        return omega

    def __call__(self, err: float) -> float:
        """Record the error of the latest iterate; return the factor for the next iteration."""
        self.errors.append(err)
        if self.omega == 1.0 and self.frozen:
            return 1.0
        if not math.isfinite(err):
            self.frozen = True
            return self._set(1.0)
        if err > self.peak:  # a transient after a change of w may first raise the error: count from its peak
            self.peak, self.bests = err, []
        self.bests.append(min(err, self.bests[-1]) if self.bests else err)
        if len(self.errors) == self.start + 1:
            self.first = err  # the first error at this w (may jump: it now counts the column marginal too)
        self.lowest = min(self.lowest, err)
        blowup = err > self.blowup * max(self.lowest, self.first)  # far from the solution relaxing may diverge
        # near the float floor a creeping decrease is noise (relaxation raises the floor): ask for real progress;
        # above it a slow (sublinear) decrease is genuine and relaxed iterations still help, so any will do
        need = self.progress if err < self.floor else 1.0
        stalled = len(self.bests) > self.patience and self.bests[-1] >= need * self.bests[-1 - self.patience]
        if self.omega != 1.0 and (stalled or blowup):
            # no progress over-relaxed: halve omega - 1, eventually plain Sinkhorn for good
            self.frozen = True
            self.n_backoff += 1
            return self._set(1.0 if self.n_backoff > self.backoffs else 1.0 + 0.5 * (self.omega - 1.0))
        if self.frozen:
            return self.omega
        n = len(self.errors) - self.start  # errors measured at the current omega
        skip = max(0, self.probe - self.window - 1) if self.omega == 1.0 else self.settle
        if n < skip + self.window + 1:
            return self.omega
        win = self.errors[-1 - self.window:]
        if not all(0.0 < e1 < e0 for e0, e1 in itertools.pairwise(win)):
            return self.omega  # not a clean linear decrease (transient or oscillation above w*)
        lam = (win[-1] / win[0]) ** (1.0 / self.window)
        w = self.omega
        if lam <= w - 1.0:
            return w  # faster than any real root allows: the descending half of an oscillation (w > w*)
        q = min(1.0, (lam + w - 1.0) ** 2 / (lam * w * w))
        if q > self.q:
            self.q = q
            if w == 1.0:  # first estimate, from plain iterations
                new = min(1.0 + q, 2.0 / (1.0 + math.sqrt((1.0 - q) / self.boost)))
            else:
                new = 2.0 / (1.0 + math.sqrt(1.0 - q))
            new = min(_OMEGA_MAX, new)
            if new > w + 0.01:
                return self._set(new)
        return self.omega


def _lam(tau: float, eps: float) -> float:
    return 1.0 if math.isinf(tau) else tau / (tau + eps)


def _target(f: torch.Tensor, tau: float) -> torch.Tensor | float:
    """``exp(-f / tau)``: the factor of ``a`` the row marginal must equal at optimality (1 when balanced)."""
    return 1.0 if math.isinf(tau) else torch.exp(-f / tau)


def log_loop(
    geom,
    a: torch.Tensor,
    b: torch.Tensor,
    la: torch.Tensor,
    lb: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor | None,
    *,
    schedule: list[float],
    stage_iters: int,
    tol: float,
    max_iter: int,
    tau_x: float,
    tau_y: float,
    row_mask: torch.Tensor,
    col_mask: torch.Tensor,
    relax: float | str = 1.0,
) -> LoopState:
    """Log-domain alternating updates (autograd-friendly: no in-place ops on tracked tensors).

    Without autograd on the online backend with the squared Euclidean cost, each iteration is one fused pass
    (:meth:`OnlineGeometry.sweep`) and ``relax`` over-relaxes the final stage as in :func:`scaling_loop`;
    otherwise ``relax`` must be 1 or ``"auto"`` (plain iterations)."""
    if geom.online and geom.fused and not torch.is_grad_enabled():
        return _fused_loop(geom, a, b, la, lb, f, g, schedule=schedule, stage_iters=stage_iters, tol=tol,
                           max_iter=max_iter, tau_x=tau_x, tau_y=tau_y, row_mask=row_mask, col_mask=col_mask,
                           relax=relax)
    n_iters = 0
    err = a.new_full((a.shape[0],), float("inf"))
    if g is None:
        g = _lam(tau_y, schedule[0]) * geom.softmin_cols(f, la, schedule[0])
    for k, e in enumerate(schedule):
        final = k == len(schedule) - 1
        lx, ly = _lam(tau_x, e), _lam(tau_y, e)
        f_hat = geom.softmin_rows(g, lb, e, hint=f)
        it = 0
        while True:
            if final and it > 0:
                with torch.no_grad():
                    ratio = torch.exp((f - f_hat) / e)
                    err = (a * (ratio - _target(f, tau_x)).abs()).sum(1)
                if float(err.max()) < tol or n_iters >= max_iter:
                    break
            elif not final and it >= stage_iters:
                break
            f = torch.where(row_mask, lx * f_hat, 0.0)
            g = torch.where(col_mask, ly * geom.softmin_cols(f, la, e, hint=g), 0.0)
            f_hat = geom.softmin_rows(g, lb, e, hint=f_hat)
            it += 1
            n_iters += 1
    return LoopState(f, g, n_iters, err)


def _fused_loop(geom, a, b, la, lb, f, g, *, schedule, stage_iters, tol, max_iter, tau_x, tau_y, row_mask,
                col_mask, relax) -> LoopState:
    """Alternating (optionally over-relaxed) Sinkhorn on the online backend, one kernel pass per iteration.

    Each sweep returns the marginal error of the potentials it started from (rows; plus columns when
    over-relaxed), so the loop stops on the state it measured and discards the update of that last sweep.
    """
    n_iters = 0
    err = a.new_full((a.shape[0],), float("inf"))
    f = torch.where(row_mask, f, 0.0)
    if g is None:
        # exact c-transform of f in one pass, shifted by its estimate from a row subsample (avoids a max pass)
        e0 = schedule[0]
        g = torch.where(col_mask, _lam(tau_y, e0) * geom.softmin_cols(f, la, e0, hint=geom.col_hint(f, la, e0)), 0.0)
    for k, e in enumerate(schedule):
        final = k == len(schedule) - 1
        lx, ly = _lam(tau_x, e), _lam(tau_y, e)
        omega = (1.0 if relax == "auto" else float(relax)) if final else 1.0
        auto = _AutoRelax(_PROBE, torch.finfo(f.dtype).eps) if final and relax == "auto" else None
        it = 0
        while final or it < stage_iters:
            f_new, g_new, sweep_err = geom.sweep(
                f, g, a, b, e, omega=omega, lx=lx, ly=ly, row_target=_target(f, tau_x),
                col_target=_target(g, tau_y), row_mask=row_mask, col_mask=col_mask,
                need_col_error=final and omega != 1.0)
            if final:
                err = sweep_err
                cur = float(err.max())
                if cur < tol or n_iters >= max_iter:
                    break
                if auto is not None:
                    omega = auto(cur)
            f, g = f_new, g_new
            it += 1
            n_iters += 1
    return LoopState(f, g, n_iters, err)


def symmetric_loop(
    geom,
    a: torch.Tensor,
    b: torch.Tensor,
    la: torch.Tensor,
    lb: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor | None,
    *,
    schedule: list[float],
    stage_iters: int,
    tol: float,
    max_iter: int,
    tau_x: float,
    tau_y: float,
    row_mask: torch.Tensor,
    col_mask: torch.Tensor,
) -> LoopState:
    """Self-transport ``OT_eps(alpha, alpha)`` (symmetric cost, ``a = b``): the optimal potentials are equal,
    ``f = g``, and the averaged update ``f <- (f + lambda softmin(f)) / 2`` (Feydy et al. 2019, Sec. 3.1; GeomLoss)
    converges in a few iterations where alternating Sinkhorn crawls (its composed map has an eigenvalue near 1)."""
    n_iters = 0
    err = a.new_full((a.shape[0],), float("inf"))
    if g is not None:
        f = 0.5 * (f + g)
    for k, e in enumerate(schedule):
        final = k == len(schedule) - 1
        lx = _lam(tau_x, e)
        it = 0
        while True:
            f_hat = geom.softmin_rows(f, la, e, hint=f)
            if final:
                with torch.no_grad():
                    err = (a * (torch.exp((f - f_hat) / e) - _target(f, tau_x)).abs()).sum(1)
                if float(err.max()) < tol or n_iters >= max_iter:
                    break
            elif it >= stage_iters:
                break
            f = torch.where(row_mask, 0.5 * (f + lx * f_hat), 0.0)
            it += 1
            n_iters += 1
    return LoopState(f, f, n_iters, err)


def scaling_loop(
    geom,
    a: torch.Tensor,
    b: torch.Tensor,
    la: torch.Tensor,
    lb: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor | None,
    *,
    schedule: list[float],
    stage_iters: int,
    tol: float,
    max_iter: int,
    tau_x: float,
    tau_y: float,
    row_mask: torch.Tensor,
    col_mask: torch.Tensor,
    relax: float | str = 1.0,
) -> LoopState:
    """Stabilised scaling-domain loop on a dense geometry (no autograd; one ``(B, N, M)`` kernel buffer).

    Without ``g`` the first kernel is normalised per column (``g0_j = -eps max_i (f_i - C_ij) / eps``), so that
    the first column update is the exact soft c-transform of ``f`` without a log-domain pass. One host sync per
    iteration reads the range of the scalings and the error together.
    """
    with torch.no_grad():
        f = torch.where(row_mask, f.detach(), 0.0)
        normalize = g is None
        g = torch.zeros_like(b) if g is None else torch.where(col_mask, g.detach(), 0.0)
        kernel = torch.empty(geom.shape, dtype=f.dtype, device=f.device)
        n_iters = 0
        err = a.new_full((a.shape[0],), float("inf"))
        for k, e in enumerate(schedule):
            final = k == len(schedule) - 1
            lx, ly = _lam(tau_x, e), _lam(tau_y, e)
            budget = max_iter - n_iters if final else stage_iters
            omega = (1.0 if relax == "auto" else relax) if final else 1.0
            auto = _AutoRelax(_PROBE, torch.finfo(f.dtype).eps) if final and relax == "auto" else None
            st = _Scaling(geom, kernel, a, b, f, g, e, lx, ly, tau_x, row_mask, col_mask, tau_y, omega, normalize)
            normalize = False
            it = 0
            while it < budget:
                u_prev, v_prev = st.u, st.v
                st.step()
                stats = st.stats(final)
                it += 1
                n_iters += 1
                if not stats[0]:
                    # a row or column of the kernel underflowed: fall back to exact log-domain updates
                    st.u, st.v = u_prev, v_prev
                    f, g = st.absorb()
                    f = torch.where(row_mask, lx * geom.softmin_rows(g, lb, e), 0.0)
                    g = torch.where(col_mask, ly * geom.softmin_cols(f, la, e), 0.0)
                    st = _Scaling(geom, kernel, a, b, f, g, e, lx, ly, tau_x, row_mask, col_mask, tau_y, omega)
                    continue
                if final:
                    err = st.err
                    if stats[2] < tol:
                        break
                    if auto is not None:
                        omega = st.relax = auto(stats[2])
                if stats[1]:
                    f, g = st.absorb()
                    st = _Scaling(geom, kernel, a, b, f, g, e, lx, ly, tau_x, row_mask, col_mask, tau_y, omega)
            f, g = st.absorb()
        sums = st.sums(geom)
        del kernel, st
    return LoopState(f, g, n_iters, err, sums)


class _Scaling:
    """Scalings ``u (B, N)``, ``v (B, M)`` on the kernel ``E = exp((f0 + g0 - C) / eps)``: ``P = u E v * a x b``.

    ``relax = omega`` over-relaxes the updates, ``log u <- (1 - omega) log u + omega log u_hat`` (Thibault et al.
    2021, "Overrelaxed Sinkhorn-Knopp algorithm for regularized optimal transport"); ``omega = 1`` is Sinkhorn.
    ``normalize`` shifts ``g0`` so that every column of ``E`` has maximum 1 (a safe start from ``f`` alone).
    """

    def __init__(self, geom, kernel, a, b, f0, g0, eps, lx, ly, tau_x, row_mask, col_mask, tau_y=math.inf,
                 relax=1.0, normalize=False):
        padded = not (bool(row_mask.all()) and bool(col_mask.all()))
        pair = row_mask[:, :, None] & col_mask[:, None, :] if padded else None
        t = geom.log_kernel_(f0, g0, eps, out=kernel)
        if normalize:
            if padded:
                t.masked_fill_(~pair, float("-inf"))
            m = t.amax(1)
            m = torch.where(torch.isfinite(m) & col_mask, m, 0.0)
            t.sub_(m[:, None, :])
            g0 = g0 - eps * m
        self.kernel = safe_exp(t, inplace=True)
        if padded:
            # padded rows/columns may hold overflowing entries; they are never read with a non-zero weight
            self.kernel.masked_fill_(~pair, 0.0)
        self.a, self.b, self.f0, self.g0, self.eps = a, b, f0, g0, eps
        self.lx, self.ly, self.tau_x, self.tau_y, self.relax = lx, ly, tau_x, tau_y, relax
        self.row_mask, self.col_mask = row_mask, col_mask
        # unbalanced: u = exp(-(1 - lambda) f0 / eps) * (E b v)^(-lambda)
        self.rfac = None if lx == 1.0 else torch.exp(-(1.0 - lx) * f0 / eps)
        self.cfac = None if ly == 1.0 else torch.exp(-(1.0 - ly) * g0 / eps)
        self.u = torch.ones_like(f0)
        self.v = torch.ones_like(g0)
        self.w = self._rows(self.v)
        self.z = None
        self.err = None

    def _rows(self, v: torch.Tensor) -> torch.Tensor:
        return gemv(self.kernel, self.b * v)

    def _cols(self, u: torch.Tensor) -> torch.Tensor:
        return gemv(self.kernel.transpose(1, 2), self.a * u)

    def _update(self, old: torch.Tensor, s: torch.Tensor, lam: float, fac, mask) -> torch.Tensor:
        if self.relax == 1.0:
            out = s.reciprocal() if lam == 1.0 else s.pow(-lam) * fac
        else:
            # old * (u_hat / old)^omega: the ratio is near 1 close to convergence, so the power is exact to a few
            # ulps even when the scalings themselves are far from 1 (old^(1 - omega) u_hat^omega rounds
            # log(old) first: ~1e-6 relative in float32 at |log old| ~ 40)
            ratio = (old * s).reciprocal() if lam == 1.0 else s.pow(-lam) * fac / old
            out = old * ratio.pow(self.relax)
        return torch.where(mask, out, 1.0)

    def step(self) -> None:
        self.u = self._update(self.u, self.w, self.lx, self.rfac, self.row_mask)
        self.z = self._cols(self.u)
        self.v = self._update(self.v, self.z, self.ly, self.cfac, self.col_mask)
        self.w = self._rows(self.v)

    def stats(self, with_error: bool) -> tuple[bool, bool, float]:
        """``(finite, needs_absorb, max error)`` from one host sync: the scalings must be finite and positive
        (else a kernel row or column underflowed), and are absorbed into the potentials beyond ``e^(+-15)``;
        the error (``self.err``, ``(B,)``) is computed only when asked (else ``inf``)."""
        parts = [self.u.amin(), self.u.amax(), self.v.amin(), self.v.amax(), self.w.amax()]
        if with_error:
            self.err = self.error()
            parts.append(self.err.amax())
        vals = torch.stack(parts).tolist()
        umin, umax, vmin, vmax, wmax = vals[:5]
        # NaN fails every comparison below
        finite = 0.0 < umin and umax < math.inf and 0.0 < vmin and vmax < math.inf and wmax < math.inf
        if not finite:
            return False, False, math.inf
        # what matters is the range of u_i v_j (a gauge shift u c, v / c leaves P unchanged): absorb when it
        # leaves [e^-2A, e^2A], or when a scaling alone nears the float range
        lu = (math.log(umin), math.log(umax))
        lv = (math.log(vmin), math.log(vmax))
        absorb = (lu[1] + lv[1] > 2 * _ABSORB or lu[0] + lv[0] < -2 * _ABSORB
                  or max(-lu[0], lu[1], -lv[0], lv[1]) > _ABSORB_ONE)
        return finite, absorb, (vals[5] if with_error else math.inf)

    def error(self) -> torch.Tensor:
        """``sum_i a_i |u_i (E b v)_i - exp(-f_i / tau_x)|`` (the row marginal is ``P 1 = a u (E b v)``), plus the
        same on the columns when over-relaxed (otherwise the columns are exact)."""
        err = self._side_error(self.a, self.u, self.w, self.f0, self.tau_x)
        if self.relax != 1.0:
            err = err + self._side_error(self.b, self.v, self.z, self.g0, self.tau_y)
        return err

    def _side_error(self, w, s, prod, pot0, tau) -> torch.Tensor:
        if math.isinf(tau):
            return (w * (s * prod - 1.0).abs()).sum(1)
        pot = pot0 + self.eps * torch.log(s)
        return (w * (s * prod - torch.exp(-pot / tau)).abs()).sum(1)

    def sums(self, geom) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum P, sum P C)`` of the current plan ``P = (a u) E (b v)`` (may overwrite the kernel buffer)."""
        return geom.kernel_sums(self.kernel, self.a * self.u, self.b * self.v)

    def absorb(self) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.where(self.row_mask, self.f0 + self.eps * torch.log(self.u), 0.0)
        g = torch.where(self.col_mask, self.g0 + self.eps * torch.log(self.v), 0.0)
        return f, g
