"""Deep functional maps: the differentiable functional-map layer and soft point maps between learned features.

Conventions (pyFM's, as in :mod:`geomot.correspondence.fmaps`): ``fmap_12 (k2, k1)`` maps spectral coefficients of
functions on shape 1 to shape 2; ``soft_map_21 (V2, V1)`` is a row-stochastic soft point map, row ``j`` a
distribution over the vertices of shape 1 for vertex ``j`` of shape 2, so ``soft_map_21 @ f_1`` pulls a function
on shape 1 back to shape 2 (the soft counterpart of ``f_1[p2p_21]``).

* :func:`fmap_layer`: features projected on the truncated bases, ``A = Phi_1^T M_1 F_1``,
  ``B = Phi_2^T M_2 F_2``, then the regularised least-squares map
  ``fmap_12 = argmin_C ||C A - B||^2 + lambda sum_ij mask_ij C_ij^2`` (:func:`~geomot.correspondence.fmaps.
  regularized_fmap`, the resolvent mask of Ren et al. 2019, "Structured regularization of functional map
  computations", SGP; the FMNet layer of DUO-FMNet, Donati et al. 2022, and of ULRSSM, Cao, Roetzer & Bernard,
  "Unsupervised Learning of Robust Spectral Shape Matching", SIGGRAPH 2023, with ``lambda = 100``,
  ``gamma = 0.5``), and ``fmap_21`` the same with the shapes swapped.
* :func:`soft_map_softmax`: row-softmax of the cosine similarity of the features over the vertices of shape 1
  (ULRSSM, temperature ``tau = 0.07``).
* :func:`soft_map_sinkhorn`: the entropic optimal transport plan of :func:`geomot.transport.sinkhorn_from_cost`
  (log domain, eps-scaling) on a feature cost, row-normalised.
* :func:`fmap_from_soft_map`: ``fmap_12 = Phi_2^T M_2 soft_map_21 Phi_1``, the functional map a soft map induces
  (the coupling term of ULRSSM).

Batching: padded ``(B, V, .)`` tensors with ``lengths_1`` / ``lengths_2`` ``(B,)`` (entries beyond the lengths
are ignored, whatever they hold), or unbatched ``(V, .)`` tensors, whose outputs drop the batch dimension. Bases,
masses and eigenvalues are precomputed data (:func:`geomot.ops.spectral.spectral_basis`); the layer is
differentiable in all its floating inputs and is used for the features. Non-finite inputs raise
:class:`~geomot._core.errors.ValidationError` while value checks are on; inside ``geomot.data_checks(False)``
they give NaN outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from geomot._core.batch import mask_from_lengths
from geomot._core.checks import (
    check_finite,
    check_float_tensor,
    check_int,
    check_lengths,
    check_positive,
    check_weights,
    describe,
)
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.correspondence.fmaps import project, regularized_fmap
from geomot.transport import sinkhorn_from_cost

__all__ = [
    "FMAP_MASKS",
    "SOFT_MAPS",
    "SOFT_MAP_COSTS",
    "DeepFmapOutput",
    "DeepFunctionalMap",
    "FmapPair",
    "fmap_from_soft_map",
    "fmap_layer",
    "soft_map_sinkhorn",
    "soft_map_softmax",
]

#: the regularisation masks of :func:`geomot.correspondence.fmaps.regularized_fmap`
FMAP_MASKS: tuple[str, ...] = ("laplacian", "resolvent")
_GRADS = ("envelope", "unroll")


class FmapPair(NamedTuple):
    """Result of :func:`fmap_layer` (unbatched inputs drop the leading ``B``).

    Attributes:
        fmap_12: ``(B, k2, k1)`` functional map from shape 1 to shape 2.
        fmap_21: ``(B, k1, k2)`` from shape 2 to shape 1, or None when ``bidirectional=False``.
    """

    fmap_12: torch.Tensor
    fmap_21: torch.Tensor | None


class DeepFmapOutput(NamedTuple):
    """Result of :class:`DeepFunctionalMap` (unbatched inputs drop the leading ``B``).

    Attributes:
        fmap_12: ``(B, k2, k1)``.
        fmap_21: ``(B, k1, k2)`` or None (``bidirectional=False``).
        soft_map_21: ``(B, V2, V1)`` rows on shape 2, distributions over shape 1 (zero rows on padding).
        soft_map_12: ``(B, V1, V2)`` or None (``bidirectional=False``).
    """

    fmap_12: torch.Tensor
    fmap_21: torch.Tensor | None
    soft_map_21: torch.Tensor
    soft_map_12: torch.Tensor | None


# -- input checks --------------------------------------------------------------------------------------------------


class _Side(NamedTuple):
    """One shape's inputs in the padded layout, padding entries set to zero."""

    tensors: tuple[torch.Tensor, ...]
    lengths: torch.Tensor
    mask: torch.Tensor  # (B, V)
    full: bool  # no padding


