"""Stage 1 of :func:`geomot.correspondence.match`: both shapes on the CPU in float64, scaled to unit area, meshes
wound outwards; their Laplace-Beltrami bases (:func:`geomot.ops.spectral.spectral_basis`, cached on disk with
``cache_dir``), wave kernel signatures (Aubry et al. 2011), farthest-point samples of the source, the
shortest-path graphs used by the ranking and the anchor refinement, and for point clouds outward normals and
tangent gradients (:func:`geomot.ops.orientation.oriented_normals`), which give them the orientation terms that
faces give meshes.

Shape 1 is the ``target``, shape 2 the ``source`` (pyFM's convention): maps are ``p2p_21``, ``fmap_12``.
Cost: two sparse eigendecompositions (none when cached), farthest-point sampling and two graph builds; the
graphs keep the shortest paths the later stages search (up to 128 MiB each).
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import torch

from geomot._core.checks import check_float_tensor
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.anchors import shape_graph
from geomot.correspondence.descriptors import wks
from geomot.correspondence.matching.config import MatchConfig
from geomot.ops.geometry import total_area
from geomot.ops.graph import ShortestPathCache
from geomot.ops.orientation import consistently_oriented, oriented_normals, point_gradients, signed_volume
from geomot.ops.sampling import farthest_point_sampling
from geomot.ops.spectral import SpectralBasis, spectral_basis
from geomot.structures import Mesh, PointCloud

__all__ = ["CloudFrame", "PreparedPair", "as_shape", "cloud_frame", "prepare", "unit_area"]


class CloudFrame(NamedTuple):
    """What a point cloud needs for orientation terms: ``normals (V, 3)`` outward
    (:func:`~geomot.ops.orientation.oriented_normals`) and sparse ``(V, V)`` tangent ``gradients``
    (:func:`~geomot.ops.orientation.point_gradients`), float64."""

    normals: torch.Tensor
    gradients: tuple[torch.Tensor, torch.Tensor]


def cloud_frame(points: torch.Tensor, k: int = 10) -> CloudFrame:
    """:class:`CloudFrame` of a ``(V, 3)`` float64 point cloud (``k`` neighbours for the normals and gradients, at
    most ``V - 1``)."""
    k = max(3, min(k, points.shape[0] - 1))
    normals = oriented_normals(points, k=k)
    return CloudFrame(normals, point_gradients(points, normals, k=k))


class PreparedPair(NamedTuple):
    """Result of :func:`prepare`: index 1 is the target, 2 the source, every tensor on the CPU.

    Attributes:
        v1, v2: ``(V1, 3)``, ``(V2, 3)`` float64 vertices at unit area (point clouds: the area of their
            Laplacian's mass).
        f1, f2: ``(F, 3)`` int64 faces wound outwards, or None for point clouds.
        b1, b2: spectral bases with ``k`` eigenpairs.
        desc1, desc2: ``(V, n_descriptors / descriptor_stride)`` WKS, both divided by the source's mass norms.
        samples2: ``(S,)`` farthest-point samples of the source (``n_sample_rank``, from vertex 0).
        samples1: ``(T,)`` farthest-point samples of the target (``n_target_samples``, from vertex 0) that the
            sampled stages search, or None (every vertex).
        graphs: shortest-path graphs ``(target, source)`` (:func:`~geomot.correspondence.anchors.shape_graph`,
            each in a :class:`~geomot.ops.graph.ShortestPathCache` that keeps the distances searched by the
            stages), or None when neither the ranking of meshes nor the anchor refinement needs them.
        device: the device the source came on (the maps go back to it).
        clouds: for each shape without faces, ``(target, source)``: its :class:`CloudFrame` (outward normals and
            tangent gradients), None for a mesh.
    """

    v1: torch.Tensor
    f1: torch.Tensor | None
    b1: SpectralBasis
    v2: torch.Tensor
    f2: torch.Tensor | None
    b2: SpectralBasis
    desc1: torch.Tensor
    desc2: torch.Tensor
    samples2: torch.Tensor
    graphs: tuple[Any, Any] | None
    device: torch.device
    clouds: tuple[CloudFrame | None, CloudFrame | None] = (None, None)
    samples1: torch.Tensor | None = None

    @property
    def meshes(self) -> bool:
        """Whether both shapes have faces (orientation terms and the intrinsic ranking apply)."""
        return self.f1 is not None and self.f2 is not None


def as_shape(x: Any, name: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.device]:
    """Mesh / PointCloud / ``(verts, faces)`` / ``(N, 3)`` tensor -> float64 ``(verts, faces or None)`` on the CPU
    (the eigensolver and the shortest paths are scipy's), and the device the vertices came on."""
    if isinstance(x, Mesh):
        if len(x) != 1:
            raise ShapeError(f"{name}: expected a single mesh, got a batch of {len(x)}")
        v, f = x.verts, x.faces
    elif isinstance(x, PointCloud):
        if len(x) != 1:
            raise ShapeError(f"{name}: expected a single point cloud, got a batch of {len(x)}")
        v, f = x.points_list()[0], None
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        v, f = x
    elif isinstance(x, torch.Tensor):
        v, f = x, None
    else:
        raise ShapeError(
            f"{name}: expected a Mesh, a PointCloud, a (verts, faces) pair or a (N, 3) tensor, got {type(x).__name__}"
        )
    check_float_tensor(v, f"{name} verts", ndim=2, last_dim=3)
    if f is not None:
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[-1] != 3:
            raise ShapeError(f"{name} faces: expected a (F, 3) integer tensor, got {getattr(f, 'shape', f)!r}")
        f = f.long().cpu()
    return v.detach().to("cpu", torch.float64), f, v.device


def unit_area(v: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor:
    """Vertices ``(V, 3)`` scaled to total area 1 (``v / sqrt(area)``); point clouds centred and scaled to unit
    root-mean-square radius."""
    if f is None:
        return (v - v.mean(0)) / ((v - v.mean(0)) ** 2).sum(1).mean().sqrt().clamp_min(1e-30)
    area = float(total_area(v, f))
    if not area > 0:
        raise ValidationError("faces: the mesh has zero total area (all faces are degenerate)")
    return v / math.sqrt(area)


def _outward(v: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor | None:
    """Faces wound so that the signed volume is positive (normals outwards); unchanged when it already is, when
    the volume is zero or when the winding is inconsistent."""
    if f is None or not consistently_oriented(f) or signed_volume(v, f) >= 0:
        return f
    return f[:, [0, 2, 1]]


def _to_unit_area(v: torch.Tensor, basis: SpectralBasis) -> tuple[torch.Tensor, SpectralBasis]:
    """A point cloud and its basis scaled by ``s = 1 / sqrt(sum of the mass)``: points ``s v``, mass ``s^2 m``,
    eigenvalues ``lambda / s^2``, eigenvectors ``phi / s`` (still mass-orthonormal)."""
    area = float(basis.mass.sum())
    if not area > 0:
        raise ValidationError("source/target: the point cloud's Laplacian has zero total mass")
    s = 1.0 / math.sqrt(area)
    return v * s, SpectralBasis(basis.evals / s**2, basis.evecs / s, basis.mass * s**2)


def _descriptors(b1: SpectralBasis, b2: SpectralBasis, config: MatchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """WKS of both shapes, every ``descriptor_stride``-th energy, each column divided by its ``M_2`` norm on the
    source."""
    d1 = wks(b1.evals, b1.evecs, n_scales=config.n_descriptors)[:, :: config.descriptor_stride]
    d2 = wks(b2.evals, b2.evecs, n_scales=config.n_descriptors)[:, :: config.descriptor_stride]
    scale = (b2.mass[:, None] * d2 * d2).sum(0).sqrt().clamp_min(1e-30)
    return d1 / scale, d2 / scale


def prepare(
    source: Any, target: Any, config: MatchConfig | None = None, *, cache_dir: str | os.PathLike | None = None
) -> PreparedPair:
    """Stage 1: shapes at unit area, bases, descriptors, source samples and graphs (see the module docstring).

    Args:
        source, target: ``Mesh``, ``PointCloud``, ``(verts (V, 3), faces (F, 3) | None)`` or ``(V, 3)`` tensor.
        config: settings (``k``, ``n_descriptors``, ``descriptor_stride``, ``n_sample_rank``, ``refine``,
            ``anchor_iterations``); default ``MatchConfig()``.
        cache_dir: opt-in folder for cached eigenbases.

    Raises:
        ShapeError / ValidationError: bad inputs, ``k`` not below the vertex counts, isolated vertices.
    """
    config = (config or MatchConfig()).resolve()
    vs, fs, device = as_shape(source, "source")  # the maps go back to the source's device
    vt, ft, _ = as_shape(target, "target")
    n_min = min(vs.shape[0], vt.shape[0])
    if config.k >= n_min:
        raise ValidationError(f"k: expected fewer eigenfunctions than vertices ({n_min}), got {config.k}")
    vs, vt = unit_area(vs, fs), unit_area(vt, ft)
    # orientation terms compare face windings: wind both meshes with their normals outwards (positive volume)
    fs, ft = _outward(vs, fs), _outward(vt, ft)
    b2 = spectral_basis(vs, fs, k=config.k, cache_dir=cache_dir)
    b1 = spectral_basis(vt, ft, k=config.k, cache_dir=cache_dir)
    # point clouds to unit area too (the area their Laplacian's mass gives), so that every distance compares
    # with a mesh's and with the settings' radii
    vs, b2 = (vs, b2) if fs is not None else _to_unit_area(vs, b2)
    vt, b1 = (vt, b1) if ft is not None else _to_unit_area(vt, b1)
    assert config.n_sample_rank is not None  # resolved
    samples2 = farthest_point_sampling(vs, min(config.n_sample_rank, vs.shape[0]), start=0)
    samples1 = None
    if 0 < config.n_target_samples < vt.shape[0]:
        samples1 = farthest_point_sampling(vt, config.n_target_samples, start=0).long()
    # shortest-path graphs, built once: the ranking of meshes and the anchor refinement both use them
    needs_graphs = config.anchors_on or (fs is not None and ft is not None)
    # each keeps the distances it has computed: the anchors' images under different candidates often coincide
    graphs = (ShortestPathCache(shape_graph(vt, ft)), ShortestPathCache(shape_graph(vs, fs))) if needs_graphs else None
    d1, d2 = _descriptors(b1, b2, config)
    k_cloud = config.cloud_neighbours
    clouds = (
        None if ft is not None else cloud_frame(vt, k_cloud),
        None if fs is not None else cloud_frame(vs, k_cloud),
    )
    return PreparedPair(vt, ft, b1, vs, fs, b2, d1, d2, samples2, graphs, device, clouds, samples1)
