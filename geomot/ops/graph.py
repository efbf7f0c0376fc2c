"""Shortest-path distances on a shape's graph: mesh edges, or a k-nearest-neighbour graph for point clouds.

Graph distances over-estimate geodesics by the zig-zag of paths along edges (a few per cent on regular meshes),
but they are exact shortest paths of a well-defined metric, cost one Dijkstra per source (scipy), and work on any
mesh (boundaries, non-manifold edges, several components: distances across components are ``inf``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_positive
from geomot._core.errors import ValidationError
from geomot.ops.geometry import edges

__all__ = ["edge_graph", "graph_distances", "knn_graph"]


def _symmetric(i: np.ndarray, j: np.ndarray, w: np.ndarray, n: int) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n))


def edge_graph(verts: torch.Tensor, faces: torch.Tensor) -> Any:
    """Symmetric sparse ``(V, V)`` scipy CSR matrix of mesh edge lengths (each edge once per direction).

    Args:
        verts: ``(V, 3)`` float; faces: ``(F, 3)`` long.
    """
    check_float_tensor(verts, "verts", ndim=2)
    check_index_tensor(faces, "faces", size=verts.shape[0], ncols=3)
    v = verts.detach().cpu().double()
    e = edges(faces.detach().cpu().long())
    w = (v[e[:, 0]] - v[e[:, 1]]).norm(dim=1).clamp_min(1e-12).numpy()
    return _symmetric(e[:, 0].numpy(), e[:, 1].numpy(), w, v.shape[0])


def knn_graph(points: torch.Tensor, k: int = 8) -> Any:
    """Symmetrised ``k``-nearest-neighbour graph of a point cloud, ``(V, V)`` scipy CSR of Euclidean lengths.

    Args:
        points: ``(V, D)`` float; k: neighbours per point (``1 <= k < V``).
    """
    check_float_tensor(points, "points", ndim=2)
    n = points.shape[0]
    if not 1 <= k < n:
        raise ValidationError(f"k: expected 1 <= k < {n} (the number of points), got {k}")
    from scipy.spatial import cKDTree

    p = points.detach().cpu().double().numpy()
    dist, idx = cKDTree(p).query(p, k=k + 1)
    i = np.repeat(np.arange(n), k)
    j = idx[:, 1:].reshape(-1)
    w = np.maximum(dist[:, 1:].reshape(-1), 1e-12)
    # an edge found from both of its ends is kept once
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = np.unique(np.stack([lo, hi], 1), axis=0, return_index=True)[1]
    return _symmetric(lo[keep], hi[keep], w[keep], n)


def graph_distances(graph: Any, sources: torch.Tensor, *, limit: float | None = None) -> torch.Tensor:
    """Shortest-path distances from each source to every vertex, ``(S, V)`` float64 (``inf`` when unreachable).

    Args:
        graph: ``(V, V)`` symmetric scipy sparse matrix of edge lengths, each edge stored in both directions
            (:func:`edge_graph`, :func:`knn_graph`).
        sources: ``(S,)`` vertex indices.
        limit: stop each search at this distance (vertices farther away get ``inf``); much faster when the
            caller only needs a neighbourhood.
    """
    from scipy.sparse.csgraph import dijkstra

    check_index_tensor(sources, "sources", size=graph.shape[0])
    idx = sources.detach().cpu().long().reshape(-1).numpy()
    # the graph stores both directions of every edge: the directed search gives the same distances without
    # scipy symmetrising the matrix on every call (a quarter faster)
    if limit is not None:
        check_positive(limit, "limit")
    dist = dijkstra(graph, directed=True, indices=idx, limit=np.inf if limit is None else float(limit))
    return torch.from_numpy(np.ascontiguousarray(dist))