def _side(
    named: dict[str, torch.Tensor | None], lengths: torch.Tensor | None, lengths_name: str, *, batched: bool
) -> _Side:
    """Check per-vertex tensors of one shape, all ``(B, V, .)`` / ``(B, V)`` (``(V, .)`` / ``(V,)`` unbatched),
    sharing ``B``, ``V``, dtype and device with the first; zero their padding, then scan the rest for NaN/Inf."""
    items = [(k, v) for k, v in named.items() if v is not None]
    first_name, first = items[0]
    lead = first.shape[:2] if batched else first.shape[:1]
    out = []
    for name, t in items:
        check_float_tensor(t, name, finite=False)
        ndim = t.dim() - (1 if batched else 0)
        if ndim not in (1, 2) or tuple(t.shape[: len(lead)]) != tuple(lead):
            want = "(B, V, c) or (B, V)" if batched else "(V, c) or (V,)"
            raise ShapeError(
                f"{name}: expected {want} with {'(B, V)' if batched else 'V'} = {tuple(lead)} (that of "
                f"{first_name}), got shape {tuple(t.shape)}"
            )
        if t.dtype != first.dtype or t.device != first.device:
            raise ShapeError(f"{name}: expected dtype {first.dtype} on {first.device} (that of {first_name}), "
                             f"got {describe(t)}")
        out.append(t if batched else t.unsqueeze(0))
    bsz, n = out[0].shape[:2]
    if lengths is None:
        ln = torch.full((bsz,), n, dtype=torch.long, device=first.device)
    elif not batched:
        raise ShapeError(f"{lengths_name}: only valid with batched (B, V, .) inputs, got {first_name} of shape "
                         f"{tuple(first.shape)}")
    else:
        ln = check_lengths(lengths, lengths_name, batch=bsz, max_len=n, device=first.device)
    mask = mask_from_lengths(ln, n)
    full = lengths is None or bool((ln == n).all())
    masked = []
    for (name, _), t in zip(items, out):
        if not full:
            m = mask.view(bsz, n, *([1] * (t.dim() - 2)))
            t = torch.where(m, t, torch.zeros((), dtype=t.dtype, device=t.device))
        check_finite(t, name)
        masked.append(t)
    return _Side(tuple(masked), ln, mask, full)


def _batched_flag(x: object, name: str) -> bool:
    t = check_float_tensor(x, name, finite=False)
    if t.dim() not in (2, 3):
        raise ShapeError(f"{name}: expected a (V, d) or (B, V, d) tensor, got shape {tuple(t.shape)}")
    return t.dim() == 3


def _check_pair(s1: _Side, s2: _Side, name1: str, name2: str, *, same_last: bool) -> None:
    a, b = s1.tensors[0], s2.tensors[0]
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"{name2}: expected a batch of {a.shape[0]} items (that of {name1}), got {b.shape[0]}")
    if same_last and a.shape[-1] != b.shape[-1]:
        raise ShapeError(f"{name2}: expected {a.shape[-1]} feature channels (those of {name1}), got shape "
                         f"{tuple(b.shape)}")
    if a.dtype != b.dtype or a.device != b.device:
        raise ShapeError(f"{name2}: expected dtype {a.dtype} on {a.device} (that of {name1}), got {describe(b)}")


def _check_evals(evals: object, name: str, evecs: torch.Tensor, batched: bool) -> torch.Tensor:
    """``evals`` ``(B, k)`` (``(k,)`` unbatched) for the padded ``evecs`` ``(B, V, k)``."""
    t = check_float_tensor(evals, name)
    want = (evecs.shape[0], evecs.shape[-1]) if batched else (evecs.shape[-1],)
    if tuple(t.shape) != want:
        raise ShapeError(f"{name}: expected shape {want} (k from the evecs), got {tuple(t.shape)}")
    if t.dtype != evecs.dtype or t.device != evecs.device:
        raise ShapeError(f"{name}: expected dtype {evecs.dtype} on {evecs.device}, got {describe(t)}")
    return t if batched else t.unsqueeze(0)


