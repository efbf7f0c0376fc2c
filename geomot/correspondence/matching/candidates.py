"""Stage 2 of :func:`geomot.correspondence.match`: candidate functional maps.

**Spectral candidates** (:func:`spectral_candidates`): for isometries the functional map is close to
``diag(+-1)`` at low frequencies. The ``2^(k_init - 1)`` sign patterns are ranked by how well they carry the
projected descriptors (``||S A - B||``); for the ``n_candidates`` best, a ``k_select`` map is solved exactly (one
shared Cholesky factor) from ``||C A - B||^2 + w_lap ||C Lambda_1 - Lambda_2 C||^2 + w_orient sum_d ||C O^1_d -
O^2_d C||^2 + w_prior ||C_[:k_init, :k_init] - diag(signs)||^2`` with the orientation operators of Ren et al. 2018
(a reflection reverses their sign, so the term keeps left and right apart). The ``n_finalists`` with the smallest
descriptor residual are upsampled by ZoomOut (Melzi et al. 2019) on source samples to ``min(k, 2 k_select)``, with
images among the target samples ``PreparedPair.samples1`` (every target vertex when None).

**Extrinsic candidates** (:func:`extrinsic_candidates`): across species the low-frequency eigenfunctions reorder
and no sign pattern is right, while the shapes still look alike once aligned in space. Both shapes go to their
principal axes, each of the 8 sign/axis hypotheses is followed by a smooth non-rigid ICP
(:func:`geomot.correspondence.nonrigid_icp`) of source samples onto target samples, and the ``n_extrinsic``
alignments with the smallest Chamfer cost map the ranking samples to their closest target vertices, giving
functional maps of the same size as the spectral ones.

Cost: ``n_finalists`` sampled ZoomOuts (nearest neighbours in the spectral embedding) and one batched ICP of
the 8 hypotheses.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import NamedTuple

import torch

from geomot._core.checks import check_finite
from geomot.correspondence.extrinsic import NonrigidICPResult, frame_hypotheses, nonrigid_icp, principal_frame
from geomot.correspondence.fmaps import (
    _normal_equations,
    laplacian_mask,
    orientation_operators,
    point_orientation_operators,
    project,
)
from geomot.correspondence.matching.config import MatchConfig
from geomot.correspondence.matching.preparation import CloudFrame, PreparedPair
from geomot.correspondence.p2p import fmap_from_p2p, knn_indices
from geomot.correspondence.zoomout import _zoomout_fmap
from geomot.ops.sampling import farthest_point_sampling
from geomot.ops.spectral import SpectralBasis

__all__ = [
    "Candidate",
    "CandidateSet",
    "OrientationTerms",
    "extrinsic_candidates",
    "extrinsic_maps",
    "sign_patterns",
    "spectral_candidates",
]

logger = logging.getLogger(__name__)


class Candidate(NamedTuple):
    """A candidate initial map.

    Attributes:
        fmap_12: ``(k', k')`` float64 functional map, ``k' = min(k, upsample_factor * k_select)``.
        orientation_ratio: ``||C O^1 - O^2 C||^2 / ||C O^1 + O^2 C||^2`` on its ``k_select`` block (below 1:
            orientation kept; NaN when the candidate set has no orientation terms).
        extrinsic: whether it comes from a spatial alignment rather than from the sign search.
        descriptor_residual: ``||C A - B||^2`` of the solved ``k_select`` map (NaN for extrinsic candidates).
    """

    fmap_12: torch.Tensor
    orientation_ratio: float
    extrinsic: bool = False
    descriptor_residual: float = math.nan


class OrientationTerms(NamedTuple):
    """Orientation operators ``O^1, O^2 (D, k_select, k_select)`` of the descriptors (Ren et al. 2018), both
    divided by the norms of ``O^1``."""

    ops1: torch.Tensor
    ops2: torch.Tensor

    def ratio(self, fmap_12: torch.Tensor) -> float:
        """``||C O^1 - O^2 C||^2 / ||C O^1 + O^2 C||^2`` on the leading ``k_select`` block of ``fmap_12``."""
        k = self.ops1.shape[-1]
        Cs = fmap_12[None, :k, :k]
        keep = float(((Cs @ self.ops1 - self.ops2 @ Cs) ** 2).sum())
        flip = float(((Cs @ self.ops1 + self.ops2 @ Cs) ** 2).sum())
        return keep / max(flip, 1e-30)


class CandidateSet(NamedTuple):
    """Result of :func:`spectral_candidates`: the upsampled ``candidates``, smallest descriptor residual first,
    and the ``orientation`` terms of the pair (from faces, or from the normals of a point cloud; None when a
    caller builds a set without them)."""

    candidates: list[Candidate]
    orientation: OrientationTerms | None

    def ratio(self, fmap_12: torch.Tensor) -> float:
        """Orientation ratio of any map of the pair (NaN without orientation terms)."""
        return math.nan if self.orientation is None else self.orientation.ratio(fmap_12)


def sign_patterns(m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All ``2^(m-1)`` diagonal sign patterns with a positive constant eigenfunction: ``(2^(m-1), m)``."""
    signs = torch.tensor(list(itertools.product([1.0, -1.0], repeat=m - 1)), dtype=dtype).reshape(-1, m - 1)
    return torch.cat([torch.ones(signs.shape[0], 1, dtype=dtype), signs], 1)


