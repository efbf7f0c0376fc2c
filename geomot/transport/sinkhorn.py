"""Entropic optimal transport: batched log-domain Sinkhorn with eps-scaling, initialisers, unbalanced marginals,
a Newton stage, envelope or unrolled gradients and a lazily applied plan.

Problem (Cuturi 2013; unbalanced form of Chizat et al. 2018, ``tau = None`` for hard marginals):

    OT_eps(a, b) = min_{P >= 0} <P, C> + eps KL(P | a x b) + tau KL(P 1 | a) + tau KL(P^T 1 | b)

with ``C_ij = c(x_i, y_j)`` (default ``||x_i - y_j||^2``, POT's convention; ``eps`` is in the cost's units) and
the generalised ``KL(p | q) = sum p log(p / q) - p + q``. Its dual is

    max_{f, g} sum_i a_i phi(f_i) + sum_j b_j phi(g_j) - eps sum_ij a_i b_j (exp((f_i + g_j - C_ij) / eps) - 1),

``phi(f) = f`` (balanced) or ``tau (1 - exp(-f / tau))``, and the optimal plan is
``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``.

Two entry points share every option: :func:`sinkhorn` on point sets (tensors ``(N, D)`` / ``(B, N, D)`` with
``lengths``, PointClouds, Measures, Meshes) and :func:`sinkhorn_from_cost` on a given cost matrix
``(N, M)`` / ``(B, N, M)`` (e.g. distances between spectral embeddings).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import NamedTuple

import torch

from geomot._core.accel import triton_usable
from geomot._core.batch import mask_from_lengths
from geomot._core.checks import (
    check_float_tensor,
    check_lengths,
    check_positive,
    check_weights,
    describe,
)
from geomot._core.errors import ConvergenceWarning, ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.transport._debiased import measure_pair, screen_inputs, tolerance_floor, user_stacklevel
from geomot.transport._kernels import COSTS, DenseGeometry, OnlineGeometry
from geomot.transport._sinkhorn_loops import log_loop, scaling_loop, symmetric_loop
from geomot.transport._sinkhorn_value import SinkhornPlan, _phi, dual_value
from geomot.transport._triton_softmin import TritonGeometry, TritonSums
from geomot.transport.sinkhorn_init import SINKHORN_INITS
from geomot.transport.sns import sns_loop

__all__ = ["SINKHORN_METHODS", "SinkhornPlan", "SinkhornResult", "sinkhorn", "sinkhorn_from_cost"]

logger = logging.getLogger(__name__)

SINKHORN_METHODS: Registry = Registry("sinkhorn method")
SINKHORN_METHODS.add("scaling", scaling_loop)
SINKHORN_METHODS.add("log", log_loop)
SINKHORN_METHODS.add("sns", sns_loop)
SINKHORN_METHODS.add("symmetric", symmetric_loop)

_GRADS = ("envelope", "unroll", "none")
_BACKENDS = ("auto", "dense", "online", "triton")
DENSE_BYTES = 2**30  # the "auto" backend stores C (and a kernel buffer) below this size


class SinkhornResult(NamedTuple):
    """Output of :func:`sinkhorn` / :func:`sinkhorn_from_cost` (shapes for batched input; unbatched input drops
    the leading ``B``).

    Attributes:
        value: ``(B,)`` regularised cost ``<P, C> + eps KL(P | a x b)`` (+ the marginal penalties when
            unbalanced), evaluated as the dual objective at ``(f, g)``; differentiable (see ``grad``).
        transport_cost: ``(B,)`` ``<P, C>``, what POT's ``sinkhorn2`` returns (with ``grad="envelope"`` its
            gradient treats ``P`` as fixed, as POT does).
        f: ``(B, N)`` dual potential on the source (0 on padding); balanced potentials, defined up to
            ``(f + c, g - c)``, are returned in the gauge ``<a, f> = <b, g>``.
        g: ``(B, M)`` dual potential on the target (0 on padding).
        n_iters: iterations run (all eps-scaling stages; Newton steps count one each).
        converged: ``(B,)`` bool, ``marginal_error <= tol``.
        marginal_error: ``(B,)`` ``sum_i |(P 1)_i - a_i exp(-f_i / tau)|`` (``tau = inf``: ``|P 1 - a|_1``),
            measured after a column update so that the column marginal is exact.
        plan: a :class:`SinkhornPlan`, the plan applied lazily (``plan @ v``, ``plan.dense()``, ...).
    """

    value: torch.Tensor
    transport_cost: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    n_iters: int
    converged: torch.Tensor
    marginal_error: torch.Tensor
    plan: SinkhornPlan


def _tau_pair(tau: object) -> tuple[float, float]:
    if tau is None:
        return math.inf, math.inf
    if isinstance(tau, (tuple, list)):
        if len(tau) != 2:
            raise ValidationError(f"tau: expected a number or a pair (tau_x, tau_y), got {tau!r}")
        return _tau_one(tau[0]), _tau_one(tau[1])
    v = _tau_one(tau)
    return v, v


def _tau_one(t: object) -> float:
    if t is None or (isinstance(t, (int, float)) and math.isinf(t) and t > 0):
        return math.inf
    return check_positive(t, "tau")


def _schedule(eps: float, start: float, ratio: float | None) -> list[float]:
    """Geometric eps-scaling ``start, start * ratio, ...`` down to ``eps`` (``[eps]`` without annealing)."""
    if ratio is None or start <= eps:
        return [eps]
    n = math.ceil(math.log(eps / start) / math.log(ratio))
    return [start * ratio**k for k in range(n) if start * ratio**k > eps] + [eps]


def _check_options(eps, tol, max_iter, eps_scaling, eps_scaling_iters, method, grad, relaxation):
    eps = check_positive(eps, "eps")
    tol = check_positive(tol, "tol")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValidationError(f"max_iter: expected a positive integer, got {max_iter!r}")
    if eps_scaling is not None:
        r = check_positive(eps_scaling, "eps_scaling")
        if r >= 1:
            raise ValidationError(f"eps_scaling: expected a ratio in (0, 1) or None, got {eps_scaling!r}")
    if not isinstance(eps_scaling_iters, int) or eps_scaling_iters < 1:
        raise ValidationError(f"eps_scaling_iters: expected a positive integer, got {eps_scaling_iters!r}")
    if method != "auto":
        SINKHORN_METHODS.get(method, arg="method")
    if relaxation != "auto" and not 1.0 <= check_positive(relaxation, "relaxation") < 2.0:
        raise ValidationError(f"relaxation: expected 'auto' or a value in [1, 2), got {relaxation!r}")
    if grad not in _GRADS:
        raise ValidationError(f"grad: expected one of {', '.join(_GRADS)}, got {grad!r}")
    return eps, tol


def _solve(
    geom, a, b, row_mask, col_mask, *, x, y, cost_name, eps, tau, tol, max_iter, eps_scaling, eps_start,
    eps_scaling_iters, init, method, grad, batched, warn, sns_options, relaxation, shift=0.0, scale=None,
) -> SinkhornResult:
    tau_x, tau_y = _tau_pair(tau)
    if scale is not None:  # the dtype cannot certify marginals below its floor (see tolerance_floor)
        tol = max(tol, tolerance_floor(a.dtype, scale, eps))
    la = torch.log(a.detach()).masked_fill(~row_mask, float("-inf"))
    lb = torch.log(b.detach()).masked_fill(~col_mask, float("-inf"))
    if method == "auto":
        method = "scaling" if (not geom.online and grad != "unroll") else "log"
    if method in ("scaling", "sns") and geom.online:
        raise ValidationError(f"method: {method!r} needs the dense backend (a stored cost); use method='log'")
    if method in ("scaling", "sns") and grad == "unroll":
        raise ValidationError(f"grad: 'unroll' needs method='log' (the {method!r} loop is not differentiable)")
    if method == "symmetric" and not (geom.shape[1] == geom.shape[2] and torch.equal(a, b) and tau_x == tau_y
                                      and (x is None or torch.equal(x, y))):
        raise ValidationError("method: 'symmetric' solves OT(alpha, alpha): it needs y = x (or a symmetric cost), "
                              "equal weights and equal tau on both sides")
    if method == "sns" and not (math.isinf(tau_x) and math.isinf(tau_y)):
        raise ValidationError("method: 'sns' solves balanced problems only (tau=None)")
    f0, g0 = _initial_potentials(init, x, y, a, b, cost_name, row_mask, col_mask)
    if eps_start is None:
        start = geom.max_cost(row_mask, col_mask) if isinstance(init, str) and init == "zero" else eps
    else:
        start = check_positive(eps_start, "eps_start")
    schedule = _schedule(eps, max(start, eps), eps_scaling)
    loop = SINKHORN_METHODS.get(method, arg="method")
    kwargs = dict(schedule=schedule, stage_iters=eps_scaling_iters, tol=tol, max_iter=max_iter, tau_x=tau_x,
                  tau_y=tau_y, row_mask=row_mask, col_mask=col_mask)
    fused = method == "log" and geom.online and geom.fused and grad != "unroll"
    if method == "scaling" or fused:
        kwargs["relax"] = relaxation
    elif relaxation not in (1.0, "auto"):
        raise ValidationError(f"relaxation: only used by method='scaling' and by method='log' on the online backend "
                              f"with the squared Euclidean cost, got {relaxation!r} with {method!r}")
    if method == "sns":
        kwargs.update(sns_options or {})
    elif sns_options:
        raise ValidationError("sns_options: only used with method='sns'")
    la_l, lb_l = (la, lb)
    if grad == "unroll":
        with torch.enable_grad():
            la_l = torch.log(a).masked_fill(~row_mask, float("-inf"))
            lb_l = torch.log(b).masked_fill(~col_mask, float("-inf"))
            st = loop(geom, a, b, la_l, lb_l, f0, g0, **kwargs)
    else:
        with torch.no_grad():
            st = loop(geom, a.detach(), b.detach(), la, lb, f0, g0, **kwargs)
    converged = st.error <= tol
    if warn and not bool(converged.all()):
        warnings.warn(
            f"sinkhorn: stopped after {st.n_iters} iterations with marginal error {float(st.error.max()):.3g} > "
            f"tol={tol:.3g}; raise max_iter, keep eps-scaling on (eps_scaling=0.5), use a larger eps, loosen tol, "
            "or try method='sns' (dense, balanced)",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
    logger.debug("sinkhorn(%s): %d iterations, marginal error %.3g", method, st.n_iters, float(st.error.max()))
    f, g = (st.f, st.g) if grad == "unroll" else (st.f.detach(), st.g.detach())
    if math.isinf(tau_x) and math.isinf(tau_y):
        # balanced potentials are defined up to (f + c, g - c): fix the gauge <a, f> = <b, g>
        c = 0.5 * ((a.detach() * f).sum(1) - (b.detach() * g).sum(1))
        f = torch.where(row_mask, f - c[:, None], 0.0)
        g = torch.where(col_mask, g + c[:, None], 0.0)
    tensors = [a, b, *((geom.x, geom.y) if geom.online else geom.leaves())]
    track = grad != "none" and any(t.requires_grad for t in tensors)
    if isinstance(geom, TritonGeometry):
        with torch.set_grad_enabled(track and torch.is_grad_enabled()):
            mass, tcost = TritonSums.apply(geom.x, geom.y, a, b, f, g, eps, geom)
            value = ((a * _phi(f, tau_x)).sum(1) + (b * _phi(g, tau_y)).sum(1)
                     - eps * (mass - a.sum(1) * b.sum(1)))
    else:
        value, tcost = dual_value(geom, f, g, a, b, row_mask, col_mask, eps=eps, tau_x=tau_x, tau_y=tau_y,
                                  track=track, unrolled=grad == "unroll", sums=st.sums)
    if x is not None:  # point sets: recompute cost blocks on demand, keep no (B, N, M) tensor alive
        plan_geom = OnlineGeometry(x.detach(), y.detach(), cost_name)
    else:
        plan_geom = DenseGeometry(geom.cost.detach())
    plan = SinkhornPlan(plan_geom, f.detach(), g.detach(), la, lb, eps, batched=batched,
                        y=None if y is None else y.detach(), shift=shift,
                        row_lengths=row_mask.sum(1), col_lengths=col_mask.sum(1))
    err = st.error.detach()
    if not batched:
        return SinkhornResult(value[0], tcost[0], f[0], g[0], st.n_iters, converged[0], err[0], plan)
    return SinkhornResult(value, tcost, f, g, st.n_iters, converged, err, plan)


def _initial_potentials(init, x, y, a, b, cost_name, row_mask, col_mask):
    if isinstance(init, str):
        fn = SINKHORN_INITS.get(init, arg="init")
        with torch.no_grad():
            xd = None if x is None else x.detach()
            yd = None if y is None else y.detach()
            out = fn(xd, yd, a.detach(), b.detach(), cost=cost_name)
            if isinstance(out, tuple):
                return out[0].masked_fill(~row_mask, 0.0), out[1].masked_fill(~col_mask, 0.0)
            return out.masked_fill(~row_mask, 0.0), None
    if not isinstance(init, (tuple, list)) or len(init) != 2:
        raise ValidationError(f"init: expected a name ({', '.join(SINKHORN_INITS.names())}) or a pair (f, g) of "
                              f"potentials, got {describe(init)}")
    out = []
    for name, t, ref in (("init[0]", init[0], a), ("init[1]", init[1], b)):
        check_float_tensor(t, name)
        t = t.detach()
        if t.dim() == 1:
            t = t.unsqueeze(0)
        if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype or t.device != ref.device:
            raise ShapeError(f"{name}: expected shape {tuple(ref.shape)} (or unbatched), dtype {ref.dtype}, "
                             f"device {ref.device}; got {describe(init[0] if name == 'init[0]' else init[1])}")
        out.append(t)
    return out[0].masked_fill(~row_mask, 0.0), out[1].masked_fill(~col_mask, 0.0)


def sinkhorn(
    x: object,
    y: object,
    *,
    eps: float,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    cost: str = "sqeuclidean",
    tau: float | tuple[float | None, float | None] | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    eps_scaling: float | None = 0.5,
    eps_start: float | None = None,
    eps_scaling_iters: int = 1,
    init: str | tuple[torch.Tensor, torch.Tensor] = "auto",
    method: str = "auto",
    relaxation: float | str = "auto",
    grad: str = "envelope",
    backend: str = "auto",
    chunk_bytes: int = 64 * 2**20,
    measure: str | None = None,
    sns_options: dict | None = None,
    warn: bool = True,
    measure_options: dict | None = None,
) -> SinkhornResult:
    """Entropic OT between two (batches of) discrete measures on ``R^D``, in the log domain.

    ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)`` with ``C_ij = ||x_i - y_j||^2`` (``cost="sqeuclidean"``)
    or ``||x_i - y_j||`` (``"euclidean"``). See the module docstring for the objective and its dual.

    Algorithm: eps-scaling (annealing) from ``eps_start`` (default: the largest cost, when ``init="zero"``) down
    to ``eps`` by factors ``eps_scaling``, ``eps_scaling_iters`` iterations per intermediate level, then
    iterations at ``eps`` until ``marginal_error <= tol`` or ``max_iter``. Methods (``SINKHORN_METHODS``):
    ``"scaling"`` (dense default: stabilised scaling iterations, matrix-vector products on a stored kernel),
    ``"log"`` (log-sum-exp updates; the online backend and ``grad="unroll"`` use it), ``"sns"``
    (Sinkhorn-Newton-Sparse, Tang et al., ICLR 2024; see :mod:`geomot.transport.sns`), ``"symmetric"``
    (self-transport ``OT(alpha, alpha)`` with averaged updates, as used by the Sinkhorn divergence).

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` tensor, PointCloud, Measure or Mesh (``measure`` picks how a Mesh becomes a
            measure; default: its oriented varifold in ``R^6``, as in every loss).
        y: same for the target, ``M`` points.
        eps: entropic regularisation (> 0), in the units of the cost (``blur^2`` for the squared distance).
        x_weights: ``(N,)`` / ``(B, N)`` non-negative masses (normalised per item); uniform when None.
        y_weights: ``(M,)`` / ``(B, M)``.
        x_lengths: ``(B,)`` sizes for padded ``x``.
        y_lengths: ``(B,)`` sizes for padded ``y``.
        cost: a name of :data:`geomot.transport._kernels.COSTS`.
        tau: marginal relaxation (unbalanced OT): a number, a pair ``(tau_x, tau_y)`` (``None``/``inf`` = hard
            marginal on that side) or None (balanced).
        tol: stopping threshold on ``marginal_error``, raised to what the dtype can certify,
            ``16 u (1 + c / eps)`` with ``u = torch.finfo(dtype).eps`` and ``c`` the squared (or plain, for
            ``cost="euclidean"``) diagonal of the data's bounding box (see ``docs/sinkhorn.md``).
        max_iter: iteration budget (all stages together).
        eps_scaling: annealing ratio in ``(0, 1)``, or None to start directly at ``eps``.
        eps_start: first eps of the annealing (default: the largest cost for ``init="zero"``, else ``eps``).
        eps_scaling_iters: iterations per intermediate eps level.
        init: a name of ``SINKHORN_INITS`` (``"zero"``, ``"gaussian"``, ``"sort1d"``), a warm start ``(f, g)``,
            or ``"auto"``: ``"gaussian"`` for the squared Euclidean cost, ``"zero"`` otherwise.
        method: ``"auto"`` or a name of ``SINKHORN_METHODS``.
        relaxation: over-relaxation ``omega`` in ``[1, 2)`` of the iterations at the final eps of the
            ``"scaling"`` loop and of the online one-pass loop (``method="log"``, squared Euclidean cost, no
            unrolling): ``log u <- (1 - omega) log u + omega log u_hat`` (Thibault et al. 2021); or ``"auto"``:
            8 plain iterations, then ``omega`` rises towards ``2 / (1 + sqrt(1 - q))`` (capped at 1.9) as the
            plain rate ``q`` is re-estimated from the relaxed iterations (adaptive SOR, Hageman & Young 1981),
            backing off to plain iterations if the error stalls or blows up (see ``docs/sinkhorn.md``). It cuts
            the iteration count several-fold at small eps; the marginal error then counts both marginals.
        grad: ``"envelope"`` (default: ``value`` differentiated at fixed optimal potentials, Danskin's theorem;
            exact at convergence, O(1) memory in the iterations), ``"unroll"`` (autograd through every log-domain
            iteration) or ``"none"``.
        backend: ``"dense"`` (one ``N x M`` kernel buffer; the squared Euclidean cost itself is formed only when
            a path needs it), ``"online"`` (recompute kernel blocks of ``chunk_bytes``, one pass per iteration;
            memory ``O((N + M) D + chunk)``; on CPU float tensors with the squared Euclidean cost, streaming numba
            kernels when numba is installed), ``"triton"`` (squared Euclidean cost: Triton kernels streaming over
            tiles of the ``N x M`` interaction, memory ``O((N + M) D)``; CUDA tensors, or CPU under
            ``TRITON_INTERPRET=1``) or ``"auto"`` (dense below ~1 GiB of cost and kernel; beyond, ``"triton"`` on
            CUDA tensors when Triton is usable, else ``"online"``).
        chunk_bytes: block size of the online backend.
        measure: how Mesh inputs become measures (see :func:`geomot.mesh_to_measure`); ignored for other inputs.
        sns_options: keyword options of :func:`geomot.transport.sns.sns_loop` for ``method="sns"``.
        warn: emit a :class:`ConvergenceWarning` when ``converged`` is False (Python shows it once per call site).
        measure_options: extra keywords of :func:`geomot.mesh_to_measure` (``n_samples``, ``generator``...).

    Returns:
        :class:`SinkhornResult`; unbatched ``(N, D)`` inputs give unbatched outputs. With
        :func:`geomot.data_checks` off, an item with a NaN/Inf coordinate or weight, or whose squared extent
        overflows the dtype, gets NaN ``value``, ``transport_cost`` and potentials.

    Raises:
        ValidationError: non-positive ``eps``, negative weights, NaN/Inf inputs or overflowing coordinates (checks
            on), empty inputs, unknown names.
        ShapeError: mismatched shapes, dtypes or devices.
    """
    eps, tol = _check_options(eps, tol, max_iter, eps_scaling, eps_scaling_iters, method, grad, relaxation)
    COSTS.get(cost, arg="cost")
    if isinstance(init, str) and init == "auto":
        init = "gaussian" if cost == "sqeuclidean" else "zero"
    if backend not in _BACKENDS:
        raise ValidationError(f"backend: expected one of {', '.join(_BACKENDS)}, got {backend!r}")
    mx, bx, my, by = measure_pair(x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths,
                                  y_lengths=y_lengths, measure=measure, measure_options=measure_options)
    xs, ys = mx.support, my.support
    a, b = mx.weights, my.weights
    bad, xs, ys, a, b, scale = screen_inputs(xs, ys, a, b, mx.mask, my.mask, eps=eps,
                                             power=2.0 if cost == "sqeuclidean" else 1.0)
    # centring leaves the (translation-invariant) costs unchanged and keeps |x|^2 + |y|^2 - 2<x,y> accurate
    center = (a[:, :, None] * xs).sum(1, keepdim=True).detach()
    xs, ys = xs - center, ys - center
    batch, n, m = xs.shape[0], xs.shape[1], ys.shape[1]
    if backend == "auto":
        if 2 * batch * n * m * xs.element_size() <= DENSE_BYTES:
            backend = "dense"
        else:
            backend = "triton" if cost == "sqeuclidean" and xs.is_cuda and triton_usable(xs) else "online"
    if backend == "triton":
        if cost != "sqeuclidean":
            raise ValidationError(f"backend: 'triton' supports cost='sqeuclidean' only, got cost={cost!r}")
        if not triton_usable(xs):
            raise ValidationError(f"backend: 'triton' needs a CUDA tensor and the triton package (or "
                                  f"TRITON_INTERPRET=1 on CPU), got a tensor on {xs.device}")
        if grad == "unroll" or method not in ("auto", "log"):
            raise ValidationError("backend: 'triton' runs method='log' with grad='envelope' or 'none'")
        geom = TritonGeometry(xs, ys, mx.mask.sum(1), my.mask.sum(1))
    elif backend == "dense":
        track = grad != "none" and torch.is_grad_enabled()
        if cost == "sqeuclidean":  # the cost is formed only if a path needs it (not the scaling loop)
            geom = DenseGeometry(points=(xs, ys), track=track)
        else:
            with torch.set_grad_enabled(track):
                geom = DenseGeometry(COSTS.get(cost)(xs, ys))
    else:
        geom = OnlineGeometry(xs, ys, cost, chunk_bytes=chunk_bytes)
    res = _solve(geom, a, b, mx.mask, my.mask, x=xs, y=ys, cost_name=cost, eps=eps, tau=tau, tol=tol,
                 max_iter=max_iter, eps_scaling=eps_scaling, eps_start=eps_start,
                 eps_scaling_iters=eps_scaling_iters, init=init, method=method, grad=grad,
                 batched=True, warn=warn, sns_options=sns_options, relaxation=relaxation,
                 shift=center.detach(), scale=scale)
    if bool(bad.any()):  # non-finite or overflowing items (checks off): NaN, never a finite number
        nan = float("nan")
        res = res._replace(value=torch.where(bad, nan, res.value),
                           transport_cost=torch.where(bad, nan, res.transport_cost),
                           f=torch.where(bad[:, None], nan, res.f), g=torch.where(bad[:, None], nan, res.g),
                           converged=res.converged & ~bad,
                           marginal_error=torch.where(bad, nan, res.marginal_error))
    if bx or by:
        return res
    return SinkhornResult(res.value[0], res.transport_cost[0], res.f[0], res.g[0], res.n_iters, res.converged[0],
                          res.marginal_error[0], res.plan._unbatch())


def sinkhorn_from_cost(
    cost: torch.Tensor,
    *,
    eps: float,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    normalize_weights: bool = True,
    tau: float | tuple[float | None, float | None] | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    eps_scaling: float | None = 0.5,
    eps_start: float | None = None,
    eps_scaling_iters: int = 1,
    init: str | tuple[torch.Tensor, torch.Tensor] = "zero",
    method: str = "auto",
    relaxation: float | str = "auto",
    grad: str = "envelope",
    sns_options: dict | None = None,
    warn: bool = True,
) -> SinkhornResult:
    """Entropic OT for a given cost matrix ``C (N, M)`` or ``(B, N, M)`` (rows: source, columns: target).

    Same problem, options and result as :func:`sinkhorn` (whose ``x_*``/``y_*`` arguments here describe the
    rows/columns), on the dense backend: ``C`` is used as given (float32 or float64; one kernel buffer of the
    same size is allocated), gradients flow to ``C`` and the weights. Typical use: entropic refinement between
    spectral embeddings, ``C = torch.cdist(phi_1, phi_2) ** 2``, ``eps`` a few percent of ``C.median()``.
    ``plan.barycentric_map(y)`` then gives the soft map of each row into the column coordinates ``y``.

    Args:
        cost: ``(N, M)`` / ``(B, N, M)`` finite costs (padding entries beyond the lengths are ignored).
        eps, tol, max_iter, tau, eps_scaling, eps_start, eps_scaling_iters, method, grad, sns_options, warn: as
            in :func:`sinkhorn` (``init`` is ``"zero"`` or a warm start ``(f, g)``).
        x_weights: ``(N,)`` / ``(B, N)`` row masses; uniform when None.
        y_weights: ``(M,)`` / ``(B, M)`` column masses.
        x_lengths: ``(B,)`` number of real rows per item.
        y_lengths: ``(B,)`` number of real columns per item.
        normalize_weights: divide each item's masses by their sum (default); pass False to keep unnormalised
            masses for unbalanced problems.

    Returns:
        :class:`SinkhornResult`.
    """
    eps, tol = _check_options(eps, tol, max_iter, eps_scaling, eps_scaling_iters, method, grad, relaxation)
    check_float_tensor(cost, "cost", ndim=(2, 3), finite=False, allow_empty=True)
    if cost.numel() == 0:
        raise ValidationError(f"cost: empty cost matrix (shape {tuple(cost.shape)})")
    batched = cost.dim() == 3
    c = cost if batched else cost.unsqueeze(0)
    batch, n, m = c.shape
    if not batched and (x_lengths is not None or y_lengths is not None):
        raise ShapeError("x_lengths: only valid with a batched (B, N, M) cost")
    dev = c.device
    rl = (torch.full((batch,), n, dtype=torch.long, device=dev) if x_lengths is None
          else check_lengths(x_lengths, "x_lengths", batch=batch, max_len=n, device=dev))
    cl = (torch.full((batch,), m, dtype=torch.long, device=dev) if y_lengths is None
          else check_lengths(y_lengths, "y_lengths", batch=batch, max_len=m, device=dev))
    row_mask, col_mask = mask_from_lengths(rl, n), mask_from_lengths(cl, m)
    check_float_tensor(c[row_mask[:, :, None] & col_mask[:, None, :]], "cost")
    if x_lengths is not None or y_lengths is not None:
        c = c.masked_fill(~(row_mask[:, :, None] & col_mask[:, None, :]), 0.0)
    a = _weights(x_weights, "x_weights", c, (batch, n), row_mask, batched, normalize_weights)
    b = _weights(y_weights, "y_weights", c, (batch, m), col_mask, batched, normalize_weights)
    return _solve(DenseGeometry(c), a, b, row_mask, col_mask, x=None, y=None, cost_name=None, eps=eps, tau=tau,
                  tol=tol, max_iter=max_iter, eps_scaling=eps_scaling, eps_start=eps_start,
                  eps_scaling_iters=eps_scaling_iters, init=init, method=method, grad=grad, batched=batched,
                  warn=warn, sns_options=sns_options, relaxation=relaxation)


def _weights(w, name, c, shape, mask, batched, normalize):
    if w is None:
        return mask.to(c.dtype) / mask.sum(1, keepdim=True).to(c.dtype)
    if not isinstance(w, torch.Tensor):
        raise ShapeError(f"{name}: expected a tensor, got {describe(w)}")
    if w.dtype != c.dtype or w.device != c.device:
        raise ShapeError(f"{name}: expected dtype {c.dtype} and device {c.device} (those of cost), got {describe(w)}")
    wb = w if batched else w.unsqueeze(0)
    if tuple(wb.shape) != shape:
        raise ShapeError(f"{name}: expected shape {shape if batched else shape[1:]}, got {tuple(w.shape)}")
    normed = check_weights(wb, name, shape=shape, mask=mask, normalize=True)
    return normed if normalize else wb.masked_fill(~mask, 0.0)