def _check_fmap_settings(lambda_: float, gamma: float, mask: str) -> None:
    check_positive(lambda_, "lambda_", strict=False)
    check_positive(gamma, "gamma")
    if mask not in FMAP_MASKS:
        raise ValidationError(f"mask: unknown mask {mask!r}; valid: {', '.join(FMAP_MASKS)}")


# -- the functional-map layer --------------------------------------------------------------------------------------


def fmap_layer(
    feat_1: torch.Tensor,
    feat_2: torch.Tensor,
    evecs_1: torch.Tensor,
    evecs_2: torch.Tensor,
    mass_1: torch.Tensor,
    mass_2: torch.Tensor,
    evals_1: torch.Tensor,
    evals_2: torch.Tensor,
    *,
    lambda_: float = 100.0,
    gamma: float = 0.5,
    mask: str = "resolvent",
    bidirectional: bool = True,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
) -> FmapPair:
    """Regularised functional maps between two (batches of) shapes from per-vertex features.

    ``A = Phi_1^T M_1 F_1 (k1, d)``, ``B = Phi_2^T M_2 F_2 (k2, d)`` (padding vertices have no mass and contribute
    nothing), then row ``i`` of ``fmap_12`` solves ``min_c ||c A - B_i||^2 + lambda sum_j mask_ij c_j^2``, i.e.
    ``c = B_i A^T (A A^T + lambda diag(mask_i))^{-1}`` (Ren et al. 2019, eq. 9 for the resolvent mask
    ``mask_ij = |1 / (lambda2_i^gamma - i) - 1 / (lambda1_j^gamma - i)|^2`` on eigenvalues divided by their common
    maximum; DUO-FMNet, Donati et al. 2022; ULRSSM, Cao et al. 2023). ``fmap_21`` solves the same problem with
    the shapes swapped (ULRSSM's bidirectional layer). Cost: ``O(B V k d)`` for the projections and
    ``O(B k^4)`` for the ``k`` solves of size ``k`` per map (memory ``O(B k^3)``).

    Args:
        feat_1: ``(V1, d)`` or ``(B, V1, d)`` features on shape 1; feat_2: ``(V2, d)`` / ``(B, V2, d)``.
        evecs_1: ``(V1, k1)`` / ``(B, V1, k1)`` ``M``-orthonormal eigenvectors; evecs_2 likewise with ``k2``.
        mass_1: ``(V1,)`` / ``(B, V1)`` lumped vertex masses; mass_2 likewise.
        evals_1: ``(k1,)`` / ``(B, k1)`` eigenvalues (``>= 0``); evals_2 likewise.
        lambda_: regularisation weight ``>= 0`` (ULRSSM: 100).
        gamma: resolvent exponent ``> 0`` (ULRSSM: 0.5).
        mask: ``"resolvent"`` or ``"laplacian"`` (``(lambda1_j - lambda2_i)^2`` on normalised eigenvalues).
        bidirectional: also compute ``fmap_21``.
        lengths_1: ``(B,)`` real vertex counts of a padded shape 1; lengths_2 likewise.

    Returns:
        :class:`FmapPair` ``(fmap_12 (B, k2, k1), fmap_21 (B, k1, k2) or None)``, in the inputs' dtype.

    Raises:
        ShapeError: inconsistent shapes, batch sizes, dtypes or devices, lengths with unbatched inputs.
        ValidationError: negative ``lambda_``, non-positive ``gamma``, unknown ``mask``, NaN/Inf inputs (checks on).
    """
    _check_fmap_settings(lambda_, gamma, mask)
    batched = _batched_flag(feat_1, "feat_1")
    s1 = _side({"feat_1": feat_1, "evecs_1": evecs_1, "mass_1": mass_1}, lengths_1, "lengths_1", batched=batched)
    s2 = _side({"feat_2": feat_2, "evecs_2": evecs_2, "mass_2": mass_2}, lengths_2, "lengths_2", batched=batched)
    _check_pair(s1, s2, "feat_1", "feat_2", same_last=True)
    (f1, phi1, m1), (f2, phi2, m2) = s1.tensors, s2.tensors
    for name, t, given, rank in (("evecs_1", phi1, evecs_1, 3), ("evecs_2", phi2, evecs_2, 3),
                                 ("mass_1", m1, mass_1, 2), ("mass_2", m2, mass_2, 2)):
        if t.dim() != rank:
            want = ("(V, k) or (B, V, k)" if rank == 3 else "(V,) or (B, V)")
            raise ShapeError(f"{name}: expected {want} matching the features, got shape {tuple(given.shape)}")
    e1 = _check_evals(evals_1, "evals_1", phi1, batched)
    e2 = _check_evals(evals_2, "evals_2", phi2, batched)
    a, b = project(f1, phi1, m1), project(f2, phi2, m2)  # (B, k1, d), (B, k2, d)
    fmap_12 = regularized_fmap(a, b, e1, e2, lambda_=lambda_, mask=mask, gamma=gamma)
    fmap_21 = regularized_fmap(b, a, e2, e1, lambda_=lambda_, mask=mask, gamma=gamma) if bidirectional else None
    if batched:
        return FmapPair(fmap_12, fmap_21)
    return FmapPair(fmap_12[0], None if fmap_21 is None else fmap_21[0])


