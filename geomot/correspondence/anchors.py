"""Refinement of a point map by geodesic anchors: undoes local symmetric swaps that ZoomOut keeps.

ZoomOut's nearest neighbours in the spectral embedding only see a map locally; once a region is sent to its
symmetric twin (a left foot to the right foot, say, with the rest of the body right), every ZoomOut step keeps it
there. Distances to the rest of the body tell the two apart: the left foot is close to the left knee and far
from the right one. This refinement adds such distances to the embedding.

With anchors ``s_a`` (farthest-point samples of shape 2) and the current map ``T = p2p_21``, the features

``g_a(x) = exp(-d_2(x, s_a)^2 / (2 sigma^2))`` on shape 2 and ``h_a(y) = exp(-d_1(y, T(s_a))^2 / (2 sigma^2))``
on shape 1

agree, ``g_a = h_a o T``, when ``T`` is an isometry. The new map is the nearest neighbour in the joint embedding

``T'(x) = argmin_y |Phi_2(x) - Phi_1(y) C^T|^2 + w^2 |g(x) - h(y)|^2``,

then ``C <- Phi_2^T M_2 Phi_1[T']``, repeated ``max_iter`` times. Anchors that the current map sends to the wrong
side are a minority; the Gaussian keeps each one's influence local (a wrong anchor perturbs the features within a
few ``sigma`` of itself). The features are heat-kernel-like functions of geodesic distance (Ovsjanikov et al.
2010, "One point isometric matching with the heat kernel"), here from many anchors given by the map itself.
Distances are shortest paths along mesh edges (:func:`geomot.ops.graph.edge_graph`) or in a k-nearest-neighbour
graph for point clouds.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_int, check_positive
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.p2p import fmap_from_p2p, knn_indices, p2p_from_fmap
from geomot.ops.graph import edge_graph, graph_distances, knn_graph
from geomot.ops.sampling import farthest_point_sampling

__all__ = ["AnchorRefineResult", "anchor_refine", "shape_graph"]


class AnchorRefineResult(NamedTuple):
    """Result of :func:`anchor_refine`.

    Attributes:
        fmap_12: ``(k2, k1)`` functional map of the refined point map, ``Phi_2^T M_2 Phi_1[p2p_21]``.
        p2p_21: ``(V2,)`` refined map, for each vertex of shape 2 its match on shape 1.
        source_features: ``(V2 or S, n_anchors)`` the distance features ``g`` of shape 2, which depend on shape 2
            and the settings only: pass them back (``source_features=``) to refine other maps between the same
            shapes without recomputing them.
    """

    fmap_12: torch.Tensor
    p2p_21: torch.Tensor
    source_features: torch.Tensor


def shape_graph(verts: torch.Tensor, faces: torch.Tensor | None, *, k: int = 8) -> Any:
    """Edge graph of a mesh, or the ``k``-nearest-neighbour graph of a point cloud (``faces=None``; at most
    ``V - 1`` neighbours)."""
    return knn_graph(verts, min(k, verts.shape[0] - 1)) if faces is None else edge_graph(verts, faces)


@renamed_kwargs(n_iter="max_iter")
def anchor_refine(
    fmap_12: torch.Tensor,
    evecs1: torch.Tensor,
    evecs2: torch.Tensor,
    mass1: torch.Tensor,
    mass2: torch.Tensor,
    verts1: torch.Tensor,
    faces1: torch.Tensor | None,
    verts2: torch.Tensor,
    faces2: torch.Tensor | None,
    *,
    p2p_21: torch.Tensor | None = None,
    n_anchors: int = 128,
    sigma: float = 0.3,
    weight: float = 10.0,
    max_iter: int = 2,
    graph1: Any = None,
    graph2: Any = None,
    samples2: torch.Tensor | None = None,
    samples1: torch.Tensor | None = None,
    source_features: torch.Tensor | None = None,
) -> AnchorRefineResult:
    """Refine a map with geodesic-distance features of anchors placed by the map itself (see the module doc).

    Scale-free: ``sigma`` is in units of ``sqrt(area)`` of each shape (``area = mass.sum()``), and the spectral
    part of the embedding is multiplied by ``sqrt(area_2)``, so results do not change when the shapes are scaled.
    Invariant to rigid motions (intrinsic distances only; the anchors are farthest-point samples, which depend on
    Euclidean distances only).

    Args:
        fmap_12: ``(k2, k1)`` current functional map.
        evecs1: ``(V1, K1)``, ``K1 >= k1``; evecs2: ``(V2, K2)``, ``K2 >= k2`` (every vertex).
        mass1: ``(V1,)``; mass2: ``(V2,)`` lumped masses (``evecs2`` ``M_2``-orthonormal).
        verts1, faces1, verts2, faces2: the shapes (``faces=None`` for point clouds).
        p2p_21: ``(V2,)`` current point map (default: nearest neighbours of ``fmap_12``); with ``samples2`` only
            its entries at ``samples2`` are read.
        n_anchors: number of anchors (farthest-point samples of shape 2).
        sigma: width of the distance features, relative to ``sqrt(area)``.
        weight: weight ``w`` of the distance features against the spectral embedding.
        max_iter: number of refinement steps (``>= 1``; ``n_iter`` is a deprecated alias).
        graph1, graph2: precomputed :func:`shape_graph` of each shape (built when None).
        samples2: ``(S,)`` vertex indices of shape 2: when given, only these vertices are matched (the anchors
            are farthest-point samples among them, and the functional map is the least-squares fit
            ``Phi_2[samples2]^+ Phi_1[p2p]``, as in ZoomOut on samples), and the returned ``p2p_21`` is ``(S,)``,
            the map of the samples. About ``V2 / S`` times cheaper; meant for comparing candidate maps.
        samples1: ``(T,)`` vertex indices of shape 1: when given, the images are searched among these vertices
            only (with ``samples2``, the refinement on samples of both shapes; about ``V1 / T`` times cheaper).
        source_features: :attr:`AnchorRefineResult.source_features` of an earlier call with the same shape 2,
            ``samples2``, ``n_anchors``, ``sigma`` and ``weight`` (one shortest-path search saved per call).

    Returns:
        :class:`AnchorRefineResult`.
    """
    check_float_tensor(fmap_12, "fmap_12", ndim=2)
    check_float_tensor(evecs1, "evecs1", ndim=2)
    check_float_tensor(evecs2, "evecs2", ndim=2)
    check_float_tensor(mass1, "mass1", ndim=1)
    check_float_tensor(mass2, "mass2", ndim=1)
    k2, k1 = fmap_12.shape
    if k1 > evecs1.shape[1] or k2 > evecs2.shape[1]:
        raise ShapeError(f"fmap_12: shape {(k2, k1)} exceeds the bases ({evecs2.shape[1]}, {evecs1.shape[1]} columns)")
    for name, mass, ev, verts in (("1", mass1, evecs1, verts1), ("2", mass2, evecs2, verts2)):
        if mass.shape[0] != ev.shape[0] or verts.shape[0] != ev.shape[0]:
            raise ShapeError(
                f"mass{name}/verts{name}: expected {ev.shape[0]} rows (rows of evecs{name}), "
                f"got {mass.shape[0]} / {verts.shape[0]}"
            )
    if isinstance(n_anchors, bool) or not isinstance(n_anchors, int) or not 1 <= n_anchors <= verts2.shape[0]:
        raise ValidationError(f"n_anchors: expected an integer in [1, {verts2.shape[0]}], got {n_anchors!r}")
    max_iter = check_int(max_iter, "max_iter", at_least=1)
    sigma = check_positive(sigma, "sigma")
    weight = check_positive(weight, "weight")
    dtype = evecs2.dtype
    e1, e2 = evecs1[:, :k1], evecs2[:, :k2]
    if samples2 is None:
        rows = torch.arange(verts2.shape[0])
    else:
        check_index_tensor(samples2, "samples2", size=verts2.shape[0])
        if samples2.dim() != 1 or samples2.numel() < n_anchors:
            raise ShapeError(
                f"samples2: expected a 1-D index tensor of at least n_anchors = {n_anchors} vertices, "
                f"got shape {tuple(samples2.shape)}"
            )
        rows = samples2.long().cpu()  # CPU indices index tensors on any device
    cols = None
    if samples1 is not None:
        check_index_tensor(samples1, "samples1", size=verts1.shape[0])
        if samples1.dim() != 1 or samples1.numel() == 0:
            raise ShapeError(f"samples1: expected a non-empty 1-D index tensor, got shape {tuple(samples1.shape)}")
        cols = samples1.long().cpu()
    if p2p_21 is not None:
        check_index_tensor(p2p_21, "p2p_21", size=verts1.shape[0])
        if p2p_21.shape != (verts2.shape[0],):
            raise ShapeError(f"p2p_21: expected shape ({verts2.shape[0]},), got {tuple(p2p_21.shape)}")
    e2 = e2[rows]  # the embedding of the matched vertices (all of them without samples2)
    p2p = p2p_from_fmap(fmap_12, e1, e2) if p2p_21 is None else p2p_21[rows].long()
    g1 = shape_graph(verts1, faces1) if graph1 is None else graph1
    g2 = shape_graph(verts2, faces2) if graph2 is None else graph2
    root2 = math.sqrt(float(mass2.sum()))
    s1, s2 = sigma * math.sqrt(float(mass1.sum())), sigma * root2
    n_rows = rows.shape[0]
    if source_features is not None and source_features.shape != (n_rows, n_anchors):
        raise ShapeError(f"source_features: expected shape ({n_rows}, {n_anchors}), got {tuple(source_features.shape)}")
    anchors = farthest_point_sampling(verts2[rows], n_anchors, start=0).long().cpu()  # rows of the embedding

    def features(graph: Any, sources: torch.Tensor, scale: float, at: torch.Tensor | None = None) -> torch.Tensor:
        d = graph_distances(graph, sources.cpu()).T  # (V, m); inf -> 0 below
        d = (d if at is None else d[at]).to(device=e2.device, dtype=dtype)
        return weight * torch.exp(-0.5 * (d / scale) ** 2)

    g = features(g2, rows[anchors], s2, rows) if source_features is None else source_features.to(e2.device, dtype)
    emb2 = torch.cat([root2 * e2, g], 1)
    C = fmap_12.to(dtype)
    # with every vertex, the M-orthogonal projection; on samples, the least-squares fit (as ZoomOut on samples)
    m2 = mass2.to(dtype) if samples2 is None else None
    e1_rows = e1 if cols is None else e1[cols]  # the candidate images
    for _ in range(max_iter):
        emb1 = torch.cat([root2 * (e1_rows @ C.T), features(g1, p2p.cpu()[anchors], s1, cols)], 1)
        p2p = knn_indices(emb2, emb1)
        if cols is not None:
            p2p = cols.to(p2p.device)[p2p]
        C = fmap_from_p2p(p2p, e1, e2, mass2=m2)
    return AnchorRefineResult(C, p2p, g)
