"""Shortest-path distances on a shape's graph: mesh edges, or a k-nearest-neighbour graph for point clouds.

Graph distances over-estimate geodesics by the zig-zag of paths along edges (a few per cent on regular meshes),
but they are exact shortest paths of a well-defined metric and work on any mesh (boundaries, non-manifold edges,
several components: distances across components are ``inf``). They cost one Dijkstra search per source,
``O(E log V)`` time for ``E`` stored edges. With numba installed the searches are a compiled binary-heap
Dijkstra that releases the GIL, the sources split over ``torch.get_num_threads()`` threads; without it (or with
``GEOMOT_NUMBA=0``) they are scipy's ``dijkstra``, on one core. Both give the same floats, bit for bit.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from geomot._core.accel import numba_available
from geomot._core.checks import check_float_tensor, check_index_tensor, check_int, check_positive
from geomot._core.errors import ValidationError
from geomot.ops.geometry import edges

__all__ = ["ShortestPathCache", "edge_graph", "graph_distances", "knn_graph", "ring_neighbourhoods"]


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


class ShortestPathCache:
    """A graph that keeps the shortest-path distances it has computed: each source vertex is searched once.

    Pass it wherever a graph goes (:func:`graph_distances`, or the ``graph`` arguments of the matching code): a
    search without ``limit`` returns the kept rows of the sources seen before and runs one Dijkstra search for the
    others only. The rows are those that a search of the graph itself gives (each source's search is
    independent of the others), so results do not change. Worth it when the same sources come back, as with the
    anchors of :func:`geomot.correspondence.anchor_refine`, whose images under similar maps often coincide.
    Memory: ``8 V`` bytes a kept row, up to ``max_bytes`` (later sources are searched and not kept).

    Args:
        graph: ``(V, V)`` symmetric scipy sparse matrix of edge lengths, each edge stored in both directions
            (:func:`edge_graph`, :func:`knn_graph`).
        max_bytes: the most memory the kept rows may take.
    """

    def __init__(self, graph: Any, *, max_bytes: int = 1 << 27) -> None:
        if isinstance(graph, ShortestPathCache):
            graph = graph.graph
        if len(getattr(graph, "shape", ())) != 2 or graph.shape[0] != graph.shape[1]:
            raise ValidationError(f"graph: expected a square (V, V) sparse matrix, got {type(graph).__name__}")
        self.graph = graph
        self.max_rows = int(check_int(max_bytes, "max_bytes", at_least=0)) // (8 * max(1, graph.shape[0]))
        self._rows: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """``(V, V)``, the shape of the graph's matrix."""
        return self.graph.shape

    def __len__(self) -> int:
        """Number of kept rows."""
        return len(self._rows)

    def distances(self, sources: torch.Tensor) -> torch.Tensor:
        """Shortest-path distances from each of ``sources (S,)`` to every vertex, ``(S, V)`` float64 (``inf`` when
        unreachable), the same as :func:`graph_distances` on the graph."""
        check_index_tensor(sources, "sources", size=self.shape[0])
        idx = sources.detach().cpu().long().reshape(-1).numpy()
        missing = np.setdiff1d(idx, np.fromiter(self._rows, dtype=np.int64, count=len(self._rows)))
        fresh: dict[int, np.ndarray] = {}
        if missing.size:
            found = _dijkstra(self.graph, missing, None)
            fresh = dict(zip(missing.tolist(), found))
            room = max(0, self.max_rows - len(self._rows))
            self._rows.update(itertools.islice(fresh.items(), room))
        rows = [self._rows[i] if i in self._rows else fresh[i] for i in idx.tolist()]
        width = self.shape[0]
        return torch.from_numpy(np.stack(rows) if rows else np.empty((0, width)))


# Stored entries scanned (at most: ``limit`` stops searches early), per thread job at least and per call before
# threads start. A whole search of a 5k-vertex mesh scans 30k entries in about 0.5 ms. Measured on 2 cores, threads
# only pay from about 30 such searches a call: right after a torch op, torch's OpenMP threads still spin for a
# while and take the cores that the jobs would run on.
_JOB_WORK = 50_000
_SERIAL_WORK = 1_000_000


@functools.cache
def _compiled_dijkstra() -> Any:
    """The numba kernel :func:`geomot.ops._dijkstra_numba.dijkstra_rows`, or None without numba."""
    if not numba_available():
        return None
    from geomot.ops._dijkstra_numba import dijkstra_rows

    return dijkstra_rows


