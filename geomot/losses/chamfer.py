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
support; weights are ignored) or a :class:`~geomot.structures.Mesh`, turned into points by ``measure=`` as every
loss does (:func:`geomot.structures.as_measure`; see ``docs/measures.md``): ``None`` or ``"varifold"`` gives the
6-D atoms ``(c_f, n_f)`` (face centroids and unit normals), ``"vertices"`` the vertices with their area-weighted
vertex normals, ``"faces"`` the face centroids with the face normals, ``"samples"`` ``n_samples`` area-uniform
surface points (no normals). A mesh against a 3-D point cloud therefore needs ``measure="vertices"``, ``"faces"``
or ``"samples"``.

Non-finite coordinates raise :class:`~geomot._core.errors.ValidationError` (value checks on) or give NaN/Inf
(inside ``geomot.data_checks(False)``), never a finite number.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from geomot._core.batch import list_to_padded, mask_from_lengths, to_batched
from geomot._core.checks import check_finite, check_float_tensor, check_int, check_positive, describe
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot.losses._shell import PAIR_INPUTS, LossModule
from geomot.ops.knn import KNN_BACKENDS, knn_gather, knn_points
from geomot.structures import Measure, Mesh, PointCloud
from geomot.structures.convert import as_measure, check_pair_dims, resolve_mesh_measure

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


