"""Mesh-quality counts for deformations: self-intersecting faces (exact triangle-triangle tests) and faces whose
orientation flipped.

Triangle-triangle test: two non-coplanar triangles intersect iff an edge of one meets the other triangle (the
intersection segment on the line where their planes meet has its endpoints on edges). An edge ``pq`` meets
triangle ``abc`` iff ``orient(a, b, c, p)`` and ``orient(a, b, c, q)`` do not share a strict sign and the three
``orient(p, q, a, b)``, ``orient(p, q, b, c)``, ``orient(p, q, c, a)`` share a sign (the line crosses the
triangle), with ``orient(a, b, c, d) = det[b - a, c - a, d - a]``. These are the orientation predicates of
Devillers & Guigue, "Faster triangle-triangle intersection tests" (INRIA RR-4488, 2002). Coplanar pairs are
tested in 2-D (edge crossings and vertex containment). Touching counts as intersecting. Everything is
vectorised over candidate pairs, which a uniform grid of axis-aligned bounding boxes prunes.
Pairs of faces that share a vertex (hence also those sharing an edge) are adjacent, not intersecting.
"""

from __future__ import annotations

import numpy as np
import torch

from geomot._core.checks import describe
from geomot._core.errors import ShapeError, ValidationError
from geomot.structures import Mesh

__all__ = ["as_numpy_mesh", "flipped_faces", "intersecting_face_pairs", "self_intersections", "triangles_intersect"]