def _shape_operators(
    verts: torch.Tensor, faces: torch.Tensor | None, cloud: CloudFrame | None, basis: SpectralBasis,
    desc: torch.Tensor, k_select: int,
) -> torch.Tensor:
    """Orientation operators of one shape: from its faces, or from a point cloud's tangent gradients."""
    if faces is not None:
        return orientation_operators(verts, faces, basis.evecs[:, :k_select], desc)
    assert cloud is not None
    return point_orientation_operators(cloud.gradients, basis.mass, basis.evecs[:, :k_select], desc)


def _orientation_terms(pair: PreparedPair, k_select: int) -> OrientationTerms:
    O1 = _shape_operators(pair.v1, pair.f1, pair.clouds[0], pair.b1, pair.desc1, k_select)
    O2 = _shape_operators(pair.v2, pair.f2, pair.clouds[1], pair.b2, pair.desc2, k_select)
    n1 = O1.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]
    return OrientationTerms(O1 / n1, O2 / n1)


def _solve_patterns(
    pair: PreparedPair, orientation: OrientationTerms | None, config: MatchConfig
) -> list[tuple[float, torch.Tensor]]:
    """``(descriptor residual, C (k_select, k_select))`` of the ``n_candidates`` sign patterns that best carry the
    descriptors, each solved exactly; smallest residual first."""
    m, k_select = config.k_init, config.resolved_k_select
    b1, b2 = pair.b1, pair.b2
    A, B = project(pair.desc1, b1.evecs[:, :m], b1.mass), project(pair.desc2, b2.evecs[:, :m], b2.mass)
    signs = sign_patterns(m, A.dtype)
    e_desc = ((signs[:, :, None] * A[None] - B[None]) ** 2).sum((1, 2))
    order = e_desc.argsort()[: min(config.n_candidates, signs.shape[0])]
    Ak = project(pair.desc1, b1.evecs[:, :k_select], b1.mass)
    Bk = project(pair.desc2, b2.evecs[:, :k_select], b2.mass)
    # one quadratic problem per sign pattern, sharing its Hessian: descriptors + Laplacian commutativity +
    # orientation commutativity + a pull of the low-frequency block towards diag(signs)
    n_a = float((Ak * Ak).sum()) + 1e-30
    mask = laplacian_mask(b1.evals[:k_select], b2.evals[:k_select])
    ops1 = [] if orientation is None else [orientation.ops1]
    ops2 = [] if orientation is None else [orientation.ops2]
    w_orient = [] if orientation is None else [config.orientation_weight * n_a / orientation.ops1.shape[0]]
    H, r, _ = _normal_equations(Ak, Bk, mask, ops1, ops2, w_orient, 1.0, config.laplacian_weight * n_a)
    prior_w = torch.zeros(k_select, k_select, dtype=H.dtype, device=H.device)
    prior_w[:m, :m] = config.prior_weight * n_a
    chol = torch.linalg.cholesky(H + torch.diag(prior_w.reshape(-1)))
    solved = []
    for i in order.tolist():
        prior = torch.zeros_like(prior_w)
        prior[:m, :m] = torch.diag(signs[i])
        C = torch.cholesky_solve((r + (prior_w * prior).reshape(-1))[:, None], chol).view(k_select, k_select)
        solved.append((float(((C @ Ak - Bk) ** 2).sum()), C))
    solved.sort(key=lambda t: t[0])
    return solved


