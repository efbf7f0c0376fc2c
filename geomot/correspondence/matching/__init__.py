"""The stages of the training-free matching pipeline :func:`geomot.correspondence.match`, each usable alone:

1. :func:`prepare`: shapes at unit area, spectral bases, WKS descriptors, samples, graphs -> :class:`PreparedPair`;
2. :func:`spectral_candidates` (sign search, orientation-regularised maps, ZoomOut) -> :class:`CandidateSet`, and
   :func:`extrinsic_candidates` (principal axes + smooth non-rigid ICP) -> a list of :class:`Candidate`;
3. :func:`select_initial`: the ranking keys (:func:`deformation_residual`, :func:`laplacian_energy`,
   :class:`MapSelector`, :func:`pick_extrinsic`) -> :class:`Selection`;
4. :func:`refine_map`: ZoomOut + geodesic anchors, or Sinkhorn-filtered ZoomOut -> :class:`RefinedMap`;
5. :func:`polish`: extrinsic polish of maps between shapes that differ beyond a change of pose.

Every setting is a field of :class:`MatchConfig`. Shape 1 is the target, shape 2 the source (``p2p_21``).
"""

from geomot.correspondence.matching.candidates import (
    Candidate,
    CandidateSet,
    OrientationTerms,
    extrinsic_candidates,
    extrinsic_maps,
    sign_patterns,
    spectral_candidates,
)
from geomot.correspondence.matching.config import REFINERS, MatchConfig
from geomot.correspondence.matching.polishing import edge_stretch, polish, polish_window
from geomot.correspondence.matching.preparation import (
    CloudFrame,
    PreparedPair,
    as_shape,
    cloud_frame,
    prepare,
    unit_area,
)
from geomot.correspondence.matching.refinement import RefinedMap, refine_map
from geomot.correspondence.matching.selection import (
    MapSelector,
    RankedCandidate,
    Selection,
    deformation_residual,
    laplacian_energy,
    pick_extrinsic,
    rank_candidates,
    select_initial,
)

__all__ = [
    "REFINERS",
    "Candidate",
    "CandidateSet",
    "CloudFrame",
    "MapSelector",
    "MatchConfig",
    "OrientationTerms",
    "PreparedPair",
    "RankedCandidate",
    "RefinedMap",
    "Selection",
    "as_shape",
    "cloud_frame",
    "deformation_residual",
    "edge_stretch",
    "extrinsic_candidates",
    "extrinsic_maps",
    "laplacian_energy",
    "pick_extrinsic",
    "polish",
    "polish_window",
    "prepare",
    "rank_candidates",
    "refine_map",
    "select_initial",
    "sign_patterns",
    "spectral_candidates",
    "unit_area",
]