# -- input normalisation (shared with geomot.metrics.surface) ---------------------------------------------
def as_numpy_mesh(mesh: object, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """``(verts (V, 3) float64, faces (F, 3) int64)`` from a single :class:`Mesh` or a ``(verts, faces)`` pair of
    tensors / arrays; validated (finite positions, triangle faces with indices in range)."""
    if isinstance(mesh, Mesh):
        if len(mesh) != 1:
            raise ShapeError(f"{name}: expected a single mesh, got a batch of {len(mesh)}")
        v, f = mesh.verts, mesh.faces
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        v, f = mesh
    else:
        raise ShapeError(f"{name}: expected a Mesh or a (verts, faces) pair, got {describe(mesh)}")
    v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    f = f.detach().cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ShapeError(f"{name}: expected verts of shape (V, 3) with V > 0, got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0:
        raise ShapeError(f"{name}: expected faces of shape (F, 3) with F > 0, got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise ShapeError(f"{name}: expected integer faces, got dtype {f.dtype}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValidationError(f"{name}: verts contain {int((~np.isfinite(v)).sum())} NaN/Inf value(s)")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise ValidationError(f"{name}: face indices must lie in [0, {v.shape[0]}), got [{f.min()}, {f.max()}]")
    return v, f.astype(np.int64)


def _face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``(F, 3)`` unit face normals (zero for degenerate faces)."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def _orient3d(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``det[b - a, c - a, d - a]`` row-wise (positive when d lies on the side of abc's right-hand normal)."""
    return np.einsum("...i,...i->...", np.cross(b - a, c - a), d - a)


def _orient2d(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _edges_cross_triangle(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """``(P,)`` True where an edge of ``t1 (P, 3, 3)`` meets triangle ``t2 (P, 3, 3)`` (non-coplanar case)."""
    a, b, c = t2[:, 0], t2[:, 1], t2[:, 2]
    hit = np.zeros(t1.shape[0], dtype=bool)
    side = np.stack([_orient3d(a, b, c, t1[:, i]) for i in range(3)], 1)
    for i in range(3):
        p, q = t1[:, i], t1[:, (i + 1) % 3]
        sp, sq = side[:, i], side[:, (i + 1) % 3]
        straddle = (sp * sq <= 0) & ~((sp == 0) & (sq == 0))
        s1, s2, s3 = _orient3d(p, q, a, b), _orient3d(p, q, b, c), _orient3d(p, q, c, a)
        through = ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))
        hit |= straddle & through
    return hit


def _coplanar_overlap(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """``(P,)`` overlap of coplanar triangles, in the coordinate plane most orthogonal to their normal."""
    n = np.cross(t1[:, 1] - t1[:, 0], t1[:, 2] - t1[:, 0])
    drop = np.argmax(np.abs(n), axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[drop]  # (P, 2)
    rows = np.arange(t1.shape[0])[:, None, None]
    u = t1[rows, np.arange(3)[None, :, None], keep[:, None, :]]  # (P, 3, 2)
    w = t2[rows, np.arange(3)[None, :, None], keep[:, None, :]]
    hit = np.zeros(t1.shape[0], dtype=bool)
    for i in range(3):
        p, q = u[:, i], u[:, (i + 1) % 3]
        for j in range(3):
            r, s = w[:, j], w[:, (j + 1) % 3]
            o1, o2 = _orient2d(p, q, r), _orient2d(p, q, s)
            o3, o4 = _orient2d(r, s, p), _orient2d(r, s, q)
            hit |= (o1 * o2 <= 0) & (o3 * o4 <= 0) & ~((o1 == 0) & (o2 == 0))

    def inside(pt: np.ndarray, tri: np.ndarray) -> np.ndarray:
        d = np.stack([_orient2d(tri[:, k], tri[:, (k + 1) % 3], pt) for k in range(3)], 1)
        return (d >= 0).all(1) | (d <= 0).all(1)

    return hit | inside(u[:, 0], w) | inside(w[:, 0], u)


def triangles_intersect(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Exact intersection test of triangle pairs.

    Args:
        t1: ``(P, 3, 3)`` corners of the first triangles.
        t2: ``(P, 3, 3)`` corners of the second triangles.

    Returns:
        ``(P,)`` bool, True where ``t1[i]`` and ``t2[i]`` share at least one point.
    """
    t1 = np.asarray(t1, dtype=np.float64)
    t2 = np.asarray(t2, dtype=np.float64)
    s1 = np.stack([_orient3d(t2[:, 0], t2[:, 1], t2[:, 2], t1[:, i]) for i in range(3)], 1)
    s2 = np.stack([_orient3d(t1[:, 0], t1[:, 1], t1[:, 2], t2[:, i]) for i in range(3)], 1)
    separated = (s1 > 0).all(1) | (s1 < 0).all(1) | (s2 > 0).all(1) | (s2 < 0).all(1)
    coplanar = (s1 == 0).all(1)
    out = np.zeros(t1.shape[0], dtype=bool)
    gen = ~separated & ~coplanar
    if gen.any():
        out[gen] = _edges_cross_triangle(t1[gen], t2[gen]) | _edges_cross_triangle(t2[gen], t1[gen])
    if coplanar.any():
        out[coplanar] = _coplanar_overlap(t1[coplanar], t2[coplanar])
    return out


def _grid_pairs(lo: np.ndarray, hi: np.ndarray, *, max_cells: int = 64) -> np.ndarray:
    """Candidate pairs ``(K, 2)`` (``i < j``, unique) of boxes ``[lo, hi] (F, 3)`` sharing a cell of a uniform grid.

    Cell size: twice the median box extent. A box is inserted in every cell it overlaps; boxes overlapping more
    than ``max_cells`` cells (a few huge faces) are paired with every box by a direct overlap test instead.
    """
    n_faces = lo.shape[0]
    ext = (hi - lo).max(1)
    h = max(2.0 * float(np.median(ext)), 1e-12 * max(float(np.abs(hi).max()), 1.0), 1e-300)
    c0 = np.floor(lo / h).astype(np.int64)
    n = np.floor(hi / h).astype(np.int64) - c0 + 1
    count = n.prod(1)
    small = np.nonzero(count <= max_cells)[0]
    reps = count[small]
    face = np.repeat(small, reps)
    k = np.arange(face.size) - np.repeat(np.cumsum(reps) - reps, reps)
    nx, ny = n[face, 0], n[face, 1]
    cx, cy, cz = c0[face, 0] + k % nx, c0[face, 1] + (k // nx) % ny, c0[face, 2] + k // (nx * ny)
    order = np.lexsort((cz, cy, cx))
    face, cx, cy, cz = face[order], cx[order], cy[order], cz[order]
    new_cell = np.r_[True, (cx[1:] != cx[:-1]) | (cy[1:] != cy[:-1]) | (cz[1:] != cz[:-1])]
    cell = np.cumsum(new_cell)
    sizes = np.bincount(cell)
    out = []
    for d in range(1, int(sizes.max()) if sizes.size else 1):
        same = cell[:-d] == cell[d:]
        out.append(np.stack([face[:-d][same], face[d:][same]], 1))
    for b in np.nonzero(count > max_cells)[0]:
        hit = np.nonzero((lo <= hi[b]).all(1) & (lo[b] <= hi).all(1))[0]
        out.append(np.stack([np.full(hit.size, b), hit], 1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(out), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    key = np.unique(pairs[:, 0] * n_faces + pairs[:, 1])
    return np.stack([key // n_faces, key % n_faces], 1)


def intersecting_face_pairs(mesh: object, *, chunk: int = 1_000_000) -> np.ndarray:
    """Pairs of non-adjacent faces of one mesh that intersect.

    Candidates: faces whose axis-aligned bounding boxes share a cell of a uniform grid (:func:`_grid_pairs`),
    then overlapping boxes, then no shared vertex; each candidate gets the exact test of
    :func:`triangles_intersect`.

    Args:
        mesh: a single :class:`geomot.Mesh` or ``(verts (V, 3), faces (F, 3))``.
        chunk: candidate pairs tested per batch (memory bound).

    Returns:
        ``(K, 2)`` int64 face index pairs ``i < j``.
    """
    v, f = as_numpy_mesh(mesh, "mesh")
    tri = v[f]
    lo, hi = tri.min(1), tri.max(1)
    pairs = _grid_pairs(lo, hi)
    out = []
    for s in range(0, len(pairs), chunk):
        pr = pairs[s : s + chunk]
        i, j = pr[:, 0], pr[:, 1]
        keep = (lo[i] <= hi[j]).all(1) & (lo[j] <= hi[i]).all(1)
        shared = (f[i][:, :, None] == f[j][:, None, :]).any((1, 2))
        keep &= ~shared
        pr = pr[keep]
        if len(pr):
            out.append(pr[triangles_intersect(tri[pr[:, 0]], tri[pr[:, 1]])])
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def self_intersections(mesh: object) -> int:
    """Number of faces that intersect at least one non-adjacent face of the same mesh (0 for an embedded
    surface). See :func:`intersecting_face_pairs`."""
    return int(np.unique(intersecting_face_pairs(mesh)).size)


def flipped_faces(source: object, deformed: object) -> int:
    """Number of faces whose unit normal changed sign: ``n_source(f) . n_deformed(f) < 0`` (same faces).

    Degenerate faces (zero normal) in either mesh are not counted."""
    vs, fs = as_numpy_mesh(source, "source")
    vd, fd = as_numpy_mesh(deformed, "deformed")
    if fs.shape != fd.shape or not np.array_equal(fs, fd):
        raise ShapeError(f"deformed: expected the faces of source ({fs.shape}), got different faces {fd.shape}")
    return int(((_face_normals(vs, fs) * _face_normals(vd, fd)).sum(1) < 0).sum())
