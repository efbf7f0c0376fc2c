"""Surface-to-surface metrics for deformations: exact point-to-triangle distances, Chamfer, Hausdorff and its
90th percentile (HD90), average symmetric surface distance (ASSD), normal consistency, and the mesh-quality
counts of :mod:`geomot.metrics.intersections` (self-intersecting and flipped faces).

These are evaluation metrics (numpy, float64, not differentiable); the differentiable Chamfer loss lives in
``geomot.losses``. Point-to-surface distances are exact: every query point gets the Euclidean distance to the
closest point of the closest triangle (Ericson, "Real-Time Collision Detection", 2005, Sec. 5.1.5), the candidate
triangles being pruned with a k-d tree on the face centroids and a bound that makes the pruning exact.

Conventions of cortical-surface reconstruction (CortexODE, Ma et al. 2022; Le et al., ICLR 2024): distances are
taken from the vertices of one surface to the other surface, in both directions;
``ASSD = (mean d_AB + mean d_BA) / 2``, ``HD = max(max d_AB, max d_BA)``,
``HD90 = max(P90(d_AB), P90(d_BA))``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree

from geomot._core.errors import ShapeError, ValidationError
from geomot.metrics.intersections import _face_normals, as_numpy_mesh, flipped_faces, self_intersections

__all__ = [
    "PointSurfaceDistance",
    "SurfaceMetrics",
    "assd",
    "chamfer",
    "hausdorff",
    "hd90",
    "normal_consistency",
    "point_to_surface",
    "point_triangle_distance",
    "surface_metrics",
]


class PointSurfaceDistance(NamedTuple):
    """Result of :func:`point_to_surface`.

    Attributes:
        distance: ``(P,)`` Euclidean distance from each query point to the surface.
        closest: ``(P, 3)`` closest point on the surface.
        face_index: ``(P,)`` int64 index of the triangle holding the closest point.
    """

    distance: np.ndarray
    closest: np.ndarray
    face_index: np.ndarray


class SurfaceMetrics(NamedTuple):
    """Result of :func:`surface_metrics` (lengths in the meshes' unit).

    Attributes:
        assd: average symmetric surface distance.
        hd90: 90th-percentile Hausdorff distance.
        hausdorff: Hausdorff distance (over the vertices of both meshes).
        chamfer: symmetric mean squared nearest-vertex distance.
        normal_consistency: mean ``|n_A . n_B|`` between a face normal and that of the closest face, in [0, 1].
        self_intersections: number of faces of the first mesh that cross a non-adjacent face of the same mesh.
        flipped_faces: faces whose normal turned by more than 90 degrees w.r.t. ``reference`` (-1 when none given).
    """

    assd: float
    hd90: float
    hausdorff: float
    chamfer: float
    normal_consistency: float
    self_intersections: int
    flipped_faces: int


# -- exact point-triangle distance -------------------------------------------------------------------------
def _closest_on_segments(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Closest points ``(..., 3)`` of segments ``[a, b]`` to ``p`` (zero-length segments give ``a``)."""
    ab = b - a
    den = np.einsum("...i,...i->...", ab, ab)
    t = np.divide(np.einsum("...i,...i->...", p - a, ab), den, out=np.zeros_like(den), where=den > 0)
    return a + np.clip(t, 0.0, 1.0)[..., None] * ab


def point_triangle_distance(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance from each point to its own triangle (row-wise).

    The closest point of triangle ``abc`` to ``p`` is the orthogonal projection of ``p`` onto the plane when its
    barycentric coordinates ``(u, v, w)`` are all non-negative; otherwise it lies on the boundary and is the closest
    of the three segment projections ``a + clip(t, 0, 1) (b - a)``, ``t = (p - a).(b - a) / |b - a|^2``.
    Degenerate (zero-area) triangles fall back to their edges, so no NaN is produced.

    Args:
        points: ``(..., 3)`` query points.
        triangles: ``(..., 3, 3)`` corners (same leading shape).

    Returns:
        ``distance (...)`` and ``closest (..., 3)``.
    """
    p = np.asarray(points, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.float64)
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    n = np.cross(ab, ac)
    nn = np.einsum("...i,...i->...", n, n)
    ok = nn > 1e-300
    s = np.divide(np.einsum("...i,...i->...", ap, n), nn, out=np.zeros_like(nn), where=ok)
    proj = p - s[..., None] * n
    # barycentric coordinates of the projection: v = ((proj-a) x ac).n / |n|^2 ... via cross products
    q = proj - a
    v = np.divide(np.einsum("...i,...i->...", np.cross(q, ac), n), nn, out=np.zeros_like(nn), where=ok)
    w = np.divide(np.einsum("...i,...i->...", np.cross(ab, q), n), nn, out=np.zeros_like(nn), where=ok)
    inside = ok & (v >= 0) & (w >= 0) & (v + w <= 1)
    cands = np.stack(
        [_closest_on_segments(p, a, b), _closest_on_segments(p, b, c), _closest_on_segments(p, c, a)], axis=-2
    )
    d2 = ((cands - p[..., None, :]) ** 2).sum(-1)
    k = np.argmin(d2, axis=-1)
    edge_pt = np.take_along_axis(cands, k[..., None, None].repeat(3, -1), axis=-2)[..., 0, :]
    closest = np.where(inside[..., None], proj, edge_pt)
    return np.linalg.norm(p - closest, axis=-1), closest


def point_to_surface(points: object, surface: object, *, k: int = 8) -> PointSurfaceDistance:
    """Exact Euclidean distance from points to a triangle surface.

    ``d(p, S) = min_f d(p, T_f)`` with :func:`point_triangle_distance`. Candidates: the ``k`` faces with the
    nearest centroids (k-d tree). With ``R = max_f max_i |c_f - v_{f,i}|``, a face not visited has distance at
    least ``|p - c_(k)| - R``; queries whose best distance exceeds that bound are re-searched with every face
    whose centroid lies within ``d_best + R``, so the result is exact.

    Args:
        points: ``(P, 3)`` array or tensor.
        surface: a single :class:`Mesh` or ``(verts (V, 3), faces (F, 3))``.
        k: number of nearest centroids examined first (speed only, not accuracy).

    Returns:
        :class:`PointSurfaceDistance` with numpy arrays.
    """
    v, f = as_numpy_mesh(surface, "surface")
    p = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    p = p.astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ShapeError(f"points: expected shape (P, 3), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValidationError(f"points: contain {int((~np.isfinite(p)).sum())} NaN/Inf value(s)")
    tri = v[f]
    cent = tri.mean(1)
    rad = np.linalg.norm(tri - cent[:, None, :], axis=-1).max(1)
    # faces much larger than the typical one (e.g. stretched by a bad deformation) are tested against every point,
    # so that they do not inflate the pruning bound of all the others
    big = rad > 4.0 * float(np.median(rad)) + 1e-300
    if big.sum() > max(64, f.shape[0] // 100):
        big[:] = False
    small = np.nonzero(~big)[0]
    radius = float(rad[small].max()) if small.size else 0.0
    tree = cKDTree(cent[small])
    k = int(min(max(k, 1), small.size))
    dc, idx = tree.query(p, k=k)
    dc, idx = dc.reshape(len(p), k), small[idx.reshape(len(p), k)]
    d, cp = point_triangle_distance(np.repeat(p[:, None, :], k, 1), tri[idx])
    j = np.argmin(d, axis=1)
    rows = np.arange(len(p))
    best_d, best_f, best_c = d[rows, j], idx[rows, j], cp[rows, j]
    for g in np.nonzero(big)[0]:
        dg, cg = point_triangle_distance(p, np.broadcast_to(tri[g], (len(p), 3, 3)))
        sel = dg < best_d
        best_d[sel], best_f[sel], best_c[sel] = dg[sel], g, cg[sel]
    redo = np.nonzero((best_d > dc[:, -1] - radius) & (k < small.size))[0]
    if redo.size:  # exact re-search, in chunks of at most ~1M (point, face) candidates
        lengths = tree.query_ball_point(p[redo], best_d[redo] + radius + 1e-12, return_length=True)
        cuts = np.searchsorted(np.cumsum(lengths), np.arange(1, 1 + int(lengths.sum()) // 1_000_000) * 1_000_000)
        for chunk in np.split(redo, np.unique(cuts[(cuts > 0) & (cuts < redo.size)])):
            balls = tree.query_ball_point(p[chunk], best_d[chunk] + radius + 1e-12)
            counts = np.array([len(b) for b in balls])
            owner = np.repeat(np.arange(chunk.size), counts)
            cand = small[np.concatenate([np.asarray(b, dtype=np.int64) for b in balls])]
            dd, cc = point_triangle_distance(p[chunk][owner], tri[cand])
            order = np.lexsort((dd, owner))
            first = order[np.r_[0, np.cumsum(counts)[:-1]]]
            better = dd[first] < best_d[chunk]
            sel = chunk[better]
            best_d[sel], best_f[sel], best_c[sel] = dd[first][better], cand[first][better], cc[first][better]
    return PointSurfaceDistance(best_d, best_c, best_f.astype(np.int64))


# -- distances between surfaces ----------------------------------------------------------------------------
def _two_way(a: object, b: object) -> tuple[PointSurfaceDistance, PointSurfaceDistance, tuple, tuple]:
    ma, mb = as_numpy_mesh(a, "a"), as_numpy_mesh(b, "b")
    return point_to_surface(ma[0], mb), point_to_surface(mb[0], ma), ma, mb


def assd(a: object, b: object) -> float:
    """Average symmetric surface distance ``(mean_{x in V_A} d(x, B) + mean_{y in V_B} d(y, A)) / 2`` (exact
    point-to-triangle distances). ``a``, ``b``: single meshes or ``(verts, faces)`` pairs."""
    ab, ba, _, _ = _two_way(a, b)
    return float(0.5 * (ab.distance.mean() + ba.distance.mean()))


def hausdorff(a: object, b: object, *, percentile: float = 100.0) -> float:
    """Symmetric Hausdorff distance ``max(P_q(d(V_A, B)), P_q(d(V_B, A)))`` over vertex-to-surface distances;
    ``percentile = 100`` is the classical Hausdorff distance, 90 gives :func:`hd90`."""
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValidationError(f"percentile: expected a value in [0, 100], got {percentile!r}")
    ab, ba, _, _ = _two_way(a, b)
    return float(max(np.percentile(ab.distance, percentile), np.percentile(ba.distance, percentile)))


def hd90(a: object, b: object) -> float:
    """90th-percentile Hausdorff distance ``max(P90(d(V_A, B)), P90(d(V_B, A)))``."""
    return hausdorff(a, b, percentile=90.0)


def chamfer(a: object, b: object) -> float:
    """Symmetric Chamfer distance between the vertex sets:
    ``mean_x min_y |x - y|^2 + mean_y min_x |x - y|^2`` (squared; nearest vertices, k-d tree)."""
    (va, _), (vb, _) = as_numpy_mesh(a, "a"), as_numpy_mesh(b, "b")
    d_ab = cKDTree(vb).query(va)[0]
    d_ba = cKDTree(va).query(vb)[0]
    return float((d_ab**2).mean() + (d_ba**2).mean())


def _nc_one_way(va: np.ndarray, fa: np.ndarray, vb: np.ndarray, fb: np.ndarray) -> float:
    near = point_to_surface(va[fa].mean(1), (vb, fb)).face_index
    return float(np.abs((_face_normals(va, fa) * _face_normals(vb, fb)[near]).sum(-1)).mean())


def normal_consistency(a: object, b: object) -> float:
    """``(mean_f |n_A(f) . n_B(pi_B c_f)| + mean_g |n_B(g) . n_A(pi_A c_g)|) / 2``: the normal of each face against
    that of the face of the other surface closest to its centroid (1 = aligned tangent planes; unsigned, so an
    orientation flip is not penalised here — see :func:`flipped_faces`)."""
    (va, fa), (vb, fb) = as_numpy_mesh(a, "a"), as_numpy_mesh(b, "b")
    return 0.5 * (_nc_one_way(va, fa, vb, fb) + _nc_one_way(vb, fb, va, fa))


def surface_metrics(pred: object, target: object, *, reference: object | None = None) -> SurfaceMetrics:
    """All the metrics of a deformation result at once (one pair of distance queries).

    Args:
        pred: the deformed mesh (single :class:`Mesh` or ``(verts, faces)``).
        target: the target surface.
        reference: the undeformed source with the same faces as ``pred``, for :func:`flipped_faces`.

    Returns:
        :class:`SurfaceMetrics`.
    """
    ab, ba, (va, fa), (vb, fb) = _two_way(pred, target)
    d_ab, d_ba = ab.distance, ba.distance
    ch_ab = cKDTree(vb).query(va)[0]
    ch_ba = cKDTree(va).query(vb)[0]
    return SurfaceMetrics(
        assd=float(0.5 * (d_ab.mean() + d_ba.mean())),
        hd90=float(max(np.percentile(d_ab, 90), np.percentile(d_ba, 90))),
        hausdorff=float(max(d_ab.max(), d_ba.max())),
        chamfer=float((ch_ab**2).mean() + (ch_ba**2).mean()),
        normal_consistency=0.5 * (_nc_one_way(va, fa, vb, fb) + _nc_one_way(vb, fb, va, fa)),
        self_intersections=self_intersections((va, fa)),
        flipped_faces=-1 if reference is None else flipped_faces(reference, (va, fa)),
    )
