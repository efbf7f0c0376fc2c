"""L4: dense correspondence: spectral descriptors, functional maps, point-to-point maps, ZoomOut, entropic
refinement, extrinsic alignment (principal axes, smooth non-rigid ICP), the training-free matching pipeline
(:func:`match`, its stages in :mod:`~geomot.correspondence.matching` and their
:class:`MatchConfig`) and the differentiable deep-functional-map layer with soft point maps
(:mod:`~geomot.correspondence.deep`).

Map directions are in the names (pyFM's convention): ``fmap_12`` maps functions on shape 1 to shape 2,
``p2p_21`` gives for each vertex of shape 2 its match on shape 1.
"""

from geomot.correspondence.anchors import AnchorRefineResult, anchor_refine
from geomot.correspondence.consistency import (
    MapConsistency,
    area_coverage,
    area_distortion,
    cycle_error,
    map_consistency,
)
from geomot.correspondence.deep import (
    FMAP_MASKS,
    SOFT_MAP_COSTS,
    SOFT_MAPS,
    DeepFmapOutput,
    DeepFunctionalMap,
    FmapPair,
    fmap_from_soft_map,
    fmap_layer,
    soft_map_sinkhorn,
    soft_map_softmax,
)
from geomot.correspondence.descriptors import descriptor_scales, geodesic_ball_areas, hks, wks
from geomot.correspondence.extrinsic import (
    ExtrinsicRefineResult,
    NonrigidICPResult,
    extrinsic_refine,
    frame_hypotheses,
    nonrigid_icp,
    principal_frame,
)
from geomot.correspondence.fmaps import (
    AxiomaticFmap,
    descriptor_operators,
    fmap_energy,
    fmap_from_descriptors,
    laplacian_mask,
    orientation_operators,
    point_orientation_operators,
    project,
    regularized_fmap,
    resolvent_mask,
)
from geomot.correspondence.matching import MatchConfig
from geomot.correspondence.p2p import fmap_from_p2p, knn_indices, p2p_from_fmap, soft_fmap
from geomot.correspondence.pipeline import MatchResult, match
from geomot.correspondence.refine import SinkhornZoomOutResult, sinkhorn_zoomout
from geomot.correspondence.zoomout import ZoomOutResult, bijective_zoomout, fixed_size_iterations, zoomout

__all__ = [
    "FMAP_MASKS",
    "SOFT_MAPS",
    "SOFT_MAP_COSTS",
    "AnchorRefineResult",
    "AxiomaticFmap",
    "DeepFmapOutput",
    "DeepFunctionalMap",
    "ExtrinsicRefineResult",
    "FmapPair",
    "MapConsistency",
    "MatchConfig",
    "MatchResult",
    "NonrigidICPResult",
    "SinkhornZoomOutResult",
    "ZoomOutResult",
    "anchor_refine",
    "area_coverage",
    "area_distortion",
    "bijective_zoomout",
    "cycle_error",
    "descriptor_operators",
    "descriptor_scales",
    "extrinsic_refine",
    "fixed_size_iterations",
    "fmap_energy",
    "fmap_from_descriptors",
    "fmap_from_p2p",
    "fmap_from_soft_map",
    "fmap_layer",
    "frame_hypotheses",
    "geodesic_ball_areas",
    "hks",
    "knn_indices",
    "laplacian_mask",
    "map_consistency",
    "match",
    "nonrigid_icp",
    "orientation_operators",
    "p2p_from_fmap",
    "point_orientation_operators",
    "principal_frame",
    "project",
    "regularized_fmap",
    "resolvent_mask",
    "sinkhorn_zoomout",
    "soft_fmap",
    "soft_map_sinkhorn",
    "soft_map_softmax",
    "wks",
    "zoomout",
]
