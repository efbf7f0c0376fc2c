"""Stage 4 of :func:`geomot.correspondence.match`: refinement of the selected map to a vertex map.

``refine="zoomout"``: the selection already ran ZoomOut to ``k`` on samples (Melzi et al. 2019); then
``anchor_iterations`` steps of geodesic-anchor refinement (:func:`geomot.correspondence.anchor_refine`: nearest
neighbours in the spectral embedding joined with Gaussians of the geodesic distances to ``n_anchors`` anchors and
to their images, which sends back regions left on their symmetric twin), then ``final_iterations`` ZoomOut refits
at size ``k`` on every vertex (:func:`geomot.correspondence.fixed_size_iterations`), float32 nearest neighbours.
``refine="sinkhorn"``: ZoomOut with Sinkhorn filtering (Pai et al. 2021) from the unrefined candidate, ending in
a hard map. ``refine="none"``: the nearest-neighbour map of the candidate.

Cost of ``"zoomout"``: shortest paths from the anchors on both shapes and nearest neighbours on every vertex.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomot.correspondence.anchors import anchor_refine
from geomot.correspondence.matching.config import MatchConfig
from geomot.correspondence.matching.preparation import PreparedPair
from geomot.correspondence.matching.selection import Selection
from geomot.correspondence.p2p import p2p_from_fmap
from geomot.correspondence.refine import sinkhorn_zoomout
from geomot.correspondence.zoomout import fixed_size_iterations
from geomot.ops.sampling import farthest_point_sampling

__all__ = ["RefinedMap", "refine_map"]


class RefinedMap(NamedTuple):
    """A vertex map and its functional map: ``p2p_21 (V2,)`` int64 (a target vertex for each source vertex) and
    ``fmap_12 (k, k)`` float64 consistent with it."""

    p2p_21: torch.Tensor
    fmap_12: torch.Tensor


def refine_map(pair: PreparedPair, selection: Selection, config: MatchConfig | None = None) -> RefinedMap:
    """Stage 4 (see the module docstring) on ``selection``, the result of
    :func:`~geomot.correspondence.matching.select_initial` with the same ``config``."""
    config = (config or MatchConfig()).resolve()
    b1, b2, k = pair.b1, pair.b2, config.k
    if config.refine == "zoomout":
        e1, e2, m2 = b1.evecs[:, :k].float(), b2.evecs[:, :k].float(), b2.mass.float()
        fmap = selection.fmap_12.float()
        if config.anchors_on:
            assert pair.graphs is not None
            fmap = anchor_refine(
                fmap,
                e1,
                e2,
                b1.mass.float(),
                m2,
                pair.v1,
                pair.f1,
                pair.v2,
                pair.f2,
                n_anchors=min(config.n_anchors, pair.v2.shape[0]),
                max_iter=config.anchor_iterations,
                graph1=pair.graphs[0],
                graph2=pair.graphs[1],
            ).fmap_12
        res = fixed_size_iterations(fmap, e1, e2, m2, max_iter=config.final_iterations)
        return RefinedMap(res.p2p_21, res.fmap_12.double())
    C = selection.candidate.fmap_12
    if config.refine == "sinkhorn":
        assert config.n_sample_rank is not None
        samples1 = farthest_point_sampling(pair.v1, min(config.n_sample_rank, pair.v1.shape[0]), start=0)
        res_s = sinkhorn_zoomout(
            C,
            b1.evecs,
            b2.evecs,
            b1.mass,
            b2.mass,
            k_final=k,
            step=config.step,
            samples1=samples1,
            samples2=pair.samples2,
        )
        return RefinedMap(res_s.p2p_21, res_s.fmap_12)
    return RefinedMap(p2p_from_fmap(C, b1.evecs[:, : C.shape[0]], b2.evecs[:, : C.shape[0]]), C)
