"""Training-free dense matching of two shapes behind one function, :func:`match`: spectral bases, WKS,
orientation-aware sign search and extrinsic candidates, ranking, ZoomOut with geodesic anchors (or entropic
refinement), extrinsic polish.

Map directions follow pyFM and :func:`geomot.viz.show_correspondence`: shape 1 = ``target``, shape 2 = ``source``,
so ``p2p_21`` holds a target vertex for each source vertex (what ``geomot match`` writes).

:func:`match` runs the stages of :mod:`geomot.correspondence.matching` in order (each is usable alone):
:func:`~geomot.correspondence.matching.prepare` -> :func:`~geomot.correspondence.matching.spectral_candidates`
and :func:`~geomot.correspondence.matching.extrinsic_candidates` ->
:func:`~geomot.correspondence.matching.select_initial` -> :func:`~geomot.correspondence.matching.refine_map` ->
:func:`~geomot.correspondence.matching.polish`. Every setting is a field of
:class:`~geomot.correspondence.matching.MatchConfig`. Cost: a few seconds for a pair of 5k-vertex meshes at two
threads (eigenbases, sixteen sampled ZoomOuts, shortest paths for the ranking and the anchors).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from geomot._core.errors import ValidationError
from geomot.correspondence.matching import (
    MapSelector,
    MatchConfig,
    as_shape,
    deformation_residual,
    edge_stretch,
    extrinsic_candidates,
    extrinsic_maps,
    pick_extrinsic,
    polish,
    prepare,
    refine_map,
    select_initial,
    spectral_candidates,
    unit_area,
)

__all__ = ["MatchConfig", "MatchResult", "match"]

logger = logging.getLogger(__name__)

# private names kept for code that imported them from this module
_as_shape, _unit_area, _MapSelector = as_shape, unit_area, MapSelector
_deformation_residual, _edge_stretch = deformation_residual, edge_stretch
_extrinsic_maps, _pick_extrinsic = extrinsic_maps, pick_extrinsic


class MatchResult(NamedTuple):
    """Result of :func:`match`.

    Attributes:
        p2p_21: ``(V_source,)`` int64, for each source vertex (shape 2) the index of its matched target vertex
            (shape 1).
        fmap_12: ``(k, k)`` functional map from the target to the source (coefficients of a function on the
            target to those of its pull-back on the source), consistent with ``p2p_21``.
        orientation_ratio: the orientation ratio of the chosen initial map (below 1: orientation kept).
        timings: seconds per stage (``"basis"``, ``"init"``, ``"refine"``, ``"total"``).
    """

    p2p_21: torch.Tensor
    fmap_12: torch.Tensor
    orientation_ratio: float
    timings: dict[str, float]


def _merge_config(config: MatchConfig | None, overrides: dict[str, Any]) -> MatchConfig:
    """``config`` (default ``MatchConfig()``) with the explicit (not None) keyword arguments of :func:`match`."""
    if config is not None and not isinstance(config, MatchConfig):
        raise ValidationError(f"config: expected a MatchConfig, got {type(config).__name__}")
    given = {name: value for name, value in overrides.items() if value is not None}
    if config is None:
        return MatchConfig(**given).resolve()
    return (dataclasses.replace(config, **given) if given else config).resolve()


def _progress_callback(progress: object) -> Callable[[str], None] | None:
    """``progress`` of :func:`match` as a callback: True logs each stage, False / None gives None."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return lambda stage: logger.info("match: %s", stage)
    if not callable(progress):
        raise ValidationError(f"progress: expected a callable, a bool or None, got {type(progress).__name__}")
    return progress


