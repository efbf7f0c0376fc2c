"""Training-free dense matching of two shapes: spectral bases, WKS, orientation-aware sign search, ZoomOut and
entropic refinement, behind one function, :func:`match`.

Map directions follow pyFM and :func:`geomot.viz.show_correspondence`: shape 1 = ``target``, shape 2 = ``source``,
so ``p2p_21`` holds a target vertex for each source vertex (what ``geomot match`` writes).

Pipeline:

1. both shapes are scaled to unit area; Laplace-Beltrami bases with ``k`` eigenpairs
   (:func:`geomot.ops.spectral.spectral_basis`, cached on disk when ``cache_dir`` is given);
2. wave kernel signatures (Aubry et al. 2011);
3. initialisation by a search over the signs of the first ``k_init`` eigenfunctions: for isometries the
   functional map is close to ``diag(+-1)`` at low frequencies. For each of the ``n_candidates`` sign patterns that
   best preserve the descriptors, a ``k_select`` map is solved exactly (one shared Cholesky factor) from
   ``||C A - B||^2 + w_lap ||C Lambda_1 - Lambda_2 C||^2 + w_orient sum_d ||C O^1_d - O^2_d C||^2
   + w_prior ||C_[:k_init, :k_init] - diag(signs)||^2`` with the orientation operators of Ren et al. 2018 (the
   orientation term keeps left and right apart: a reflection reverses the sign of the operators). The
   ``n_finalists`` best by descriptor residual are upsampled by ZoomOut to ``min(k, 2 k_select)`` (float32) and
   six of them are ranked on their point maps ``T``: for meshes with the anchor refinement (the default), the six
   whose maps of 1,000 source samples are best explained by a smooth deformation (the residual defined below,
   on the unrefined maps: milliseconds a candidate), otherwise the six most isometric by Laplacian commutativity
   ``sum_ij (lambda1_j - lambda2_i)^2 C_ij^2 / ||C||^2``. They are ranked first whether ``T`` keeps orientation
   on the balance (:func:`geomot.ops.orientation.map_orientation_score` ``> 0``, the area-weighted sign of
   ``((T(j) - T(i)) x (T(k) - T(i))) . n_T`` over the source triangles: a mirror map scores near ``-1``), then by
   the metric distortion of the map on 64 farthest-point samples of the source, ``sum_ab |d_1(T(s_a), T(s_b)) -
   d_2(s_a, s_b)| / sum_ab d_2(s_a, s_b)`` with edge-graph shortest-path distances (large where a map swaps or
   twists a limb: Laplacian commutativity misses these partial flips, which the orientation-regularised solve
   tends to produce instead of plain mirror maps). The ``n_final`` (6) best are then compared once more after
   ``anchor_iterations`` steps of geodesic-anchor refinement on 1,000 farthest-point samples
   (:func:`geomot.correspondence.anchor_refine` with ``samples2``), by orientation, then by how well a smooth
   deformation carries the source onto the map's images: ``mean_s |x_s R + t + Phi_s A - y_T(s)|`` minimised
   over a rotation ``R``, a translation ``t`` and the coefficients ``A (20, 3)`` of the source's first 20
   eigenfunctions ``Phi``. Pose changes are smooth displacement fields; a map with a pair of limbs swapped, or a
   body turned 180 degrees about its long axis (toes sent to heels, the face to the back of the head), needs a
   displacement that changes direction within a foot or across the head, which 20 eigenfunctions cannot follow.
   Intrinsic keys (metric distortion) cannot see a turned body, which is nearly as isometric as the true map.
   **Extrinsic candidates** (meshes with the anchor refinement, ``n_extrinsic`` = 2): the sign search assumes a
   near-isometry; across species (SMAL: a cow and a hippo) the low-frequency eigenfunctions reorder and no sign
   pattern is right, while the shapes still look alike once aligned in space. Both shapes are put in their
   principal axes, the 8 sign/axis hypotheses are each followed by a smooth non-rigid ICP of 500 source samples
   onto 1,000 target samples (:mod:`geomot.correspondence.extrinsic`), and the ``n_extrinsic`` alignments with
   the smallest Chamfer distance map the 1,000 source samples (3D nearest neighbours of the deformed source),
   giving functional maps of the same size. They get the same refinement on samples and the same residual
   (their orientation key is 0: a proper rotation plus a smooth displacement keeps orientation). Among
   themselves they are ranked by that residual times the square of their error on the areas of geodesic balls
   of radii 0.35-0.45 (:func:`geomot.correspondence.geodesic_ball_areas`) when the candidates send the samples to
   points whose ball areas differ (``_pick_extrinsic``): the two kept are often the same body aligned both ways,
   and a quadruped's head sent to its tail is absorbed by a smooth deformation but not by the balls' areas,
   while a human turned 180 degrees is nearly an intrinsic symmetry, left to the residual. On all 496 SMAL_r
   pairs the residual alone picked the wrong one of the two on 17, this key on 1, with FAUST_r unchanged.
   Their maps are smooth deformations by construction, so the residual favours them: the best of them replaces
   the best spectral candidate only when its residual is below 0.9 times the latter's **and** its metric
   distortion on the 64 samples (the key of the first ranking, intrinsic) is smaller too. The residual alone let a
   map with the arms mixed up replace a right one on a FAUST pair; the distortion sees it.
   Without the anchor refinement, the 3 best are compared after
   ZoomOut to ``k``. Both meshes are first wound outwards (positive signed volume); with inconsistently wound
   faces the orientation key is dropped, for point clouds the Laplacian-commutativity energy ranks the
   candidates. Invariant to rigid motions (not to mirror images: the mirror image of a shape is matched
   orientation-preservingly, i.e. flipped);
4. refinement to ``k`` (140 by default) eigenfunctions by ZoomOut (Melzi et al. 2019, on samples, from the chosen
   candidate), then ``anchor_iterations`` steps of geodesic-anchor
   refinement (:func:`geomot.correspondence.anchor_refine`: nearest neighbours in the spectral embedding joined
   with Gaussians of the geodesic distances to 128 anchors and to their images, which sends back regions that
   ZoomOut left on their symmetric twin, e.g. swapped feet), then ``final_iterations`` ZoomOut refits at size
   ``k`` on every vertex (:func:`geomot.correspondence.zoomout.fixed_size_iterations`); or ZoomOut with Sinkhorn
   filtering (Pai et al. 2021), ending in a hard map;
5. when the initial map came from an extrinsic candidate (``refine_extrinsic``, ZoomOut refinement): the shapes
   are better related by a smooth deformation in space than by an isometry (two species), which the intrinsic
   steps above assume. The final map is polished by :func:`geomot.correspondence.extrinsic_refine`: a rigid motion
   plus a displacement in the source's first 32, then 64 eigenfunctions is fitted to the map, and each source
   vertex goes to the target vertex closest to its deformed position, normals compared too (weight 0.02 at unit
   area; the fits also pull each target vertex's closest deformed source vertex to it, so that the deformed
   source covers the target; 3 steps per size, about 0.4 s). On the 29 SMAL_r development and benchmark pairs
   where an extrinsic candidate won it lowered the error of 26 (mean 9.9 -> 8.9); between near-isometric humans
   in different poses it makes maps worse (20 FAUST_r development pairs: 2.1 -> 3.0, closest points jump between
   touching parts), which is why it follows the extrinsic candidates. A spectral map gets a *local* version of the
   polish, each snap restricted to the target vertices within 2 edge rings of the current image
   (``extrinsic_refine(..., window=2)``: points slide along the surface and never jump to a part they touch), when
   it stretches the mesh edges like a map between two species: mean ``|log(l'_e / l_e)|`` over the source's
   edges above 0.7 (``_edge_stretch``; final maps of development pairs: 0.47-0.78 between two poses of one
   class, FAUST_r and TOSCA_r, 2 of 44 above 0.7; 0.52-0.99 between two species, SMAL_r, 16 of 21 above 0.7),
   or always with ``non_isometric=True``. The spectral maps of related species (a
   cow and a horse) are right part by part but jittered, and the polish evens them out; between humans in
   different poses the smooth fit is less accurate than the intrinsic map (FAUST_r +0.12, TOSCA_r +0.35 on
   development pairs when every spectral map is polished), hence the gate. Measurements:
   ``docs/notes/matching-development.md``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_int
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.anchors import anchor_refine, shape_graph
from geomot.correspondence.descriptors import geodesic_ball_areas, wks
from geomot.correspondence.extrinsic import (
    NonrigidICPResult,
    extrinsic_refine,
    frame_hypotheses,
    nonrigid_icp,
    principal_frame,
)
from geomot.correspondence.fmaps import _normal_equations, laplacian_mask, orientation_operators, project
from geomot.correspondence.p2p import fmap_from_p2p, knn_indices, p2p_from_fmap
from geomot.correspondence.refine import sinkhorn_zoomout
from geomot.correspondence.zoomout import fixed_size_iterations, zoomout
from geomot.ops.alignment import corresponding_points_alignment
from geomot.ops.geometry import edges, total_area, vertex_normals
from geomot.ops.graph import edge_graph, graph_distances
from geomot.ops.orientation import consistently_oriented, map_orientation_score, signed_volume
from geomot.ops.sampling import farthest_point_sampling
from geomot.ops.spectral import SpectralBasis, spectral_basis
from geomot.structures import Mesh, PointCloud

__all__ = ["MatchResult", "match"]

logger = logging.getLogger(__name__)

_REFINERS = ("zoomout", "sinkhorn", "none")
# refined candidates are compared by a smooth deformation with this many source eigenfunctions: see _initial_map
_DEFORMATION_K = 20
# an extrinsic candidate replaces the best spectral one only when its residual is this much smaller (see
# _initial_map)
_EXT_MARGIN = 0.9
_EXT_REFINE_LEVELS = (32, 64)  # basis sizes of the extrinsic refinement of the final map
_EXT_NORMAL_WEIGHT = 0.02  # weight of the normals in its closest-point snap (shapes at unit area)
# a spectral initial map gets a local extrinsic polish, snaps within _POLISH_WINDOW edge rings, with
# non_isometric=True or when its final map's mean edge stretch (_edge_stretch) is above _STRETCH_GATE
_POLISH_WINDOW = 2
_STRETCH_GATE = 0.7
# the geodesic-ball areas that rank the extrinsic candidates (_pick_extrinsic): radii at unit area (about a third
# of a quadruped's length), farthest-point samples the searches start from, and the spread above which they count
_PROFILE_RADII = tuple(0.35 + 0.01 * i for i in range(11))
_PROFILE_SAMPLES = 200
_PROFILE_GATE = 0.1


class MatchResult(NamedTuple):
    """Result of :func:`match`.

    Attributes:
        p2p_21: ``(V_source,)`` int64, for each source vertex (shape 2) the index of its matched target vertex
            (shape 1).
        fmap_12: ``(k, k)`` functional map from the target to the source (coefficients of a function on the
            target to those of its pull-back on the source), consistent with ``p2p_21``.
        orientation_ratio: the orientation ratio of the chosen initial map (below 1: orientation kept; NaN for
            point clouds).
        timings: seconds per stage (``"basis"``, ``"init"``, ``"refine"``, ``"total"``).
    """

    p2p_21: torch.Tensor
    fmap_12: torch.Tensor
    orientation_ratio: float
    timings: dict[str, float]


def _as_shape(x: Any, name: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.device]:
    """Mesh / PointCloud / ``(verts, faces)`` / ``(N, 3)`` tensor -> float64 ``(verts, faces or None)`` on the CPU
    (the eigensolver and the shortest paths are scipy's), and the device the vertices came on."""
    if isinstance(x, Mesh):
        if len(x) != 1:
            raise ShapeError(f"{name}: expected a single mesh, got a batch of {len(x)}")
        v, f = x.verts, x.faces
    elif isinstance(x, PointCloud):
        if len(x) != 1:
            raise ShapeError(f"{name}: expected a single point cloud, got a batch of {len(x)}")
        v, f = x.points_list()[0], None
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        v, f = x
    elif isinstance(x, torch.Tensor):
        v, f = x, None
    else:
        raise ShapeError(
            f"{name}: expected a Mesh, a PointCloud, a (verts, faces) pair or a (N, 3) tensor, got {type(x).__name__}"
        )
    check_float_tensor(v, f"{name} verts", ndim=2, last_dim=3)
    if f is not None:
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[-1] != 3:
            raise ShapeError(f"{name} faces: expected a (F, 3) integer tensor, got {getattr(f, 'shape', f)!r}")
        f = f.long().cpu()
    return v.detach().to("cpu", torch.float64), f, v.device


def _unit_area(v: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor:
    if f is None:
        return (v - v.mean(0)) / ((v - v.mean(0)) ** 2).sum(1).mean().sqrt().clamp_min(1e-30)
    area = float(total_area(v, f))
    if not area > 0:
        raise ValidationError("faces: the mesh has zero total area (all faces are degenerate)")
    return v / math.sqrt(area)


def _outward(v: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor | None:
    """Faces wound so that the signed volume is positive (normals outwards); unchanged when it already is, when
    the volume is zero or when the winding is inconsistent."""
    if f is None or not consistently_oriented(f) or signed_volume(v, f) >= 0:
        return f
    return f[:, [0, 2, 1]]


def _sign_patterns(m: int, dtype: torch.dtype) -> torch.Tensor:
    """All ``2^(m-1)`` diagonal sign patterns with a positive constant eigenfunction: ``(2^(m-1), m)``."""
    signs = torch.tensor(list(itertools.product([1.0, -1.0], repeat=m - 1)), dtype=dtype).reshape(-1, m - 1)
    return torch.cat([torch.ones(signs.shape[0], 1, dtype=dtype), signs], 1)


def match(
    source: Any,
    target: Any,
    *,
    k: int = 140,
    k_init: int = 8,
    k_select: int | None = None,
    n_candidates: int = 16,
    n_finalists: int = 16,
    n_samples: int = 500,
    n_descriptors: int = 100,
    refine: str = "zoomout",
    step: int = 4,
    final_iterations: int = 1,
    n_final: int | None = None,
    anchor_iterations: int = 2,
    n_extrinsic: int = 2,
    refine_extrinsic: bool = True,
    non_isometric: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    model: Any = None,
    adapt_steps: int = 0,
) -> MatchResult:
    """Dense correspondence between two shapes: training-free, or with a learned matcher (``model=``).

    It runs on the CPU (scipy's eigensolver and shortest paths); inputs on another device (CUDA) are accepted and
    ``p2p_21`` and ``fmap_12`` are returned on the source's device. The result does not change when a shape is
    moved rigidly (rotations and translations) or scaled (spectral quantities are intrinsic; the extrinsic
    candidates start from every sign of the principal axes); vertex counts may differ. Meshes use the cotangent
    Laplacian (the robust one for non-manifold meshes); point clouds use the point-cloud Laplacian of Sharp & Crane
    2020 and have no orientation term, so mirror-symmetric shapes may come out flipped.

    Args:
        source: ``Mesh``, ``PointCloud``, ``(verts (V1, 3), faces (F1, 3) | None)`` or ``(V1, 3)`` tensor.
        target: the same for the target.
        k: final number of eigenfunctions (ZoomOut's last size).
        k_init: size of the sign search (``2^(k_init - 1)`` patterns).
        k_select: ZoomOut size at which candidates are compared (default ``min(32, k)``).
        n_candidates: number of sign patterns refined to ``k_select`` and compared.
        n_finalists: number of candidates (best descriptor residual first) upsampled by ZoomOut to
            ``min(k, 2 k_select)``; six of them are ranked (see the module docstring).
        n_samples: farthest-point samples of the source used by the intermediate ZoomOut steps.
        n_descriptors: number of WKS energies (every 5th is used by the sign search).
        refine: ``"zoomout"``, ``"sinkhorn"`` (ZoomOut with Sinkhorn filtering) or ``"none"``.
        step: increase of the basis size per refinement iteration.
        final_iterations: ZoomOut iterations at size ``k`` on every vertex after the sampled ZoomOut
            (:func:`geomot.correspondence.zoomout.fixed_size_iterations`; ``refine="zoomout"`` only).
        anchor_iterations: geodesic-anchor refinement steps before those iterations
            (:func:`geomot.correspondence.anchor_refine`; ``refine="zoomout"`` only; 0 to skip).
        n_extrinsic: number of extrinsic candidates (principal axes + smooth non-rigid ICP; meshes with the anchor
            refinement only; 0 to skip), added to the ``n_finalists`` spectral ones.
        refine_extrinsic: when an extrinsic candidate wins, finish with
            :func:`geomot.correspondence.extrinsic_refine` (smooth deformation of the source onto the map's images,
            then closest points; sizes 32 and 64, at most ``k``, 3 steps each); when a spectral one wins and its
            final map stretches the mesh edges like a map between two species (meshes), with the local version
            of it (each snap within 2 edge rings of the current image). ``False`` skips both.
        non_isometric: the shapes are known to differ by more than a change of pose (two species, a child and an
            adult): when a spectral candidate wins (meshes, ``refine="zoomout"``, ``refine_extrinsic``), its
            final map always gets the local version of that polish (each snap within 2 edge rings of the current
            image), not only when its edge stretch says so. Between humans in different poses it costs
            (FAUST_r +0.12, TOSCA_r +0.35 on development pairs), hence off by default.
        n_final: number of ranked candidates compared again after refinement (default 6 for meshes with
            ``refine="zoomout"`` and ``anchor_iterations > 0``: geodesic-anchor refinement on samples, then the
            smooth-deformation residual; otherwise 3: ZoomOut to ``k``, then the key of the first ranking).
        cache_dir: opt-in folder for cached eigenbases.
        progress: called with the name of each stage as it starts (``"eigenbases"``, ``"candidates"``,
            ``"refinement"``), e.g. to drive a progress bar.
        model: a learned matcher, an object with a ``match(source, target, *, adapt_steps, cache_dir)`` method
            returning a :class:`MatchResult`, such as :class:`geomot.models.DeepMatcher` (load a trained one with
            :func:`geomot.train.load_matcher`). When given, the pipeline above is replaced by the model's: learned
            features, their point map, ZoomOut; the training-free settings are then unused.
        adapt_steps: with ``model``, steps of test-time adaptation to the pair (the model's weights are restored
            afterwards); 0 for none.

    Returns:
        :class:`MatchResult` with ``p2p_21`` (a target vertex for each source vertex).

    Raises:
        ShapeError / ValidationError: bad inputs (the message names the argument), meshes with isolated vertices.
        NumericalError: the eigensolver failed for every shift.
    """
    if model is not None:
        if not callable(getattr(model, "match", None)):
            raise ValidationError(f"model: expected a learned matcher with a match() method (geomot.models."
                                  f"DeepMatcher), got {type(model).__name__}")
        return model.match(source, target, adapt_steps=adapt_steps, cache_dir=cache_dir)
    t0 = time.perf_counter()
    if n_final is None:
        n_final = 6 if refine == "zoomout" and anchor_iterations else 3
    if k_select is None:
        k_select = min(32, k) if isinstance(k, int) else 32
    if refine not in _REFINERS:
        raise ValidationError(f"refine: expected one of {_REFINERS}, got {refine!r}")
    for name, value, lo in (("k", k, 2), ("k_init", k_init, 2), ("k_select", k_select, 2),
                            ("n_candidates", n_candidates, 1), ("n_finalists", n_finalists, 1),
                            ("n_samples", n_samples, 10), ("final_iterations", final_iterations, 0),
                            ("n_final", n_final, 1), ("anchor_iterations", anchor_iterations, 0),
                            ("n_descriptors", n_descriptors, 5), ("step", step, 1), ("n_extrinsic", n_extrinsic, 0)):
        check_int(value, name, at_least=lo)
    if not k_init <= k_select <= k:
        raise ValidationError(f"k_init/k_select/k: expected k_init <= k_select <= k, got {k_init}, {k_select}, {k}")
    vs, fs, device = _as_shape(source, "source")  # the maps go back to the source's device
    vt, ft, _ = _as_shape(target, "target")
    n_min = min(vs.shape[0], vt.shape[0])
    if k >= n_min:
        raise ValidationError(f"k: expected fewer eigenfunctions than vertices ({n_min}), got {k}")
    vs, vt = _unit_area(vs, fs), _unit_area(vt, ft)
    # orientation terms compare face windings: wind both meshes with their normals outwards (positive volume)
    fs, ft = _outward(vs, fs), _outward(vt, ft)
    if progress is not None:
        progress("eigenbases")
    b2 = spectral_basis(vs, fs, k=k, cache_dir=cache_dir)
    b1 = spectral_basis(vt, ft, k=k, cache_dir=cache_dir)
    t1 = time.perf_counter()
    samples2 = farthest_point_sampling(vs, min(n_samples * 2, vs.shape[0]), start=0)
    # shortest-path graphs, built once: the ranking of meshes and the anchor refinement both use them
    anchors_on = refine == "zoomout" and anchor_iterations > 0
    graphs = (shape_graph(vt, ft), shape_graph(vs, fs)) if anchors_on or (fs is not None and ft is not None) else None
    if progress is not None:
        progress("candidates")
    C, ratio, C_final, from_extrinsic = _initial_map(
        b1, b2, vt, ft, vs, fs, k_init=k_init, k_select=k_select, n_candidates=n_candidates, n_finalists=n_finalists,
        n_samples=n_samples, n_descriptors=n_descriptors, step=step, k_final=k, samples_final=samples2,
        n_final=n_final, n_extrinsic=n_extrinsic, anchor_iterations=anchor_iterations if anchors_on else 0,
        graphs=graphs)
    t2 = time.perf_counter()
    if progress is not None:
        progress("refinement")
    if refine == "zoomout":
        # the selection already ran this ZoomOut on samples (same schedule): refit on every vertex at size k
        # (float32 nearest neighbours: twice as fast, the same maps up to ties)
        e1, e2, m2 = b1.evecs[:, :k].float(), b2.evecs[:, :k].float(), b2.mass.float()
        C_final = C_final.float()
        if anchors_on:
            assert graphs is not None
            C_final = anchor_refine(C_final, e1, e2, b1.mass.float(), m2, vt, ft, vs, fs,
                                    n_anchors=min(128, vs.shape[0]), max_iter=anchor_iterations,
                                    graph1=graphs[0], graph2=graphs[1]).fmap_12
        res_f = fixed_size_iterations(C_final, e1, e2, m2, max_iter=final_iterations)
        fmap, p2p = res_f.fmap_12.double(), res_f.p2p_21
        # the extrinsic polish (see the module docstring) and its snap window (None: no polish). An extrinsic
        # initial map (shapes better related by a smooth deformation in space than by an isometry) snaps anywhere;
        # a spectral one between shapes declared non-isometric, or whose final map stretches the mesh edges like a
        # map between two species, snaps within a few edge rings of its current image
        window = None
        if refine_extrinsic and from_extrinsic:
            window = 0
        elif refine_extrinsic and fs is not None and ft is not None and (
                non_isometric or _edge_stretch(vs, fs, vt, p2p) > _STRETCH_GATE):
            window = _POLISH_WINDOW
        if window is not None:
            levels = _levels_up_to(_EXT_REFINE_LEVELS, e2.shape[1])
            p2p = extrinsic_refine(vs.float(), vt.float(), p2p, e2, b2.evals.float(), levels=levels, source_faces=fs,
                                   target_faces=ft, normal_weight=_EXT_NORMAL_WEIGHT, symmetric=True,
                                   window=window).p2p_21
            fmap = fmap_from_p2p(p2p, e1, e2, mass2=m2).double()  # as the refits above
    elif refine == "sinkhorn":
        samples1 = farthest_point_sampling(vt, min(n_samples * 2, vt.shape[0]), start=0)
        res = sinkhorn_zoomout(C, b1.evecs, b2.evecs, b1.mass, b2.mass, k_final=k, step=step, samples1=samples1,
                               samples2=samples2)
        fmap, p2p = res.fmap_12, res.p2p_21
    else:
        fmap = C
        p2p = p2p_from_fmap(C, b1.evecs[:, : C.shape[0]], b2.evecs[:, : C.shape[0]])
    t3 = time.perf_counter()
    timings = {"basis": t1 - t0, "init": t2 - t1, "refine": t3 - t2, "total": t3 - t0}
    logger.debug("match: %s", ", ".join(f"{key} {val:.2f} s" for key, val in timings.items()))
    return MatchResult(p2p.to(device), fmap.to(device), ratio, timings)


def _initial_map(
    b1: SpectralBasis, b2: SpectralBasis, v1: torch.Tensor, f1: torch.Tensor | None, v2: torch.Tensor,
    f2: torch.Tensor | None, *, k_init: int, k_select: int, n_candidates: int, n_finalists: int, n_samples: int,
    n_descriptors: int, step: int, k_final: int, samples_final: torch.Tensor, n_scored: int = 6, n_final: int = 3,
    anchor_iterations: int = 0, graphs: tuple[Any, Any] | None = None, n_extrinsic: int = 0,
) -> tuple[torch.Tensor, float, torch.Tensor, bool]:
    """Sign search + orientation-regularised map per pattern + ZoomOut + selection (see the module docstring).

    Returns ``(fmap_12 (k', k'), ratio, fmap_12 (k_final, k_final), from_extrinsic)`` with ``k' = min(k_final,
    2 k_select)``: the chosen candidate, its orientation ratio, its ZoomOut to ``k_final`` on ``samples_final``
    (with ``anchor_iterations > 0`` and meshes, the ZoomOut of its anchor-refined map) and whether it is an
    extrinsic candidate. ``graphs``: the edge graphs
    ``(target, source)`` of meshes (:func:`geomot.correspondence.anchors.shape_graph`), built when None."""
    m = k_init
    d1 = wks(b1.evals, b1.evecs, n_scales=n_descriptors)[:, ::5]
    d2 = wks(b2.evals, b2.evecs, n_scales=n_descriptors)[:, ::5]
    scale = (b2.mass[:, None] * d2 * d2).sum(0).sqrt().clamp_min(1e-30)
    d1, d2 = d1 / scale, d2 / scale
    A, B = project(d1, b1.evecs[:, :m], b1.mass), project(d2, b2.evecs[:, :m], b2.mass)
    signs = _sign_patterns(m, A.dtype)
    e_desc = ((signs[:, :, None] * A[None] - B[None]) ** 2).sum((1, 2))
    order = e_desc.argsort()[: min(n_candidates, signs.shape[0])]
    Ak, Bk = project(d1, b1.evecs[:, :k_select], b1.mass), project(d2, b2.evecs[:, :k_select], b2.mass)
    oriented = f1 is not None and f2 is not None
    ops1: list[torch.Tensor] = []
    ops2: list[torch.Tensor] = []
    if oriented:
        O1 = orientation_operators(v1, f1, b1.evecs[:, :k_select], d1)
        O2 = orientation_operators(v2, f2, b2.evecs[:, :k_select], d2)
        n1 = O1.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]
        ops1, ops2 = [O1 / n1], [O2 / n1]
    else:
        logger.warning("match: point clouds have no orientation term; mirror-symmetric shapes may come out flipped")
    # one quadratic problem per sign pattern, sharing its Hessian: descriptors + Laplacian commutativity +
    # orientation commutativity + a pull of the low-frequency block towards diag(signs)
    n_a = float((Ak * Ak).sum()) + 1e-30
    mask = laplacian_mask(b1.evals[:k_select], b2.evals[:k_select])
    w_orient = [n_a / ops1[0].shape[0]] if oriented else []
    H, r, _ = _normal_equations(Ak, Bk, mask, ops1, ops2, w_orient, 1.0, 1e-2 * n_a)
    prior_w = torch.zeros(k_select, k_select, dtype=H.dtype, device=H.device)
    prior_w[:m, :m] = n_a
    chol = torch.linalg.cholesky(H + torch.diag(prior_w.reshape(-1)))
    samples2 = farthest_point_sampling(v2, min(n_samples, v2.shape[0]), start=0)
    k_more = min(k_final, 2 * k_select)

    def ratio_of(C: torch.Tensor) -> float:
        if not oriented:
            return math.nan
        Cs = C[None, :k_select, :k_select]
        keep = float(((Cs @ ops1[0] - ops2[0] @ Cs) ** 2).sum())
        flip = float(((Cs @ ops1[0] + ops2[0] @ Cs) ** 2).sum())
        return keep / max(flip, 1e-30)

    solved = []
    for i in order.tolist():
        prior = torch.zeros_like(prior_w)
        prior[:m, :m] = torch.diag(signs[i])
        C = torch.cholesky_solve((r + (prior_w * prior).reshape(-1))[:, None], chol).view(k_select, k_select)
        solved.append((float(((C @ Ak - Bk) ** 2).sum()), len(solved), C))
    solved.sort(key=lambda t: t[0])
    # the finalists are upsampled by ZoomOut and compared on their point maps: orientation kept (a mirror map has
    # the same isometry energies as the true one) and metric distortion on farthest-point samples (large where a
    # map swaps or twists a limb); without faces, by Laplacian commutativity
    select = _MapSelector(v1, f1, v2, f2, graphs=graphs) if oriented else None

    def lap_energy(C: torch.Tensor, kk: int) -> float:
        mask_k = laplacian_mask(b1.evals[:kk], b2.evals[:kk])
        return float((mask_k * C * C).sum() / (C * C).sum().clamp_min(1e-30))

    def score(C: torch.Tensor, kk: int) -> tuple[float, ...]:
        if select is None:
            return (lap_energy(C, kk),)
        # float32 nearest neighbours: a ranking only needs the map approximately
        return select(p2p_from_fmap(C.float(), e1[:, :kk], e2[:, :kk]))

    # candidate ZoomOuts in float32 (nearest neighbours and small least squares; twice as fast as float64)
    e1, e2 = b1.evecs.float(), b2.evecs.float()
    deform = select is not None and anchor_iterations > 0
    rank_samples = samples_final.long()
    phi_rank = e2[rank_samples, :_DEFORMATION_K]

    def prescore(C2: torch.Tensor) -> float:
        if not deform:  # the most isometric by Laplacian commutativity
            return lap_energy(C2, k_more)
        # meshes with the anchor refinement: the best explained by a smooth deformation of the source (the key of
        # the final ranking, here on the unrefined map of the samples; see the module docstring)
        images = p2p_from_fmap(C2.float(), e1[:, :k_more], e2[rank_samples, :k_more])
        return _deformation_residual(v2[rank_samples].float(), v1[images].float(), phi_rank)

    upsampled: list[tuple[float, int, torch.Tensor]] = []
    for _, _, C in solved[:n_finalists]:
        C2 = zoomout(C.float(), e1, e2, k_final=k_more, step=step, samples2=samples2, final_map=False).fmap_12.double()
        upsampled.append((prescore(C2), len(upsampled), C2))
    # the best by that cheap key are scored on their full point maps
    upsampled.sort(key=lambda t: t[0])
    scored: list[tuple[tuple[float, ...], int, torch.Tensor, float]] = []
    for _, _, C2 in upsampled[:n_scored]:
        sc = score(C2, k_more)
        logger.debug("finalist: score %s", sc)
        scored.append((sc, len(scored), C2, ratio_of(C2)))
    scored.sort(key=lambda t: t[0])
    best: tuple[tuple[float, ...], torch.Tensor, float, torch.Tensor] | None = None
    from_extrinsic = False
    if deform:
        # meshes: each of the best gets a geodesic-anchor refinement on samples, then they are compared by the
        # residual of a smooth deformation of the source onto the images of the samples (see the module docstring).
        # On 85 development FAUST pairs this key picks a map within 0.03 of the best of the six on average and
        # never a failed one; the local metric distortion used before picked a turned body once, the global one
        # three times (a turned body is nearly as isometric as the true map). The orientation key stays that of
        # the unrefined map. The extrinsic candidates join here; the best of them must beat the best spectral one
        # by the margin _EXT_MARGIN on the residual (their maps are smooth deformations by construction) and have
        # a smaller metric distortion
        assert select is not None
        m1, m2 = b1.mass.float(), b2.mass.float()
        finalists = [(False, sc, C2, ratio) for sc, _, C2, ratio in scored[:n_final]]
        if n_extrinsic > 0:
            for images in _extrinsic_maps(v1, b1, v2, b2, rank_samples, n_extrinsic):
                C2 = fmap_from_p2p(images, e1[:, :k_more], e2[rank_samples, :k_more]).double()
                # orientation kept by construction (a proper rotation plus a smooth displacement)
                finalists.append((True, (0.0,), C2, ratio_of(C2)))
        # (key, C2, ratio, refined fmap, refined samples' images) of every refined finalist, by kind (extrinsic?)
        refined: dict[bool, list[tuple[tuple[float, ...], torch.Tensor, float, torch.Tensor, torch.Tensor]]] = {
            False: [], True: []}
        feats = None  # the source's distance features, the same for every candidate
        for ext, sc, C2, ratio in finalists:
            ref = anchor_refine(C2.float(), e1, e2, m1, m2, v1, f1, v2, f2,
                                n_anchors=min(128, rank_samples.shape[0]), max_iter=anchor_iterations,
                                graph1=select.g1, graph2=select.g2, samples2=rank_samples, source_features=feats)
            feats = ref.source_features
            key = (sc[0], _deformation_residual(v2[rank_samples].float(), v1[ref.p2p_21].float(), phi_rank))
            logger.debug("finalist after refinement (%s): score %s", "extrinsic" if ext else "spectral", key)
            refined[ext].append((key, C2, ratio, ref.fmap_12, ref.p2p_21))
        spectral = min(refined[False], key=lambda row: row[0])
        best = spectral[:4]
        if refined[True]:
            ext_rows = refined[True]
            extrinsic = ext_rows[_pick_extrinsic(v1, f1, v2, f2, select.g1, select.g2, rank_samples,
                                                 [row[0][1] for row in ext_rows], [row[4] for row in ext_rows])]
            (oe, re_), (os_, rs) = extrinsic[0], spectral[0]
            if oe < os_ or (oe == os_ and re_ < _EXT_MARGIN * rs and select.distortion_on(
                    rank_samples, extrinsic[4]) < select.distortion_on(rank_samples, spectral[4])):
                best, from_extrinsic = extrinsic[:4], True
            logger.debug("match: initial map from the %s candidates", "extrinsic" if from_extrinsic else "spectral")
        if best is not None and best[3].shape[0] < k_final:
            C3 = zoomout(best[3], e1, e2, k_final=k_final, step=step, samples2=samples_final, final_map=False).fmap_12
            best = (best[0], best[1], best[2], C3)
    else:
        # the best are compared once more after ZoomOut to the final size, where they differ more
        for _, _, C2, ratio in scored[:n_final]:
            C3 = zoomout(C2.float(), e1, e2, k_final=k_final, step=step, samples2=samples_final,
                         final_map=False).fmap_12
            key = score(C3.double(), k_final)
            if best is None or key < best[0]:
                best = (key, C2, ratio, C3)
    if best is None:  # n_final >= 1 and scored is never empty; kept for type checkers
        raise ValidationError("match: no candidate map")
    return best[1], best[2], best[3].double(), from_extrinsic


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


def _extrinsic_alignments(v1: torch.Tensor, b1: SpectralBasis, v2: torch.Tensor, b2: SpectralBasis,
                          samples2: torch.Tensor, n_source: int = 500, n_target: int = 1000,
                          levels: tuple[int, ...] = (0, 4, 8, 16, 32)) -> _Alignments:
    """The extrinsic alignments of :mod:`geomot.correspondence.extrinsic`: principal axes, 8 sign/axis hypotheses,
    smooth non-rigid ICP of the first ``n_source`` of ``samples2`` (farthest-point samples of the source) onto
    ``n_target`` farthest-point samples of the target; float32 throughout (closest points and 3-column least
    squares)."""
    x2, u2 = principal_frame(v2, b2.mass)
    x1, u1 = principal_frame(v1, b1.mass)
    x2, x1 = x2.float(), x1.float()
    det = 1.0 if float(torch.linalg.det(u2) * torch.linalg.det(u1)) > 0 else -1.0
    hyp = frame_hypotheses(det, dtype=x2.dtype).to(x2.device)
    s2 = samples2[:n_source]  # a prefix of farthest-point samples is itself one
    s1 = farthest_point_sampling(v1, min(n_target, v1.shape[0]), start=0).long()
    levels = _levels_up_to(levels, b2.evecs.shape[1])
    e2 = b2.evecs[:, : levels[-1]].float()
    fit = nonrigid_icp(x2[s2] @ hyp, x1[s1], e2[s2], b2.evals.float(), levels=levels)
    return _Alignments(x2, x1, hyp, e2, fit)


def _extrinsic_maps(v1: torch.Tensor, b1: SpectralBasis, v2: torch.Tensor, b2: SpectralBasis,
                    samples2: torch.Tensor, n_maps: int, n_source: int = 500, n_target: int = 1000,
                    levels: tuple[int, ...] = (0, 4, 8, 16, 32)) -> list[torch.Tensor]:
    """Target vertices of the source points ``samples2`` under the ``n_maps`` extrinsic alignments
    (:func:`_extrinsic_alignments`) with the smallest Chamfer distance, best first."""
    aligned = _extrinsic_alignments(v1, b1, v2, b2, samples2, n_source, n_target, levels)
    return [aligned.images(h, samples2) for h in aligned.fit.cost.argsort()[:n_maps].tolist()]


def _pick_extrinsic(v1: torch.Tensor, f1: torch.Tensor, v2: torch.Tensor, f2: torch.Tensor, graph1: Any, graph2: Any,
                    samples2: torch.Tensor, residuals: list[float], images: list[torch.Tensor]) -> int:
    """Index of the extrinsic candidate that goes on: the smallest deformation residual, weighted by how well the
    candidate keeps the areas of geodesic balls (:func:`geomot.correspondence.geodesic_ball_areas` at the radii
    ``_PROFILE_RADII``, shapes at unit area) when the candidates disagree on them.

    ``images[c] (S,)`` are the target vertices of the source points ``samples2`` under candidate ``c``. With
    ``e_c = mean_{s, r} |log A^2_r(s) - log A^1_r(images_c(s))|`` and the spread
    ``max_{c, c'} mean_{s, r} |log A^1_r(images_c(s)) - log A^1_r(images_c'(s))|``, the key is
    ``residual_c * e_c^2`` when the spread exceeds ``_PROFILE_GATE`` and ``residual_c`` otherwise. The two kept
    alignments often differ by a half-turn about the vertical: on a quadruped that sends the head to the tail,
    which a smooth deformation can absorb (the residual alone picked it on 17 of the 496 SMAL_r pairs) but which
    changes the balls' areas; on a human it is the turned body, nearly an intrinsic symmetry, whose candidates
    send the samples to points with the same ball areas (spread below the gate), where the residual decides."""
    if len(images) < 2:
        return 0
    radii = torch.tensor(_PROFILE_RADII, dtype=torch.float64)
    pts = samples2[:_PROFILE_SAMPLES]  # a prefix of farthest-point samples is itself one
    log2 = geodesic_ball_areas(v2, f2, radii, samples=pts, graph=graph2)[samples2].clamp_min(1e-12).log()
    log1 = geodesic_ball_areas(v1, f1, radii, samples=_PROFILE_SAMPLES, graph=graph1).clamp_min(1e-12).log()
    at = [log1[p.long().cpu()] for p in images]
    errs = [float((log2 - x).abs().mean()) for x in at]
    spread = max(float((a - b).abs().mean()) for i, a in enumerate(at) for b in at[i + 1:])
    keys = [res * err**2 for res, err in zip(residuals, errs)] if spread > _PROFILE_GATE else residuals
    logger.debug("extrinsic candidates: ball-area errors %s, spread %.3f", [round(e, 4) for e in errs], spread)
    return min(range(len(keys)), key=keys.__getitem__)


def _edge_stretch(v2: torch.Tensor, f2: torch.Tensor, v1: torch.Tensor, p2p_21: torch.Tensor) -> float:
    """Mean ``|log(l'_e / l_e)|`` over the source's edges ``e = (i, j)``: ``l_e = |x_i - x_j|`` on the source,
    ``l'_e = max(|y_T(i) - y_T(j)|, 0.05 l_e)`` between the images on the target (a collapsed edge counts as shrunk
    20 times). Both shapes at unit area. A measure of how far a vertex map is from an isometry at the scale of the
    mesh: on development pairs, 0.47-0.78 for the final maps between two poses of one class (FAUST_r, TOSCA_r),
    0.52-0.99 between two species (SMAL_r, spectral initial maps)."""
    e = edges(f2)
    length = (v2[e[:, 0]] - v2[e[:, 1]]).norm(dim=1)
    image = (v1[p2p_21[e[:, 0]]] - v1[p2p_21[e[:, 1]]]).norm(dim=1)
    return float((image.clamp_min(0.05 * length) / length.clamp_min(1e-30)).log().abs().mean())


def _levels_up_to(levels: tuple[int, ...], k: int) -> tuple[int, ...]:
    """A coarse-to-fine schedule of basis sizes cut at the ``k`` eigenfunctions available (its last size ``k``
    when the schedule asks for more)."""
    kmax = min(levels[-1], k)
    return (*[size for size in levels if size < kmax], kmax)


def _deformation_residual(x: torch.Tensor, y: torch.Tensor, phi: torch.Tensor, n_iter: int = 3) -> float:
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


class _MapSelector:
    """Ranks vertex maps ``p2p_21`` between two meshes: first whether they keep orientation on the balance
    (:func:`geomot.ops.orientation.map_orientation_score` ``> 0``), then by their metric distortion on ``m``
    farthest-point samples ``s_a`` of the source,

    ``dist(T) = sum_ab |d_1(T(s_a), T(s_b)) - d_2(s_a, s_b)| / sum_ab d_2(s_a, s_b)``,

    with ``d`` shortest paths along the mesh edges (both shapes at unit area; 0 for an isometry). A mirror map is
    as isometric as the true one (hence the orientation key first); a partly flipped or twisted map (a limb sent to
    its symmetric twin, the rest not) stretches the distances between the limb and the rest. Intrinsic, so
    invariant to rigid motions and to the pose."""

    def __init__(self, v1: torch.Tensor, f1: torch.Tensor, v2: torch.Tensor, f2: torch.Tensor, m: int = 64,
                 graphs: tuple[Any, Any] | None = None) -> None:
        self.v1, self.f1, self.v2, self.f2 = v1, f1, v2, f2
        self.n1 = vertex_normals(v1, f1)
        self.g1, self.g2 = (edge_graph(v1, f1), edge_graph(v2, f2)) if graphs is None else graphs
        self.samples = farthest_point_sampling(v2, min(m, v2.shape[0]), start=0).long()
        d2 = graph_distances(self.g2, self.samples)[:, self.samples]
        finite = torch.isfinite(d2)
        self.cap = float(d2[finite].max()) if bool(finite.any()) else 1.0
        self.d2 = torch.where(finite, d2, torch.full_like(d2, self.cap))
        self.use_orientation = consistently_oriented(f1) and consistently_oriented(f2)
        if not self.use_orientation:
            logger.warning("match: a mesh has inconsistently wound faces; candidate maps are ranked by metric "
                           "distortion only, so mirror-symmetric shapes may come out flipped")

    def __call__(self, p2p_21: torch.Tensor) -> tuple[float, float]:
        reversed_ = 0.0
        if self.use_orientation:
            orient = map_orientation_score(p2p_21, self.v2, self.f2, self.v1, self.f1, normals_tgt=self.n1)
            reversed_ = 0.0 if orient > 0 else 1.0
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
