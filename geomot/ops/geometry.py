"""Triangle-mesh geometry on tensors: face areas and normals, vertex normals, lumped vertex areas, edges,
face adjacency, boundary loops and vertices, centring / unit-area scaling, removal of unreferenced vertices.

All functions take ``verts (V, 3)`` / ``faces (F, 3)`` (int64) or padded batches ``(B, V, 3)`` / ``(B, F, 3)``
where it is stated. Zero-area faces give zero normals, never NaN; NaN/Inf positions give NaN (never a finite
area or normal).
"""

from __future__ import annotations

import torch

from geomot._core.errors import ShapeError

__all__ = [
    "boundary_loops",
    "boundary_vertices",
    "center_and_scale",
    "edges",
    "face_adjacency",
    "face_areas",
    "face_areas_normals",
    "face_centroids",
    "face_normals",
    "remove_unreferenced_vertices",
    "total_area",
    "vertex_areas",
    "vertex_normals",
]

_EPS = 1e-20


def _gather_corners(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Corner positions ``(..., F, 3)`` each; works for ``(V,3)/(F,3)`` and padded ``(B,V,3)/(B,F,3)``."""
    if verts.dim() == 2:
        tri = verts[faces]  # (F, 3, 3)
    elif verts.dim() == 3:
        if faces.dim() != 3 or faces.shape[0] != verts.shape[0]:
            raise ShapeError(f"faces: expected shape ({verts.shape[0]}, F, 3), got {tuple(faces.shape)}")
        b = torch.arange(verts.shape[0], device=verts.device)[:, None, None]
        tri = verts[b, faces]  # (B, F, 3, 3)
    else:
        raise ShapeError(f"verts: expected a (V, 3) or (B, V, 3) tensor, got shape {tuple(verts.shape)}")
    return tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]


def face_areas_normals(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Face areas and unit normals.

    ``n_f = (v1 - v0) x (v2 - v0)``, ``area_f = |n_f| / 2``, ``normal_f = n_f / |n_f|`` (zero for degenerate faces,
    with zero gradient there instead of NaN).

    Args:
        verts: ``(V, 3)`` or ``(B, V, 3)``.
        faces: ``(F, 3)`` or ``(B, F, 3)`` int64.

    Returns:
        ``areas (..., F)``, ``normals (..., F, 3)``.
    """
    v0, v1, v2 = _gather_corners(verts, faces)
    cross = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    sq = (cross * cross).sum(-1)
    nonzero = ~(sq <= _EPS)  # NaN stays NaN (a NaN corner must not give a zero normal)
    safe_sq = torch.where(nonzero, sq, torch.ones_like(sq))
    norm = torch.where(nonzero, safe_sq.sqrt(), torch.zeros_like(sq))
    normals = torch.where(nonzero[..., None], cross / safe_sq.sqrt()[..., None], torch.zeros_like(cross))
    return 0.5 * norm, normals


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Face areas ``(..., F)``; see :func:`face_areas_normals`."""
    return face_areas_normals(verts, faces)[0]


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals ``(..., F, 3)``; see :func:`face_areas_normals`."""
    return face_areas_normals(verts, faces)[1]


def face_centroids(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Face centroids ``(v0 + v1 + v2) / 3``, shape ``(..., F, 3)``."""
    v0, v1, v2 = _gather_corners(verts, faces)
    return (v0 + v1 + v2) / 3.0


def _scatter_faces(values: torch.Tensor, faces: torch.Tensor, n_verts: int) -> torch.Tensor:
    """Sum per-face values ``(F, *C)`` onto the 3 corners of each face: ``(V, *C)``."""
    out = values.new_zeros((n_verts, *values.shape[1:]))
    idx = faces.reshape(-1)
    rep = values.unsqueeze(1).expand(values.shape[0], 3, *values.shape[1:]).reshape(-1, *values.shape[1:])
    return out.index_add(0, idx, rep)


def vertex_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Lumped (barycentric) vertex areas: a third of the area of each incident face. ``(V,)`` for ``(V, 3)``."""
    if verts.dim() != 2:
        raise ShapeError(f"verts: expected shape (V, 3), got {tuple(verts.shape)}")
    return _scatter_faces(face_areas(verts, faces) / 3.0, faces, verts.shape[0])


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals ``(V, 3)``: normalised sum of the (area-scaled) normals of incident faces.

    Isolated vertices get a zero normal.
    """
    if verts.dim() != 2:
        raise ShapeError(f"verts: expected shape (V, 3), got {tuple(verts.shape)}")
    v0, v1, v2 = _gather_corners(verts, faces)
    cross = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)  # 2 * area * normal
    acc = _scatter_faces(cross, faces, verts.shape[0])
    sq = (acc * acc).sum(-1, keepdim=True)
    ok = ~(sq <= _EPS)
    return torch.where(ok, acc / torch.where(ok, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(acc))


def total_area(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Total surface area (sum of face areas), shape ``(...)``."""
    return face_areas(verts, faces).sum(-1)


def center_and_scale(
    verts: torch.Tensor, faces: torch.Tensor | None = None, *, unit_area: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre a shape and scale it.

    With faces and ``unit_area``: centre = area-weighted centroid, scale so that the total area is 1. Otherwise:
    centre = mean of the points, scale so that the RMS distance to the centre is 1.

    Returns:
        ``(verts_normalised (V, 3), center (3,), scale ())`` with ``verts_normalised = (verts - center) / scale``.
    """
    if verts.dim() != 2:
        raise ShapeError(f"verts: expected shape (V, 3), got {tuple(verts.shape)}")
    if faces is not None and faces.numel() and unit_area:
        areas = face_areas(verts, faces)
        a = areas.sum()
        center = (face_centroids(verts, faces) * areas[:, None]).sum(0) / a.clamp_min(_EPS)
        scale = a.clamp_min(_EPS).sqrt()
    else:
        center = verts.mean(0)
        scale = ((verts - center) ** 2).sum(-1).mean().clamp_min(_EPS).sqrt()
    return (verts - center) / scale, center, scale


def edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``(E, 2)`` (sorted pairs, int64) of a triangle list ``(F, 3)``."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    # one int64 key per edge: a 1-D unique is ~20x cheaper than unique(dim=0) on rows
    n = int(e.max()) + 1 if e.numel() else 1
    key = torch.unique(e[:, 0] * n + e[:, 1])
    return torch.stack([torch.div(key, n, rounding_mode="floor"), key % n], 1)


def _half_edge_keys(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``3F`` half-edges ``(3F, 2)`` (face order: edges 01, 12, 20 of every face) and one int64 key per
    undirected edge."""
    half = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    srt = torch.sort(half, dim=1).values
    n = int(srt.max()) + 1 if srt.numel() else 1
    return half, srt[:, 0] * n + srt[:, 1]


def face_adjacency(faces: torch.Tensor) -> torch.Tensor:
    """Pairs of faces that share an edge, ``(P, 2)`` int64 (every pair around a non-manifold edge).

    Works on packed batches too (faces of different meshes never share a vertex, hence never an edge).
    Builds its index with a ``unique`` and reads the largest edge multiplicity back to the host: compute it once
    per connectivity (:meth:`geomot.structures.Mesh.topology` caches it).

    Args:
        faces: ``(F, 3)`` int64.
    """
    nf = faces.shape[0]
    if nf == 0:
        return faces.new_zeros((0, 2))
    _, key = _half_edge_keys(faces)
    fid = torch.arange(nf, device=faces.device).repeat(3)
    _, inv, counts = torch.unique(key, return_inverse=True, return_counts=True)
    order = torch.argsort(inv, stable=True)
    inv_s, fid_s = inv[order], fid[order]
    pairs = [faces.new_zeros((0, 2))]
    for d in range(1, int(counts.max())):
        same = inv_s[d:] == inv_s[:-d]
        pairs.append(torch.stack([fid_s[:-d][same], fid_s[d:][same]], 1))
    return torch.cat(pairs, 0)


def boundary_vertices(faces: torch.Tensor, n_verts: int) -> torch.Tensor:
    """``(V,)`` bool, True on the vertices of the edges used by exactly one face (the boundary of an open surface).

    Args:
        faces: ``(F, 3)`` int64.
        n_verts: ``V``.
    """
    half, key = _half_edge_keys(faces)
    _, inv, counts = torch.unique(key, return_inverse=True, return_counts=True)
    out = torch.zeros(n_verts, dtype=torch.bool, device=faces.device)
    out[half[counts[inv] == 1].reshape(-1)] = True
    return out


def boundary_loops(faces: torch.Tensor) -> list[torch.Tensor]:
    """Boundary loops of a triangle mesh: edges used by exactly one face, chained into closed vertex cycles.

    Returns:
        a list of int64 tensors of vertex indices, one per loop (empty list for a closed surface).
    """
    f = faces.detach().cpu()
    half = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    key = torch.sort(half, dim=1).values
    _, inv, counts = torch.unique(key, dim=0, return_inverse=True, return_counts=True)
    bnd = half[counts[inv] == 1].tolist()
    nxt: dict[int, int] = {}
    for a, b in bnd:
        nxt[a] = b
    loops: list[torch.Tensor] = []
    seen: set[int] = set()
    for start in list(nxt):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        cur = nxt[start]
        while cur != start and cur in nxt and cur not in seen:
            loop.append(cur)
            seen.add(cur)
            cur = nxt[cur]
        loops.append(torch.tensor(loop, dtype=torch.long))
    return loops


def remove_unreferenced_vertices(
    verts: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop vertices that no face references.

    Returns:
        ``(verts_kept (V', 3), faces_reindexed (F, 3), kept_index (V',))`` where ``verts_kept = verts[kept_index]``.
    """
    used = torch.zeros(verts.shape[0], dtype=torch.bool, device=verts.device)
    used[faces.reshape(-1)] = True
    kept = torch.nonzero(used).squeeze(1)
    remap = torch.full((verts.shape[0],), -1, dtype=torch.long, device=verts.device)
    remap[kept] = torch.arange(kept.shape[0], device=verts.device)
    return verts[kept], remap[faces], kept