def upsampled_size(config: MatchConfig) -> int:
    """``k' = min(k, upsample_factor * k_select)``, the size of every candidate map."""
    return min(config.k, config.upsample_factor * config.resolved_k_select)


def spectral_candidates(pair: PreparedPair, config: MatchConfig | None = None) -> CandidateSet:
    """Sign search, one orientation-regularised map per retained pattern, ZoomOut of the ``n_finalists`` best to
    ``k'`` on ``n_samples`` farthest-point source samples (float32), see the module docstring.

    Returns:
        :class:`CandidateSet`: up to ``n_finalists`` candidates, smallest descriptor residual first.
    """
    config = (config or MatchConfig()).resolve()
    orientation = _orientation_terms(pair, config.resolved_k_select)
    solved = _solve_patterns(pair, orientation, config)
    n_samples = min(config.n_samples, pair.v2.shape[0])
    # a prefix of farthest-point samples from vertex 0 is itself one: reuse the ranking's when long enough
    if pair.samples2.shape[0] >= n_samples:
        samples2 = pair.samples2[:n_samples]
    else:
        samples2 = farthest_point_sampling(pair.v2, n_samples, start=0)
    k_more = upsampled_size(config)
    # candidate ZoomOuts in float32 (nearest neighbours and small least squares; twice as fast as float64)
    e1, e2 = pair.b1.evecs.float(), pair.b2.evecs.float()
    check_finite(e1, "evecs1")
    check_finite(e2, "evecs2")  # once here, not in each ZoomOut
    out = []
    for res, C in solved[: config.n_finalists]:
        up, _ = _zoomout_fmap(
            C.float(), e1, e2, k_final=k_more, step=config.step, samples2=samples2, samples1=pair.samples1,
            check_bases=False,
        )
        C2 = up.double()
        ratio = math.nan if orientation is None else orientation.ratio(C2)
        out.append(Candidate(C2, ratio, False, res))
    return CandidateSet(out, orientation)


