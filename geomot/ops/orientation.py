"""Orientation of a vertex-to-vertex map between two triangle meshes: does it keep or reverse orientation?

Both meshes are assumed consistently oriented (every face wound the same way, normals pointing the same side).
A map ``T`` from a source mesh to a target mesh sends each source triangle ``(i, j, k)`` to the points
``T(i), T(j), T(k)`` of the target. Its signed area with respect to the target's outward side,

    ``s_f = ((T(j) - T(i)) x (T(k) - T(i))) . (n_T(i) + n_T(j) + n_T(k))``,

is positive when the map keeps orientation there and negative when it reverses it (a left-right flip of a human
or an animal reverses it almost everywhere). ``s_f`` is invariant to rigid motions and to mirror images of
either embedding (a reflection changes the sign of both the cross product and the normals computed from the
faces), so only the winding of the faces matters.

:func:`map_orientation_score` sums the signed areas: ``sum_f s_f / sum_f |s_f|`` in ``[-1, 1]`` (the area-weighted
balance of kept and reversed triangles; degenerate images, where two corners land on the same target vertex,
weigh nothing), optionally on coarser triangles (``ring > 1``) so that a noisy map is judged at a larger scale.
"""

from __future__ import annotations

import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.ops.geometry import vertex_normals

__all__ = ["coarse_triangles", "map_orientation_score", "mapped_signed_areas"]


