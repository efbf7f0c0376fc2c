"""Scores of a dense vertex map that need no ground truth: cycle consistency, coverage, area distortion, orientation.

Each score compares a map with properties every correct map between two surfaces has, whatever the dataset or
the meshing, so one threshold can serve every pair. All distances and areas are measured on copies of the shapes
scaled to unit area, and every average is weighted by vertex or face areas, so that a finer or coarser meshing of
the same surface gives about the same score.

* :func:`cycle_error`: a map and the map of the other direction should compose to the identity.
* :func:`area_coverage`: the image of a map should cover the target surface.
* :func:`area_distortion`: a map between near-isometric shapes keeps areas.
* :func:`map_consistency`: the three, and the orientation score
  (:func:`geomot.ops.orientation.map_orientation_score`: near -1 for a mirror map), in one :class:`MapConsistency`.

Maps follow pyFM's naming: ``p2p_21 (V2,)`` gives for each vertex of shape 2 its match on shape 1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_positive
from geomot._core.errors import ShapeError
from geomot.ops.geometry import face_areas, vertex_areas
from geomot.ops.orientation import map_orientation_score, signed_volume

__all__ = ["MapConsistency", "area_coverage", "area_distortion", "cycle_error", "map_consistency"]

_CHUNK = 4096


def _check_mesh(verts: torch.Tensor, faces: torch.Tensor | None, name: str) -> None:
    check_float_tensor(verts, f"{name} verts", ndim=2, last_dim=3, finite=False)
    if faces is not None:
        check_index_tensor(faces, f"{name} faces", size=verts.shape[0], ncols=3)
        if faces.dim() != 2:
            raise ShapeError(f"{name} faces: expected a (F, 3) tensor, got shape {tuple(faces.shape)}")


def _check_map(p2p: torch.Tensor, name: str, n_from: int, n_to: int) -> torch.Tensor:
    check_index_tensor(p2p, name, size=n_to)
    if p2p.shape != (n_from,):
        raise ShapeError(f"{name}: expected shape ({n_from},), got {tuple(p2p.shape)}")
    return p2p.long()


def _unit_scale(verts: torch.Tensor, faces: torch.Tensor | None) -> torch.Tensor:
    """``1 / sqrt(area)`` for a mesh; for a cloud (``faces`` None), ``1 / `` the RMS distance to the centroid
    times ``sqrt(4 pi)`` (the unit-area scale of a sphere through those points)."""
    if faces is not None:
        return face_areas(verts, faces.long()).sum().rsqrt()
    rms = (verts - verts.mean(0)).square().sum(-1).mean().sqrt()
    return (rms * math.sqrt(4 * math.pi)).reciprocal()


def _masses(verts: torch.Tensor, faces: torch.Tensor | None) -> torch.Tensor:
    """Vertex weights summing to 1: lumped areas for a mesh, uniform for a cloud."""
    if faces is None:
        return verts.new_full((verts.shape[0],), 1.0 / verts.shape[0])
    m = vertex_areas(verts, faces.long())
    return m / m.sum()


def cycle_error(
    p2p_21: torch.Tensor,
    p2p_12: torch.Tensor,
    verts2: torch.Tensor,
    faces2: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cycle-consistency error of two maps on shape 2: how far ``x`` lands from itself after a round trip.

    ``c(x) = |X2[x] - X2[p2p_12[p2p_21[x]]]| / sqrt(area(2))`` for each vertex ``x`` of shape 2, and
    ``sum_x m(x) c(x)`` with the lumped vertex areas ``m`` normalised to sum 1 (uniform weights for a cloud,
    whose scale is then that of a sphere of the same RMS radius). 0 when the maps are inverse to each other on
    the image; a map and its mirror-symmetric partner (both directions flipped) also give a small value, which
    the orientation score detects instead. When shape 2 is finer than shape 1 the round trip cannot return
    every vertex, which leaves a floor of about the vertex spacing of shape 1.

    Args:
        p2p_21: ``(V2,)`` for each vertex of shape 2 its match on shape 1.
        p2p_12: ``(V1,)`` for each vertex of shape 1 its match on shape 2.
        verts2: ``(V2, 3)`` shape 2; faces2: ``(F2, 3)`` or None for a point cloud.
        reduction: ``"mean"`` (area-weighted, a 0-d tensor) or ``"none"`` (``(V2,)`` per-vertex ``c``).

    Returns:
        a 0-d tensor or ``(V2,)``, in the dtype and on the device of ``verts2``. Cost ``O(V2)``.
    """
    _check_mesh(verts2, faces2, "shape 2")
    if reduction not in ("mean", "none"):
        raise ShapeError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    n1 = p2p_12.shape[0] if isinstance(p2p_12, torch.Tensor) and p2p_12.dim() == 1 else 0
    p2p_21 = _check_map(p2p_21, "p2p_21", verts2.shape[0], max(n1, 1))
    p2p_12 = _check_map(p2p_12, "p2p_12", n1, verts2.shape[0])
    back = p2p_12[p2p_21]
    c = (verts2 - verts2[back]).norm(dim=-1) * _unit_scale(verts2, faces2)
    if reduction == "none":
        return c
    return (c * _masses(verts2, faces2)).sum()