def match(
    source: Any,
    target: Any,
    *,
    config: MatchConfig | None = None,
    k: int | None = None,
    k_init: int | None = None,
    k_select: int | None = None,
    n_candidates: int | None = None,
    n_finalists: int | None = None,
    n_samples: int | None = None,
    n_descriptors: int | None = None,
    refine: str | None = None,
    step: int | None = None,
    final_iterations: int | None = None,
    n_final: int | None = None,
    anchor_iterations: int | None = None,
    n_extrinsic: int | None = None,
    refine_extrinsic: bool | None = None,
    non_isometric: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | bool | None = None,
    model: Any = None,
    adapt_steps: int = 0,
    model_options: dict[str, Any] | None = None,
) -> MatchResult:
    """Dense correspondence between two shapes: training-free, or with a learned matcher (``model=``).

    It runs on the CPU (scipy's eigensolver and shortest paths); inputs on another device (CUDA) are accepted and
    ``p2p_21`` and ``fmap_12`` are returned on the source's device. The result does not change when a shape is
    moved rigidly (rotations and translations) or scaled (spectral quantities are intrinsic; the extrinsic
    candidates start from every sign of the principal axes); vertex counts may differ. Meshes use the cotangent
    Laplacian (the robust one for non-manifold meshes); point clouds use the point-cloud Laplacian of Sharp & Crane
    2020, are scaled to the area of its mass, and get their orientation terms from outward normals estimated on
    the points (:func:`geomot.ops.orientation.oriented_normals`). The map keeps orientation, so the mirror image of
    a shape is matched orientation-preservingly. A cloud whose parts touch (a hand on a thigh) has another
    Laplacian spectrum than its shape and matches less well.

    The settings are the fields of ``config`` (:class:`~geomot.correspondence.matching.MatchConfig`, default
    ``MatchConfig()``). Each keyword argument below that is given (not None) overrides the config field of the
    same name: explicit arguments win. Defaults in brackets are those of ``MatchConfig``.

    Args:
        source: ``Mesh``, ``PointCloud``, ``(verts (V1, 3), faces (F1, 3) | None)`` or ``(V1, 3)`` tensor.
        target: the same for the target.
        config: all the settings of the pipeline and of its stages.
        k: final number of eigenfunctions, ZoomOut's last size [140].
        k_init: size of the sign search, ``2^(k_init - 1)`` patterns [8].
        k_select: size of the solved candidate maps [``min(32, k)``].
        n_candidates: sign patterns whose maps are solved [16].
        n_finalists: solved maps (best descriptor residual first) upsampled by ZoomOut to ``min(k, 2 k_select)``
            and ranked [16].
        n_samples: farthest-point samples of the source in the candidates' ZoomOut; twice as many for the
            ranking and the final sampled ZoomOut [500].
        n_descriptors: number of WKS energies (every 5th is used) [100].
        refine: ``"zoomout"`` (with the geodesic anchors), ``"sinkhorn"`` (ZoomOut with Sinkhorn filtering) or
            ``"none"`` ["zoomout"].
        step: increase of the basis size per ZoomOut iteration [4].
        final_iterations: ZoomOut refits at size ``k`` on every vertex (``refine="zoomout"``) [1].
        n_final: ranked candidates compared again after refinement [6 with the anchor refinement:
            anchor refinement on samples, then the smooth-deformation residual; otherwise 3: ZoomOut to ``k``].
        anchor_iterations: geodesic-anchor refinement steps (:func:`geomot.correspondence.anchor_refine`;
            ``refine="zoomout"``; 0 to skip) [2].
        n_extrinsic: extrinsic candidates (principal axes + smooth non-rigid ICP; with the anchor refinement;
            0 to skip) [2].
        refine_extrinsic: polish the final map with :func:`geomot.correspondence.extrinsic_refine` when an
            extrinsic candidate won, and locally (snaps within 2 edge rings) when a spectral map stretches the
            mesh edges like a map between two species; ``False`` skips both [True].
        non_isometric: the shapes differ by more than a change of pose (two species, a child and an adult): a
            spectral winner is always polished locally, not only when its edge stretch says so. Slightly less
            accurate between poses of one body, hence off by default [False].
        cache_dir: opt-in folder for cached eigenbases.
        progress: called with the name of each stage as it starts (``"eigenbases"``, ``"candidates"``,
            ``"refinement"``), e.g. to drive a progress bar; ``True`` logs the stages (INFO), ``False`` / None
            reports nothing.
        model: a learned matcher, an object with a ``match(source, target, *, adapt_steps, cache_dir)`` method
            returning a :class:`MatchResult`, such as :class:`geomot.models.DeepMatcher` (load a trained one with
            :func:`geomot.train.load_matcher`). When given, the pipeline above is replaced by the model's: learned
            features, their point map, ZoomOut; the training-free settings are then unused.
        adapt_steps: with ``model``, steps of test-time adaptation to the pair (the model's weights are restored
            afterwards); 0 for none.
        model_options: with ``model``, further keyword arguments of its ``match`` (for
            :meth:`geomot.models.DeepMatcher.match`: ``headings``, ``anchor_iterations``, ...).

    Returns:
        :class:`MatchResult` with ``p2p_21`` (a target vertex for each source vertex).

    Raises:
        ShapeError / ValidationError: bad inputs or settings (the message names the argument), meshes with
            isolated vertices.
        NumericalError: the eigensolver failed for every shift.
    """
    if model is not None:
        if not callable(getattr(model, "match", None)):
            raise ValidationError(
                f"model: expected a learned matcher with a match() method (geomot.models."
                f"DeepMatcher), got {type(model).__name__}"
            )
        return model.match(source, target, adapt_steps=adapt_steps, cache_dir=cache_dir, **(model_options or {}))
    t0 = time.perf_counter()
    cfg = _merge_config(
        config,
        dict(
            k=k,
            k_init=k_init,
            k_select=k_select,
            n_candidates=n_candidates,
            n_finalists=n_finalists,
            n_samples=n_samples,
            n_descriptors=n_descriptors,
            refine=refine,
            step=step,
            final_iterations=final_iterations,
            n_final=n_final,
            anchor_iterations=anchor_iterations,
            n_extrinsic=n_extrinsic,
            refine_extrinsic=refine_extrinsic,
            non_isometric=non_isometric,
        ),
    )
    progress = _progress_callback(progress)
    if progress is not None:
        progress("eigenbases")
    pair = prepare(source, target, cfg, cache_dir=cache_dir)
    t1 = time.perf_counter()
    if progress is not None:
        progress("candidates")
    candidates = spectral_candidates(pair, cfg)
    # the extrinsic candidates join the ranking's anchor round (with the anchor refinement)
    extrinsic = extrinsic_candidates(pair, cfg, candidates.orientation) if cfg.anchors_on else []
    selection = select_initial(pair, candidates, extrinsic, cfg)
    t2 = time.perf_counter()
    if progress is not None:
        progress("refinement")
    refined = refine_map(pair, selection, cfg)
    if cfg.refine == "zoomout":
        refined = polish(pair, refined, selection.candidate.extrinsic, cfg)
    t3 = time.perf_counter()
    timings = {"basis": t1 - t0, "init": t2 - t1, "refine": t3 - t2, "total": t3 - t0}
    logger.debug("match: %s", ", ".join(f"{key} {val:.2f} s" for key, val in timings.items()))
    return MatchResult(
        refined.p2p_21.to(pair.device), refined.fmap_12.to(pair.device), selection.candidate.orientation_ratio, timings
    )