# -- soft point maps -------------------------------------------------------------------------------------------------


def _feature_pair(feat_1, feat_2, lengths_1, lengths_2, extra_1=None, extra_2=None):
    batched = _batched_flag(feat_1, "feat_1")
    n1 = {"feat_1": feat_1, **(extra_1 or {})}
    n2 = {"feat_2": feat_2, **(extra_2 or {})}
    s1 = _side(n1, lengths_1, "lengths_1", batched=batched)
    s2 = _side(n2, lengths_2, "lengths_2", batched=batched)
    _check_pair(s1, s2, "feat_1", "feat_2", same_last=True)
    return s1, s2, batched


def _masked_softmax(logits: torch.Tensor, rows: _Side, cols: _Side, *, transposed: bool = False) -> torch.Tensor:
    """``(B, R, C)``: softmax over the real columns (vertices of ``cols``), zero on the padding rows of ``rows``.

    ``logits`` is ``(B, R, C)``, or with ``transposed=True`` stored as ``(B, C, R)``: the softmax then runs over
    its dim -2 in place (3x faster than over a transposed view on the CPU) and the result is a transposed view.
    No masking pass over the matrix is made on a side without padding."""
    dim = -2 if transposed else -1
    if not cols.full:
        m = cols.mask[:, :, None] if transposed else cols.mask[:, None, :]
        logits = logits.masked_fill(~m, float("-inf"))
    p = torch.softmax(logits, dim=dim)
    if not rows.full:
        m = rows.mask[:, None, :] if transposed else rows.mask[:, :, None]
        p = torch.where(m, p, torch.zeros((), dtype=p.dtype, device=p.device))
    return p.transpose(-1, -2) if transposed else p


def _softmax_logits(f1: torch.Tensor, f2: torch.Tensor, tau: float, normalize: bool) -> torch.Tensor:
    """``<f2_j, f1_i> / tau`` ``(B, V2, V1)`` (``1 / tau`` applied to the ``V1 x d`` features, not the matrix)."""
    if normalize:
        f1, f2 = F.normalize(f1, dim=-1), F.normalize(f2, dim=-1)
    return f2 @ (f1 / tau).transpose(-1, -2)


