"""Stage 5 of :func:`geomot.correspondence.match`: extrinsic polish of the refined map.

A rigid motion plus a displacement in the source's first 32, then 64 eigenfunctions is fitted to the map, and
each source vertex goes to the target vertex closest to its deformed position, normals compared too
(:func:`geomot.correspondence.extrinsic_refine`, symmetric fits). A map from an extrinsic candidate (shapes better
related by a smooth deformation in space than by an isometry) snaps anywhere. A spectral map is polished locally,
each snap restricted to the target vertices within ``polish_window`` edge rings of its current image, when the
shapes are declared ``non_isometric`` or when it stretches the mesh edges like a map between two species
(:func:`edge_stretch` above ``stretch_gate``); otherwise it is left as it is. Cost: about 0.4 s at 5k vertices.
"""

from __future__ import annotations

import torch

from geomot.correspondence.extrinsic import extrinsic_refine
from geomot.correspondence.matching.candidates import levels_up_to
from geomot.correspondence.matching.config import MatchConfig
from geomot.correspondence.matching.preparation import PreparedPair
from geomot.correspondence.matching.refinement import RefinedMap
from geomot.correspondence.p2p import fmap_from_p2p
from geomot.ops.geometry import edges

__all__ = ["edge_stretch", "polish", "polish_window"]


def edge_stretch(
    v2: torch.Tensor, f2: torch.Tensor, v1: torch.Tensor, p2p_21: torch.Tensor, floor: float = 0.05
) -> float:
    """Mean ``|log(l'_e / l_e)|`` over the source's edges ``e = (i, j)``: ``l_e = |x_i - x_j|`` on the source,
    ``l'_e = max(|y_T(i) - y_T(j)|, floor l_e)`` between the images on the target (a collapsed edge counts as
    shrunk ``1 / floor`` times). 0 for an isometry of the mesh, ``log s`` for a scaling by ``s``; scale both shapes
    alike (unit area) before comparing pairs."""
    e = edges(f2)
    length = (v2[e[:, 0]] - v2[e[:, 1]]).norm(dim=1)
    image = (v1[p2p_21[e[:, 0]]] - v1[p2p_21[e[:, 1]]]).norm(dim=1)
    return float((image.clamp_min(floor * length) / length.clamp_min(1e-30)).log().abs().mean())


def polish_window(
    pair: PreparedPair, refined: RefinedMap, from_extrinsic: bool, config: MatchConfig | None = None
) -> int | None:
    """Snap window of the polish: 0 (anywhere) for a map from an extrinsic candidate, ``polish_window`` edge
    rings for a spectral map of meshes declared ``non_isometric`` or with :func:`edge_stretch` above
    ``stretch_gate``, None (no polish) otherwise or with ``refine_extrinsic=False``."""
    config = config or MatchConfig()
    if not config.refine_extrinsic:
        return None
    if from_extrinsic:
        return 0
    if (
        pair.f1 is not None
        and pair.f2 is not None
        and (
            config.non_isometric
            or edge_stretch(pair.v2, pair.f2, pair.v1, refined.p2p_21, config.stretch_floor) > config.stretch_gate
        )
    ):
        return config.polish_window
    return None


def polish(
    pair: PreparedPair, refined: RefinedMap, from_extrinsic: bool, config: MatchConfig | None = None
) -> RefinedMap:
    """Stage 5 (see the module docstring): ``refined`` polished with the window of :func:`polish_window`, or
    unchanged when there is none; ``fmap_12`` is refitted to the polished map (``M_2``-orthogonal projection)."""
    config = config or MatchConfig()
    window = polish_window(pair, refined, from_extrinsic, config)
    if window is None:
        return refined
    k = config.k
    e1, e2, m2 = pair.b1.evecs[:, :k].float(), pair.b2.evecs[:, :k].float(), pair.b2.mass.float()
    levels = levels_up_to(config.polish_levels, e2.shape[1])
    p2p = extrinsic_refine(
        pair.v2.float(),
        pair.v1.float(),
        refined.p2p_21,
        e2,
        pair.b2.evals.float(),
        levels=levels,
        source_faces=pair.f2,
        target_faces=pair.f1,
        normal_weight=config.polish_normal_weight if pair.meshes else 0.0,  # normals of deformed meshes only
        symmetric=True,
        window=window,
    ).p2p_21
    return RefinedMap(p2p, fmap_from_p2p(p2p, e1, e2, mass2=m2).double())
