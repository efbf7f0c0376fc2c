"""Sinkhorn-Newton-Sparse (SNS): "Accelerating Sinkhorn Algorithm with Sparse Newton Iterations" (Tang, Shavlovsky,
Rahmanian, Tardini, Thekumparampil, Xiao, Ying; ICLR 2024), Algorithm 1.

Stage 1 runs (early-stopped) Sinkhorn. Stage 2 maximises the concave dual (the paper's Lyapunov potential)

    L(f, g) = <a, f> + <b, g> - eps sum_ij P_ij,    P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps),

with Newton steps. ``grad L = (a - P 1, b - P^T 1)`` and ``-eps hess L = H = [[diag(P 1), P], [P^T, diag(P^T 1)]]``.
``H`` is replaced by ``H_s``, where ``P`` keeps its ``k`` largest entries per row (``k = ceil(sparsity * M)``, or
the fewest that keep all but a fraction ``drop_mass`` of every row's mass) (the
diagonal stays exact, which makes ``H_s`` strictly diagonally dominant, hence positive definite); the direction
``(df, dg) = eps H_s^{-1} grad L`` is found by Jacobi-preconditioned conjugate gradient, and the step by a
backtracking (Armijo) line search on ``L``. Each Newton step is followed by an exact column update, so that the
reported marginal error is measured as in Sinkhorn (columns exact, L1 error of the rows).
"""

from __future__ import annotations

import logging
import math

import torch

from geomot._core.checks import check_positive
from geomot._core.errors import ValidationError
from geomot.transport._kernels import safe_exp
from geomot.transport._sinkhorn_loops import LoopState, scaling_loop

__all__ = ["sns_loop"]

logger = logging.getLogger(__name__)