def soft_map_softmax(
    feat_1: torch.Tensor,
    feat_2: torch.Tensor,
    *,
    tau: float = 0.07,
    normalize: bool = True,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft point map ``soft_map_21 (V2, V1)`` by a row-softmax of the feature similarity (ULRSSM's ``Pi_yx``).

    ``soft_map_21[j, i] = exp(<f2_j, f1_i> / tau) / sum_i' exp(<f2_j, f1_i'> / tau)`` over the real vertices
    ``i'`` of shape 1, with ``f`` the L2-normalised features (cosine similarity, ``normalize=True``; Cao et al.
    2023, ``tau = 0.07``). Each row of shape 2 is a distribution over shape 1; padding rows are zero and padding
    columns get no mass. ``soft_map_12`` is ``soft_map_softmax(feat_2, feat_1)``. As ``tau -> 0`` each row tends
    to the indicator of the nearest feature. Time ``O(B V1 V2 d)``, memory ``O(B V1 V2)`` (dense).

    Args:
        feat_1: ``(V1, d)`` / ``(B, V1, d)``; feat_2: ``(V2, d)`` / ``(B, V2, d)``.
        tau: temperature ``> 0``.
        normalize: L2-normalise the features first (a zero feature vector stays zero).
        lengths_1: ``(B,)`` real vertex counts of a padded shape 1; lengths_2 likewise.

    Returns:
        ``(B, V2, V1)`` (or ``(V2, V1)``), rows summing to 1 on real vertices.
    """
    tau = check_positive(tau, "tau")
    s1, s2, batched = _feature_pair(feat_1, feat_2, lengths_1, lengths_2)
    logits = _softmax_logits(s1.tensors[0], s2.tensors[0], tau, normalize)
    out = _masked_softmax(logits, s2, s1)
    return out if batched else out[0]


# costs between features for the Sinkhorn soft map: (f1 (B, V1, d), f2 (B, V2, d), pair mask (B, V2, V1)) -> C_21
SoftMapCost = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
SOFT_MAP_COSTS: Registry[SoftMapCost] = Registry("soft map cost")


@SOFT_MAP_COSTS.register("cosine")
def _cosine_cost(f1: torch.Tensor, f2: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """``C_ji = 1 - <f2_j, f1_i> / (|f2_j| |f1_i|)`` in ``[0, 2]``."""
    return 1.0 - F.normalize(f2, dim=-1) @ F.normalize(f1, dim=-1).transpose(-1, -2)


@SOFT_MAP_COSTS.register("sqeuclidean")
def _sqeuclidean_cost(f1: torch.Tensor, f2: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """``C_ji = |f2_j - f1_i|^2 / mean_{real pairs} |f2 - f1|^2`` (the scale-free cost of Le et al. 2024's
    refinement, so that ``eps`` is relative to the mean cost)."""
    d = (f2 * f2).sum(-1)[:, :, None] + (f1 * f1).sum(-1)[:, None, :] - 2.0 * f2 @ f1.transpose(-1, -2)
    d = d.clamp_min(0.0)
    mean = (d * pair).sum((1, 2)) / pair.sum((1, 2))
    return d / mean.clamp_min(torch.finfo(d.dtype).tiny)[:, None, None]


def _sinkhorn_potentials(s1: _Side, s2: _Side, *, eps, cost, max_iter, tol, grad, warn):
    """Cost ``C_21 (B, V2, V1)``, column potential ``g (B, V1)``, row potential ``f (B, V2)`` and the log
    weights ``(log a (B, V2), log b (B, V1))`` of the balanced entropic plan
    ``P_ji = a_j b_i exp((f_j + g_i - C_ji) / eps)``."""
    f1, f2 = s1.tensors[0], s2.tensors[0]
    w1, w2 = s1.mask.to(f1.dtype), s2.mask.to(f2.dtype)
    if len(s1.tensors) > 1:
        w1 = check_weights(s1.tensors[1], "weights_1", shape=tuple(w1.shape), mask=s1.mask)
    if len(s2.tensors) > 1:
        w2 = check_weights(s2.tensors[1], "weights_2", shape=tuple(w2.shape), mask=s2.mask)
    pair = (s2.mask[:, :, None] & s1.mask[:, None, :]).to(f1.dtype)
    c = SOFT_MAP_COSTS.get(cost, arg="cost")(f1, f2, pair)
    # the padded cost stays finite (sinkhorn_from_cost ignores it beyond the lengths)
    res = sinkhorn_from_cost(
        c, eps=eps, x_weights=w2, y_weights=w1, x_lengths=s2.lengths, y_lengths=s1.lengths, max_iter=max_iter,
        tol=tol, grad="unroll" if grad == "unroll" else "none", warn=warn,
    )
    tiny = torch.finfo(f1.dtype).tiny
    log_a = (w2 / w2.sum(1, keepdim=True)).clamp_min(tiny).log()  # padding / zero weights: masked out or ~0
    log_b = (w1 / w1.sum(1, keepdim=True)).clamp_min(tiny).log()
    return c, res.f, res.g, log_a, log_b


def _check_sinkhorn_settings(eps, cost, max_iter, tol, grad) -> float:
    eps = check_positive(eps, "eps")
    SOFT_MAP_COSTS.get(cost, arg="cost")
    check_int(max_iter, "max_iter", at_least=1)
    check_positive(tol, "tol")
    if grad not in _GRADS:
        raise ValidationError(f"grad: expected one of {', '.join(_GRADS)}, got {grad!r}")
    return eps


def soft_map_sinkhorn(
    feat_1: torch.Tensor,
    feat_2: torch.Tensor,
    *,
    eps: float = 0.07,
    cost: str = "cosine",
    weights_1: torch.Tensor | None = None,
    weights_2: torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    grad: str = "envelope",
    warn: bool = True,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft point map ``soft_map_21 (V2, V1)``: the row-normalised entropic optimal transport plan between the
    features of shape 2 (rows) and of shape 1 (columns).

    ``P = argmin_{P 1 = a, P^T 1 = b} <P, C> + eps KL(P | a x b)``, solved by
    :func:`geomot.transport.sinkhorn_from_cost` (log domain, eps-scaling from the largest cost), ``P_ji =
    a_j b_i exp((f_j + g_i - C_ji) / eps)``; then ``soft_map_21[j, i] = P_ji / sum_i P_ji
    = softmax_i((g_i + eps log b_i - C_ji) / eps)``, computed in that form so that rows sum to 1 exactly even
    before convergence. Marginals: uniform over the real vertices (default) or ``weights_1`` / ``weights_2``
    (e.g. the lumped vertex masses, normalised per item). Costs (:data:`SOFT_MAP_COSTS`): ``"cosine"``
    ``1 - cos(f2_j, f1_i)`` (with ``eps = tau`` the plan is ULRSSM's softmax map with column offsets ``g`` that
    balance the marginals) or ``"sqeuclidean"`` divided by its mean over the real pairs (the refinement of Le et
    al., CVPR 2024, used ``eps = 2 * 0.1^2`` with 10 iterations). Time ``O(B V1 V2 (d + iterations))``, memory
    ``O(B V1 V2)`` (times the iterations with ``grad="unroll"``).

    Args:
        feat_1: ``(V1, d)`` / ``(B, V1, d)``; feat_2: ``(V2, d)`` / ``(B, V2, d)``.
        eps: entropic regularisation ``> 0``, in the units of the cost.
        cost: ``"cosine"`` or ``"sqeuclidean"``.
        weights_1: ``(V1,)`` / ``(B, V1)`` non-negative column marginal (normalised per item); uniform when None.
        weights_2: ``(V2,)`` / ``(B, V2)`` row marginal.
        max_iter: Sinkhorn iterations at most (all eps stages).
        tol: marginal L1 error to stop at.
        grad: ``"envelope"``: the potentials are held fixed (the gradient is that of the softmax above at fixed
            ``g``; cheap, the default) or ``"unroll"``: autograd through every log-domain iteration (exact for the
            iterations run, memory times the iterations).
        warn: emit a :class:`~geomot._core.errors.ConvergenceWarning` when the tolerance is not reached.
        lengths_1: ``(B,)`` real vertex counts of a padded shape 1; lengths_2 likewise.

    Returns:
        ``(B, V2, V1)`` (or ``(V2, V1)``), rows summing to 1 on real vertices, zero rows on padding.
    """
    eps = _check_sinkhorn_settings(eps, cost, max_iter, tol, grad)
    extra_1 = None if weights_1 is None else {"weights_1": weights_1}
    extra_2 = None if weights_2 is None else {"weights_2": weights_2}
    s1, s2, batched = _feature_pair(feat_1, feat_2, lengths_1, lengths_2, extra_1, extra_2)
    c, _, g, _, log_b = _sinkhorn_potentials(s1, s2, eps=eps, cost=cost, max_iter=max_iter, tol=tol, grad=grad,
                                             warn=warn)
    out = _masked_softmax((g[:, None, :] - c) / eps + log_b[:, None, :], s2, s1)
    return out if batched else out[0]


