"""Mesh regularisers for fitting and deformation: edge length, Laplacian smoothing, normal consistency.

Each function takes a :class:`~geomot.structures.Mesh` (``B`` items, ragged) or ``verts`` ``(V, 3)`` /
``(B, V, 3)`` with the keyword ``faces=`` ``(F, 3)`` (one connectivity shared by the batch), returns one value per
item reduced by ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``: ``(B,)``, or ``()`` for ``(V, 3)`` verts) and
is differentiable in the vertex positions.

The whole batch is computed at once on packed tensors (as PyTorch3D's mesh losses do): the vertices of all items
one after the other, with per-item means taken by scatter-adds. The index structures (edges, pairs of adjacent
faces, boundary vertices, the Laplacian's index) depend on the faces only; with a Mesh they are built on the first
call and kept on its :meth:`~geomot.structures.Mesh.topology`, which :meth:`~geomot.structures.Mesh.update_verts`
passes on, so the calls of a fit do no ``unique`` and no host synchronisation. With raw tensors they are rebuilt
at every call: pass a Mesh in a loop.

- :func:`edge_length_loss`: ``mean_{(i,j) in E} (|v_i - v_j| - L)^2`` (``L = target_length``; ``L = 0`` gives the
  mean squared edge length, quadratic in the scale).
- :func:`laplacian_smoothing_loss`: ``mean_i |v_i - sum_j w_ij v_j / sum_j w_ij|^2`` with uniform weights
  ``w_ij = 1`` on edges or cotangent weights ``w_ij = (cot a_ij + cot b_ij) / 2`` (the weights of
  :mod:`geomot.ops.laplacian`; Desbrun et al., SIGGRAPH 1999; Nealen et al., "Laplacian mesh optimization", 2006).
  The cotangent residual vanishes on every flat interior vertex (linear precision).
- :func:`normal_consistency_loss`: ``mean_{f ~ g} (1 - <n_f, n_g>)`` over pairs of faces sharing an edge.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_positive, describe
from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot._core.registry import Registry
from geomot.ops.geometry import edges, face_normals
from geomot.ops.laplacian import cotangent_weights
from geomot.structures import Mesh
from geomot.structures.mesh import MeshTopology

__all__ = [
    "LAPLACIAN_WEIGHTS",
    "LaplacianWeights",
    "MeshRegularizer",
    "edge_length_loss",
    "laplacian_residual",
    "laplacian_smoothing_loss",
    "normal_consistency_loss",
]


class _Packed(NamedTuple):
    verts: torch.Tensor  # (V, 3) packed
    topology: MeshTopology
    batched: bool


def _packed(mesh_or_verts: object, faces: torch.Tensor | None) -> _Packed:
    """Packed vertices, the (cached for a Mesh) topology and whether the input was batched."""
    if isinstance(mesh_or_verts, Mesh):
        if faces is not None:
            raise ValidationError("faces: not accepted with a Mesh (it carries its faces)")
        return _Packed(mesh_or_verts.verts_packed(), mesh_or_verts.topology(), True)
    if not isinstance(mesh_or_verts, torch.Tensor):
        raise ShapeError(f"verts: expected a Mesh or a (V, 3) / (B, V, 3) tensor, got {describe(mesh_or_verts)}")
    v = check_float_tensor(mesh_or_verts, "verts", ndim=(2, 3), last_dim=3)
    if faces is None:
        raise ValidationError("faces: required when verts is a tensor")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2:
        raise ShapeError(f"faces: expected a (F, 3) integer tensor shared by the batch, got {describe(faces)}")
    check_index_tensor(faces, "faces", size=v.shape[-2], ncols=3)
    if faces.shape[0] == 0:
        raise ValidationError("faces: the mesh has no faces")
    if faces.device != v.device:
        raise ShapeError(f"faces: expected device {v.device} (that of verts), got {faces.device}")
    batch = v.shape[0] if v.dim() == 3 else 1
    topo = MeshTopology.shared(faces.long(), v.shape[-2], batch)
    return _Packed(v.reshape(-1, 3), topo, v.dim() == 3)


def _faces_keyword(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``faces`` is keyword-only; a positional ``faces`` still works for now and warns."""

    @functools.wraps(fn)
    def wrapper(mesh_or_verts: object, *args: Any, **kwargs: Any) -> Any:
        if args:
            if len(args) > 1 or "faces" in kwargs:
                raise ValidationError(
                    f"{fn.__name__}: takes one positional argument (a Mesh or verts); pass faces= and the settings "
                    "by keyword"
                )
            warnings.warn(
                f"{fn.__name__}: passing faces positionally is deprecated and will be removed in a future release; "
                "use faces=...",
                GeomotDeprecationWarning,
                stacklevel=2,
            )
            kwargs["faces"] = args[0]
        return fn(mesh_or_verts, **kwargs)

    return wrapper


