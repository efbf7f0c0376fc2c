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
another criterion for them.

Point clouds have no faces to wind. :func:`oriented_normals` gives them consistently oriented outward normals
(principal-axis normals, signs propagated along a minimum spanning tree as in Hoppe et al. 1992, "Surface
reconstruction from unorganized points", outward by the divergence theorem), and :func:`point_map_orientation_score`
is the score above with the mapped triangles replaced by the differential of the map in the tangent planes.
"""

from __future__ import annotations

import numpy as np
import torch

from geomot._core.checks import check_finite, check_float_tensor, check_index_tensor, check_int
from geomot._core.errors import ShapeError, ValidationError
from geomot.ops.geometry import vertex_normals
from geomot.ops.knn import knn_points
from geomot.ops.operators import _pca_normals, spatial_gradient, tangent_frames

__all__ = [
    "consistently_oriented",
    "map_orientation_score",
    "mapped_signed_areas",
    "oriented_normals",
    "point_gradients",
    "point_map_orientation_score",
    "signed_volume",
]


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
    faces_tgt: torch.Tensor | None,
    *,
    normals_tgt: torch.Tensor | None = None,
) -> torch.Tensor:
    """Signed areas of the source triangles mapped to the target, ``(F_src,)``.

    ``s_f = ((T(j) - T(i)) x (T(k) - T(i))) . (n_T(i) + n_T(j) + n_T(k))`` for each source face ``f = (i, j, k)``,
    ``T(i) = verts_tgt[p2p[i]]``, ``n`` the area-weighted vertex normals of the target. Positive: orientation kept.

    Args:
        p2p: ``(V_src,)`` int64, the target vertex of each source vertex.
        verts_src: ``(V_src, 3)`` (only its count is used); faces_src: ``(F_src, 3)``.
        verts_tgt: ``(V_tgt, 3)``; faces_tgt: ``(F_tgt, 3)``, consistently oriented, or None for a point-cloud
            target with ``normals_tgt`` given.
        normals_tgt: optional precomputed ``(V_tgt, 3)`` vertex normals of the target (outward, like the faces;
            for a point cloud :func:`oriented_normals`).
    """
    _check_mesh(verts_src, faces_src, "source")
    if faces_tgt is None:
        if normals_tgt is None:
            raise ShapeError("faces_tgt: expected the target's faces, or its normals as normals_tgt")
        check_float_tensor(verts_tgt, "target verts", ndim=2, last_dim=3)
    else:
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
    faces_tgt: torch.Tensor | None,
    *,
    normals_tgt: torch.Tensor | None = None,
) -> float:
    """Orientation score of a vertex map, ``sum_f s_f / sum_f |s_f|`` in ``[-1, 1]`` (see the module docstring).

    ``+1``: every mapped triangle keeps its orientation; ``-1``: every one is reversed (a mirror map); near 0: a
    mixed or collapsed map. NaN when every mapped triangle is degenerate. Invariant to rigid motions, scaling and
    mirror images of either embedding; it assumes consistently oriented meshes.

    Args:
        p2p: ``(V_src,)`` the target vertex of each source vertex.
        verts_src: ``(V_src, 3)``; faces_src: ``(F_src, 3)``; verts_tgt: ``(V_tgt, 3)``; faces_tgt: ``(F_tgt, 3)``,
            or None for a point-cloud target with ``normals_tgt`` given.
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


# ---------------------------------------------------------------------------------------------------------------
# point clouds


def _check_points(points: torch.Tensor, name: str, k: int) -> None:
    check_float_tensor(points, name, ndim=2, last_dim=3)
    check_finite(points, name)
    if points.shape[0] <= k:
        raise ValidationError(f"{name}: expected more than k = {k} points, got {points.shape[0]}")


def _neighbours(p: torch.Tensor, k: int) -> torch.Tensor:
    """``(V, k)`` indices of the ``k`` nearest other points (the point itself dropped, also among duplicates)."""
    idx = knn_points(p, p, k=k + 1, backend="kdtree").idx
    own = idx == torch.arange(p.shape[0])[:, None]
    # drop the point itself where it was found, else the farthest of the k + 1 (a duplicate came first)
    own[:, -1] |= ~own.any(1)
    return idx[~own].reshape(p.shape[0], k)


def oriented_normals(points: torch.Tensor, *, k: int = 10) -> torch.Tensor:
    """Unit normals of a point cloud sampled from closed surfaces, consistently oriented and pointing outwards.

    1. ``n_i``: the direction of least variance of the ``k`` nearest neighbours of ``x_i`` (and ``x_i``);
    2. signs made consistent along the minimum spanning tree of the symmetrised ``k``-nearest-neighbour graph with
       edge costs ``1 - |<n_i, n_j>| + (|<n_i, u_ij>| + |<n_j, u_ij>|) / 2``, ``u_ij`` the unit vector from
       ``x_i`` to ``x_j`` (Hoppe et al. 1992, with a second term that keeps the tree off edges along the normals,
       such as the edges across a thin gap between two sheets, whose normals are opposite but parallel);
    3. on each connected part, the sign that makes ``sum_i a_i <n_i, x_i - c> > 0``, ``c`` the part's centroid and
       ``a_i`` the squared mean distance to the neighbours (an area per point): for outward normals of a closed
       surface this sum approximates ``3 x`` the enclosed volume (divergence theorem), whatever the shape.

    Deterministic, invariant to rigid motions and scaling. Cost: one k-d tree query, ``V`` ``3 x 3``
    eigenproblems and a spanning tree of ``V k`` edges. On open or very noisy clouds the sign of each part follows
    the same rule and may be inwards.

    Args:
        points: ``(V, 3)`` float, ``V > k``.
        k: neighbours per point (at least 3).

    Returns:
        ``(V, 3)`` unit normals in the dtype and on the device of ``points``.

    Raises:
        ShapeError / ValidationError: not a ``(V, 3)`` float tensor, NaN/Inf, ``k < 3`` or ``V <= k``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

    check_int(k, "k", at_least=3)
    _check_points(points, "points", k)
    p = points.detach().cpu().double()
    V = p.shape[0]
    idx = _neighbours(p, k)
    # least-variance directions of each point with its neighbours (their signs are set below)
    n = _pca_normals(p, torch.cat([torch.arange(V)[:, None], idx], 1))
    i = torch.arange(V)[:, None].expand(V, k).reshape(-1)
    j = idx.reshape(-1)
    e = p[j] - p[i]
    dist = e.norm(dim=1)
    u = e / dist.clamp_min(1e-300)[:, None]
    cost = 1 - (n[i] * n[j]).sum(1).abs() + ((n[i] * u).sum(1).abs() + (n[j] * u).sum(1).abs()) / 2
    lo, hi = torch.minimum(i, j).numpy(), torch.maximum(i, j).numpy()
    keep = np.unique(lo * V + hi, return_index=True)[1]  # an edge found from both ends is kept once
    keep = keep[lo[keep] != hi[keep]]  # duplicated points: no self-loops
    w = cost.numpy()[keep] + 1e-12  # scipy drops explicit zeros
    graph = coo_matrix((w, (lo[keep], hi[keep])), shape=(V, V)).tocsr()
    tree = minimum_spanning_tree(graph)
    n_parts, labels = connected_components(tree, directed=False)
    # one breadth-first search from a virtual vertex V joined to the first vertex of every part
    roots = np.unique(labels, return_index=True)[1]
    tree = tree.tocoo()
    rows = np.concatenate([tree.row, np.full(n_parts, V)])
    cols = np.concatenate([tree.col, roots])
    joined = coo_matrix((np.ones(rows.shape[0]), (rows, cols)), shape=(V + 1, V + 1)).tocsr()
    _, pred = breadth_first_order(joined, V, directed=False, return_predecessors=True)
    parent = torch.from_numpy(pred[:V].astype(np.int64))
    parent[torch.from_numpy(roots)] = torch.from_numpy(roots)  # each part's first vertex is its own parent
    # parity of the sign flips on the path to the part's first vertex, by pointer jumping (log of the depth)
    flip = (n * n[parent]).sum(1) < 0
    up = parent.clone()
    while True:
        nxt = up[up]
        if bool((nxt == up).all()):
            break
        flip = flip ^ flip[up]
        up = nxt
    flip = flip ^ flip[up]  # the last hop (the root's own flip is False)
    n = torch.where(flip[:, None], -n, n)
    lab = torch.from_numpy(labels.astype(np.int64))
    area = dist.reshape(V, k).mean(1) ** 2
    centre = torch.zeros(n_parts, 3, dtype=p.dtype).index_add_(0, lab, p * area[:, None])
    centre = centre / torch.zeros(n_parts, dtype=p.dtype).index_add_(0, lab, area).clamp_min(1e-300)[:, None]
    side = torch.zeros(n_parts, dtype=p.dtype).index_add_(0, lab, area * (n * (p - centre[lab])).sum(1))
    n = torch.where((side < 0)[lab][:, None], -n, n)
    return n.to(device=points.device, dtype=points.dtype)


def point_gradients(
    points: torch.Tensor, normals: torch.Tensor, *, k: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tangent gradient operators of a point cloud: sparse ``(V, V)`` ``(grad_X, grad_Y)`` in the frames
    ``(X_i, Y_i, n_i)`` of :func:`geomot.ops.operators.tangent_frames` (right-handed: ``X_i x Y_i = n_i``), by
    least squares over the ``k`` nearest neighbours (:func:`geomot.ops.operators.spatial_gradient`).

    Args:
        points: ``(V, 3)`` float; normals: ``(V, 3)`` unit normals (e.g. :func:`oriented_normals`); k: neighbours.
    """
    check_int(k, "k", at_least=2)
    _check_points(points, "points", k)
    if not isinstance(normals, torch.Tensor) or normals.shape != points.shape:
        raise ShapeError(f"normals: expected shape {tuple(points.shape)}, got {tuple(getattr(normals, 'shape', ()))}")
    p = points.detach().cpu().double()
    idx = _neighbours(p, k)
    pairs = torch.stack([torch.arange(p.shape[0])[:, None].expand_as(idx).reshape(-1), idx.reshape(-1)])
    frames = tangent_frames(normals.detach().cpu().double())
    return spatial_gradient(p, frames, pairs)


def point_map_orientation_score(
    p2p: torch.Tensor,
    points_src: torch.Tensor,
    normals_src: torch.Tensor,
    points_tgt: torch.Tensor,
    normals_tgt: torch.Tensor,
    *,
    k: int = 10,
    weights: torch.Tensor | None = None,
    gradients: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> float:
    """Orientation score of a point map between two point clouds, ``sum_i w_i s_i / sum_i w_i |s_i|`` in ``[-1, 1]``.

    ``s_i = <n_tgt(T(i)), dT_i X_i x dT_i Y_i>``: the signed area that the differential of the map, estimated by
    least squares over the ``k`` nearest neighbours (:func:`point_gradients` applied to ``T(j) = points_tgt[p2p_j]``),
    gives to the unit square ``X_i, Y_i`` of the source's tangent plane. The point-cloud counterpart of
    :func:`map_orientation_score`: ``+1`` keeps orientation everywhere, ``-1`` reverses it (a mirror map). Both
    clouds need outward (or both inward) normals, such as those of :func:`oriented_normals`. NaN when every
    ``s_i`` is 0.

    Args:
        p2p: ``(V_src,)`` int64, the target point of each source point.
        points_src, normals_src: ``(V_src, 3)``; points_tgt, normals_tgt: ``(V_tgt, 3)``.
        k: neighbours of the gradient estimate.
        weights: optional ``(V_src,)`` non-negative weights (areas per point); default uniform.
        gradients: optional precomputed ``point_gradients(points_src, normals_src, k=k)``.
    """
    if not isinstance(p2p, torch.Tensor) or p2p.shape != (points_src.shape[0],):
        raise ShapeError(f"p2p: expected shape ({points_src.shape[0]},), got {tuple(getattr(p2p, 'shape', ()))}")
    check_float_tensor(points_tgt, "points_tgt", ndim=2, last_dim=3)
    if not isinstance(normals_tgt, torch.Tensor) or normals_tgt.shape != points_tgt.shape:
        raise ShapeError(
            f"normals_tgt: expected shape {tuple(points_tgt.shape)}, got {tuple(getattr(normals_tgt, 'shape', ()))}"
        )
    p2p = check_index_tensor(p2p, "p2p", size=points_tgt.shape[0]).long().cpu()
    gx, gy = point_gradients(points_src, normals_src, k=k) if gradients is None else gradients
    y = points_tgt.detach().cpu().double()[p2p]
    jx, jy = gx @ y, gy @ y  # (V_src, 3): images of the tangent axes X_i, Y_i
    s = (torch.linalg.cross(jx, jy, dim=-1) * normals_tgt.detach().cpu().double()[p2p]).sum(1)
    if weights is not None:
        s = s * weights.detach().cpu().double()
    den = float(s.abs().sum())
    return float(s.sum()) / den if den > 0 else float("nan")