def fmap_from_soft_map(
    soft_map_21: torch.Tensor,
    evecs_1: torch.Tensor,
    evecs_2: torch.Tensor,
    mass_2: torch.Tensor,
    *,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
) -> torch.Tensor:
    """Functional map induced by a soft point map: ``fmap_12 = Phi_2^T M_2 soft_map_21 Phi_1``, ``(k2, k1)``.

    The ``M_2``-orthogonal projection of the pulled-back basis ``soft_map_21 Phi_1`` on ``Phi_2``; for a
    permutation it is the exact map of the basis functions, and ``||fmap_12 - fmap_from_soft_map(...)||^2`` is
    ULRSSM's coupling loss (Cao et al. 2023). Time ``O(B V1 V2 k1)``.

    Args:
        soft_map_21: ``(V2, V1)`` / ``(B, V2, V1)``.
        evecs_1: ``(V1, k1)`` / ``(B, V1, k1)``; evecs_2: ``(V2, k2)`` / ``(B, V2, k2)``.
        mass_2: ``(V2,)`` / ``(B, V2)`` lumped masses of shape 2.
        lengths_1: ``(B,)`` real vertex counts of a padded shape 1; lengths_2 likewise.

    Returns:
        ``(B, k2, k1)`` (or ``(k2, k1)``).
    """
    batched = _batched_flag(soft_map_21, "soft_map_21")
    s1 = _side({"evecs_1": evecs_1}, lengths_1, "lengths_1", batched=batched)
    (phi1,) = s1.tensors
    pi = soft_map_21 if batched else soft_map_21.unsqueeze(0)
    if pi.shape[0] != phi1.shape[0] or pi.shape[-1] != phi1.shape[1]:
        raise ShapeError(f"soft_map_21: expected (B, V2, V1) with (B, V1) = {tuple(phi1.shape[:2])} (from evecs_1), "
                         f"got shape {tuple(soft_map_21.shape)}")
    pi = torch.where(s1.mask[:, None, :], pi, torch.zeros((), dtype=pi.dtype, device=pi.device))
    s2 = _side({"soft_map_21": pi if batched else pi[0], "evecs_2": evecs_2, "mass_2": mass_2}, lengths_2,
               "lengths_2", batched=batched)
    _check_pair(s1, s2, "evecs_1", "soft_map_21", same_last=False)
    pi, phi2, m2 = s2.tensors
    if phi1.dim() != 3 or phi2.dim() != 3 or m2.dim() != 2:
        raise ShapeError("evecs_1 / evecs_2 / mass_2: expected (V, k), (V, k) and (V,) per item, got shapes "
                         f"{tuple(evecs_1.shape)}, {tuple(evecs_2.shape)}, {tuple(mass_2.shape)}")
    out = phi2.transpose(-1, -2) @ (m2[..., None] * (pi @ phi1))
    return out if batched else out[0]