def area_coverage(
    p2p_21: torch.Tensor,
    verts1: torch.Tensor,
    faces1: torch.Tensor,
    *,
    radius: float | None = None,
) -> torch.Tensor:
    """Share of the area of shape 1 that lies near the image of the map ``p2p_21``.

    ``cov = sum_y m(y) [min_x |Y[y] - Y[p2p_21[x]]| <= r] / sum_y m(y)`` over the vertices ``y`` of shape 1 with
    their lumped areas ``m``, distances on the unit-area copy of shape 1. The default radius
    ``r = 2 / sqrt(V2)`` is twice the spacing of ``V2`` evenly spread points on a unit-area surface, so a correct
    map from a coarser shape still covers the target (a plain count of the hit vertices would not). 1 for a
    surjective map; a map that folds half of the source onto the other half (a collapse onto one leg) covers
    about half.

    Args:
        p2p_21: ``(V2,)`` vertices of shape 1, one per vertex of shape 2.
        verts1: ``(V1, 3)``; faces1: ``(F1, 3)`` shape 1.
        radius: ``r`` in unit-area units, ``> 0``; default ``2 / sqrt(V2)``.

    Returns:
        a 0-d tensor in ``[0, 1]`` (dtype and device of ``verts1``). Cost ``O(V1 * U)`` for ``U`` distinct image
        vertices, in chunks.
    """
    _check_mesh(verts1, faces1, "shape 1")
    if not isinstance(p2p_21, torch.Tensor) or p2p_21.dim() != 1:
        raise ShapeError(f"p2p_21: expected a (V2,) index tensor, got {getattr(p2p_21, 'shape', type(p2p_21))}")
    p2p_21 = _check_map(p2p_21, "p2p_21", p2p_21.shape[0], verts1.shape[0])
    r = 2.0 / math.sqrt(p2p_21.shape[0]) if radius is None else check_positive(radius, "radius")
    y = verts1 * _unit_scale(verts1, faces1)
    img = y[torch.unique(p2p_21)]
    near = torch.cat([torch.cdist(y[i : i + _CHUNK], img).min(1).values for i in range(0, y.shape[0], _CHUNK)])
    m = _masses(verts1, faces1)
    return (m * (near <= r).to(m.dtype)).sum() + 0.0 * near.sum()  # NaN positions give NaN