def _mesh_points(
    mesh: Mesh, measure: str | None, n_samples: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """A Mesh as ``(points (B, N, D), normals (B, N, 3) | None, lengths (B,))`` by the ``measure=`` rule."""
    kind = resolve_mesh_measure(measure)
    m = as_measure(mesh, measure=kind, name="mesh", n_samples=n_samples, generator=generator)[0]
    if kind == "vertices":
        normals = list_to_padded(mesh.vertex_normals_list())[0]
    elif kind in ("faces", "varifold"):
        normals = list_to_padded(mesh.face_normals_list())[0]
    else:
        normals = None
    return m.support, normals, m.lengths


def _as_points(
    x: object,
    name: str,
    normals: torch.Tensor | None,
    lengths: torch.Tensor | None,
    measure: str | None = None,
    n_samples: int = 5000,
    generator: torch.Generator | None = None,
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
        pts, nrm, lb = _mesh_points(x, measure, n_samples, generator)
        return pts, nrm, lb, True
    raise ShapeError(f"{name}: expected a tensor, PointCloud, Measure or Mesh, got {describe(x)}")


def _safe_sqrt(d: torch.Tensor) -> torch.Tensor:
    """``sqrt(d)`` with a zero (not infinite) gradient at ``d = 0``; NaN stays NaN."""
    zero = d <= 0
    return torch.where(zero, torch.zeros_like(d), torch.where(zero, torch.ones_like(d), d).sqrt())


def _reduce_points(v: torch.Tensor, lengths: torch.Tensor, how: str) -> torch.Tensor:
    s = (v * mask_from_lengths(lengths, v.shape[1]).to(v.dtype)).sum(-1)
    return s / lengths.to(v.dtype) if how == "mean" else s


def _pair(x: object, y: object, x_lengths, y_lengths, x_normals, y_normals, measure, n_samples, generator):
    check_int(n_samples, "n_samples", at_least=1)
    px, nx, lx, bx = _as_points(x, "x", x_normals, x_lengths, measure, n_samples, generator)
    py, ny, ly, by = _as_points(y, "y", y_normals, y_lengths, measure, n_samples, generator)
    check_pair_dims(px, py, x, y, measure=measure)
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
    measure: str | None = None,
    n_samples: int = 5000,
    generator: torch.Generator | None = None,
) -> ChamferTerms:
    """The Chamfer point term ``CD`` and normal term ``CN`` (formulas in the module docstring), separately.

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` points, a :class:`PointCloud`, a :class:`Measure` or a :class:`Mesh`.
        y: same kinds as ``x`` (matching ``D`` and batch size).
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        x_normals: normals of a tensor ``x``, same shape as ``x``.
        y_normals: same for ``y``.
        squared: squared Euclidean distances (default, as PyTorch3D) or plain Euclidean distances.
        point_reduction: ``"mean"`` or ``"sum"`` over the points of each direction.
        reduction: over the batch: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``; ``()`` for ``(N, D)`` tensors).
        backend: nearest-neighbour backend of :func:`geomot.ops.knn_points`.
        measure: how a Mesh input becomes points (module docstring); irrelevant for other inputs.
        n_samples: number of surface samples for ``measure="samples"``.
        generator: random generator of the surface samples.

    Returns:
        :class:`ChamferTerms` ``(distance, normals)``; ``normals`` is None unless both inputs carry normals.
    """
    if point_reduction not in ("mean", "sum"):
        raise ValidationError(f"point_reduction: expected 'mean' or 'sum', got {point_reduction!r}")
    check_reduction(reduction)
    px, nx, lx, py, ny, ly, batched = _pair(
        x, y, x_lengths, y_lengths, x_normals, y_normals, measure, n_samples, generator
    )
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
    measure: str | None = None,
    n_samples: int = 5000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bidirectional Chamfer distance ``CD(x, y) + normal_weight * CN(x, y)`` (see the module docstring).

    With the defaults this is PyTorch3D's ``chamfer_distance(x, y)[0]``: mean over each set of the squared
    distance to the nearest point of the other set, summed over the two directions, averaged over the batch.
    It is symmetric, zero iff the (real) point sets coincide, and differentiable in the positions (and in the
    normals when ``normal_weight > 0``).

    Args:
        normal_weight: weight of the normal term ``CN``; when ``> 0`` both inputs need normals (tensors via
            ``x_normals`` / ``y_normals``, PointClouds with normals, or Meshes with a ``measure`` other than
            ``"samples"``).
        other arguments: those of :func:`chamfer_terms`.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"`` (``()`` for ``(N, D)`` tensors).
    """
    w = check_positive(normal_weight, "normal_weight", strict=False)
    terms = chamfer_terms(
        x, y, x_lengths=x_lengths, y_lengths=y_lengths, x_normals=x_normals, y_normals=y_normals,
        squared=squared, point_reduction=point_reduction, reduction=reduction, backend=backend, measure=measure,
        n_samples=n_samples, generator=generator,
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
    measure: str | None = None,
    n_samples: int = 5000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hausdorff distance ``max(sup_x d(x, Y), sup_y d(y, X))`` with Euclidean (not squared) ``d``.

    Also an evaluation metric. Differentiable almost everywhere (the gradient reaches only the extremal pair).

    Args:
        x: ``(N, D)`` / ``(B, N, D)`` points, a :class:`PointCloud`, a :class:`Measure` or a :class:`Mesh`.
        y: same kinds as ``x``.
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        directed: return only the directed distance ``sup_{x in X} min_{y in Y} |x - y|``.
        reduction: ``"mean"``, ``"sum"`` over the batch or ``"none"`` (``(B,)``; ``()`` for ``(N, D)``).
        backend: nearest-neighbour backend of :func:`geomot.ops.knn_points`.
        measure: how a Mesh input becomes points (module docstring); irrelevant for other inputs.
        n_samples: number of surface samples for ``measure="samples"``.
        generator: random generator of the surface samples.

    Returns:
        ``()``, or ``(B,)`` with ``reduction="none"``.
    """
    check_reduction(reduction)
    px, _, lx, py, _, ly, batched = _pair(x, y, x_lengths, y_lengths, None, None, measure, n_samples, generator)

    def directed_sq(a, la, b, lb):
        d = knn_points(a, b, x_lengths=la, y_lengths=lb, backend=backend).dists[..., 0]
        return d.masked_fill(~mask_from_lengths(la, d.shape[1]), -1.0).amax(-1)

    h = directed_sq(px, lx, py, ly)
    if not directed:
        h = torch.maximum(h, directed_sq(py, ly, px, lx))
    return reduce(_safe_sqrt(h), reduction, batched=batched)


def _check_common(settings: dict[str, Any]) -> dict[str, Any]:
    if "reduction" in settings:
        check_reduction(settings["reduction"])
    if settings.get("backend", "auto") != "auto":
        KNN_BACKENDS.get(settings["backend"], arg="backend")
    if settings.get("measure") is not None:
        resolve_mesh_measure(settings["measure"])
    if "n_samples" in settings:
        check_int(settings["n_samples"], "n_samples", at_least=1)
    return settings


class ChamferLoss(LossModule):
    """Module shell of :func:`chamfer_distance`: ``ChamferLoss(**settings)(x, y, **inputs)``.

    Settings (keyword-only, checked at construction): ``squared``, ``normal_weight``, ``point_reduction``,
    ``reduction``, ``backend``, ``measure``, ``n_samples``. Per-call inputs: ``x_lengths``, ``y_lengths``,
    ``x_normals``, ``y_normals``, ``generator`` (``x_weights`` / ``y_weights`` are not used by Chamfer).
    """

    function = staticmethod(chamfer_distance)
    inputs = (PAIR_INPUTS - {"x_weights", "y_weights"}) | {"x_normals", "y_normals"}

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        if "normal_weight" in settings:
            check_positive(settings["normal_weight"], "normal_weight", strict=False)
        pr = settings.get("point_reduction", "mean")
        if pr not in ("mean", "sum"):
            raise ValidationError(f"point_reduction: expected 'mean' or 'sum', got {pr!r}")
        return _check_common(settings)


class HausdorffDistance(LossModule):
    """Module shell of :func:`hausdorff_distance`: ``HausdorffDistance(**settings)(x, y, **inputs)``.

    Settings (keyword-only, checked at construction): ``directed``, ``reduction``, ``backend``, ``measure``,
    ``n_samples``. Per-call inputs: ``x_lengths``, ``y_lengths``, ``generator``.
    """

    function = staticmethod(hausdorff_distance)
    inputs = PAIR_INPUTS - {"x_weights", "y_weights"}

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return _check_common(settings)
