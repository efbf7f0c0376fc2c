"""Debiased Sinkhorn divergence (Feydy, Séjourné, Vialard, Amari, Trouvé, Peyré; AISTATS 2019, Eq. (3)):

    S_eps(alpha, beta) = OT_eps(alpha, beta) - OT_eps(alpha, alpha) / 2 - OT_eps(beta, beta) / 2,

with ``OT_eps`` the regularised cost ``<P, C> + eps KL(P | a x b)`` of :func:`geomot.sinkhorn` (``value``).
For the squared Euclidean cost it is positive, zero iff ``alpha = beta``, convex in each input and metrises
weak convergence; it interpolates between ``OT_0`` (the squared 2-Wasserstein distance, ``eps -> 0``) and the
kernel norm ``||alpha - beta||^2_{-C} / 2`` (``eps -> inf``; Feydy et al., Theorem 1). With ``tau``
(unbalanced, Séjourné et al. 2019) the inputs are probability measures here, so the mass correction term
``eps (m(alpha) - m(beta))^2 / 2`` vanishes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from geomot._core.errors import ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot.structures.convert import as_measure
from geomot.transport.sinkhorn import sinkhorn

__all__ = ["SinkhornDivergence", "sinkhorn_divergence"]

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
    **solver_options: Any,
) -> torch.Tensor:
    """Debiased Sinkhorn divergence ``S_eps(alpha, beta)`` between (batches of) measures.

    Three Sinkhorn problems are solved (``alpha-beta`` with the options given, ``alpha-alpha`` and ``beta-beta``
    with ``method="symmetric"``, averaged updates that converge in a few iterations); gradients use the
    envelope theorem by default (``grad="unroll"`` also works), and reach points and weights.

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` tensor, PointCloud, Measure or Mesh.
        y: same for the target (``M`` points).
        eps: entropic regularisation in the cost's units (``blur^2`` for ``cost="sqeuclidean"``).
        x_weights, y_weights, x_lengths, y_lengths: as in :func:`geomot.sinkhorn`.
        cost: ground cost name.
        tau: marginal relaxation (unbalanced divergence), None for balanced.
        reduction: ``"mean"`` / ``"sum"`` over the batch, or ``"none"`` for ``(B,)`` (a scalar for unbatched
            inputs in every case).
        **solver_options: forwarded to :func:`geomot.sinkhorn` (``tol``, ``max_iter``, ``eps_scaling``,
            ``init``, ``relaxation``, ``backend``, ``grad``...).

    Returns:
        the divergence, reduced as asked.
    """
    check_reduction(reduction)
    for k in ("x_weights", "y_weights", "x_lengths", "y_lengths"):
        if k in solver_options:
            raise ValidationError(f"{k}: pass it as a keyword of sinkhorn_divergence itself")
    mx, bx = as_measure(x, weights=x_weights, lengths=x_lengths, default_mesh_measure="vertices", name="x")
    my, by = as_measure(y, weights=y_weights, lengths=y_lengths, default_mesh_measure="vertices", name="y")
    opts = dict(eps=eps, cost=cost, tau=tau, **solver_options)
    xy = sinkhorn(mx, my, **opts).value
    sym = {**opts, "method": "symmetric", "relaxation": 1.0}
    xx = sinkhorn(mx, mx, **sym).value
    yy = sinkhorn(my, my, **sym).value
    div = xy - 0.5 * (xx + yy)
    if not (bx or by):
        return div[0]
    return reduce(div, reduction)


class SinkhornDivergence(nn.Module):
    """``nn.Module`` shell of :func:`sinkhorn_divergence`; stores the hyperparameters.

    Example:
        >>> loss_fn = SinkhornDivergence(eps=0.05**2)
        >>> loss = loss_fn(pred_points, target_points)  # doctest: +SKIP
    """

    def __init__(
        self, *, eps: float, cost: str = "sqeuclidean", tau: float | None = None, reduction: str = "mean",
        **solver_options: Any,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.eps, self.cost, self.tau, self.reduction = eps, cost, tau, reduction
        self.solver_options = dict(solver_options)

    def forward(
        self,
        x: object,
        y: object,
        x_weights: torch.Tensor | None = None,
        y_weights: torch.Tensor | None = None,
        x_lengths: torch.Tensor | None = None,
        y_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return sinkhorn_divergence(
            x, y, eps=self.eps, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths,
            y_lengths=y_lengths, cost=self.cost, tau=self.tau, reduction=self.reduction, **self.solver_options,
        )

    def extra_repr(self) -> str:
        return f"eps={self.eps}, cost={self.cost!r}, tau={self.tau}, reduction={self.reduction!r}"