def _lyapunov(geom, f, g, a, b, la, lb, eps, pair) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L (B,), P (B, N, M))``."""
    lp = ((f[:, :, None] + g[:, None, :] - geom.cost) / eps + la[:, :, None] + lb[:, None, :])
    p = safe_exp(lp.masked_fill(~pair, float("-inf"))) * pair
    return (a * f).sum(1) + (b * g).sum(1) - eps * p.sum((1, 2)), p


def _sparse_ops(vals: torch.Tensor, idx: torch.Tensor, m: int):
    """``v -> P_s v`` and ``u -> P_s^T u`` for the kept entries ``vals, idx (B, N, k)`` (gather / index_add;
    cheaper than torch's CSR kernels at these sizes)."""
    bsz, n, k = vals.shape
    flat = (idx + (torch.arange(bsz, device=idx.device) * m)[:, None, None]).reshape(-1)

    def rows(v: torch.Tensor) -> torch.Tensor:  # (B, M) -> (B, N)
        return (vals * v.reshape(-1)[flat].view(bsz, n, k)).sum(2)

    def cols(u: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, M)
        out = u.new_zeros(bsz * m)
        return out.index_add_(0, flat, (vals * u[:, :, None]).reshape(-1)).view(bsz, m)

    return rows, cols


def _cg(matvec, rhs, diag, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Batched Jacobi-preconditioned conjugate gradient for SPD systems; ``rhs``, ``diag``: ``(B, K)``.
    Items whose relative residual is below ``tol`` are frozen (no 0/0 once their residual vanishes)."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r / diag
    p = z.clone()
    rz = (r * z).sum(1)
    stop = tol * rhs.norm(dim=1)
    live = r.norm(dim=1) > stop
    it = 0
    while it < max_iter and bool(live.any()):
        it += 1
        hp = matvec(p)
        php = (p * hp).sum(1)
        alpha = torch.where(live & (php > 0), rz / torch.where(php > 0, php, 1.0), 0.0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * hp
        live = live & (r.norm(dim=1) > stop) & (php > 0)
        z = r / diag
        rz_new = (r * z).sum(1)
        beta = torch.where(live & (rz > 0), rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta[:, None] * p
        rz = rz_new
    return x, it


def sns_loop(
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
    sinkhorn_iters: int = 20,
    sparsity: float | None = None,
    drop_mass: float = 1e-3,
    cg_tol: float = 1e-8,
    cg_max_iter: int = 200,
    armijo: float = 1e-4,
) -> LoopState:
    """Sinkhorn warm start (``sinkhorn_iters`` iterations at the final eps, after the annealing stages), then
    sparse Newton steps until ``marginal_error <= tol`` or ``max_iter`` iterations in all.

    Args (beyond the common loop arguments):
        sinkhorn_iters: Sinkhorn iterations of stage 1 at the final eps (the paper's ``N_1``).
        sparsity: fraction ``rho`` of each row of ``P`` kept in the Hessian (``0 < rho <= 1``), or None to
            choose it at each step from ``drop_mass``.
        drop_mass: with ``sparsity=None``, keep in every row the entries above ``drop_mass * (P 1)_i / M`` (the
            dropped entries then hold at most a fraction ``drop_mass`` of each row's mass); ``k`` is the largest
            such count over the rows.
        cg_tol: relative residual of the conjugate-gradient solve.
        cg_max_iter: conjugate-gradient iterations per Newton step.
        armijo: sufficient-increase constant of the line search.
    """
    if not isinstance(sinkhorn_iters, int) or sinkhorn_iters < 1:
        raise ValidationError(f"sns_options['sinkhorn_iters']: expected a positive integer, got {sinkhorn_iters!r}")
    if sparsity is not None and not 0 < check_positive(sparsity, "sns_options['sparsity']") <= 1:
        raise ValidationError(f"sns_options['sparsity']: expected a fraction in (0, 1], got {sparsity!r}")
    drop = check_positive(drop_mass, "sns_options['drop_mass']")
    eps = schedule[-1]
    n_warm = min(max_iter, sinkhorn_iters + (len(schedule) - 1) * stage_iters)
    st = scaling_loop(geom, a, b, la, lb, f, g, schedule=schedule, stage_iters=stage_iters, tol=tol,
                      max_iter=n_warm, tau_x=tau_x, tau_y=tau_y, row_mask=row_mask, col_mask=col_mask)
    f, g, n_iters, err = st.f, st.g, st.n_iters, st.error
    if float(err.max()) <= tol:
        return st
    pair = row_mask[:, :, None] & col_mask[:, None, :]
    m_cols = geom.shape[2]
    cg_total = 0
    while n_iters < max_iter and float(err.max()) > tol:
        obj, p = _lyapunov(geom, f, g, a, b, la, lb, eps, pair)
        r, c = p.sum(2), p.sum(1)
        active = (err > tol)[:, None]  # converged items stay put
        rhs = torch.cat([a - r, b - c], 1) * active
        if sparsity is None:
            k = int((p >= (drop / m_cols) * r[:, :, None]).sum(2).amax())
        else:
            k = math.ceil(sparsity * m_cols)
        k = max(1, min(m_cols, k))
        vals, idx = p.topk(k, dim=2)
        del p
        n = f.shape[1]
        diag = torch.cat([torch.where(row_mask, r, 1.0), torch.where(col_mask, c, 1.0)], 1)
        diag = diag.clamp_min(torch.finfo(f.dtype).tiny)
        rows, cols = _sparse_ops(vals, idx, m_cols)

        def matvec(v, rows=rows, cols=cols, diag=diag, n=n):
            return diag * v + torch.cat([rows(v[:, n:]), cols(v[:, :n])], 1)

        d, its = _cg(matvec, rhs, diag, cg_tol, cg_max_iter)
        d = torch.where(torch.isfinite(d) & active, d, 0.0)
        cg_total += its
        df, dg = eps * d[:, :n], eps * d[:, n:]
        slope = (rhs * torch.cat([df, dg], 1)).sum(1)  # > 0: ascent direction
        step = torch.ones_like(obj)
        for _ in range(30):
            cand, _ = _lyapunov(geom, f + step[:, None] * df, g + step[:, None] * dg, a, b, la, lb, eps, pair)
            # near the optimum the predicted gain drops below the rounding of L: take the Newton step
            tiny = slope <= 1e-13 * obj.abs().clamp_min(1.0)
            ok = (cand >= obj + armijo * step * slope) | tiny
            if bool(ok.all()):
                break
            step = torch.where(ok, step, step / 2)
        else:
            step = torch.where(ok, step, 0.0)  # no ascent found: the column update below still helps
        f = torch.where(row_mask, f + step[:, None] * df, 0.0)
        g = torch.where(col_mask, g + step[:, None] * dg, 0.0)
        # exact column update, then the row marginal error (the Sinkhorn criterion)
        g = torch.where(col_mask, geom.softmin_cols(f, la, eps), 0.0)
        f_hat = geom.softmin_rows(g, lb, eps)
        err = (a * (torch.exp((f - f_hat) / eps) - 1.0).abs()).sum(1)
        n_iters += 1
        logger.debug("sns: Newton step %d, %d entries per row, step size %s, CG %d, marginal error %.3g",
                     n_iters, k, step.tolist(), its, float(err.max()))
    logger.debug("sns: %d iterations (%d CG iterations in all)", n_iters, cg_total)
    return LoopState(f, g, n_iters, err)
