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
weigh nothing). Small-scale noise of a map (neighbouring vertices sent a few vertices apart in the wrong order)
produces both signs and mostly cancels; a mirror map gives a score near ``-1``, a correct one a clearly positive
score (about ``0.8`` to ``0.9`` for ZoomOut maps between FAUST humans).

Meshes whose faces are not consistently oriented make the score meaningless; callers should fall back to
another criterion for them (``geomot.correspondence.match`` does so for point clouds).
"""

from __future__ import annotations

import torch

from geomot._core.checks import check_index_tensor
from geomot._core.errors import ShapeError
from geomot.ops.geometry import vertex_normals

__all__ = ["consistently_oriented", "map_orientation_score", "mapped_signed_areas", "signed_volume"]


def _check_mesh(verts: torch.Tensor, faces: torch.Tensor, name: str) -> None:
    if not isinstance(verts, torch.Tensor) or verts.dim() != 2 or verts.shape[-1] != 3:
        raise ShapeError(f"{name} verts: expected a (V, 3) tensor, got shape {tuple(getattr(verts, 'shape', ()))}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ShapeError(f"{name} faces: expected a (F, 3) tensor, got shape {tuple(getattr(faces, 'shape', ()))}")
    check_index_tensor(faces, f"{name} faces", size=verts.shape[0])


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
        verts_src: ``(V_src, 3)`` (only its count is used); faces_src: ``(F_src, 3)``.
        verts_tgt: ``(V_tgt, 3)``; faces_tgt: ``(F_tgt, 3)``, consistently oriented.
        normals_tgt: optional precomputed ``(V_tgt, 3)`` vertex normals of the target.
    """
    _check_mesh(verts_src, faces_src, "source")
    _check_mesh(verts_tgt, faces_tgt, "target")
    if not isinstance(p2p, torch.Tensor) or p2p.shape != (verts_src.shape[0],):
        raise ShapeError(f"p2p: expected shape ({verts_src.shape[0]},), got {tuple(getattr(p2p, 'shape', ()))}")
    p2p = check_index_tensor(p2p, "p2p", size=verts_tgt.shape[0]).long()
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
    normals_tgt: torch.Tensor | None = None,
) -> float:
    """Orientation score of a vertex map, ``sum_f s_f / sum_f |s_f|`` in ``[-1, 1]`` (see the module docstring).

    ``+1``: every mapped triangle keeps its orientation; ``-1``: every one is reversed (a mirror map); near 0: a
    mixed or collapsed map. NaN when every mapped triangle is degenerate. Invariant to rigid motions, scaling and
    mirror images of either embedding; it assumes consistently oriented meshes.

    Args:
        p2p: ``(V_src,)`` the target vertex of each source vertex.
        verts_src: ``(V_src, 3)``; faces_src: ``(F_src, 3)``; verts_tgt: ``(V_tgt, 3)``; faces_tgt: ``(F_tgt, 3)``.
        normals_tgt: optional precomputed target vertex normals.
    """
    s = mapped_signed_areas(p2p, verts_src, faces_src, verts_tgt, faces_tgt, normals_tgt=normals_tgt)
    den = float(s.abs().sum())
    return float(s.sum()) / den if den > 0 else float("nan")


def consistently_oriented(faces: torch.Tensor) -> bool:
    """Whether the faces of a triangle mesh are consistently wound: no directed edge ``u -> v`` is used by two faces.

    Two faces sharing an edge must traverse it in opposite directions when their windings agree; a repeated
    directed edge means a flipped face (or a non-manifold edge). Isolated faces and boundaries are fine.

    Args:
        faces: ``(F, 3)`` integer triangles.
    """
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ShapeError(f"faces: expected a (F, 3) tensor, got shape {tuple(getattr(faces, 'shape', ()))}")
    f = faces.long()
    if f.numel() == 0:
        return True
    n = int(f.max()) + 1
    directed = torch.cat([f[:, 0] * n + f[:, 1], f[:, 1] * n + f[:, 2], f[:, 2] * n + f[:, 0]])
    return int(torch.unique(directed).numel()) == int(directed.numel())


def signed_volume(verts: torch.Tensor, faces: torch.Tensor) -> float:
    """Signed volume ``sum_f (v0 - c) . ((v1 - c) x (v2 - c)) / 6`` about the centroid ``c`` of the vertices.

    Positive for a closed, consistently oriented mesh whose normals point outwards, negative when they point
    inwards; for open meshes it still tells which side the normals face on the balance. Invariant to rigid motions.

    Args:
        verts: ``(V, 3)``; faces: ``(F, 3)``.
    """
    _check_mesh(verts, faces, "mesh")
    v = verts - verts.mean(0)
    t = v[faces.long()]
    return float((t[:, 0] * torch.linalg.cross(t[:, 1], t[:, 2], dim=-1)).sum()) / 6.0