def _dijkstra(graph: Any, idx: np.ndarray, limit: float | None) -> np.ndarray:
    """``(S, V)`` float64 distances from the sources ``idx (S,)``, scipy's ``dijkstra(graph, directed=True,
    indices=idx, limit=limit)`` to the bit: numba kernel on ``torch.get_num_threads()`` threads, scipy without
    numba (or with ``GEOMOT_NUMBA=0``) and for graphs with negative lengths."""
    import scipy.sparse as sp

    # the graph stores both directions of every edge: the directed search gives the same distances without
    # symmetrising the matrix on every call
    lim = np.inf if limit is None else float(limit)
    kernel = _compiled_dijkstra()
    g = graph.tocsr().astype(np.float64, copy=False) if sp.issparse(graph) else None  # scipy's conversion
    in_range = idx.size == 0 or (g is not None and 0 <= idx.min() and idx.max() < g.shape[0])
    if kernel is None or g is None or not in_range or bool(np.any(g.data < 0)) or not lim >= 0:
        from scipy.sparse.csgraph import dijkstra

        dist = dijkstra(graph, directed=True, indices=idx, limit=lim)
        return np.ascontiguousarray(dist).reshape(idx.shape[0], graph.shape[0])
    n_src, n = idx.shape[0], g.shape[0]
    out = np.empty((n_src, n), dtype=np.float64)
    indptr = np.ascontiguousarray(g.indptr, dtype=np.int64)
    indices = np.ascontiguousarray(g.indices, dtype=np.int64)
    data = np.ascontiguousarray(g.data)
    src = np.ascontiguousarray(idx, dtype=np.int64)

    def job(rows: tuple[int, int]) -> None:
        kernel(indptr, indices, data, src, rows[0], rows[1], lim, out)

    # up to four jobs a thread, taken in turn, so that searches of unequal cost (``limit``) even out
    threads = torch.get_num_threads()
    n_jobs = min(4 * threads, n_src // max(1, -(-_JOB_WORK // max(g.nnz, n))))
    workers = min(threads, n_jobs)
    if workers <= 1 or n_src * max(g.nnz, n) < _SERIAL_WORK:
        job((0, n_src))
        return out
    cuts = np.linspace(0, n_src, n_jobs + 1).astype(np.int64).tolist()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(job, itertools.pairwise(cuts)))
    return out


def graph_distances(graph: Any, sources: torch.Tensor, *, limit: float | None = None) -> torch.Tensor:
    """Shortest-path distances from each source to every vertex, ``(S, V)`` float64 (``inf`` when unreachable).

    Args:
        graph: ``(V, V)`` symmetric scipy sparse matrix of edge lengths, each edge stored in both directions
            (:func:`edge_graph`, :func:`knn_graph`), or a :class:`ShortestPathCache` of one (searches without
            ``limit`` reuse its kept rows).
        sources: ``(S,)`` vertex indices.
        limit: stop each search at this distance (vertices farther away get ``inf``); much faster when the
            caller only needs a neighbourhood.
    """
    if isinstance(graph, ShortestPathCache):
        if limit is None:
            return graph.distances(sources)
        graph = graph.graph
    check_index_tensor(sources, "sources", size=graph.shape[0])
    idx = sources.detach().cpu().long().reshape(-1).numpy()
    if limit is not None:
        check_positive(limit, "limit")
    return torch.from_numpy(_dijkstra(graph, idx, limit))


def ring_neighbourhoods(faces: torch.Tensor, n_verts: int, rings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The vertices within ``rings`` edges of each vertex of a mesh (itself included), as a padded table.

    Row ``i`` of ``index (V, m)`` lists the vertices ``j`` with a path of at most ``rings`` mesh edges from ``i``
    (``i`` itself, its 1-ring, the 1-rings of those, ...), in increasing order; ``mask (V, m)`` says which entries
    are real (``m`` is the largest neighbourhood; padding entries hold 0). Computed from the powers of the sparse
    vertex adjacency (with the diagonal), so the cost grows with the sizes of the neighbourhoods, not with ``V^2``.

    Args:
        faces: ``(F, 3)`` vertex indices of the triangles.
        n_verts: number of vertices ``V`` (isolated vertices get only themselves).
        rings: number of edge rings, ``>= 1``.

    Returns:
        ``(index (V, m) int64, mask (V, m) bool)``.
    """
    import scipy.sparse as sp

    check_int(rings, "rings", at_least=1)
    check_int(n_verts, "n_verts", at_least=1)
    check_index_tensor(faces, "faces", size=n_verts, ncols=3)
    e = edges(faces.detach().cpu().long()).numpy()
    ones = np.ones(e.shape[0], dtype=np.float32)
    step = _symmetric(e[:, 0], e[:, 1], ones, n_verts) + sp.identity(n_verts, dtype=np.float32, format="csr")
    reach = step
    for _ in range(rings - 1):
        reach = reach @ step
        reach.data[:] = 1.0  # only the pattern matters; keeps the entries small
    reach = reach.tocsr()
    reach.sort_indices()
    counts = np.diff(reach.indptr)
    rows = np.repeat(np.arange(n_verts), counts)
    cols = np.arange(reach.indptr[-1]) - np.repeat(reach.indptr[:-1], counts)
    index = np.zeros((n_verts, int(counts.max())), dtype=np.int64)
    mask = np.zeros(index.shape, dtype=bool)
    index[rows, cols] = reach.indices
    mask[rows, cols] = True
    return torch.from_numpy(index), torch.from_numpy(mask)
