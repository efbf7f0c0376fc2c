"""Exact optimal-transport cost (earth mover's distance) for evaluation, through POT's network simplex.

``emd(x, y) = W_p^p(mu, nu) = min_{P in Pi(a, b)} sum_{ij} P_ij |x_i - y_j|^p`` (Euclidean ground distance to
the power ``p``), solved exactly by ``ot.emd2`` (Bonneel et al., "Displacement interpolation using Lagrangian
mass transport", SIGGRAPH Asia 2011) in float64 numpy, one batch item at a time. Not differentiable: it is a
metric for reporting, not a loss (use the Sinkhorn or sliced losses to train).

Inputs follow the one rule of every loss (:func:`geomot.structures.as_measure`, ``docs/measures.md``): a Mesh becomes
its 6-D varifold unless ``measure="vertices"``, ``"faces"`` or ``"samples"`` says otherwise. NaN/Inf coordinates or
weights raise with value checks on and give NaN inside ``geomot.data_checks(False)``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from geomot._core.checks import check_int, check_positive
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import ConvergenceWarning, ShapeError
from geomot._core.reduction import check_reduction
from geomot.structures import as_measure
from geomot.structures.convert import check_pair_dims

__all__ = ["emd"]

logger = logging.getLogger(__name__)


_SIMPLEX_STATUS = {0: "infeasible problem", 2: "unbounded problem", 3: "max_iter reached"}


def _network_simplex(a: np.ndarray, b: np.ndarray, cost: np.ndarray, max_iter: int) -> tuple[float, str]:
    """Exact OT cost by POT's network simplex and a status message ("" when optimal).

    POT's C solver is called directly so that its status is read here rather than emitted as a ``UserWarning``
    that would need a (process-wide) warnings filter to replace; ``ot.emd2`` is the fallback.
    """
    try:
        from ot.lp.emd_wrap import emd_c
    except ImportError:  # pragma: no cover - other POT layouts
        import ot

        return float(ot.emd2(a, b, cost, numItermax=max_iter)), ""
    _, value, _, _, code = emd_c(a, b, cost, max_iter, 1)
    return float(value), _SIMPLEX_STATUS.get(int(code), "")


@renamed_kwargs(num_iter_max="max_iter")
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
    max_iter: int = 1_000_000,
    reduction: str = "none",
    n_samples: int = 5000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact ``W_p^p`` between two (batches of) discrete measures.

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` points, a :class:`PointCloud`, a :class:`Measure` or a :class:`Mesh`
            (converted by ``measure``: by default its varifold, face centroids and normals in R^6 with area
            masses).
        y: same kinds as ``x`` (matching ``D`` and batch size).
        x_weights: ``(N,)`` / ``(B, N)`` non-negative masses of a tensor ``x`` (normalised to 1; uniform when None).
        y_weights: same for ``y``.
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        p: exponent ``p >= 1`` of the ground cost ``|x - y|^p``.
        measure: mesh-to-measure conversion for Mesh inputs (``None``/``"varifold"``, ``"vertices"``, ``"faces"``,
            ``"samples"``; see :func:`geomot.mesh_to_measure`); irrelevant for other inputs.
        max_iter: network-simplex iteration cap; hitting it warns with :class:`ConvergenceWarning`
            (``num_iter_max`` is a deprecated alias).
        reduction: ``"none"`` (default: ``(B,)``, ``()`` for ``(N, D)`` tensors), ``"mean"`` or ``"sum"``.
        n_samples: number of surface samples for ``measure="samples"``.
        generator: random generator of the surface samples.

    Returns:
        the cost in the dtype and on the device of ``x`` (detached).

    Raises:
        ShapeError: mismatched dimensions (the message names ``measure=`` when a Mesh is involved) or batch sizes,
            weights of the wrong shape.
        ValidationError: NaN/Inf (value checks on), empty inputs, negative weights, ``p < 1``, ``max_iter < 1``,
            unknown reduction or measure.
    """
    import ot

    p = check_positive(p, "p", at_least=1.0)
    check_reduction(reduction)
    check_int(max_iter, "max_iter", at_least=1)
    opts = {"n_samples": n_samples, "generator": generator}
    mx, bx = as_measure(x, weights=x_weights, lengths=x_lengths, measure=measure, name="x", **opts)
    my, by = as_measure(y, weights=y_weights, lengths=y_lengths, measure=measure, name="y", **opts)
    check_pair_dims(mx, my, x, y, measure=measure)
    if len(mx) != len(my):
        raise ShapeError(f"y: expected batch size {len(mx)} (that of x), got {len(my)}")
    values = []
    for b in range(len(mx)):
        nx, ny = int(mx.lengths[b]), int(my.lengths[b])
        xs = mx.support[b, :nx].detach().cpu().double().numpy()
        ys = my.support[b, :ny].detach().cpu().double().numpy()
        a = mx.weights[b, :nx].detach().cpu().double().numpy()
        w = my.weights[b, :ny].detach().cpu().double().numpy()
        if not (np.isfinite(xs).all() and np.isfinite(ys).all() and np.isfinite(a).all() and np.isfinite(w).all()):
            values.append(float("nan"))  # reachable with value checks off: never a finite cost
            continue
        cost = ot.dist(xs, ys, metric="euclidean")
        if p != 1:
            cost = cost**p
        a, w = a / a.sum(), w / w.sum()
        val, status = _network_simplex(a, w, np.ascontiguousarray(cost), int(max_iter))
        if status:
            warnings.warn(
                f"emd: item {b}: the network simplex stopped early ({status}); raise max_iter",
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
