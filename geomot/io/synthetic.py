"""Small synthetic shapes built in code, deterministic, free to redistribute (they are what ``data/`` holds).

* :func:`icosphere` — subdivided icosahedron on the unit sphere.
* :func:`torus` — a regular quad grid on a torus, split into triangles.
* :func:`blob` — a smooth bean: an icosphere stretched, bent and given one bump; a target for sphere -> blob
  deformation demos.
* :func:`bumpy_sphere` / :func:`bend_twist` / :func:`bumpy_pair` — a sphere-topology shape with bumps of different
  sizes at asymmetric places (so it has no intrinsic symmetry and functional maps cannot flip it), and a smooth
  non-rigid, nearly isometric deformation of it with the target's vertices shuffled: a matching problem with exact
  ground truth.

``scripts/make_data.py`` writes these to ``data/``; the tests check that the committed files equal what these
functions return.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from geomot._core.errors import ValidationError
from geomot.structures import Mesh

__all__ = ["ShapePair", "bend_twist", "blob", "bumpy_pair", "bumpy_sphere", "fibonacci_sphere", "icosphere", "torus"]

# (direction, height, angular width in radians): different sizes, no two bumps symmetric to each other
_BUMPS: tuple[tuple[tuple[float, float, float], float, float], ...] = (
    ((0.9, 0.3, 0.3), 0.55, 0.45),
    ((-0.2, 0.95, 0.25), 0.35, 0.35),
    ((-0.3, -0.4, 0.85), 0.22, 0.28),
    ((-0.6, -0.5, -0.6), -0.15, 0.5),
    ((0.1, -0.9, -0.35), 0.12, 0.22),
)


def _mesh(verts: np.ndarray, faces: np.ndarray, dtype: torch.dtype) -> Mesh:
    return Mesh(torch.as_tensor(verts, dtype=dtype), torch.as_tensor(faces, dtype=torch.long))


def _orient_outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip the triangles of a star-shaped closed surface whose normal points towards the origin."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    out = faces.copy()
    out[inward] = out[inward][:, [0, 2, 1]]
    return out


def _midpoint(verts: list[np.ndarray], cache: dict[tuple[int, int], int], i: int, j: int) -> int:
    key = (i, j) if i < j else (j, i)
    if key not in cache:
        verts.append((verts[i] + verts[j]) / 2.0)
        cache[key] = len(verts) - 1
    return cache[key]


def icosphere(subdiv: int = 3, *, dtype: torch.dtype = torch.float64) -> Mesh:
    """Unit sphere from an icosahedron whose triangles are split in four ``subdiv`` times.

    Returns:
        a Mesh with ``V = 10 * 4**subdiv + 2`` vertices and ``F = 20 * 4**subdiv`` outward-oriented faces.
    """
    if not isinstance(subdiv, int) or not 0 <= subdiv <= 7:
        raise ValidationError(f"subdiv: expected an integer in [0, 7], got {subdiv!r}")
    g = (1.0 + math.sqrt(5.0)) / 2.0
    pts = [(0, 1, g), (0, -1, g), (0, 1, -g), (0, -1, -g), (1, g, 0), (-1, g, 0), (1, -g, 0), (-1, -g, 0),
           (g, 0, 1), (-g, 0, 1), (g, 0, -1), (-g, 0, -1)]
    verts = [np.array(p, dtype=np.float64) for p in pts]
    # the 20 faces: triples of mutually adjacent vertices (edge length 2)
    arr = np.array(verts)
    d = np.linalg.norm(arr[:, None] - arr[None], axis=-1)
    adj = np.isclose(d, 2.0)
    faces = np.array([(i, j, k) for i in range(12) for j in range(i + 1, 12) for k in range(j + 1, 12)
                      if adj[i, j] and adj[j, k] and adj[i, k]], dtype=np.int64)
    for _ in range(subdiv):
        mid: dict[tuple[int, int], int] = {}
        new = []
        for i, j, k in faces.tolist():
            a, b, c = (_midpoint(verts, mid, p, q) for p, q in ((i, j), (j, k), (k, i)))
            new += [(i, a, c), (j, b, a), (k, c, b), (a, b, c)]
        faces = np.array(new, dtype=np.int64)
    v = np.array(verts)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return _mesh(v, _orient_outward(v, faces), dtype)


def torus(
    major: float = 1.0, minor: float = 0.35, *, n_major: int = 40, n_minor: int = 20, dtype: torch.dtype = torch.float64
) -> Mesh:
    """Torus around the z axis: ``(R + r cos t) (cos s, sin s) , r sin t`` on an ``n_major x n_minor`` grid.

    Returns:
        a closed genus-1 Mesh with ``V = n_major * n_minor`` and ``F = 2 V`` faces; area ``4 pi^2 R r`` in the limit.
    """
    if not 0 < minor < major:
        raise ValidationError(f"minor: expected 0 < minor < major={major}, got {minor}")
    if n_major < 3 or n_minor < 3:
        raise ValidationError(f"n_major, n_minor: expected at least 3 each, got {n_major}, {n_minor}")
    s = 2 * np.pi * np.arange(n_major) / n_major
    t = 2 * np.pi * np.arange(n_minor) / n_minor
    S, T = np.meshgrid(s, t, indexing="ij")
    v = np.stack([(major + minor * np.cos(T)) * np.cos(S), (major + minor * np.cos(T)) * np.sin(S),
                  minor * np.sin(T)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return _mesh(v, f, dtype)


def blob(subdiv: int = 3, *, dtype: torch.dtype = torch.float64) -> Mesh:
    """A smooth bean: the icosphere stretched to ``(1.3, 0.8, 0.7)``, bent along x (``z += 0.35 x^2 - 0.2``), with a
    dent on one flank and a bump near one end. Same vertex count and connectivity as ``icosphere(subdiv)``."""
    sph = icosphere(subdiv)
    u = sph.verts.numpy()
    r = 1.0 + 0.25 * np.exp(-(1.0 - u @ np.array([0.6, 0.6, 0.53]) / 0.9998) / 0.08) \
        - 0.12 * np.exp(-(1.0 - u @ np.array([0.0, -1.0, 0.0])) / 0.15)
    p = u * r[:, None] * np.array([1.3, 0.8, 0.7])
    p[:, 2] += 0.35 * p[:, 0] ** 2 - 0.2
    return _mesh(p, sph.faces.numpy(), dtype)


def fibonacci_sphere(n: int) -> np.ndarray:
    """``(n, 3)`` nearly uniform points on the unit sphere (golden-angle spiral)."""
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    rho = np.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], -1)


def bumpy_sphere(n_verts: int = 2000, *, dtype: torch.dtype = torch.float64) -> Mesh:
    """Sphere-topology shape with five Gaussian bumps / dents of different sizes at asymmetric places.

    Radius along direction ``u``: ``r(u) = 1 + sum_k h_k exp(-(1 - <u, c_k>) / w_k^2)``; the triangulation is the
    convex hull of a Fibonacci point set (a spherical Delaunay triangulation), so triangles are well shaped.
    """
    from scipy.spatial import ConvexHull

    if n_verts < 50:
        raise ValidationError(f"n_verts: expected at least 50, got {n_verts}")
    u = fibonacci_sphere(n_verts)
    faces = _orient_outward(u, ConvexHull(u).simplices.astype(np.int64))
    faces = faces[np.lexsort(np.sort(faces, axis=1).T[::-1])]  # canonical face order, independent of qhull's
    r = np.ones(n_verts)
    for c, h, w in _BUMPS:
        c = np.asarray(c) / np.linalg.norm(c)
        r += h * np.exp(-(1.0 - u @ c) / (w * w))
    return _mesh(u * r[:, None], faces, dtype)


def bend_twist(verts: torch.Tensor, *, bend: float = 0.12, twist: float = 0.12) -> torch.Tensor:
    """Smooth non-rigid map: a twist about z by ``twist * z`` radians, then a bend of the x axis into a circular arc
    of curvature ``bend`` (``x -> sin(k x) / k``, ``z -> z + (1 - cos(k x)) / k``), then a fixed rotation.

    A closed surface cannot bend without stretching (Cauchy rigidity), so the parameters are kept small: with the
    defaults on :func:`bumpy_sphere` the edge lengths change by about 4.5 % on average (at most 13 %), and a plain
    WKS functional map refined by ZoomOut recovers the ground truth.

    Args:
        verts: ``(V, 3)`` positions.

    Returns:
        ``(V, 3)`` deformed positions, same dtype / device.
    """
    x, y, z = verts.unbind(-1)
    a = twist * z
    x, y = x * torch.cos(a) - y * torch.sin(a), x * torch.sin(a) + y * torch.cos(a)
    k = bend
    rz = 1.0 / k - z
    x, z = torch.sin(k * x) * rz, 1.0 / k - torch.cos(k * x) * rz
    out = torch.stack([x, y, z], -1)
    ang = 0.7
    rot = verts.new_tensor([[math.cos(ang), 0.0, math.sin(ang)], [0.0, 1.0, 0.0], [-math.sin(ang), 0.0, math.cos(ang)]])
    return out @ rot.T + verts.new_tensor([0.3, -0.2, 0.1])


class ShapePair(NamedTuple):
    """A matching problem with exact ground truth: vertex ``src_idx[k]`` of ``source`` is ``tgt_idx[k]`` of ``target``.

    Attributes:
        source: Mesh.
        target: Mesh (deformed, vertices permuted).
        src_idx: ``(K,)`` int64.
        tgt_idx: ``(K,)`` int64.
    """

    source: Mesh
    target: Mesh
    src_idx: torch.Tensor
    tgt_idx: torch.Tensor


def bumpy_pair(n_verts: int = 2000, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> ShapePair:
    """:func:`bumpy_sphere` and its :func:`bend_twist` deformation with the target's vertices shuffled by a
    ``numpy.random.default_rng(seed)`` permutation. Ground truth covers every vertex: ``src_idx = arange(V)``,
    ``tgt_idx[i]`` = the new position of source vertex ``i`` in the target."""
    src = bumpy_sphere(n_verts, dtype=torch.float64)
    moved = bend_twist(src.verts)
    perm = np.random.default_rng(seed).permutation(n_verts)  # target vertex j is source vertex perm[j]
    inv = np.empty_like(perm)
    inv[perm] = np.arange(n_verts)
    tgt_verts = moved[torch.as_tensor(perm)]
    tgt_faces = torch.as_tensor(inv)[src.faces]
    return ShapePair(
        _mesh(src.verts.numpy(), src.faces.numpy(), dtype),
        _mesh(tgt_verts.numpy(), tgt_faces.numpy(), dtype),
        torch.arange(n_verts),
        torch.as_tensor(inv, dtype=torch.long),
    )
