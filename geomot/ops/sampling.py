"""Surface sampling (uniform by area, differentiable in the vertices) and farthest-point sampling."""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomot._core.accel import numba_available
from geomot._core.checks import check_positive
from geomot._core.errors import ValidationError
from geomot.ops.geometry import face_areas_normals

__all__ = ["SurfaceSamples", "farthest_point_sampling", "sample_surface"]


class SurfaceSamples(NamedTuple):
    """Result of :func:`sample_surface`.

    Attributes:
        points: ``(n, 3)`` sampled positions (differentiable w.r.t. the vertices).
        normals: ``(n, 3)`` unit normals of the faces the points lie on.
        face_index: ``(n,)`` int64 index of each point's face.
        barycentric: ``(n, 3)`` barycentric coordinates in that face.
    """

    points: torch.Tensor
    normals: torch.Tensor
    face_index: torch.Tensor
    barycentric: torch.Tensor


def sample_surface(
    verts: torch.Tensor, faces: torch.Tensor, n: int, *, generator: torch.Generator | None = None
) -> SurfaceSamples:
    """Sample ``n`` points uniformly with respect to surface area.

    A face is drawn with probability ``area_f / sum(area)`` (the draw is not differentiated), then a point
    ``x = w0 v0 + w1 v1 + w2 v2`` with ``(w0, w1, w2) = (1 - sqrt(u), sqrt(u)(1 - v), sqrt(u) v)``, ``u, v ~ U(0,1)``
    (Osada et al. 2002), which is uniform on the triangle and differentiable in the vertices.

    Args:
        verts: ``(V, 3)`` vertex positions.
        faces: ``(F, 3)`` int64.
        n: number of samples.
        generator: random generator (on the vertices' device) for reproducible samples.
    """
    n = int(check_positive(n, "n"))
    areas, normals = face_areas_normals(verts, faces)
    a = areas.detach()
    if not bool(a.sum() > 0):
        raise ValidationError("sample_surface: the mesh has zero total area")
    face_index = torch.multinomial(a, n, replacement=True, generator=generator)
    uv = torch.rand((n, 2), generator=generator, dtype=verts.dtype, device=verts.device)
    su = uv[:, 0].sqrt()
    w = torch.stack([1 - su, su * (1 - uv[:, 1]), su * uv[:, 1]], dim=1)
    tri = verts[faces[face_index]]  # (n, 3, 3)
    points = (w[:, :, None] * tri).sum(1)
    return SurfaceSamples(points, normals[face_index], face_index, w)


def farthest_point_sampling(
    points: torch.Tensor, k: int, *, start: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Greedy farthest-point sampling of ``k`` indices from ``points (N, D)``.

    Each step adds the point whose distance to the already chosen set is largest (the first such point on ties).
    ``O(N k)`` time, ``O(N)`` memory. Finite float32/float64 CPU points take a compiled loop when numba is
    installed (the same distances in the same order, so the same indices; ~10x faster for ``k`` in the hundreds);
    other inputs take the torch loop.

    Args:
        points: ``(N, D)``.
        k: number of points to choose, ``1 <= k <= N``.
        start: index of the first point; random (with ``generator``) when None.

    Returns:
        ``(k,)`` int64 indices.
    """
    n = points.shape[0]
    k = int(check_positive(k, "k"))
    if k > n:
        raise ValidationError(f"k: cannot choose {k} points out of {n}")
    p = points.detach()
    if start is None:
        start = int(torch.randint(n, (1,), generator=generator, device=p.device))
    compiled = p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) and p.dim() == 2
    if compiled and p.shape[1] > 0 and numba_available() and bool(torch.isfinite(p).all()):
        idx = torch.empty(k, dtype=torch.long)
        _fps_numba().fps(p.contiguous().numpy(), k, int(start), idx.numpy(), torch.empty(n, dtype=p.dtype).numpy())
        return idx
    idx = torch.empty(k, dtype=torch.long, device=p.device)
    idx[0] = start
    dist = ((p - p[start]) ** 2).sum(-1)
    for i in range(1, k):
        j = torch.argmax(dist)
        idx[i] = j
        dist = torch.minimum(dist, ((p - p[j]) ** 2).sum(-1))
    return idx


def _fps_numba():
    from geomot.ops import _fps_numba

    return _fps_numba
