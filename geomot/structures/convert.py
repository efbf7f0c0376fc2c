"""Shapes -> measures.

``mesh_to_measure(mesh, "vertices" | "faces" | "samples" | "varifold")`` and :func:`as_measure`, the single entry
point through which every loss accepts tensors, PointClouds, Measures and Meshes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from geomot._core.batch import to_batched
from geomot._core.checks import check_float_tensor, check_positive, describe
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.ops.sampling import sample_surface
from geomot.structures.measure import Measure
from geomot.structures.mesh import Mesh
from geomot.structures.pointcloud import PointCloud

__all__ = ["MESH_MEASURES", "as_measure", "mesh_to_measure"]

MESH_MEASURES: Registry[Callable[..., tuple[torch.Tensor, torch.Tensor]]] = Registry("mesh measure")


@MESH_MEASURES.register("vertices")
def _vertices(v: torch.Tensor, f: torch.Tensor, **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex positions with lumped (barycentric) area mass."""
    from geomot.ops.geometry import vertex_areas

    return v, vertex_areas(v, f)


@MESH_MEASURES.register("faces")
def _faces(v: torch.Tensor, f: torch.Tensor, **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Face centroids with area mass."""
    from geomot.ops.geometry import face_areas, face_centroids

    return face_centroids(v, f), face_areas(v, f)


@MESH_MEASURES.register("samples")
def _samples(
    v: torch.Tensor, f: torch.Tensor, *, n_samples: int = 5000, generator: torch.Generator | None = None, **_: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_samples`` points uniform by area (differentiable in the vertices), uniform mass."""
    pts = sample_surface(v, f, n_samples, generator=generator).points
    return pts, pts.new_full((pts.shape[0],), 1.0 / pts.shape[0])


@MESH_MEASURES.register("varifold")
def _varifold(
    v: torch.Tensor, f: torch.Tensor, *, normal_weight: float = 1.0, **_: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """Oriented varifold: atoms ``(c_f, lambda n_f)`` in ``R^3 x lambda S^2`` with area mass (Le et al., ICLR 2024)."""
    from geomot.ops.geometry import face_areas_normals, face_centroids

    areas, normals = face_areas_normals(v, f)
    return torch.cat([face_centroids(v, f), normal_weight * normals], dim=-1), areas


def mesh_to_measure(
    mesh: Mesh,
    kind: str = "varifold",
    *,
    n_samples: int = 5000,
    normal_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> Measure:
    """Turn a (batched) mesh into a (batched) probability measure.

    Kinds:
        - ``"vertices"``: ``sum_v (A_v / A) delta_{x_v}``, lumped area ``A_v`` = a third of the incident faces' area.
        - ``"faces"``: ``sum_f (A_f / A) delta_{c_f}`` with face centroids ``c_f``.
        - ``"samples"``: ``(1/n) sum_k delta_{y_k}``, ``y_k`` uniform on the surface by area, reparameterised so that
          gradients reach the vertices; reproducible with ``generator``.
        - ``"varifold"``: ``sum_f (A_f / A) delta_{(c_f, lambda n_f)}`` on ``R^3 x S^2`` (D = 6), the discrete oriented
          varifold of "Diffeomorphic Mesh Deformation via Efficient Optimal Transport for Cortical Surface
          Reconstruction" (Le et al., ICLR 2024); ``lambda = normal_weight`` balances normals against positions.

    Args:
        mesh: a :class:`Mesh` of ``B`` items.
        kind: one of the kinds above.
        n_samples: number of samples for ``"samples"``.
        normal_weight: ``lambda`` for ``"varifold"``.
        generator: random generator for ``"samples"``.

    Returns:
        a :class:`Measure` with ``B`` items (support ``(B, N, 3)``, or ``(B, N, 6)`` for varifolds).
    """
    fn = MESH_MEASURES.get(kind, arg="measure")
    check_positive(normal_weight, "normal_weight", strict=False)
    sup, wts = [], []
    for v, f in zip(mesh.verts_list(), mesh.faces_list()):
        s, w = fn(v, f, n_samples=n_samples, normal_weight=normal_weight, generator=generator)
        sup.append(s)
        wts.append(w)
    return Measure(sup, wts)


def as_measure(
    x: object,
    *,
    weights: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    measure: str | None = None,
    default_mesh_measure: str = "varifold",
    name: str = "x",
    **measure_kwargs: object,
) -> tuple[Measure, bool]:
    """Normalise a loss input to a :class:`Measure`.

    Accepts a tensor ``(N, D)`` / ``(B, N, D)`` (with optional ``weights`` and ``lengths``), a :class:`PointCloud`,
    a :class:`Measure` or a :class:`Mesh` (converted with ``measure``, default ``default_mesh_measure``).

    Returns:
        ``(measure, batched)``: ``batched`` is False only for an unbatched ``(N, D)`` tensor, so that outputs can
        mirror their inputs.
    """
    if isinstance(x, torch.Tensor):
        if measure is not None:
            raise ValidationError(f"measure: only meaningful for Mesh inputs, but {name} is a tensor")
        check_float_tensor(x, name, ndim=(2, 3), finite=False, allow_empty=True)
        if x.shape[-2] == 0:
            raise ValidationError(f"{name}: empty point set (shape {tuple(x.shape)})")
        xb, lb, batched = to_batched(x, name, lengths)
        w = None
        if weights is not None:
            if not isinstance(weights, torch.Tensor):
                raise ShapeError(f"{name}_weights: expected a tensor, got {describe(weights)}")
            w = weights if batched else weights.unsqueeze(0)
            if tuple(w.shape) != tuple(xb.shape[:2]):
                raise ShapeError(
                    f"{name}_weights: expected shape {tuple(x.shape[:-1])} to match {name}, got {tuple(weights.shape)}"
                )
        try:
            return Measure(xb, w, lengths=lb), batched
        except (ShapeError, ValidationError) as e:
            msg = str(e)
            for arg, public in (("support", name), ("weights", f"{name}_weights"), ("lengths", f"{name}_lengths")):
                if msg.startswith(f"{arg}:"):
                    msg = public + msg[len(arg) :]
                    break
            raise type(e)(msg) from None
    extra = [k for k, v in (("weights", weights), ("lengths", lengths)) if v is not None]
    if extra:
        kind = type(x).__name__
        raise ValidationError(f"{name}_{extra[0]}: only accepted with tensor inputs, but {name} is a {kind}")
    if isinstance(x, Measure):
        if measure is not None:
            raise ValidationError(f"measure: only meaningful for Mesh inputs, but {name} is a Measure")
        return x, True
    if isinstance(x, PointCloud):
        if measure is not None:
            raise ValidationError(f"measure: only meaningful for Mesh inputs, but {name} is a PointCloud")
        return x.to_measure(), True
    if isinstance(x, Mesh):
        return mesh_to_measure(x, measure or default_mesh_measure, **measure_kwargs), True  # type: ignore[arg-type]
    raise ShapeError(f"{name}: expected a tensor, PointCloud, Measure or Mesh, got {describe(x)}")
