"""Mesh regularisers for fitting and deformation: edge length, Laplacian smoothing, normal consistency.

Each function takes a :class:`~geomot.structures.Mesh` (``B`` items) or ``verts`` ``(V, 3)`` / ``(B, V, 3)``
with ``faces`` ``(F, 3)`` (one connectivity shared by the batch), returns one value per item reduced by
``reduction`` (``"mean"``, ``"sum"`` or ``"none"``: ``(B,)``, or ``()`` for ``(V, 3)`` verts) and is
differentiable in the vertex positions.

- :func:`edge_length_loss`: ``mean_{(i,j) in E} (|v_i - v_j| - L)^2`` (``L = target_length``; ``L = 0`` gives the
  mean squared edge length, quadratic in the scale).
- :func:`laplacian_smoothing_loss`: ``mean_i |v_i - sum_j w_ij v_j / sum_j w_ij|^2`` with uniform weights
  ``w_ij = 1`` on edges or cotangent weights ``w_ij = (cot a_ij + cot b_ij) / 2`` (the weights of
  :mod:`geomot.ops.laplacian`; Desbrun et al., SIGGRAPH 1999; Nealen et al., "Laplacian mesh optimization", 2006).
  The cotangent residual vanishes on every flat interior vertex (linear precision).
- :func:`normal_consistency_loss`: ``mean_{f ~ g} (1 - <n_f, n_g>)`` over pairs of faces sharing an edge.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_positive, describe
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot._core.registry import Registry
from geomot.ops.geometry import boundary_loops, edges, face_normals
from geomot.ops.laplacian import cotangent_weights
from geomot.structures import Mesh

__all__ = [
    "LAPLACIAN_WEIGHTS",
    "MeshRegularizer",
    "edge_length_loss",
    "laplacian_residual",
    "laplacian_smoothing_loss",
    "normal_consistency_loss",
]


def _items(
    mesh_or_verts: object, faces: torch.Tensor | None
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
    """List of ``(verts (V, 3), faces (F, 3))`` and whether the input was batched."""
    if isinstance(mesh_or_verts, Mesh):
        if faces is not None:
            raise ValidationError("faces: not accepted with a Mesh (it carries its faces)")
        return list(zip(mesh_or_verts.verts_list(), mesh_or_verts.faces_list())), True
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
    f = faces.long()
    if v.dim() == 2:
        return [(v, f)], False
    return [(vb, f) for vb in v.unbind(0)], True


def edge_length_loss(
    mesh_or_verts: object,
    faces: torch.Tensor | None = None,
    *,
    target_length: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean over the unique edges of ``(|v_i - v_j| - target_length)^2``.

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
    items, batched = _items(mesh_or_verts, faces)
    out = []
    for v, f in items:
        e = edges(f)
        d = v[e[:, 0]] - v[e[:, 1]]
        if target == 0:
            out.append((d * d).sum(-1).mean())
        else:
            out.append(((d * d).sum(-1).clamp_min(1e-30).sqrt() - target).square().mean())
    return reduce(torch.stack(out), reduction, batched=batched)


def _uniform_weights(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    e = edges(faces).t()
    return e, verts.new_ones(e.shape[1])


#: Edge-weight schemes ``(verts, faces) -> (index (2, E), w (E,))`` of the Laplacian smoothing loss.
LAPLACIAN_WEIGHTS: Registry[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = Registry(
    "laplacian weights"
)
LAPLACIAN_WEIGHTS.add("uniform", _uniform_weights)
LAPLACIAN_WEIGHTS.add("cotangent", cotangent_weights)


def laplacian_residual(verts: torch.Tensor, faces: torch.Tensor, *, method: str = "uniform") -> torch.Tensor:
    """``delta_i = v_i - sum_j w_ij v_j / sum_j w_ij`` for every vertex, ``(V, 3)``.

    Vertices with no incident edge, or whose weights sum to ~0 (degenerate cotangent stars), get ``delta = 0``.

    Args:
        verts: ``(V, 3)``.
        faces: ``(F, 3)`` int64.
        method: a name of :data:`LAPLACIAN_WEIGHTS` (``"uniform"`` or ``"cotangent"``).
    """
    index, w = LAPLACIAN_WEIGHTS.get(method, arg="method")(verts, faces)
    i, j = index
    n = verts.shape[0]
    wsum = verts.new_zeros(n).index_add(0, i, w).index_add(0, j, w)
    avg = verts.new_zeros(n, 3).index_add(0, i, w[:, None] * verts[j]).index_add(0, j, w[:, None] * verts[i])
    ok = wsum.abs() > 1e-12
    safe = torch.where(ok, wsum, torch.ones_like(wsum))
    return torch.where(ok[:, None], verts - avg / safe[:, None], torch.zeros_like(verts))


def laplacian_smoothing_loss(
    mesh_or_verts: object,
    faces: torch.Tensor | None = None,
    *,
    method: str = "uniform",
    exclude_boundary: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean over vertices of ``|delta_i|^2`` with ``delta`` from :func:`laplacian_residual`.

    Args:
        mesh_or_verts: a :class:`Mesh` or verts ``(V, 3)`` / ``(B, V, 3)``.
        faces: ``(F, 3)`` int64 when verts are given.
        method: ``"uniform"`` or ``"cotangent"`` (:data:`LAPLACIAN_WEIGHTS`).
        exclude_boundary: average over interior vertices only (boundary vertices of an open surface never have
            a zero residual).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(V, 3)`` verts).
    """
    LAPLACIAN_WEIGHTS.get(method, arg="method")
    check_reduction(reduction)
    items, batched = _items(mesh_or_verts, faces)
    out = []
    for v, f in items:
        r2 = laplacian_residual(v, f, method=method).square().sum(-1)
        if exclude_boundary:
            keep = torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
            for loop in boundary_loops(f):
                keep[loop.to(v.device)] = False
            r2 = r2[keep] if bool(keep.any()) else r2.new_zeros(1)
        out.append(r2.mean())
    return reduce(torch.stack(out), reduction, batched=batched)