# -- the Module shell ----------------------------------------------------------------------------------------------

#: soft point maps by name, used by :class:`DeepFunctionalMap`
SOFT_MAPS: Registry[Callable[..., torch.Tensor]] = Registry("soft map")
SOFT_MAPS.add("softmax", soft_map_softmax)
SOFT_MAPS.add("sinkhorn", soft_map_sinkhorn)
# the keyword settings of each soft map and their defaults (those of the functions' signatures)
_SOFT_DEFAULTS: dict[str, dict[str, Any]] = {
    "softmax": {"tau": 0.07, "normalize": True},
    "sinkhorn": {"eps": 0.07, "cost": "cosine", "max_iter": 100, "tol": 1e-4, "grad": "envelope", "warn": True},
}


def _soft_map_pair(kind: str, s1: _Side, s2: _Side, options: dict[str, Any], *, both: bool):
    """``(soft_map_21, soft_map_12 or None)`` from one similarity matrix or one Sinkhorn solve."""
    opts = {**_SOFT_DEFAULTS[kind], **options}
    if kind == "softmax":
        tau = check_positive(opts["tau"], "tau")
        logits = _softmax_logits(s1.tensors[0], s2.tensors[0], tau, opts["normalize"])
        p21 = _masked_softmax(logits, s2, s1)
        p12 = _masked_softmax(logits, s1, s2, transposed=True) if both else None
        return p21, p12
    eps = _check_sinkhorn_settings(opts["eps"], opts["cost"], opts["max_iter"], opts["tol"], opts["grad"])
    c, f, g, log_a, log_b = _sinkhorn_potentials(s1, s2, eps=eps, cost=opts["cost"], max_iter=opts["max_iter"],
                                                 tol=opts["tol"], grad=opts["grad"], warn=opts["warn"])
    p21 = _masked_softmax((g[:, None, :] - c) / eps + log_b[:, None, :], s2, s1)
    p12 = None
    if both:
        p12 = _masked_softmax((f[:, :, None] - c) / eps + log_a[:, :, None], s1, s2, transposed=True)
    return p21, p12