class _Alignments(NamedTuple):
    """The 8 extrinsic alignments of a source onto a target (:func:`_extrinsic_alignments`): both shapes in their
    principal frames ``x2 (V2, 3)``, ``x1 (V1, 3)``, the frame hypotheses ``hyp (8, 3, 3)``, the source's
    eigenfunctions ``e2 (V2, K)`` and the non-rigid ICP result ``fit`` (a hypothesis axis of 8)."""

    x2: torch.Tensor
    x1: torch.Tensor
    hyp: torch.Tensor
    e2: torch.Tensor
    fit: NonrigidICPResult

    def deformed(self, h: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Source vertices ``rows`` (all when None) under alignment ``h``: ``x R_h + t_h + Phi A_h``."""
        x2, e2 = (self.x2, self.e2) if rows is None else (self.x2[rows], self.e2[rows])
        return x2 @ self.hyp[h] @ self.fit.R[h] + self.fit.t[h] + e2 @ self.fit.A[h]

    def images(self, h: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Target vertices closest to the deformed source vertices ``rows`` under alignment ``h``."""
        return knn_indices(self.deformed(h, rows), self.x1)


def levels_up_to(levels: tuple[int, ...], k: int) -> tuple[int, ...]:
    """A coarse-to-fine schedule of basis sizes cut at the ``k`` eigenfunctions available (its last size ``k``
    when the schedule asks for more)."""
    kmax = min(levels[-1], k)
    return (*[size for size in levels if size < kmax], kmax)


def _extrinsic_alignments(
    v1: torch.Tensor,
    b1: SpectralBasis,
    v2: torch.Tensor,
    b2: SpectralBasis,
    samples2: torch.Tensor,
    n_source: int,
    n_target: int,
    levels: tuple[int, ...],
) -> _Alignments:
    """Principal axes, 8 sign/axis hypotheses, smooth non-rigid ICP of the first ``n_source`` of ``samples2``
    (farthest-point samples of the source) onto ``n_target`` farthest-point samples of the target; float32
    throughout (closest points and 3-column least squares)."""
    x2, u2 = principal_frame(v2, b2.mass)
    x1, u1 = principal_frame(v1, b1.mass)
    x2, x1 = x2.float(), x1.float()
    det = 1.0 if float(torch.linalg.det(u2) * torch.linalg.det(u1)) > 0 else -1.0
    hyp = frame_hypotheses(det, dtype=x2.dtype).to(x2.device)
    s2 = samples2[:n_source]  # a prefix of farthest-point samples is itself one
    s1 = farthest_point_sampling(v1, min(n_target, v1.shape[0]), start=0).long()
    levels = levels_up_to(levels, b2.evecs.shape[1])
    e2 = b2.evecs[:, : levels[-1]].float()
    fit = nonrigid_icp(x2[s2] @ hyp, x1[s1], e2[s2], b2.evals.float(), levels=levels)
    return _Alignments(x2, x1, hyp, e2, fit)


def extrinsic_maps(
    v1: torch.Tensor,
    b1: SpectralBasis,
    v2: torch.Tensor,
    b2: SpectralBasis,
    samples2: torch.Tensor,
    n_maps: int,
    n_source: int = 500,
    n_target: int = 1000,
    levels: tuple[int, ...] = (0, 4, 8, 16, 32),
) -> list[torch.Tensor]:
    """Target vertices ``(S,)`` of the source points ``samples2 (S,)`` under the ``n_maps`` extrinsic alignments
    with the smallest Chamfer cost, best first (index 1: target, 2: source; ``v`` at unit area)."""
    aligned = _extrinsic_alignments(v1, b1, v2, b2, samples2, n_source, n_target, levels)
    return [aligned.images(h, samples2) for h in aligned.fit.cost.argsort()[:n_maps].tolist()]


def extrinsic_candidates(
    pair: PreparedPair, config: MatchConfig | None = None, orientation: OrientationTerms | None = None
) -> list[Candidate]:
    """The ``n_extrinsic`` extrinsic candidates (see the module docstring), as functional maps of size ``k'``
    fitted to the images of ``pair.samples2``; best Chamfer cost first. ``orientation`` (from
    :func:`spectral_candidates`) gives their orientation ratios (NaN when None)."""
    config = (config or MatchConfig()).resolve()
    if config.n_extrinsic == 0:
        return []
    rank = pair.samples2.long()
    k_more = upsampled_size(config)
    e1, e2 = pair.b1.evecs.float(), pair.b2.evecs.float()
    out = []
    for images in extrinsic_maps(
        pair.v1,
        pair.b1,
        pair.v2,
        pair.b2,
        rank,
        config.n_extrinsic,
        config.n_source_icp,
        config.n_target_icp,
        config.icp_levels,
    ):
        C2 = fmap_from_p2p(images, e1[:, :k_more], e2[rank, :k_more]).double()
        ratio = math.nan if orientation is None else orientation.ratio(C2)
        out.append(Candidate(C2, ratio, True))
    return out