def _adjacent_face_pairs(faces: torch.Tensor) -> torch.Tensor:
    """``(P, 2)`` pairs of faces sharing an edge (every pair around a non-manifold edge)."""
    nf = faces.shape[0]
    half = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    key = torch.sort(half, dim=1).values
    fid = torch.arange(nf, device=faces.device).repeat(3)
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    order = torch.argsort(inv, stable=True)
    inv_s, fid_s = inv[order], fid[order]
    pairs = []
    for d in range(1, int(torch.bincount(inv).max())):
        same = inv_s[d:] == inv_s[:-d]
        pairs.append(torch.stack([fid_s[:-d][same], fid_s[d:][same]], 1))
    return torch.cat(pairs, 0) if pairs else faces.new_zeros((0, 2))


def normal_consistency_loss(
    mesh_or_verts: object, faces: torch.Tensor | None = None, *, reduction: str = "mean"
) -> torch.Tensor:
    """Mean over pairs of faces ``f, g`` sharing an edge of ``1 - <n_f, n_g>`` (unit face normals).

    0 for a plane; ``1 - cos(theta)`` for a fold of dihedral deviation ``theta``; a mesh without interior edges
    gives 0. Orientation matters: consistently oriented meshes are expected.

    Args:
        mesh_or_verts: a :class:`Mesh` or verts ``(V, 3)`` / ``(B, V, 3)``.
        faces: ``(F, 3)`` int64 when verts are given.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(V, 3)`` verts).
    """
    check_reduction(reduction)
    items, batched = _items(mesh_or_verts, faces)
    out = []
    pairs_cache: dict[int, torch.Tensor] = {}
    for v, f in items:
        key = id(f)
        if key not in pairs_cache:
            pairs_cache[key] = _adjacent_face_pairs(f)
        p = pairs_cache[key]
        n = face_normals(v, f)
        if p.shape[0] == 0:
            out.append(v.new_zeros(()) + 0.0 * v.sum())
        else:
            out.append((1.0 - (n[p[:, 0]] * n[p[:, 1]]).sum(-1)).mean())
    return reduce(torch.stack(out), reduction, batched=batched)


class MeshRegularizer(torch.nn.Module):
    """Weighted sum of the three regularisers:
    ``w_edge * edge_length + w_laplacian * laplacian_smoothing + w_normal * normal_consistency``.

    Args:
        edge: weight of :func:`edge_length_loss`.
        laplacian: weight of :func:`laplacian_smoothing_loss`.
        normal: weight of :func:`normal_consistency_loss`.
        target_length: passed to :func:`edge_length_loss`.
        method: passed to :func:`laplacian_smoothing_loss`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        *,
        edge: float = 1.0,
        laplacian: float = 1.0,
        normal: float = 1.0,
        target_length: float = 0.0,
        method: str = "uniform",
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
        check_positive(target_length, "target_length", strict=False)
        LAPLACIAN_WEIGHTS.get(method, arg="method")
        check_reduction(reduction)
        self.target_length, self.method, self.reduction = target_length, method, reduction

    def forward(self, mesh_or_verts: object, faces: torch.Tensor | None = None) -> torch.Tensor:
        r = self.reduction
        total: torch.Tensor | float = 0.0
        if self.weights["edge"]:
            total = total + self.weights["edge"] * edge_length_loss(
                mesh_or_verts, faces, target_length=self.target_length, reduction=r
            )
        if self.weights["laplacian"]:
            total = total + self.weights["laplacian"] * laplacian_smoothing_loss(
                mesh_or_verts, faces, method=self.method, reduction=r
            )
        if self.weights["normal"]:
            total = total + self.weights["normal"] * normal_consistency_loss(mesh_or_verts, faces, reduction=r)
        return total  # type: ignore[return-value]  # at least one weight is > 0

    def extra_repr(self) -> str:
        return f"weights={self.weights}, target_length={self.target_length}, method={self.method!r}"
