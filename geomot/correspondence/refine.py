"""Entropic refinement: ZoomOut with Sinkhorn filtering (Pai, Ren, Melzi, Wonka & Ovsjanikov, CVPR 2021, "Fast
Sinkhorn Filters: Using Matrix Scaling for Non-Rigid Shape Correspondence with Functional Maps").

ZoomOut's nearest-neighbour step is replaced by a soft map: the entropic optimal transport plan between the
spectral embeddings ``Phi_2`` and ``Phi_1 C^T`` (cost ``c_ji = |Phi_2[j] - Phi_1[i] C^T|^2``, marginals the
vertex areas), whose row-normalised version gives the next functional map ``C = Phi_2^+ P Phi_1``. The
regularisation ``eps`` decreases geometrically along the spectral upsampling; the result ends in a hard map
(nearest neighbours in the final embedding).
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_positive
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.p2p import p2p_from_fmap
from geomot.transport import sinkhorn

__all__ = ["SinkhornZoomOutResult", "sinkhorn_zoomout"]

logger = logging.getLogger(__name__)


class SinkhornZoomOutResult(NamedTuple):
    """Result of :func:`sinkhorn_zoomout`.

    Attributes:
        fmap_12: ``(k_final, k_final)``.
        p2p_21: ``(V2,)`` hard map, for each vertex of shape 2 its match on shape 1.
        marginal_error: marginal error of the last Sinkhorn solve.
    """

    fmap_12: torch.Tensor
    p2p_21: torch.Tensor
    marginal_error: float


def _soft_average(
    y: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, n_iters: int, values: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Row-normalised entropic plan applied to ``values``: ``diag(P 1)^{-1} P values``, ``(N, c)``.

    ``P`` is the balanced entropic plan between ``y (N, D)`` (weights ``a``) and ``x (M, D)`` (weights ``b``)
    for the squared Euclidean cost, from :func:`geomot.transport.sinkhorn` (log domain, eps-scaling), applied
    lazily. Returns it with the final marginal error.
    """
    res = sinkhorn(y, x, eps=eps, x_weights=a, y_weights=b, max_iter=n_iters, eps_scaling=0.5, warn=False)
    pv = res.plan @ values
    rows = res.plan @ values.new_ones(values.shape[0])
    return pv / rows.clamp_min(torch.finfo(values.dtype).tiny)[:, None], float(res.marginal_error)


@renamed_kwargs(n_iters="max_iter")
def sinkhorn_zoomout(
    fmap_12: torch.Tensor,
    evecs1: torch.Tensor,
    evecs2: torch.Tensor,
    mass1: torch.Tensor,
    mass2: torch.Tensor,
    *,
    k_final: int,
    step: int = 5,
    samples1: torch.Tensor | None = None,
    samples2: torch.Tensor | None = None,
    eps_start: float = 0.1,
    eps_end: float = 0.01,
    max_iter: int = 100,
) -> SinkhornZoomOutResult:
    """ZoomOut with Sinkhorn filtering (Pai et al. 2021).

    At basis size ``k`` with ``X = Phi_1[S1, :k] C^T`` and ``Y = Phi_2[S2, :k]``: the plan
    ``P = argmin <P, c> - eps H(P)`` with ``c_ji = |Y_j - X_i|^2`` and marginals ``mass2[S2]``, ``mass1[S1]``
    (normalised); then ``C <- lstsq(Phi_2[S2, :k'], diag(P 1)^{-1} P Phi_1[S1, :k'])`` with ``k' = k + step``.
    ``eps`` goes geometrically from ``eps_start`` to ``eps_end`` times ``mean|X|^2 + mean|Y|^2`` (the mean cost
    of independent pairs) along the steps.

    Args:
        fmap_12: ``(k0, k0)`` initial map.
        evecs1: ``(V1, K1)``; evecs2: ``(V2, K2)``; mass1: ``(V1,)``; mass2: ``(V2,)``.
        k_final: final basis size; step: increase of ``k`` per iteration.
        samples1, samples2: vertex subsets on which the plans are computed (all vertices when None; plans are
            ``(S2, S1)`` matrices applied lazily by :func:`geomot.transport.sinkhorn`; subsample beyond a few thousand
            vertices).
        eps_start, eps_end: relative entropic regularisation at the first and the last step.
        max_iter: Sinkhorn iteration budget per step (:func:`geomot.transport.sinkhorn`, eps-scaling included;
            ``n_iters`` is a deprecated alias).

    Returns:
        :class:`SinkhornZoomOutResult`.
    """
    check_float_tensor(fmap_12, "fmap_12", ndim=2)
    check_float_tensor(evecs1, "evecs1", ndim=2)
    check_float_tensor(evecs2, "evecs2", ndim=2)
    k = fmap_12.shape[0]
    if fmap_12.shape != (k, k):
        raise ShapeError(f"fmap_12: expected a square (k, k) map, got shape {tuple(fmap_12.shape)}")
    if mass1.shape != evecs1.shape[:1] or mass2.shape != evecs2.shape[:1]:
        raise ShapeError(
            f"mass1/mass2: expected shapes ({evecs1.shape[0]},) / ({evecs2.shape[0]},), "
            f"got {tuple(mass1.shape)} / {tuple(mass2.shape)}"
        )
    if isinstance(k_final, bool) or not isinstance(k_final, int) or not k <= k_final <= min(
        evecs1.shape[1], evecs2.shape[1]
    ):
        raise ValidationError(
            f"k_final: expected an integer in [{k}, {min(evecs1.shape[1], evecs2.shape[1])}], got {k_final!r}"
        )
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValidationError(f"step: expected a positive integer, got {step!r}")
    e0, e1 = check_positive(eps_start, "eps_start"), check_positive(eps_end, "eps_end")
    dev = evecs1.device
    s1 = torch.arange(evecs1.shape[0], device=dev) if samples1 is None else samples1.long()
    s2 = torch.arange(evecs2.shape[0], device=dev) if samples2 is None else samples2.long()
    check_index_tensor(s1, "samples1", size=evecs1.shape[0])
    check_index_tensor(s2, "samples2", size=evecs2.shape[0])
    a, b = mass2[s2] / mass2[s2].sum(), mass1[s1] / mass1[s1].sum()
    ks = [*range(k + step, k_final, step), k_final] if k_final > k else []
    n = max(1, len(ks))
    C, err = fmap_12, math.nan
    for t, k_new in enumerate(ks):
        X = evecs1[s1, :k] @ C.T
        Y = evecs2[s2, :k]
        scale = float((Y * Y).sum(1).mean() + (X * X).sum(1).mean())  # mean squared distance of independent pairs
        eps = scale * e0 * (e1 / e0) ** (t / max(1, n - 1))
        target, err = _soft_average(Y, X, a, b, eps, int(max_iter), evecs1[s1, :k_new])
        C = torch.linalg.lstsq(evecs2[s2, :k_new], target).solution
        k = k_new
    logger.debug("sinkhorn zoomout: final column-marginal error %.3g", err)
    return SinkhornZoomOutResult(C, p2p_from_fmap(C, evecs1[:, :k], evecs2[:, :k]), err)