def _check_mesh(verts: torch.Tensor, faces: torch.Tensor, name: str) -> None:
    if not isinstance(verts, torch.Tensor) or verts.dim() != 2 or verts.shape[-1] != 3:
        raise ShapeError(f"{name} verts: expected a (V, 3) tensor, got shape {tuple(getattr(verts, 'shape', ()))}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ShapeError(f"{name} faces: expected a (F, 3) tensor, got shape {tuple(getattr(faces, 'shape', ()))}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
        raise ValidationError(f"{name} faces: indices must lie in [0, {verts.shape[0]})")


def coarse_triangles(faces: torch.Tensor, n_verts: int, ring: int) -> torch.Tensor:
    """Larger triangles with the winding of ``faces``: ``(F, 3)`` int64.

    Each corner of face ``(a, b, c)`` is pushed ``ring - 1`` steps away from the face's first corner along the
    mesh: corner ``b`` moves to the neighbour of ``b`` farthest (in graph steps, then in index order) from ``a``...
    which needs a geodesic notion. A cheap, well-defined alternative is used instead: corner ``b`` is replaced by
    the vertex reached by repeating the step ``a -> b`` through the faces, i.e. the triangle ``(a, b, c)`` is
    scaled about ``a`` by walking ``ring - 1`` more edges from ``b`` away from ``a`` (and from ``c`` likewise),
    choosing at each step the unvisited neighbour with the most common neighbours of the previous two vertices'
    direction. For simplicity and robustness this implementation uses the ``ring``-th power of the vertex
    adjacency restricted to the face's own directions: the new corners are ``b' = walk(a, b)`` and
    ``c' = walk(a, c)`` where ``walk`` follows, ``ring - 1`` times, the edge opposite to the previous vertex in a
    face containing the current edge. With ``ring = 1`` the faces are returned unchanged.

    Args:
        faces: ``(F, 3)`` int64 triangles of a manifold mesh.
        n_verts: number of vertices.
        ring: scale (``>= 1``).
    """
    if isinstance(ring, bool) or not isinstance(ring, int) or ring < 1:
        raise ValidationError(f"ring: expected an integer >= 1, got {ring!r}")
    faces = faces.long()
    if ring == 1:
        return faces
    # half-edge (u, v) -> the third vertex w of the face that holds u -> v; the face on the other side of edge uv
    # holds v -> u with third vertex w'. Walking "straight on" from u through v: take the face across edge (v, w)
    # is ill-defined on a triangle mesh, so we step to the vertex opposite u across the edge (v, w) of the face
    # (u, v, w): the far vertex of the neighbouring face that shares edge (v, w).
    u, v, w = faces[:, 0], faces[:, 1], faces[:, 2]
    he_src = torch.cat([u, v, w])
    he_dst = torch.cat([v, w, u])
    he_opp = torch.cat([w, u, v])
    key = he_src * n_verts + he_dst
    order = key.argsort()
    skey = key[order]

    def third(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Third vertex of the face holding the half-edge ``a -> b`` (``-1`` where there is none)."""
        q = a * n_verts + b
        pos = torch.searchsorted(skey, q).clamp_max(skey.numel() - 1)
        ok = skey[pos] == q
        return torch.where(ok, he_opp[order[pos]], torch.full_like(q, -1))

    def walk(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        prev, cur = a, b
        for _ in range(ring - 1):
            # the face b -> x -> ... on the far side: the two faces around edge (cur, t) where t is the third vertex
            # of (prev, cur); the vertex opposite prev across edge (cur, t) lies roughly "beyond" cur.
            t = third(prev, cur)
            nxt = third(t, cur) if True else t
            good = (t >= 0) & (nxt >= 0)
            nxt = torch.where(good, nxt, cur)
            prev, cur = torch.where(good, cur, prev), nxt
        return cur

    return torch.stack([u, walk(u, v), walk(u, w)], 1)


def mapped_signed_areas(
    p2p: torch.Tensor,
    verts_src: torch.Tensor,
    faces_src: torch.Tensor,
    verts_tgt: torch.Tensor,
    faces_tgt: torch.Tensor,
    *,
    normals_tgt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Signed areas of the source triangles mapped to the target, ``(F_src,)``.

    ``s_f = ((T(j) - T(i)) x (T(k) - T(i))) . (n_T(i) + n_T(j) + n_T(k))`` for each source face ``f = (i, j, k)``,
    ``T(i) = verts_tgt[p2p[i]]``, ``n`` the area-weighted vertex normals of the target. Positive: orientation kept.

    Args:
        p2p: ``(V_src,)`` int64, the target vertex of each source vertex.
        verts_src: ``(V_src, 3)`` (only its count is used); faces_src: ``(F_src, 3)`` (any triangles, e.g. from
            :func:`coarse_triangles`).
        verts_tgt: ``(V_tgt, 3)``; faces_tgt: ``(F_tgt, 3)``, consistently oriented.
        normals_tgt: optional precomputed ``(V_tgt, 3)`` vertex normals of the target.
    """
    _check_mesh(verts_src, faces_src, "source")
    _check_mesh(verts_tgt, faces_tgt, "target")
    if not isinstance(p2p, torch.Tensor) or p2p.shape != (verts_src.shape[0],):
        raise ShapeError(f"p2p: expected shape ({verts_src.shape[0]},), got {tuple(getattr(p2p, 'shape', ()))}")
    p2p = p2p.long()
    if p2p.numel() and (int(p2p.min()) < 0 or int(p2p.max()) >= verts_tgt.shape[0]):
        raise ValidationError(f"p2p: indices must lie in [0, {verts_tgt.shape[0]})")
    if normals_tgt is None:
        normals_tgt = vertex_normals(verts_tgt, faces_tgt)
    idx = p2p[faces_src.long()]  # (F, 3) target vertices
    t = verts_tgt[idx]
    cross = torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1)
    return (cross * normals_tgt[idx].sum(1)).sum(-1)


def map_orientation_score(
    p2p: torch.Tensor,
    verts_src: torch.Tensor,
    faces_src: torch.Tensor,
    verts_tgt: torch.Tensor,
    faces_tgt: torch.Tensor,
    *,
    ring: int = 1,
    normals_tgt: torch.Tensor | None = None,
) -> float:
    """Orientation score of a vertex map, ``sum_f s_f / sum_f |s_f|`` in ``[-1, 1]`` (see the module docstring).

    ``+1``: every mapped triangle keeps its orientation; ``-1``: every one is reversed (a mirror map); near 0: a
    mixed or collapsed map. NaN when every mapped triangle is degenerate. Invariant to rigid motions, scaling and
    mirror images of either embedding; it assumes consistently oriented meshes.

    Args:
        p2p: ``(V_src,)`` the target vertex of each source vertex.
        verts_src: ``(V_src, 3)``; faces_src: ``(F_src, 3)``; verts_tgt: ``(V_tgt, 3)``; faces_tgt: ``(F_tgt, 3)``.
        ring: judge the map on the coarser triangles of :func:`coarse_triangles` (robust to small-scale noise).
        normals_tgt: optional precomputed target vertex normals.
    """
    tri = coarse_triangles(faces_src, verts_src.shape[0], ring)
    s = mapped_signed_areas(p2p, verts_src, tri, verts_tgt, faces_tgt, normals_tgt=normals_tgt)
    den = float(s.abs().sum())
    return float(s.sum()) / den if den > 0 else float("nan")
