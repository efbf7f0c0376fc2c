"""Stage 3 of :func:`geomot.correspondence.match`: ranking the candidates, each key a named function.

1. a cheap key on every upsampled spectral candidate: with the anchor refinement, the
   :func:`deformation_residual` of its unrefined map of the ranking samples; otherwise the Laplacian commutativity
   :func:`laplacian_energy`;
2. the ``n_scored`` best by that key are scored on their full point maps by :class:`MapSelector`: orientation kept
   on the balance first (point clouds: from their estimated normals), then metric distortion on farthest-point
   samples;
3. the ``n_final`` best are compared once more. With the anchor refinement: each (and each extrinsic
   candidate) gets ``anchor_iterations`` steps of :func:`geomot.correspondence.anchor_refine` on the ranking
   samples, then is keyed by (orientation, deformation residual). Pose changes are smooth displacement fields; a
   map with two limbs swapped or a body turned about its long axis needs a displacement that changes direction
   within a limb, which the first ``deformation_k`` eigenfunctions cannot follow. The extrinsic candidates are
   first reduced to one by :func:`pick_extrinsic`; it replaces the best spectral one only when its residual is
   below ``extrinsic_margin`` times the latter's and its metric distortion is smaller too (an extrinsic map is a
   smooth deformation by construction, so the residual alone favours it). Otherwise: ZoomOut to ``k``, then the
   key of step 2.

The maps of the ranking samples in steps 1 and 3 have their images among the target samples
``PreparedPair.samples1`` (every vertex when None); the full point maps of step 2 reach every target vertex. The
winner is upsampled by ZoomOut to ``k`` on the ranking samples with images among every target vertex. Cost:
shortest paths (the distortion samples, the ball areas) and ``n_final + n_extrinsic`` anchor refinements on the
ranking samples.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch

from geomot._core.checks import check_finite
from geomot._core.errors import ValidationError
from geomot.correspondence.anchors import anchor_refine, shape_graph
from geomot.correspondence.descriptors import geodesic_ball_areas
from geomot.correspondence.fmaps import laplacian_mask
from geomot.correspondence.matching.candidates import Candidate, CandidateSet
from geomot.correspondence.matching.config import MatchConfig
from geomot.correspondence.matching.preparation import CloudFrame, PreparedPair, cloud_frame
from geomot.correspondence.p2p import p2p_from_fmap
from geomot.correspondence.zoomout import _zoomout_fmap
from geomot.ops.alignment import corresponding_points_alignment
from geomot.ops.geometry import vertex_normals
from geomot.ops.graph import graph_distances
from geomot.ops.orientation import consistently_oriented, map_orientation_score, point_map_orientation_score
from geomot.ops.sampling import farthest_point_sampling
from geomot.ops.spectral import SpectralBasis

__all__ = [
    "MapSelector",
    "RankedCandidate",
    "Selection",
    "deformation_residual",
    "laplacian_energy",
    "pick_extrinsic",
    "rank_candidates",
    "select_initial",
]

logger = logging.getLogger(__name__)


class RankedCandidate(NamedTuple):
    """A candidate with its ranking ``key`` (smaller is better, compared as a tuple). ``images (S,)`` are the
    target vertices of the ranking samples: under its unrefined map after :func:`rank_candidates` (meshes with the
    anchor refinement, whose cheap key computes them), under its anchor-refined map ``refined_fmap_12`` after the
    anchor round."""

    key: tuple[float, ...]
    candidate: Candidate
    refined_fmap_12: torch.Tensor | None = None
    images: torch.Tensor | None = None


class Selection(NamedTuple):
    """Result of :func:`select_initial`: the chosen ``candidate``, its map upsampled to ``(k, k)`` (float64) on
    the ranking samples, ``fmap_12`` (after the anchor round: of its anchor-refined map), and the ``final`` round
    of the ranking in the order compared (spectral candidates first)."""

    candidate: Candidate
    fmap_12: torch.Tensor
    final: list[RankedCandidate]


def laplacian_energy(fmap_12: torch.Tensor, b1: SpectralBasis, b2: SpectralBasis) -> float:
    """Laplacian commutativity of a ``(k, k)`` map, ``sum_ij (lambda1_j - lambda2_i)^2 C_ij^2 / (lambda_max^2
    ||C||^2)`` over the first ``k`` eigenvalues (:func:`~geomot.correspondence.laplacian_mask`; 0 for an
    isometry's map)."""
    k = fmap_12.shape[0]
    mask = laplacian_mask(b1.evals[:k], b2.evals[:k])
    return float((mask * fmap_12 * fmap_12).sum() / (fmap_12 * fmap_12).sum().clamp_min(1e-30))


def deformation_residual(x: torch.Tensor, y: torch.Tensor, phi: torch.Tensor, n_iter: int = 3) -> float:
    """How far a rigid motion plus a smooth displacement falls short of carrying source points onto their images:

    ``min_{R, t, A} mean_s |x_s R + t + (Phi A)_s - y_s|`` (Euclidean norm per point), approached by alternating
    the rigid fit of ``x`` to ``y - Phi A`` (:func:`geomot.ops.alignment.corresponding_points_alignment`, proper
    rotations) with the least-squares ``A`` for the residual; ``x, y (S, 3)``, ``phi (S, k)`` the source's first
    ``k`` eigenfunctions at the points. Rigid motions of either shape leave it unchanged."""
    pinv = torch.linalg.pinv(phi)
    fit = torch.zeros_like(y)
    moved = x
    for _ in range(n_iter):
        rot, shift, _ = corresponding_points_alignment(x, y - fit)
        moved = x @ rot + shift
        fit = phi @ (pinv @ (y - moved))
    return float((moved + fit - y).norm(dim=1).mean())


class MapSelector:
    """Ranks vertex maps ``p2p_21`` between two shapes: first whether they keep orientation on the balance
    (:func:`geomot.ops.orientation.map_orientation_score` ``> 0`` from a mesh source,
    :func:`~geomot.ops.orientation.point_map_orientation_score` from a point cloud), then by their metric
    distortion on ``m`` farthest-point samples ``s_a`` of the source,

    ``dist(T) = sum_ab |d_1(T(s_a), T(s_b)) - d_2(s_a, s_b)| / sum_ab d_2(s_a, s_b)``,

    with ``d`` shortest paths in ``graphs`` (default: along the mesh edges, or the point cloud's nearest-neighbour
    graph; 0 for an isometry). A mirror map is as isometric as the true one (hence the orientation key first); a
    map with one limb sent to its twin stretches the distances between the limb and the rest. Intrinsic:
    invariant to rigid motions and to the pose. ``f1`` / ``f2`` None: point clouds, oriented by their
    ``clouds`` frames (:func:`~geomot.correspondence.matching.cloud_frame`, computed when not given)."""

    def __init__(
        self,
        v1: torch.Tensor,
        f1: torch.Tensor | None,
        v2: torch.Tensor,
        f2: torch.Tensor | None,
        m: int = 64,
        graphs: tuple[Any, Any] | None = None,
        clouds: tuple[CloudFrame | None, CloudFrame | None] = (None, None),
    ) -> None:
        self.v1, self.f1, self.v2, self.f2 = v1, f1, v2, f2
        c1, c2 = (
            c if c is not None or f is not None else cloud_frame(v) for c, f, v in zip(clouds, (f1, f2), (v1, v2))
        )
        self.cloud2 = c2
        self.n1 = vertex_normals(v1, f1) if f1 is not None else c1.normals
        self.g1, self.g2 = (shape_graph(v1, f1), shape_graph(v2, f2)) if graphs is None else graphs
        self.samples = farthest_point_sampling(v2, min(m, v2.shape[0]), start=0).long()
        d2 = graph_distances(self.g2, self.samples)[:, self.samples]
        finite = torch.isfinite(d2)
        self.cap = float(d2[finite].max()) if bool(finite.any()) else 1.0
        self.d2 = torch.where(finite, d2, torch.full_like(d2, self.cap))
        self.use_orientation = all(f is None or consistently_oriented(f) for f in (f1, f2))
        if not self.use_orientation:
            logger.warning(
                "match: a mesh has inconsistently wound faces; candidate maps are ranked by metric "
                "distortion only, so mirror-symmetric shapes may come out flipped"
            )

    def orientation(self, p2p_21: torch.Tensor) -> float:
        """Orientation score of a vertex map in ``[-1, 1]`` (positive: orientation kept on the balance)."""
        if self.f2 is not None:
            return map_orientation_score(p2p_21, self.v2, self.f2, self.v1, self.f1, normals_tgt=self.n1)
        assert self.cloud2 is not None
        c2 = self.cloud2
        return point_map_orientation_score(p2p_21, self.v2, c2.normals, self.v1, self.n1, gradients=c2.gradients)

    def __call__(self, p2p_21: torch.Tensor) -> tuple[float, float]:
        """``(reversed, distortion)``: 1 when the map reverses orientation on the balance, else 0."""
        reversed_ = 0.0
        if self.use_orientation:
            reversed_ = 0.0 if self.orientation(p2p_21) > 0 else 1.0
        return (reversed_, self.distortion(p2p_21[self.samples]))

    def distortion_on(self, samples: torch.Tensor, images: torch.Tensor) -> float:
        """Metric distortion of a map known on ``samples (S,)`` only (``images (S,)``, their target vertices);
        ``samples`` must contain the selector's samples (a longer farthest-point sampling from the same start
        does)."""
        where = torch.full((self.v2.shape[0],), -1, dtype=torch.long)
        where[samples.long().cpu()] = torch.arange(samples.shape[0])
        pos = where[self.samples.cpu()]
        if bool((pos < 0).any()):
            raise ValidationError("samples: expected them to contain the selector's farthest-point samples")
        return self.distortion(images.cpu()[pos])

    def distortion(self, images: torch.Tensor) -> float:
        """Metric distortion given ``images (m,)``, the target vertices of the samples."""
        d1 = graph_distances(self.g1, images)[:, images]
        d1 = torch.where(torch.isfinite(d1), d1, torch.full_like(d1, self.cap))
        return float((d1 - self.d2).abs().sum() / self.d2.sum().clamp_min(1e-30))


def pick_extrinsic(
    v1: torch.Tensor,
    f1: torch.Tensor | None,
    v2: torch.Tensor,
    f2: torch.Tensor | None,
    graph1: Any,
    graph2: Any,
    samples2: torch.Tensor,
    residuals: list[float],
    images: list[torch.Tensor],
    *,
    config: MatchConfig | None = None,
    areas: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
) -> int:
    """Index of the extrinsic candidate that goes on: the smallest deformation residual, weighted by how well the
    candidate keeps the areas of geodesic balls (:func:`geomot.correspondence.geodesic_ball_areas` at the radii
    ``profile_radii``, shapes at unit area) when the candidates disagree on them.

    ``images[c] (S,)`` are the target vertices of the source points ``samples2`` under candidate ``c``. With
    ``e_c = mean_{s, r} |log A^2_r(s) - log A^1_r(images_c(s))|`` and the spread
    ``max_{c, c'} mean_{s, r} |log A^1_r(images_c(s)) - log A^1_r(images_c'(s))|``, the key is
    ``residual_c * e_c^2`` when the spread exceeds ``profile_gate`` and ``residual_c`` otherwise. A half-turn of
    a quadruped (head sent to tail) is absorbed by a smooth deformation but changes the balls' areas; a human
    turned about its long axis is nearly an intrinsic symmetry (spread below the gate), left to the residual.
    ``areas``: the areas per vertex of (target, source) where a shape is a point cloud (``f`` None)."""
    config = config or MatchConfig()
    if len(images) < 2:
        return 0
    radii = torch.tensor(config.profile_radii, dtype=torch.float64)
    pts = samples2[: config.profile_samples]  # a prefix of farthest-point samples is itself one
    a1, a2 = areas
    log2 = geodesic_ball_areas(v2, f2, radii, samples=pts, graph=graph2, areas=a2)[samples2].clamp_min(1e-12).log()
    log1 = geodesic_ball_areas(v1, f1, radii, samples=config.profile_samples, graph=graph1, areas=a1)
    log1 = log1.clamp_min(1e-12).log()
    at = [log1[p.long().cpu()] for p in images]
    errs = [float((log2 - x).abs().mean()) for x in at]
    spread = max(float((a - b).abs().mean()) for i, a in enumerate(at) for b in at[i + 1 :])
    keys = [res * err**2 for res, err in zip(residuals, errs)] if spread > config.profile_gate else residuals
    logger.debug("extrinsic candidates: ball-area errors %s, spread %.3f", [round(e, 4) for e in errs], spread)
    return min(range(len(keys)), key=keys.__getitem__)


class _Keys:
    """The ranking keys of one pair, with what they share (float32 bases, ranking samples, selector)."""

    def __init__(self, pair: PreparedPair, config: MatchConfig) -> None:
        self.pair, self.config = pair, config
        self.e1, self.e2 = pair.b1.evecs.float(), pair.b2.evecs.float()
        check_finite(self.e1, "evecs1")
        check_finite(self.e2, "evecs2")  # once here, not in each ZoomOut
        self.rank = pair.samples2.long()
        self.phi = self.e2[self.rank, : config.deformation_k]
        # at most as many distortion samples as ranking samples: both are farthest-point samples from vertex 0,
        # so the first are a prefix of the second (MapSelector.distortion_on needs that)
        m = min(config.n_distortion, self.rank.shape[0])
        self.selector = MapSelector(pair.v1, pair.f1, pair.v2, pair.f2, m=m, graphs=pair.graphs, clouds=pair.clouds)
        self.deform = config.anchors_on

    def residual(self, images: torch.Tensor) -> float:
        """:func:`deformation_residual` of the map sending the ranking samples to ``images``."""
        pair = self.pair
        return deformation_residual(
            pair.v2[self.rank].float(), pair.v1[images].float(), self.phi, self.config.deformation_iterations
        )

    def cheap(self, fmap_12: torch.Tensor) -> tuple[float, torch.Tensor | None]:
        """Step 1: residual of the unrefined map of the samples (anchors), with the samples' images; else
        Laplacian energy (and None)."""
        if not self.deform:  # the most isometric by Laplacian commutativity
            return laplacian_energy(fmap_12, self.pair.b1, self.pair.b2), None
        k = fmap_12.shape[0]
        s1 = self.pair.samples1
        e1 = self.e1[:, :k] if s1 is None else self.e1[s1, :k]
        images = p2p_from_fmap(fmap_12.float(), e1, self.e2[self.rank, :k])
        if s1 is not None:
            images = s1[images]
        return self.residual(images), images

    def score(self, fmap_12: torch.Tensor) -> tuple[float, ...]:
        """Step 2: (orientation, distortion) of the full point map (float32 nearest neighbours)."""
        k = fmap_12.shape[0]
        return self.selector(p2p_from_fmap(fmap_12.float(), self.e1[:, :k], self.e2[:, :k]))


def rank_candidates(
    pair: PreparedPair, candidates: list[Candidate], config: MatchConfig | None = None
) -> list[RankedCandidate]:
    """Steps 1 and 2 of the module docstring: the ``n_scored`` best candidates by the cheap key, each keyed by
    the score of its full point map; best first (stable: ties keep the order of ``candidates``)."""
    config = (config or MatchConfig()).resolve()
    return _rank(_Keys(pair, config), candidates)


def _rank(keys: _Keys, candidates: list[Candidate]) -> list[RankedCandidate]:
    cheap = [keys.cheap(c.fmap_12) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: cheap[i][0])  # stable: ties keep the input order
    scored = []
    for i in order[: keys.config.n_scored]:
        key = keys.score(candidates[i].fmap_12)
        logger.debug("finalist: score %s", key)
        scored.append(RankedCandidate(key, candidates[i], None, cheap[i][1]))
    return sorted(scored, key=lambda r: r.key)


def select_initial(
    pair: PreparedPair,
    candidates: CandidateSet,
    extrinsic: list[Candidate] | None = None,
    config: MatchConfig | None = None,
) -> Selection:
    """Steps 1-3 of the module docstring on the spectral ``candidates`` (and, with the anchor round, the
    ``extrinsic`` ones), then ZoomOut of the winner to ``k``.

    Raises:
        ValidationError: no candidate.
    """
    config = (config or MatchConfig()).resolve()
    if not candidates.candidates:
        raise ValidationError("candidates: expected at least one candidate map")
    keys = _Keys(pair, config)
    assert config.n_final is not None
    finalists = _rank(keys, candidates.candidates)[: config.n_final]
    if keys.deform:
        return _select_after_anchors(keys, finalists, extrinsic or [])
    return _select_after_zoomout(keys, finalists)


def _select_after_zoomout(keys: _Keys, finalists: list[RankedCandidate]) -> Selection:
    """The finalists compared again after ZoomOut to ``k`` on the ranking samples, where they differ more."""
    config, pair = keys.config, keys.pair
    best: tuple[tuple[float, ...], Candidate, torch.Tensor] | None = None
    final = []
    for row in finalists:
        C3 = _zoomout_fmap(
            row.candidate.fmap_12.float(),
            keys.e1,
            keys.e2,
            k_final=config.k,
            step=config.step,
            samples2=pair.samples2,
            samples1=pair.samples1,
            check_bases=False,
        )[0]
        key = keys.score(C3.double())
        final.append(RankedCandidate(key, row.candidate, C3))
        if best is None or key < best[0]:
            best = (key, row.candidate, C3)
    assert best is not None
    return Selection(best[1], best[2].double(), final)


def _refine_on_samples(
    keys: _Keys, cand: Candidate, key0: float, feats: Any, images: torch.Tensor | None = None
) -> tuple[RankedCandidate, Any]:
    """Anchor refinement of one candidate on the ranking samples, keyed by (orientation key, residual); it starts
    from ``images``, the samples' images under the candidate's map, when the ranking computed them."""
    pair, config = keys.pair, keys.config
    start = None
    if images is not None:  # anchor_refine reads the rows of the samples only
        start = images.new_zeros(pair.v2.shape[0])
        start[keys.rank] = images
    ref = anchor_refine(
        cand.fmap_12.float(),
        keys.e1,
        keys.e2,
        pair.b1.mass.float(),
        pair.b2.mass.float(),
        pair.v1,
        pair.f1,
        pair.v2,
        pair.f2,
        p2p_21=start,
        n_anchors=min(config.n_anchors, keys.rank.shape[0]),
        max_iter=config.anchor_iterations,
        graph1=keys.selector.g1,
        graph2=keys.selector.g2,
        samples2=keys.rank,
        samples1=pair.samples1,
        source_features=feats,
    )
    key = (key0, keys.residual(ref.p2p_21))
    logger.debug("finalist after refinement (%s): score %s", "extrinsic" if cand.extrinsic else "spectral", key)
    return RankedCandidate(key, cand, ref.fmap_12, ref.p2p_21), ref.source_features


def _select_after_anchors(keys: _Keys, finalists: list[RankedCandidate], extrinsic: list[Candidate]) -> Selection:
    """Step 3 with the anchor round: spectral finalists and extrinsic candidates refined on samples and keyed by
    (orientation, deformation residual); the best extrinsic one must beat the best spectral one by the margin
    on the residual and on the metric distortion."""
    pair, config, selector = keys.pair, keys.config, keys.selector
    feats = None  # the source's distance features, the same for every candidate
    spectral, ext_rows = [], []
    for row in finalists:
        refined, feats = _refine_on_samples(keys, row.candidate, row.key[0], feats, row.images)
        spectral.append(refined)
    for cand in extrinsic:  # orientation kept by construction (a proper rotation plus a smooth displacement)
        refined, feats = _refine_on_samples(keys, cand, 0.0, feats)
        ext_rows.append(refined)
    best = min(spectral, key=lambda r: r.key)
    if ext_rows:
        pick = pick_extrinsic(
            pair.v1,
            pair.f1,
            pair.v2,
            pair.f2,
            selector.g1,
            selector.g2,
            keys.rank,
            [r.key[1] for r in ext_rows],
            [r.images for r in ext_rows],
            config=config,
            areas=(None if pair.f1 is not None else pair.b1.mass, None if pair.f2 is not None else pair.b2.mass),
        )
        ext = ext_rows[pick]
        (oe, re_), (os_, rs) = ext.key, best.key
        if oe < os_ or (
            oe == os_
            and re_ < config.extrinsic_margin * rs
            and selector.distortion_on(keys.rank, ext.images) < selector.distortion_on(keys.rank, best.images)
        ):
            best = ext
        logger.debug(
            "match: initial map from the %s candidates", "extrinsic" if best.candidate.extrinsic else "spectral"
        )
    fmap = best.refined_fmap_12
    assert fmap is not None
    if fmap.shape[0] < config.k:
        fmap = _zoomout_fmap(
            fmap, keys.e1, keys.e2, k_final=config.k, step=config.step, samples2=pair.samples2, check_bases=False
        )[0]
    return Selection(best.candidate, fmap.double(), spectral + ext_rows)