def area_distortion(
    p2p_21: torch.Tensor,
    verts2: torch.Tensor,
    faces2: torch.Tensor,
    verts1: torch.Tensor,
    faces1: torch.Tensor,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Area distortion of the map: mean absolute log ratio of the area of each mapped triangle to its own.

    For each face ``f = (i, j, k)`` of shape 2 with unit-area area ``a_f``, its image
    ``(Y[p2p_21[i]], Y[p2p_21[j]], Y[p2p_21[k]])`` on the unit-area shape 1 has area ``a'_f``, and
    ``d_f = |log((a'_f + delta) / (a_f + delta))|`` with ``delta = max(1 / F1, 1 / F2)``, the mean face area of the
    coarser mesh: triangles smaller than a face of the coarser mesh cannot keep their area under a vertex map
    (two corners land on one vertex), and ``delta`` keeps them from dominating. The mean is
    ``sum_f a_f d_f / sum_f a_f``. About 0.5-0.7 for good maps between FAUST humans; maps that fold or collapse
    regions score higher.

    Args:
        p2p_21: ``(V2,)`` for each vertex of shape 2 its match on shape 1.
        verts2: ``(V2, 3)``; faces2: ``(F2, 3)`` shape 2 (the source of the map).
        verts1: ``(V1, 3)``; faces1: ``(F1, 3)`` shape 1 (the target).
        reduction: ``"mean"`` (a 0-d tensor) or ``"none"`` (``(F2,)`` per-face ``d_f``).

    Returns:
        a 0-d tensor or ``(F2,)``, dtype and device of ``verts2``. Cost ``O(F2)``.
    """
    _check_mesh(verts2, faces2, "shape 2")
    _check_mesh(verts1, faces1, "shape 1")
    if reduction not in ("mean", "none"):
        raise ShapeError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    p2p_21 = _check_map(p2p_21, "p2p_21", verts2.shape[0], verts1.shape[0])
    f2, f1 = faces2.long(), faces1.long()
    a = face_areas(verts2, f2)
    a = a / a.sum()
    a_img = face_areas(verts1[p2p_21], f2) * _unit_scale(verts1, f1).square()
    delta = max(1.0 / f1.shape[0], 1.0 / f2.shape[0])
    d = ((a_img + delta) / (a + delta)).log().abs()
    if reduction == "none":
        return d
    return (a * d).sum()


class MapConsistency(NamedTuple):
    """Ground-truth-free scores of a map ``p2p_21`` (see :func:`map_consistency`).

    Attributes:
        cycle_error: :func:`cycle_error` of ``p2p_21`` and ``p2p_12`` on shape 2 (unit-area distance, 0 best).
        coverage: :func:`area_coverage` of ``p2p_21`` on shape 1 (1 best).
        area_distortion: :func:`area_distortion` of ``p2p_21`` (0 best).
        orientation: :func:`geomot.ops.orientation.map_orientation_score` of ``p2p_21`` with both meshes wound
            outwards (near 1 kept, near -1 a mirror map).
    """

    cycle_error: float
    coverage: float
    area_distortion: float
    orientation: float


def _outward(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    return faces.flip(-1) if signed_volume(verts, faces) < 0 else faces


def map_consistency(
    p2p_21: torch.Tensor,
    p2p_12: torch.Tensor,
    verts2: torch.Tensor,
    faces2: torch.Tensor,
    verts1: torch.Tensor,
    faces1: torch.Tensor,
) -> MapConsistency:
    """The four ground-truth-free scores of the map ``p2p_21``, given the map of the other direction ``p2p_12``.

    Args:
        p2p_21: ``(V2,)`` the map scored (vertices of shape 1, one per vertex of shape 2).
        p2p_12: ``(V1,)`` the map of the other direction, for the cycle error.
        verts2: ``(V2, 3)``; faces2: ``(F2, 3)`` shape 2; verts1: ``(V1, 3)``; faces1: ``(F1, 3)`` shape 1.

    Returns:
        :class:`MapConsistency` of floats (NaN where the positions hold NaN). Faces are rewound outwards (by the
        sign of :func:`~geomot.ops.orientation.signed_volume`) before the orientation score.
    """
    _check_mesh(verts2, faces2, "shape 2")
    _check_mesh(verts1, faces1, "shape 1")
    f2, f1 = faces2.long(), faces1.long()
    orient = map_orientation_score(p2p_21.long(), verts2, _outward(verts2, f2), verts1, _outward(verts1, f1))
    return MapConsistency(
        cycle_error=float(cycle_error(p2p_21, p2p_12, verts2, f2)),
        coverage=float(area_coverage(p2p_21, verts1, f1)),
        area_distortion=float(area_distortion(p2p_21, verts2, f2, verts1, f1)),
        orientation=float(orient),
    )
