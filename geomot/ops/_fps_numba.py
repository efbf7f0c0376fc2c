"""The compiled farthest-point loop of :func:`geomot.ops.sampling.farthest_point_sampling` (imported only when
numba is available; compiled on first use and cached on disk)."""

from __future__ import annotations

import numba


@numba.njit(nogil=True, cache=True, boundscheck=False)
def fps(p, k, start, idx, dist):  # pragma: no cover - compiled
    """Write ``k`` farthest-point indices of ``p (N, D)`` from ``start`` into ``idx``; ``dist (N,)`` is scratch.

    Squared distances are summed over the coordinates in order, in the points' dtype and without fused
    multiply-adds (numba's default), and the first maximum is taken: the torch loop's rounding and ties.
    """
    n, dim = p.shape
    idx[0] = start
    j = start
    for it in range(k):
        if it > 0:
            best = 0
            for i in range(1, n):
                if dist[i] > dist[best]:
                    best = i
            j = best
            idx[it] = j
        for i in range(n):
            df = p[i, 0] - p[j, 0]
            s = df * df
            for d in range(1, dim):
                df = p[i, d] - p[j, d]
                s = s + df * df
            if it == 0 or s < dist[i]:
                dist[i] = s
