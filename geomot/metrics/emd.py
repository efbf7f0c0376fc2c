"""Exact optimal-transport cost (earth mover's distance) for evaluation, through POT's network simplex.

``emd(x, y) = W_p^p(mu, nu) = min_{P in Pi(a, b)} sum_{ij} P_ij |x_i - y_j|^p`` (Euclidean ground distance to
the power ``p``), solved exactly by ``ot.emd2`` (Bonneel et al., "Displacement interpolation using Lagrangian
mass transport", SIGGRAPH Asia 2011) in float64 numpy, one batch item at a time. Not differentiable: it is a
metric for reporting, not a loss (use the Sinkhorn or sliced losses to train).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from geomot._core.checks import check_positive
from geomot._core.errors import ConvergenceWarning, ShapeError
from geomot._core.reduction import check_reduction
from geomot.structures import as_measure

__all__ = ["emd"]

logger = logging.getLogger(__name__)


def emd(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: float = 2,
    measure: str | None = None,
    num_iter_max: int = 1_000_000,
    reduction: str = "none",
) -> torch.Tensor:
    """Exact ``W_p^p`` between two (batches of) discrete measures.

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` points, a :class:`PointCloud`, a :class:`Measure` or a :class:`Mesh`
            (converted by ``measure``, default ``"vertices"``: vertices with lumped-area masses).
        y: same kinds as ``x`` (matching ``D`` and batch size).
        x_weights: ``(N,)`` / ``(B, N)`` non-negative masses of a tensor ``x`` (normalised to 1; uniform when None).
        y_weights: same for ``y``.
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        p: exponent ``p >= 1`` of the ground cost ``|x - y|^p``.
        measure: mesh-to-measure conversion for Mesh inputs (see :func:`geomot.mesh_to_measure`).
        num_iter_max: network-simplex iteration cap; hitting it warns with :class:`ConvergenceWarning`.
        reduction: ``"none"`` (default: ``(B,)``, ``()`` for ``(N, D)`` tensors), ``"mean"`` or ``"sum"``.

    Returns:
        the cost in the dtype and on the device of ``x`` (detached).

    Raises:
        ShapeError: mismatched dimensions or batch sizes, weights of the wrong shape.
        ValidationError: NaN/Inf, empty inputs, negative weights, ``p < 1``, unknown reduction.
    """
    import ot

    p = check_positive(p, "p", at_least=1.0)
    check_reduction(reduction)
    mx, bx = as_measure(
        x, weights=x_weights, lengths=x_lengths, measure=measure, default_mesh_measure="vertices", name="x"
    )
    my, by = as_measure(
        y, weights=y_weights, lengths=y_lengths, measure=measure, default_mesh_measure="vertices", name="y"
    )
    if mx.dim != my.dim:
        raise ShapeError(f"y: expected points of dimension {mx.dim} (that of x), got {my.dim}")
    if len(mx) != len(my):
        raise ShapeError(f"y: expected batch size {len(mx)} (that of x), got {len(my)}")
    values = []
    for b in range(len(mx)):
        nx, ny = int(mx.lengths[b]), int(my.lengths[b])
        xs = mx.support[b, :nx].detach().cpu().double().numpy()
        ys = my.support[b, :ny].detach().cpu().double().numpy()
        a = mx.weights[b, :nx].detach().cpu().double().numpy()
        w = my.weights[b, :ny].detach().cpu().double().numpy()
        cost = ot.dist(xs, ys, metric="euclidean")
        if p != 1:
            cost = cost**p
        a, w = a / a.sum(), w / w.sum()
        with warnings.catch_warnings():  # POT's own warning is replaced by a ConvergenceWarning below
            warnings.filterwarnings("ignore", message="numItermax reached", category=UserWarning)
            val, log = ot.emd2(a, w, cost, numItermax=int(num_iter_max), log=True)
        if log.get("warning"):
            warnings.warn(
                f"emd: item {b}: the network simplex stopped early ({log['warning']}); raise num_iter_max",
                ConvergenceWarning,
                stacklevel=2,
            )
        logger.debug("emd item %d: %d x %d atoms, cost %.6g", b, nx, ny, float(val))
        values.append(float(val))
    out = torch.tensor(np.asarray(values), dtype=mx.dtype, device=mx.device)
    if reduction == "mean":
        return out.mean()
    if reduction == "sum":
        return out.sum()
    return out if (bx or by) else out[0]