def _per_item_mean(values: torch.Tensor, item: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean of ``values (K,)`` over the entries of each item (0 for an item with no entry)."""
    total = values.new_zeros(counts.shape[0]).index_add(0, item, values)
    return total / counts.clamp_min(1).to(values.dtype)


@_faces_keyword
def edge_length_loss(
    mesh_or_verts: object,
    *,
    faces: torch.Tensor | None = None,
    target_length: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean over the unique edges of each mesh of ``(|v_i - v_j| - target_length)^2``.

    Args:
        mesh_or_verts: a :class:`Mesh` or verts ``(V, 3)`` / ``(B, V, 3)``.
        faces: ``(F, 3)`` int64 when verts are given.
        target_length: ``L >= 0``; 0 penalises the mean squared edge length.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(V, 3)`` verts).
    """
    target = check_positive(target_length, "target_length", strict=False)
    check_reduction(reduction)
    v, topo, batched = _packed(mesh_or_verts, faces)
    e = topo.edges_packed()
    d = v[e[:, 0]] - v[e[:, 1]]
    sq = (d * d).sum(-1)
    per_edge = sq if target == 0 else (sq.clamp_min(1e-30).sqrt() - target).square()
    item = topo.edge_to_mesh()
    per_item = _per_item_mean(per_edge, item, topo.count_per_mesh(item, "edges"))
    return reduce(per_item, reduction, batched=batched)


class LaplacianWeights(NamedTuple):
    """An edge-weight scheme of the Laplacian smoothing loss, split into what depends on the faces only (the index,
    cached per mesh) and what depends on the positions (the weights, recomputed at every call).

    Attributes:
        index: ``faces (F, 3) -> (2, K)`` int64 pairs ``(i, j)``; each pair acts in both directions.
        weights: ``(verts (V, 3), faces (F, 3), index (2, K)) -> (K,)`` weights ``w_ij``.
    """

    index: Callable[[torch.Tensor], torch.Tensor]
    weights: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _cotangent_index(faces: torch.Tensor) -> torch.Tensor:
    # the order of geomot.ops.laplacian.cotangent_weights: edges (0, 1), (1, 2), (2, 0) of every face
    return torch.stack([torch.cat([faces[:, 0], faces[:, 1], faces[:, 2]]),
                        torch.cat([faces[:, 1], faces[:, 2], faces[:, 0]])])


#: Edge-weight schemes of the Laplacian smoothing loss: ``"uniform"`` (``w_ij = 1`` on every edge) and
#: ``"cotangent"`` (``w_ij = cot(alpha_ij) / 2`` per half-edge, summing to ``(cot a_ij + cot b_ij) / 2``).
LAPLACIAN_WEIGHTS: Registry[LaplacianWeights] = Registry("laplacian weights")
LAPLACIAN_WEIGHTS.add(
    "uniform", LaplacianWeights(lambda f: edges(f).t(), lambda v, f, index: v.new_ones(index.shape[1]))
)
LAPLACIAN_WEIGHTS.add("cotangent", LaplacianWeights(_cotangent_index, lambda v, f, index: cotangent_weights(v, f)[1]))


def _residual(verts: torch.Tensor, faces: torch.Tensor, index: torch.Tensor, method: str) -> torch.Tensor:
    w = LAPLACIAN_WEIGHTS.get(method, arg="method").weights(verts, faces, index)
    i, j = index
    n = verts.shape[0]
    wsum = verts.new_zeros(n).index_add(0, i, w).index_add(0, j, w)
    avg = verts.new_zeros(n, 3).index_add(0, i, w[:, None] * verts[j]).index_add(0, j, w[:, None] * verts[i])
    ok = ~(wsum.abs() <= 1e-12)  # NaN weights stay NaN
    safe = torch.where(ok, wsum, torch.ones_like(wsum))
    return torch.where(ok[:, None], verts - avg / safe[:, None], torch.zeros_like(verts))


def laplacian_residual(verts: torch.Tensor, faces: torch.Tensor, *, method: str = "uniform") -> torch.Tensor:
    """``delta_i = v_i - sum_j w_ij v_j / sum_j w_ij`` for every vertex, ``(V, 3)``.

    Vertices with no incident edge, or whose weights sum to ~0 (degenerate cotangent stars), get ``delta = 0``.

    Args:
        verts: ``(V, 3)``.
        faces: ``(F, 3)`` int64.
        method: a name of :data:`LAPLACIAN_WEIGHTS` (``"uniform"`` or ``"cotangent"``).
    """
    scheme = LAPLACIAN_WEIGHTS.get(method, arg="method")
    return _residual(verts, faces, scheme.index(faces), method)


@_faces_keyword
def laplacian_smoothing_loss(
    mesh_or_verts: object,
    *,
    faces: torch.Tensor | None = None,
    method: str = "uniform",
    exclude_boundary: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean over the vertices of each mesh of ``|delta_i|^2`` with ``delta`` from :func:`laplacian_residual`.

    Args:
        mesh_or_verts: a :class:`Mesh` or verts ``(V, 3)`` / ``(B, V, 3)``.
        faces: ``(F, 3)`` int64 when verts are given.
        method: ``"uniform"`` or ``"cotangent"`` (:data:`LAPLACIAN_WEIGHTS`).
        exclude_boundary: average over interior vertices only (boundary vertices of an open surface never have
            a zero residual); an item without interior vertex gives 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(V, 3)`` verts).
    """
    scheme = LAPLACIAN_WEIGHTS.get(method, arg="method")
    check_reduction(reduction)
    v, topo, batched = _packed(mesh_or_verts, faces)
    index = topo.cached(("laplacian", method), lambda: scheme.index(topo.faces_packed))
    r2 = _residual(v, topo.faces_packed, index, method).square().sum(-1)
    item = topo.vert_to_mesh
    if exclude_boundary:
        interior = topo.cached("interior", lambda: ~topo.boundary_verts_packed())
        r2 = torch.where(interior, r2, torch.zeros_like(r2))
        counts = topo.count_per_mesh(item[interior], "interior")
    else:
        counts = topo.num_verts
    return reduce(_per_item_mean(r2, item, counts), reduction, batched=batched)


@_faces_keyword
def normal_consistency_loss(
    mesh_or_verts: object, *, faces: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Mean over pairs of faces ``f, g`` sharing an edge of ``1 - <n_f, n_g>`` (unit face normals).

    0 for a plane; ``1 - cos(theta)`` for a fold of dihedral deviation ``theta``; ``4/3`` for a regular
    tetrahedron (``<n_f, n_g> = -1/3``); a mesh without interior edges gives 0. Every pair around a non-manifold
    edge counts. Orientation matters: consistently oriented meshes are expected.

    Args:
        mesh_or_verts: a :class:`Mesh` or verts ``(V, 3)`` / ``(B, V, 3)``.
        faces: ``(F, 3)`` int64 when verts are given.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(V, 3)`` verts).
    """
    check_reduction(reduction)
    v, topo, batched = _packed(mesh_or_verts, faces)
    p = topo.face_pairs_packed()
    n = face_normals(v, topo.faces_packed)
    per_pair = 1.0 - (n[p[:, 0]] * n[p[:, 1]]).sum(-1)
    item = topo.face_pair_to_mesh()
    per_item = _per_item_mean(per_pair, item, topo.count_per_mesh(item, "face_pairs"))
    return reduce(per_item, reduction, batched=batched)


class MeshRegularizer(torch.nn.Module):
    """Weighted sum of the three regularisers:
    ``edge * edge_length + laplacian * laplacian_smoothing + normal * normal_consistency``.

    Settings are keyword-only and checked at construction; ``forward(mesh, *, faces=None)`` takes a :class:`Mesh`
    (or verts ``(V, 3)`` / ``(B, V, 3)`` with ``faces=``) and returns ``()`` or, with ``reduction="none"``,
    ``(B,)``.

    Args:
        edge: weight of :func:`edge_length_loss` (``>= 0``).
        laplacian: weight of :func:`laplacian_smoothing_loss` (``>= 0``).
        normal: weight of :func:`normal_consistency_loss` (``>= 0``).
        target_length: passed to :func:`edge_length_loss`.
        method: passed to :func:`laplacian_smoothing_loss`.
        exclude_boundary: passed to :func:`laplacian_smoothing_loss`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValidationError: a negative or non-finite weight, all weights 0, a bad ``target_length``, ``method`` or
            ``reduction``.
    """

    def __init__(
        self,
        *,
        edge: float = 1.0,
        laplacian: float = 1.0,
        normal: float = 1.0,
        target_length: float = 0.0,
        method: str = "uniform",
        exclude_boundary: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.weights = {
            "edge": check_positive(edge, "edge", strict=False),
            "laplacian": check_positive(laplacian, "laplacian", strict=False),
            "normal": check_positive(normal, "normal", strict=False),
        }
        if not any(self.weights.values()):
            raise ValidationError("MeshRegularizer: edge, laplacian and normal are all 0; nothing to compute")
        self.target_length = check_positive(target_length, "target_length", strict=False)
        LAPLACIAN_WEIGHTS.get(method, arg="method")
        self.method, self.exclude_boundary, self.reduction = method, bool(exclude_boundary), check_reduction(reduction)

    def forward(self, mesh: object, *args: torch.Tensor, faces: torch.Tensor | None = None) -> torch.Tensor:
        if args:
            if len(args) > 1 or faces is not None:
                raise ValidationError("MeshRegularizer.forward: takes one positional argument (a Mesh or verts)")
            warnings.warn(
                "MeshRegularizer.forward: passing faces positionally is deprecated and will be removed in a future "
                "release; use faces=...",
                GeomotDeprecationWarning,
                stacklevel=2,
            )
            faces = args[0]
        r = self.reduction
        terms = []
        if self.weights["edge"]:
            terms.append(self.weights["edge"] * edge_length_loss(
                mesh, faces=faces, target_length=self.target_length, reduction=r
            ))
        if self.weights["laplacian"]:
            terms.append(self.weights["laplacian"] * laplacian_smoothing_loss(
                mesh, faces=faces, method=self.method, exclude_boundary=self.exclude_boundary, reduction=r
            ))
        if self.weights["normal"]:
            terms.append(self.weights["normal"] * normal_consistency_loss(mesh, faces=faces, reduction=r))
        return functools.reduce(torch.add, terms)

    def extra_repr(self) -> str:
        return (
            f"weights={self.weights}, target_length={self.target_length}, method={self.method!r}, "
            f"exclude_boundary={self.exclude_boundary}, reduction={self.reduction!r}"
        )