class DeepFunctionalMap(nn.Module):
    """The deep functional-map block (no parameters): :func:`fmap_layer` plus the soft point maps.

    ``DeepFunctionalMap(**settings)(feat_1, feat_2, evecs_1, evecs_2, mass_1, mass_2, evals_1, evals_2,
    lengths_1=..., lengths_2=...)`` returns a :class:`DeepFmapOutput`: ``fmap_12`` and ``fmap_21`` of
    :func:`fmap_layer`, and ``soft_map_21`` / ``soft_map_12`` of :func:`soft_map_softmax` (both from one
    similarity matrix) or :func:`soft_map_sinkhorn` (both from one plan: ``soft_map_12`` is the row-normalised
    transpose). With ``bidirectional=False`` only the ``_12`` map and ``soft_map_21`` are computed.

    Args:
        lambda_: regularisation weight of the solve (ULRSSM: 100).
        gamma: resolvent exponent (ULRSSM: 0.5).
        mask: ``"resolvent"`` or ``"laplacian"``.
        bidirectional: also compute ``fmap_21`` and ``soft_map_12``.
        soft_map: ``"softmax"`` or ``"sinkhorn"`` (:data:`SOFT_MAPS`).
        soft_map_options: keyword settings of that soft map (softmax: ``tau``, ``normalize``; sinkhorn: ``eps``,
            ``cost``, ``max_iter``, ``tol``, ``grad``, ``warn``).
        mass_marginals: Sinkhorn only: use the vertex masses as marginals instead of uniform weights.
    """

    def __init__(
        self,
        *,
        lambda_: float = 100.0,
        gamma: float = 0.5,
        mask: str = "resolvent",
        bidirectional: bool = True,
        soft_map: str = "softmax",
        soft_map_options: dict[str, Any] | None = None,
        mass_marginals: bool = False,
    ) -> None:
        super().__init__()
        _check_fmap_settings(lambda_, gamma, mask)
        SOFT_MAPS.get(soft_map, arg="soft_map")
        options = dict(soft_map_options or {})
        valid = _SOFT_DEFAULTS[soft_map]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValidationError(f"soft_map_options: unknown setting(s) {', '.join(map(repr, unknown))} for "
                                  f"soft_map={soft_map!r}; valid: {', '.join(sorted(valid))}")
        o = {**valid, **options}
        if soft_map == "softmax":
            check_positive(o["tau"], "tau")
        else:
            _check_sinkhorn_settings(o["eps"], o["cost"], o["max_iter"], o["tol"], o["grad"])
        if mass_marginals and soft_map != "sinkhorn":
            raise ValidationError("mass_marginals: only used with soft_map='sinkhorn'")
        self.settings = {"lambda_": float(lambda_), "gamma": float(gamma), "mask": mask,
                         "bidirectional": bool(bidirectional)}
        self.soft_map, self.soft_map_options, self.mass_marginals = soft_map, options, bool(mass_marginals)

    def forward(
        self,
        feat_1: torch.Tensor,
        feat_2: torch.Tensor,
        evecs_1: torch.Tensor,
        evecs_2: torch.Tensor,
        mass_1: torch.Tensor,
        mass_2: torch.Tensor,
        evals_1: torch.Tensor,
        evals_2: torch.Tensor,
        *,
        lengths_1: torch.Tensor | None = None,
        lengths_2: torch.Tensor | None = None,
    ) -> DeepFmapOutput:
        fm = fmap_layer(feat_1, feat_2, evecs_1, evecs_2, mass_1, mass_2, evals_1, evals_2, lengths_1=lengths_1,
                        lengths_2=lengths_2, **self.settings)
        extra_1 = {"weights_1": mass_1} if self.mass_marginals else None
        extra_2 = {"weights_2": mass_2} if self.mass_marginals else None
        s1, s2, batched = _feature_pair(feat_1, feat_2, lengths_1, lengths_2, extra_1, extra_2)
        p21, p12 = _soft_map_pair(self.soft_map, s1, s2, self.soft_map_options, both=self.settings["bidirectional"])
        if not batched:
            p21, p12 = p21[0], None if p12 is None else p12[0]
        return DeepFmapOutput(fm.fmap_12, fm.fmap_21, p21, p12)

    def extra_repr(self) -> str:
        items = {**self.settings, "soft_map": self.soft_map, **self.soft_map_options}
        if self.mass_marginals:
            items["mass_marginals"] = True
        return ", ".join(f"{k}={v!r}" for k, v in items.items())
