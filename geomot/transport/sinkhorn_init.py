"""Initialisers of the Sinkhorn potential ``f`` (the solver derives ``g`` from it with one exact update).

"Rethinking Initialization of the Sinkhorn Algorithm" (Thornton & Cuturi, AISTATS 2023) shows that starting from
the dual potential of an easier, closed-form OT problem cuts the iteration count. Registered initialisers
(``SINKHORN_INITS``) take the padded problem and return ``f (B, N)`` or a pair ``(f (B, N), g (B, M))``:

- ``"zero"``: ``f = 0`` (works for any cost, also for a given cost matrix).
- ``"gaussian"``: the Brenier potential between the Gaussian approximations of the two measures, for the
  squared Euclidean cost: with means ``m_x, m_y``, covariances ``S_x, S_y`` and the Bures map
  ``A = S_x^{-1/2} (S_x^{1/2} S_y S_x^{1/2})^{1/2} S_x^{-1/2}``, ``T(x) = m_y + A (x - m_x)`` and
  ``f(x) = ||x||^2 - 2 phi(x)``, ``phi(x) = x^T A x / 2 + (m_y - A m_x)^T x`` (Thornton & Cuturi, Sec. 3.2).
  ``g`` is its exact soft c-transform (one log-sum-exp pass): the closed-form conjugate potential leaves rows
  of the first kernel underflowing when the data are far from Gaussian.
- ``"sort1d"``: 1-D problems (``D = 1``), squared cost: the exact unregularised potential from the monotone
  (sorted) coupling, ``f' = 2 (x - T(x))`` with ``T`` the barycentric projection of the north-west-corner plan,
  integrated by the trapezoid rule along the sorted support (Thornton & Cuturi, Sec. 3.1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from geomot._core.errors import ValidationError
from geomot._core.registry import Registry

__all__ = ["SINKHORN_INITS"]

InitFn = Callable[..., torch.Tensor]
SINKHORN_INITS: Registry[InitFn] = Registry("sinkhorn initialiser")


def _need_points(name: str, x: torch.Tensor | None, cost: str | None) -> None:
    if x is None:
        raise ValidationError(f"init: {name!r} needs point coordinates; with a cost matrix use init='zero'")
    if cost != "sqeuclidean":
        raise ValidationError(f"init: {name!r} is derived for cost='sqeuclidean', got cost={cost!r}")


@SINKHORN_INITS.register("zero")
def _zero(x, y, a: torch.Tensor, b: torch.Tensor, *, cost: str | None) -> torch.Tensor:
    return torch.zeros_like(a)


def _sym_sqrt(m: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    w = w.clamp_min(1e-12 * float(w.abs().max().clamp_min(1e-300)))
    w = w.rsqrt() if inverse else w.sqrt()
    return (v * w) @ v.T


@SINKHORN_INITS.register("gaussian")
def _gaussian(x, y, a: torch.Tensor, b: torch.Tensor, *, cost: str | None) -> torch.Tensor:
    _need_points("gaussian", x, cost)
    f_out = torch.zeros_like(a)
    for i in range(a.shape[0]):
        mx = (a[i, :, None] * x[i]).sum(0)
        my = (b[i, :, None] * y[i]).sum(0)
        dx, dy = x[i] - mx, y[i] - my
        sx = (a[i, :, None] * dx).T @ dx
        sy = (b[i, :, None] * dy).T @ dy
        rx, irx = _sym_sqrt(sx), _sym_sqrt(sx, inverse=True)
        amap = irx @ _sym_sqrt(rx @ sy @ rx) @ irx
        amap = (amap + amap.T) / 2
        phi = 0.5 * ((x[i] @ amap) * x[i]).sum(1) + x[i] @ (my - amap @ mx)
        f_out[i] = (x[i] * x[i]).sum(1) - 2.0 * phi
    return f_out * (a > 0)


@SINKHORN_INITS.register("sort1d")
def _sort1d(x, y, a: torch.Tensor, b: torch.Tensor, *, cost: str | None) -> torch.Tensor:
    _need_points("sort1d", x, cost)
    if x.shape[-1] != 1:
        raise ValidationError(f"init: 'sort1d' needs 1-D points (D = 1), got D = {x.shape[-1]}; try 'gaussian'")
    out = torch.zeros_like(a)
    for i in range(a.shape[0]):
        keep_x, keep_y = a[i] > 0, b[i] > 0
        xs, ix = x[i, keep_x, 0].sort()
        ys, iy = y[i, keep_y, 0].sort()
        ax, by = a[i, keep_x][ix], b[i, keep_y][iy]
        cum_a, cum_b = ax.cumsum(0), by.cumsum(0)
        cum_b = cum_b / cum_b[-1]
        cum_a = cum_a / cum_a[-1]
        moment = torch.cat([ys.new_zeros(1), (by / by.sum() * ys).cumsum(0)])
        start_b = torch.cat([ys.new_zeros(1), cum_b[:-1]])

        def integral(t: torch.Tensor, ys=ys, cum_b=cum_b, moment=moment, start_b=start_b) -> torch.Tensor:
            j = torch.searchsorted(cum_b, t).clamp_max(ys.shape[0] - 1)
            return moment[j] + ys[j] * (t - start_b[j])

        lo = torch.cat([ax.new_zeros(1), cum_a[:-1]])
        tmap = (integral(cum_a) - integral(lo)) / (cum_a - lo).clamp_min(1e-300)
        steps = (xs[1:] ** 2 - xs[:-1] ** 2) - (xs[1:] - xs[:-1]) * (tmap[1:] + tmap[:-1])
        fs = torch.cat([xs.new_zeros(1), steps.cumsum(0)])
        vals = torch.empty_like(fs)
        vals[ix] = fs
        out[i, keep_x] = vals
    return out
