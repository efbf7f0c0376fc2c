"""Debiased Sinkhorn divergence (Feydy, Séjourné, Vialard, Amari, Trouvé, Peyré; AISTATS 2019, Eq. (3)):

    S_eps(alpha, beta) = OT_eps(alpha, beta) - OT_eps(alpha, alpha) / 2 - OT_eps(beta, beta) / 2,

with ``OT_eps`` the regularised cost ``<P, C> + eps KL(P | a x b)`` of :func:`geomot.sinkhorn` (``value``).
For the squared Euclidean cost it is positive, zero iff ``alpha = beta``, convex in each input and metrises
weak convergence; it interpolates between ``OT_0`` (the squared 2-Wasserstein distance, ``eps -> 0``) and the
kernel norm ``||alpha - beta||^2_{-C} / 2`` (``eps -> inf``; Feydy et al., Theorem 1). With ``tau``
(unbalanced, Séjourné et al. 2019) the inputs are probability measures here, so the mass correction term
``eps (m(alpha) - m(beta))^2 / 2`` vanishes.

The three problems are solved together by :func:`geomot.transport._debiased.debiased_sinkhorn` (one
eps-annealing loop from the data's diameter, envelope gradients).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from geomot._core.checks import check_positive, data_checks_enabled
from geomot._core.errors import ConvergenceWarning, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot.losses._shell import LossModule
from geomot.transport._debiased import debiased_sinkhorn, measure_pair, screen_inputs, user_stacklevel
from geomot.transport._kernels import COSTS

__all__ = ["SinkhornDivergence", "sinkhorn_divergence"]

_DEFAULT_TOL = 1e-6  # marginal L1 error of a plan-grade solve
_DEFAULT_RTOL = 1e-4  # value settling of a training step: value to ~1e-3, gradient to a few percent
_SOLVER_ONLY = ("method", "init", "relaxation", "backend", "grad", "eps_start", "eps_scaling_iters", "sns_options")


def _check_options(eps, cost, tau, reduction, tol, max_iter, eps_scaling, diameter, chunk_bytes, rtol=0.0) -> None:
    check_positive(eps, "eps")
    COSTS.get(cost, arg="cost")
    if tau is not None and not (isinstance(tau, (int, float)) and math.isinf(tau)):
        check_positive(tau, "tau")
    check_reduction(reduction)
    if tol is not None:
        check_positive(tol, "tol")
    if rtol is not None:
        check_positive(rtol, "rtol", strict=False)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValidationError(f"max_iter: expected a positive integer, got {max_iter!r}")
    if not 0.0 < check_positive(eps_scaling, "eps_scaling") < 1.0:
        raise ValidationError(f"eps_scaling: expected a ratio in (0, 1), got {eps_scaling!r}")
    if diameter is not None:
        check_positive(diameter, "diameter")
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValidationError(f"chunk_bytes: expected a positive integer, got {chunk_bytes!r}")


def _masses(w: object, name: str, lengths: object) -> None:
    """With checks on, an item of ``w`` with zero total mass raises (naming the item)."""
    if not (isinstance(w, torch.Tensor) and data_checks_enabled()) or w.dim() not in (1, 2) or w.numel() == 0:
        return
    wb = w if w.dim() == 2 else w[None]
    if isinstance(lengths, torch.Tensor) and lengths.shape == wb.shape[:1]:
        keep = torch.arange(wb.shape[1], device=wb.device)[None, :] < lengths.to(wb.device)[:, None]
        wb = wb.masked_fill(~keep, 0.0)
    total = wb.detach().sum(1)
    bad = (total == 0).nonzero().flatten().tolist()
    if bad:
        raise ValidationError(f"{name}: item {bad[0]} has zero total mass (every item of a batch needs a positive "
                              f"total mass{'; items ' + str(bad) + ' are zero' if len(bad) > 1 else ''})")


def sinkhorn_divergence(
    x: object,
    y: object,
    *,
    eps: float,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    cost: str = "sqeuclidean",
    tau: float | None = None,
    reduction: str = "mean",
    measure: str | None = None,
    measure_options: dict | None = None,
    tol: float | None = None,
    rtol: float | None = None,
    max_iter: int = 1000,
    eps_scaling: float = 0.25,
    diameter: float | None = None,
    chunk_bytes: int = 64 * 2**20,
    warn: bool = True,
    **removed: Any,
) -> torch.Tensor:
    """Debiased Sinkhorn divergence ``S_eps(alpha, beta)`` between (batches of) measures.

    The three problems ``alpha-beta``, ``alpha-alpha`` and ``beta-beta`` are solved together in one
    eps-annealing loop (:mod:`geomot.transport._debiased`): ``eps`` starts at ``diameter^r`` (``r = 2`` for
    ``cost="sqeuclidean"``, 1 for ``"euclidean"``), is multiplied by ``eps_scaling`` at each iteration down to
    ``eps``, then iterations continue at ``eps`` until every marginal error is below ``tol`` (raised to the
    dtype's floor ``16 u (1 + diameter^r / eps)``, ``u = torch.finfo(dtype).eps``: float32 cannot certify
    more), or until the value settles (its relative change stays below ``rtol`` over two successive
    iterations, in every item), or ``max_iter``. The value is stationary in the potentials, so it settles long
    before the marginals. Defaults are for a training step: with neither ``tol`` nor ``rtol`` given, the run
    stops when the value settles at ``rtol = 1e-4`` (value to about ``1e-3``, gradient to a few percent; see
    ``docs/sinkhorn.md``) or when the marginals reach ``1e-6`` (raised to the floor). Giving ``tol`` alone asks
    for marginal convergence (no value stop, exact envelope gradients at convergence, what gradcheck needs);
    giving ``rtol`` sets the value stop explicitly (``rtol=0``: off).
    Gradients follow the envelope theorem (one last soft-min with autograd on), so the
    backward pass costs about one iteration; they reach points and weights. Kernels that fit in ``chunk_bytes``
    are stored at the final ``eps`` (an iteration is then a vector-kernel product); larger ones are streamed in
    blocks: memory is ``O((N + M) D)`` plus at most ``2 chunk_bytes``.

    Costs follow :func:`geomot.sinkhorn`: ``C_ij = ||x_i - y_j||^2`` by default, ``eps`` in the cost's units.
    GeomLoss's ``SamplesLoss("sinkhorn", p=2, blur=s)`` uses ``||x - y||^2 / 2`` and ``eps = s^2``: it equals
    ``sinkhorn_divergence(x, y, eps=2 * s**2) / 2``.

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` tensor, PointCloud, Measure or Mesh.
        y: same for the target (``M`` points).
        eps: entropic regularisation in the cost's units (``blur^2`` for ``cost="sqeuclidean"``).
        x_weights: ``(N,)`` / ``(B, N)`` non-negative masses (normalised per item); uniform when None.
        y_weights: ``(M,)`` / ``(B, M)``.
        x_lengths: ``(B,)`` sizes for padded ``x`` (an item may hold a single point).
        y_lengths: ``(B,)`` sizes for padded ``y``.
        cost: ground cost name (``"sqeuclidean"`` or ``"euclidean"``).
        tau: marginal relaxation (unbalanced divergence), None for balanced.
        reduction: ``"mean"`` / ``"sum"`` over the batch, or ``"none"`` for ``(B,)`` (a scalar for unbatched
            inputs in every case).
        measure: how a Mesh becomes a measure: ``"vertices"``, ``"faces"``, ``"samples"`` or ``"varifold"``
            (default for a Mesh: its oriented varifold, face centroids and unit normals in ``R^6`` with area
            weights); ignored for tensors, PointClouds and Measures.
        measure_options: extra keywords of :func:`geomot.mesh_to_measure` (``n_samples``, ``generator``...).
        tol: L1 marginal error at which the iterations at ``eps`` stop (raised to the dtype's floor); None:
            ``1e-6``.
        rtol: relative change of the value over two successive iterations at which they stop; None: ``1e-4``
            when ``tol`` is None, else 0 (off).
        max_iter: iteration budget (annealing levels included).
        eps_scaling: ratio ``eps_{k+1} / eps_k`` of the annealing, in ``(0, 1)`` (0.25: GeomLoss's
            ``scaling=0.5`` for ``p = 2``).
        diameter: largest distance between points, the annealing start; default: the largest bounding-box
            diagonal of an item (both supports together).
        chunk_bytes: size of one row block of the kernel, and the budget for the kernels stored at the final
            ``eps``.
        warn: emit a :class:`~geomot._core.errors.ConvergenceWarning` (once per call site) when ``max_iter``
            stops a run above its tolerance.

    Returns:
        the divergence, reduced as asked. An item with a non-finite coordinate or weight, or whose squared
        extent overflows the dtype, gives NaN (with :func:`geomot.data_checks` off; otherwise it raises).

    Raises:
        ValidationError: bad options, NaN/Inf inputs or overflowing coordinates (checks on), an item with zero
            total mass (named).
        ShapeError: mismatched batch sizes, dimensions, dtypes or devices.
    """
    if removed:
        bad = sorted(removed)
        known = [k for k in bad if k in _SOLVER_ONLY]
        if known:
            raise ValidationError(
                f"sinkhorn_divergence: {', '.join(map(repr, known))} is an option of geomot.sinkhorn, not of the "
                "divergence's joint loop (its options: tol, rtol, max_iter, eps_scaling, diameter, chunk_bytes)")
        raise TypeError(f"sinkhorn_divergence() got unexpected keyword argument(s) {', '.join(map(repr, bad))}")
    _check_options(eps, cost, tau, reduction, tol, max_iter, eps_scaling, diameter, chunk_bytes, rtol)
    if rtol is None:
        rtol = _DEFAULT_RTOL if tol is None else 0.0
    if tol is None:
        tol = _DEFAULT_TOL
    tau_f = math.inf if tau is None else float(tau)
    _masses(x_weights, "x_weights", x_lengths)
    _masses(y_weights, "y_weights", y_lengths)
    mx, bx, my, by = measure_pair(x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths,
                                  y_lengths=y_lengths, measure=measure, measure_options=measure_options)
    xs, ys = mx.support, my.support
    rm, cm = mx.mask, my.mask
    r = 2.0 if cost == "sqeuclidean" else 1.0
    bad, xs, ys, a, b, scale = screen_inputs(xs, ys, mx.weights, my.weights, rm, cm, eps=eps, power=r)
    # translation leaves the cost unchanged; centring keeps |x|^2 + |y|^2 - 2 <x, y> accurate
    center = (a[:, :, None] * xs).sum(1, keepdim=True).detach()
    xs, ys = xs - center, ys - center
    if diameter is None:
        diameter = scale ** (1.0 / r) if scale > 0 else (eps ** (1.0 / r))
    track = torch.is_grad_enabled() and any(t.requires_grad for t in (xs, ys, a, b))
    res = debiased_sinkhorn(xs, ys, a, b, rm, cm, eps=float(eps), cost=cost, tau=tau_f, eps_scaling=eps_scaling,
                            diameter=diameter, tol=tol, max_iter=max_iter, chunk_bytes=chunk_bytes, track=track,
                            rtol=rtol)
    div = res.value
    if bool(bad.any()):
        div = torch.where(bad, float("nan"), div)
    if warn and not bool((res.converged | bad).all()):
        warnings.warn(
            f"sinkhorn_divergence: stopped after {res.n_iters} iterations with marginal error "
            f"{float(res.marginal_error[~bad].max()):.3g} > tol={res.tol:.3g}; raise max_iter or eps, or lower "
            "eps_scaling closer to 1 (slower annealing)",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )
    if not (bx or by):
        return div[0]
    return reduce(div, reduction)


class SinkhornDivergence(LossModule):
    """``nn.Module`` shell of :func:`sinkhorn_divergence`: keyword-only settings, checked at construction.

    Example:
        >>> loss_fn = SinkhornDivergence(eps=0.05**2)
        >>> loss = loss_fn(pred_points, target_points)  # doctest: +SKIP
    """

    function = staticmethod(sinkhorn_divergence)

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        if "eps" not in settings:
            raise ValidationError("SinkhornDivergence: eps is required (entropic regularisation, in the cost's units)")
        defaults = {"cost": "sqeuclidean", "tau": None, "reduction": "mean", "tol": None, "rtol": None,
                    "max_iter": 1000, "eps_scaling": 0.25, "diameter": None, "chunk_bytes": 64 * 2**20}
        s = {**defaults, **settings}
        _check_options(s["eps"], s["cost"], s["tau"], s["reduction"], s["tol"], s["max_iter"], s["eps_scaling"],
                       s["diameter"], s["chunk_bytes"], s["rtol"])
        return settings
