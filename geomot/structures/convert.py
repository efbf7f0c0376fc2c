"""Shapes -> measures.

``mesh_to_measure(mesh, "vertices" | "faces" | "samples" | "varifold")`` and :func:`as_measure`, the single entry
point through which every loss accepts tensors, PointClouds, Measures and Meshes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from geomot._core.batch import to_batched
from geomot._core.checks import check_float_tensor, check_positive, describe
from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.ops.sampling import sample_surface
from geomot.structures.measure import Measure
from geomot.structures.mesh import Mesh
from geomot.structures.pointcloud import PointCloud

__all__ = ["MESH_MEASURES", "as_measure", "check_pair_dims", "mesh_to_measure", "resolve_mesh_measure"]

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


_DEFAULT_MESH_MEASURE = "varifold"


def resolve_mesh_measure(measure: str | None) -> str:
    """The kind a Mesh becomes for ``measure`` (``None`` -> ``"varifold"``); an unknown name raises."""
    kind = _DEFAULT_MESH_MEASURE if measure is None else measure
    MESH_MEASURES.get(kind, arg="measure")
    return kind


def as_measure(
    x: object,
    *,
    weights: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    measure: str | None = None,
    name: str = "x",
    default_mesh_measure: str | None = None,
    **measure_kwargs: object,
) -> tuple[Measure, bool]:
    """Normalise a loss input to a :class:`Measure`, by the one rule every loss follows.

    =========================  ============================  ==================================================
    input                      ``measure``                   measure
    =========================  ============================  ==================================================
    tensor ``(N, D)``          ignored                       the points, ``weights`` or uniform, dimension D
    ``(B, N, D)`` (+lengths)   ignored                       one measure per item
    :class:`PointCloud`        ignored                       its points (R^3), its weights or uniform
    :class:`Measure`           ignored                       itself
    :class:`Mesh`              ``None`` or ``"varifold"``    face centroids + unit normals (R^6), area weights
    :class:`Mesh`              ``"vertices"``                vertices (R^3), lumped vertex areas
    :class:`Mesh`              ``"faces"``                   face centroids (R^3), face areas
    :class:`Mesh`              ``"samples"``                 ``n_samples`` area-uniform surface points (R^3)
    =========================  ============================  ==================================================

    ``measure`` only concerns Mesh inputs: for any other input it is irrelevant, never an error (a loss applies one
    ``measure`` to both of its sides, of which only one may be a mesh). A mesh compared with a 3-D point cloud
    therefore needs ``measure="vertices"``, ``"faces"`` or ``"samples"``; :func:`check_pair_dims` says so.

    Args:
        x: the input.
        weights: ``(N,)`` / ``(B, N)`` masses of a tensor input (uniform when None).
        lengths: ``(B,)`` item sizes of a padded tensor input.
        measure: how a Mesh becomes a measure (see the table); an unknown name raises.
        name: the argument's name in messages.
        default_mesh_measure: deprecated; the kind a Mesh becomes when ``measure`` is None. Every loss follows the
            table above, so pass ``measure=`` instead.
        **measure_kwargs: options of :func:`mesh_to_measure` (``n_samples``, ``normal_weight``, ``generator``).

    Returns:
        ``(measure, batched)``: ``batched`` is False only for an unbatched ``(N, D)`` tensor, so that outputs can
        mirror their inputs.

    Raises:
        ValidationError: unknown ``measure``; ``weights``/``lengths`` with a non-tensor input; an empty point set.
        ShapeError: an input of another type; weights whose shape does not match the points.
    """
    if default_mesh_measure is not None:
        warnings.warn(
            "as_measure: the argument 'default_mesh_measure' is deprecated and will be removed in a future release; "
            "a Mesh becomes its varifold unless measure= says otherwise",
            GeomotDeprecationWarning,
            stacklevel=2,
        )
    kind = resolve_mesh_measure(default_mesh_measure if measure is None else measure)
    if isinstance(x, torch.Tensor):
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
        kind_name = type(x).__name__
        raise ValidationError(f"{name}_{extra[0]}: only accepted with tensor inputs, but {name} is a {kind_name}")
    if isinstance(x, Measure):
        return x, True
    if isinstance(x, PointCloud):
        return x.to_measure(), True
    if isinstance(x, Mesh):
        return mesh_to_measure(x, kind, **measure_kwargs), True  # type: ignore[arg-type]
    raise ShapeError(f"{name}: expected a tensor, PointCloud, Measure or Mesh, got {describe(x)}")


def _dim_of(m: object) -> int:
    if isinstance(m, Measure):
        return m.dim
    if isinstance(m, torch.Tensor):
        return int(m.shape[-1])
    return int(m)  # type: ignore[call-overload]


def check_pair_dims(
    mx: Measure | torch.Tensor | int,
    my: Measure | torch.Tensor | int,
    x: object,
    y: object,
    *,
    measure: str | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> int:
    """Check that the two sides of a loss live in the same dimension; return it.

    Args:
        mx, my: the two sides after conversion (Measures, ``(..., D)`` tensors or the dimensions themselves).
        x, y: the inputs as the user gave them (to tell whether a side was a Mesh).
        measure: the ``measure=`` the loss was called with (``None``: a Mesh became its 6-D varifold by default).
        names: the two arguments' names in the message.

    Raises:
        ShapeError: the dimensions differ. When one side is a :class:`Mesh` the message says what it was turned
            into and names ``measure="vertices"``, ``"faces"`` or ``"samples"`` as the way to compare a mesh with a
            point cloud.
    """
    dx, dy = _dim_of(mx), _dim_of(my)
    if dx == dy:
        return dx
    nx, ny = names
    kind = resolve_mesh_measure(measure)
    how = "by default" if measure is None else f"by measure={kind!r}"
    into = f"its {{d}}-D {kind}" if kind == "varifold" else f"{{d}}-D points ({kind})"
    fix = ""
    if isinstance(x, Mesh) or isinstance(y, Mesh):
        fix = (
            "; pass measure='vertices', 'faces' or 'samples' to compare a mesh with a point cloud"
            if kind == "varifold"
            else f"; a Mesh side is {kind} in R^3, so the other side must hold 3-D points"
        )
    if isinstance(x, Mesh) and not isinstance(y, Mesh):
        that = f"that of {nx}, a Mesh turned into {into.format(d=dx)} {how}"
        raise ShapeError(f"{ny}: expected points of dimension {dx} ({that}), got {dy}{fix}")
    if isinstance(y, Mesh) and not isinstance(x, Mesh):
        got = f"{dy} ({ny} is a Mesh turned into {into.format(d=dy)} {how})"
        raise ShapeError(f"{ny}: expected points of dimension {dx} (that of {nx}), got {got}{fix}")
    raise ShapeError(f"{ny}: expected points of dimension {dx} (that of {nx}), got {dy}")
