"""Chamfer and Hausdorff distances between point sets (nearest neighbours by :func:`geomot.ops.knn_points`).

Chamfer (the convention of PyTorch3D's ``chamfer_distance`` by default)::

    CD(X, Y) = R_{x in X} d(x, Y) + R_{y in Y} d(y, X),   d(x, Y) = min_{y in Y} |x - y|^2   (squared=True)
                                                        d(x, Y) = min_{y in Y} |x - y|     (squared=False)

with ``R`` the mean (``point_reduction="mean"``) or the sum over the real (unpadded) points. The optional normal
term uses the normal of each point's nearest neighbour (by position)::

    CN(X, Y) = R_{x in X} (1 - |<n_x, n_{y*(x)}>|) + R_{y in Y} (1 - |<n_y, n_{x*(y)}>|)

(normals are normalised first; the absolute value makes it blind to orientation). Hausdorff, symmetric and
unsquared::

    H(X, Y) = max( max_{x in X} min_{y in Y} |x - y|, max_{y in Y} min_{x in X} |x - y| ).

Inputs: tensors ``(N, D)`` / ``(B, N, D)`` with ``*_lengths`` (and ``*_normals`` of the same shape), a
:class:`~geomot.structures.PointCloud` (its normals when present), a :class:`~geomot.structures.Measure` (its
support; weights are ignored) or a :class:`~geomot.structures.Mesh` (its vertices and area-weighted vertex
normals; sample the surface first for a surface-uniform comparison).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomot._core.batch import list_to_padded, mask_from_lengths, to_batched
from geomot._core.checks import check_finite, check_float_tensor, check_positive, describe
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot.ops.knn import knn_gather, knn_points
from geomot.structures import Measure, Mesh, PointCloud

__all__ = ["ChamferLoss", "ChamferTerms", "HausdorffDistance", "chamfer_distance", "chamfer_terms",
           "hausdorff_distance"]



class ChamferTerms(NamedTuple):
    """Result of :func:`chamfer_terms` (reduced like the ``reduction`` argument says).

    Attributes:
        distance: the point term ``CD`` — ``()``, or ``(B,)`` with ``reduction="none"``.
        normals: the normal term ``CN`` of the same shape, or None when either input has no normals.
    """

    distance: torch.Tensor
    normals: torch.Tensor | None


def _as_points(
    x: object, name: str, normals: torch.Tensor | None, lengths: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, bool]:
    """``(points (B, N, D), normals (B, N, D) | None, lengths (B,), batched)``."""
    if isinstance(x, torch.Tensor):
        check_float_tensor(x, name, ndim=(2, 3), finite=False)
        xb, lb, batched = to_batched(x, name, lengths)
        mask = mask_from_lengths(lb, xb.shape[1])
        check_finite(xb[mask], name)
        nb = None
        if normals is not None:
            check_float_tensor(normals, f"{name}_normals", finite=False)
            if normals.shape != x.shape:
                raise ShapeError(
                    f"{name}_normals: expected shape {tuple(x.shape)} (that of {name}), got {tuple(normals.shape)}"
                )
            nb = normals if batched else normals.unsqueeze(0)
            check_finite(nb[mask], f"{name}_normals")
        return xb, nb, lb, batched
    given = [k for k, v in (("normals", normals), ("lengths", lengths)) if v is not None]
    if given:
        raise ValidationError(f"{name}_{given[0]}: only accepted with a tensor {name}, got {type(x).__name__}")
    if isinstance(x, PointCloud):
        return x.points_padded(), x.normals_padded(), x.lengths, True
    if isinstance(x, Measure):
        return x.support, None, x.lengths, True
    if isinstance(x, Mesh):
        pts, lb = list_to_padded(x.verts_list())
        return pts, list_to_padded(x.vertex_normals_list())[0], lb, True
    raise ShapeError(f"{name}: expected a tensor, PointCloud, Measure or Mesh, got {describe(x)}")


def _safe_sqrt(d: torch.Tensor) -> torch.Tensor:
    """``sqrt(d)`` with a zero (not infinite) gradient at ``d = 0``."""
    pos = d > 0
    return torch.where(pos, torch.where(pos, d, torch.ones_like(d)).sqrt(), torch.zeros_like(d))


def _reduce_points(v: torch.Tensor, lengths: torch.Tensor, how: str) -> torch.Tensor:
    s = (v * mask_from_lengths(lengths, v.shape[1]).to(v.dtype)).sum(-1)
    return s / lengths.to(v.dtype) if how == "mean" else s


def _pair(x: object, y: object, x_lengths, y_lengths, x_normals, y_normals):
    px, nx, lx, bx = _as_points(x, "x", x_normals, x_lengths)
    py, ny, ly, by = _as_points(y, "y", y_normals, y_lengths)
    if px.shape[-1] != py.shape[-1]:
        raise ShapeError(f"y: expected points of dimension {px.shape[-1]} (that of x), got {py.shape[-1]}")
    if px.shape[0] != py.shape[0]:
        raise ShapeError(f"y: expected batch size {px.shape[0]} (that of x), got {py.shape[0]}")
    if px.dtype != py.dtype or px.device != py.device:
        raise ShapeError(f"y: expected dtype {px.dtype} on {px.device} (that of x), got {py.dtype} on {py.device}")
    return px, nx, lx, py, ny, ly, bx or by


def chamfer_terms(
    x: object,
    y: object,
    *,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    squared: bool = True,
    point_reduction: str = "mean",
    reduction: str = "mean",
    backend: str = "auto",
) -> ChamferTerms:
    """The Chamfer point term ``CD`` and normal term ``CN`` (formulas in the module docstring), separately.

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` points, a :class:`PointCloud` or a :class:`Mesh` (vertices).
        y: same kinds as ``x`` (matching ``D`` and batch size).
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        x_normals: normals of a tensor ``x``, same shape as ``x``.
        y_normals: same for ``y``.
        squared: squared Euclidean distances (default, as PyTorch3D) or plain Euclidean distances.
        point_reduction: ``"mean"`` or ``"sum"`` over the points of each direction.
        reduction: over the batch: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``; ``()`` for ``(N, D)`` tensors).
        backend: nearest-neighbour backend of :func:`geomot.ops.knn_points`.

    Returns:
        :class:`ChamferTerms` ``(distance, normals)``; ``normals`` is None unless both inputs carry normals.
    """
    if point_reduction not in ("mean", "sum"):
        raise ValidationError(f"point_reduction: expected 'mean' or 'sum', got {point_reduction!r}")
    check_reduction(reduction)
    px, nx, lx, py, ny, ly, batched = _pair(x, y, x_lengths, y_lengths, x_normals, y_normals)
    kx = knn_points(px, py, x_lengths=lx, y_lengths=ly, backend=backend)
    ky = knn_points(py, px, x_lengths=ly, y_lengths=lx, backend=backend)
    dx, dy = kx.dists[..., 0], ky.dists[..., 0]
    if not squared:
        dx, dy = _safe_sqrt(dx), _safe_sqrt(dy)
    dist = _reduce_points(dx, lx, point_reduction) + _reduce_points(dy, ly, point_reduction)
    normal_term = None
    if nx is not None and ny is not None:
        ux = torch.nn.functional.normalize(nx, dim=-1)
        uy = torch.nn.functional.normalize(ny, dim=-1)
        cx = 1.0 - (ux * knn_gather(uy, kx.idx)[..., 0, :]).sum(-1).abs()
        cy = 1.0 - (uy * knn_gather(ux, ky.idx)[..., 0, :]).sum(-1).abs()
        per_item = _reduce_points(cx, lx, point_reduction) + _reduce_points(cy, ly, point_reduction)
        normal_term = reduce(per_item, reduction, batched=batched)
    return ChamferTerms(reduce(dist, reduction, batched=batched), normal_term)


def chamfer_distance(
    x: object,
    y: object,
    *,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    squared: bool = True,
    normal_weight: float = 0.0,
    point_reduction: str = "mean",
    reduction: str = "mean",
    backend: str = "auto",
) -> torch.Tensor:
    """Bidirectional Chamfer distance ``CD(x, y) + normal_weight * CN(x, y)`` (see the module docstring).

    With the defaults this is PyTorch3D's ``chamfer_distance(x, y)[0]``: mean over each set of the squared
    distance to the nearest point of the other set, summed over the two directions, averaged over the batch.
    It is symmetric, zero iff the (real) point sets coincide, and differentiable in the positions (and in the
    normals when ``normal_weight > 0``).

    Args:
        normal_weight: weight of the normal term ``CN``; when ``> 0`` both inputs need normals (tensors via
            ``x_normals`` / ``y_normals``, PointClouds with normals, or Meshes).
        The other arguments are those of :func:`chamfer_terms`.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(N, D)`` tensors).
    """
    w = check_positive(normal_weight, "normal_weight", strict=False)
    terms = chamfer_terms(
        x, y, x_lengths=x_lengths, y_lengths=y_lengths, x_normals=x_normals, y_normals=y_normals,
        squared=squared, point_reduction=point_reduction, reduction=reduction, backend=backend,
    )
    if w == 0:
        return terms.distance
    if terms.normals is None:
        raise ValidationError("normal_weight: > 0 needs normals on both inputs (x_normals / y_normals, or normals)")
    return terms.distance + w * terms.normals


def hausdorff_distance(
    x: object,
    y: object,
    *,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    directed: bool = False,
    reduction: str = "mean",
    backend: str = "auto",
) -> torch.Tensor:
    """Hausdorff distance ``max(sup_x d(x, Y), sup_y d(y, X))`` with Euclidean (not squared) ``d``.

    Also an evaluation metric. Differentiable almost everywhere (the gradient reaches only the extremal pair).

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` points, a :class:`PointCloud` or a :class:`Mesh` (vertices).
        y: same kinds as ``x``.
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        directed: return only the directed distance ``sup_{x in X} min_{y in Y} |x - y|``.
        reduction: ``"mean"``, ``"sum"`` over the batch or ``"none"`` (``(B,)``; ``()`` for ``(N, D)``).
        backend: nearest-neighbour backend of :func:`geomot.ops.knn_points`.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"``.
    """
    check_reduction(reduction)
    px, _, lx, py, _, ly, batched = _pair(x, y, x_lengths, y_lengths, None, None)

    def directed_sq(a, la, b, lb):
        d = knn_points(a, b, x_lengths=la, y_lengths=lb, backend=backend).dists[..., 0]
        return d.masked_fill(~mask_from_lengths(la, d.shape[1]), -1.0).amax(-1)

    h = directed_sq(px, lx, py, ly)
    if not directed:
        h = torch.maximum(h, directed_sq(py, ly, px, lx))
    return reduce(_safe_sqrt(h), reduction, batched=batched)


class ChamferLoss(torch.nn.Module):
    """Module shell of :func:`chamfer_distance`; ``forward(x, y, **inputs)`` with lengths / normals."""

    def __init__(
        self,
        *,
        squared: bool = True,
        normal_weight: float = 0.0,
        point_reduction: str = "mean",
        reduction: str = "mean",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_positive(normal_weight, "normal_weight", strict=False)
        self.settings = dict(
            squared=squared, normal_weight=normal_weight, point_reduction=point_reduction, reduction=reduction,
            backend=backend,
        )

    def forward(self, x: object, y: object, **inputs: torch.Tensor | None) -> torch.Tensor:
        return chamfer_distance(x, y, **self.settings, **inputs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())


class HausdorffDistance(torch.nn.Module):
    """Module shell of :func:`hausdorff_distance`."""

    def __init__(self, *, directed: bool = False, reduction: str = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.settings = dict(directed=directed, reduction=reduction, backend=backend)

    def forward(self, x: object, y: object, **inputs: torch.Tensor | None) -> torch.Tensor:
        return hausdorff_distance(x, y, **self.settings, **inputs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
