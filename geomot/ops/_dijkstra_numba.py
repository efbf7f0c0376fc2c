"""The compiled single-source Dijkstra searches of :func:`geomot.ops.graph.graph_distances` (imported only when
numba is available; compiled for one signature when first imported, then loaded from numba's disk cache).

Each search keeps its tentative distances in its row of the output and its frontier in a binary min-heap with a
position table (decrease-key in ``O(log V)``): ``O(E log V)`` time per source, ``O(V)`` scratch per call. The
kernel releases the GIL, so blocks of sources run on several Python threads at once.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["dijkstra_rows"]

_SIGNATURE = "void(int64[::1], int64[::1], float64[::1], int64[::1], int64, int64, float64, float64[:, ::1])"


@numba.njit(_SIGNATURE, nogil=True, cache=True, boundscheck=False)
def dijkstra_rows(indptr, indices, data, sources, start, stop, limit, out):  # pragma: no cover - compiled
    """Write the shortest-path distances from ``sources[r]`` into ``out[r]`` for ``start <= r < stop``.

    The graph is the CSR matrix ``(data, indices, indptr)`` on ``V`` vertices read as directed: an edge
    ``u -> indices[k]`` of length ``data[k]`` for each ``indptr[u] <= k < indptr[u + 1]`` (duplicate entries are
    parallel edges, explicit zeros edges of length 0). Lengths must not be negative (NaN and ``inf`` lengths
    never reach anything). A vertex ``v`` is reached through ``u`` when ``fl(d[u] + w) <= limit``, and gets the
    smallest such sum; the others keep ``inf``. This is the rule of scipy's ``dijkstra``. With ``w >= 0`` the
    rounded sum never falls below ``d[u]``, so the result is the least left-to-right rounded length over all
    paths, whatever order ties leave the heap in: the same floats as scipy's search.
    """
    n = indptr.shape[0] - 1
    heap_v = np.empty(n, dtype=np.int64)  # heap of vertices
    heap_d = np.empty(n, dtype=np.float64)  # their keys (their distances in ``out``), side by side
    pos = np.empty(n, dtype=np.int64)  # where each vertex sits in the heap; -1 never pushed, -2 settled
    for r in range(start, stop):
        dist = out[r]
        for i in range(n):
            dist[i] = np.inf
            pos[i] = -1
        s = sources[r]
        dist[s] = 0.0
        heap_v[0] = s
        heap_d[0] = 0.0
        pos[s] = 0
        size = 1
        while size > 0:
            u = heap_v[0]
            du = heap_d[0]
            pos[u] = -2
            size -= 1
            if size > 0:  # move the last leaf to the root and sift it down
                x = heap_v[size]
                dx = heap_d[size]
                i = 0
                while True:
                    c = 2 * i + 1
                    if c >= size:
                        break
                    if c + 1 < size and heap_d[c + 1] < heap_d[c]:
                        c += 1
                    if heap_d[c] < dx:
                        y = heap_v[c]
                        heap_v[i] = y
                        heap_d[i] = heap_d[c]
                        pos[y] = i
                        i = c
                    else:
                        break
                heap_v[i] = x
                heap_d[i] = dx
                pos[x] = i
            for k in range(indptr[u], indptr[u + 1]):
                v = indices[k]
                nv = du + data[k]
                # a settled v never passes: fl(du + w) >= du >= dist[v] for w >= 0
                if nv <= limit and nv < dist[v]:
                    dist[v] = nv
                    i = pos[v]
                    if i < 0:  # first reached: a new leaf
                        i = size
                        size += 1
                    while i > 0:  # sift up
                        p = (i - 1) >> 1
                        if heap_d[p] > nv:
                            y = heap_v[p]
                            heap_v[i] = y
                            heap_d[i] = heap_d[p]
                            pos[y] = i
                            i = p
                        else:
                            break
                    heap_v[i] = v
                    heap_d[i] = nv
                    pos[v] = i
