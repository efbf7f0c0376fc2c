"""Evaluation of dense correspondences: geodesic error, PCK curves, coverage and bijectivity, dataset evaluation.

Convention of the shape-matching literature (Kim et al. 2011; reported x100): for ground-truth pairs
``(s_k, t_k)`` (vertex ``s_k`` of the source A matches vertex ``t_k`` of the target B) and a predicted map
``p2p`` (one vertex of B per vertex of A; ``p2p_21`` of :func:`geomot.correspondence.match`, which names the
target shape 1), ``err_k = d_B(p2p[s_k], t_k) / sqrt(area(B))``.

Geodesic distances come from potpourri3d: ``method="exact"`` shortens the Dijkstra path between the two vertices
with edge flips to an exact polyhedral geodesic (Sharp & Crane 2020, "You can find geodesic paths in triangle
meshes by just flipping edges"); ``method="heat"`` uses the heat method (Crane et al. 2013) from each distinct
ground-truth vertex, which is approximate but works on non-manifold meshes too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from geomot._core.checks import check_float_tensor, check_index_tensor
from geomot._core.errors import MissingDependencyError, ShapeError, ValidationError
from geomot._core.reduction import reduce
from geomot.structures import Mesh

__all__ = [
    "PairEvaluation",
    "bijectivity",
    "coverage",
    "evaluate_pairs",
    "geodesic_distances",
    "geodesic_error",
    "pck_curve",
]

logger = logging.getLogger(__name__)


def _pp3d():
    try:
        import potpourri3d
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("geodesic errors need potpourri3d: pip install potpourri3d") from e
    return potpourri3d


def _split_mesh(fn: str, first: Any, second: Any, rest: tuple[Any, ...]) -> tuple[Any, Any, tuple[Any, ...]]:
    """``(verts, faces, the remaining arguments)`` of a call that starts with a single :class:`Mesh` (the arguments
    after it shift left by one) or with ``verts, faces`` tensors."""
    if not isinstance(first, Mesh):
        return first, second, rest
    if len(first) != 1:
        raise ShapeError(f"{fn}: expects a single mesh, got a batch of {len(first)}; pass mesh[i]")
    if second is None:  # keyword form: fn(mesh, gt_src=..., gt_tgt=...)
        return first.verts, first.faces, rest
    if rest and rest[-1] is not None:
        raise ValidationError(
            f"{fn}: with a Mesh, the arguments after it are those that follow faces in the tensor form; "
            f"got one argument too many"
        )
    return first.verts, first.faces, (second, *rest[:-1])


def _mesh_np(verts: torch.Tensor, faces: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    check_float_tensor(verts, "verts", ndim=2, last_dim=3)
    check_index_tensor(faces, "faces", size=verts.shape[0], ncols=3)
    return verts.detach().cpu().double().numpy(), faces.detach().cpu().long().numpy()


def _path_length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum()) if len(path) > 1 else 0.0


def geodesic_distances(
    verts: torch.Tensor | Mesh,
    faces: torch.Tensor | None = None,
    src: torch.Tensor | None = None,
    dst: torch.Tensor | None = None,
    *,
    method: str = "exact",
) -> torch.Tensor:
    """Geodesic distances ``d(src[k], dst[k])`` on one mesh, ``(K,)`` float64.

    Called as ``geodesic_distances(verts, faces, src, dst)`` or ``geodesic_distances(mesh, src, dst)``.

    Args:
        verts: ``(V, 3)``, or a single :class:`~geomot.structures.Mesh` (then ``faces`` is ``src`` and ``src`` is
            ``dst``); faces: ``(F, 3)``.
        src, dst: ``(K,)`` vertex indices.
        method: ``"exact"`` (edge-flip geodesic paths; manifold meshes, falls back to ``"heat"`` with a warning
            when potpourri3d rejects the mesh) or ``"heat"``.
    """
    verts, faces, (src, dst) = _split_mesh("geodesic_distances", verts, faces, (src, dst))
    if faces is None or src is None or dst is None:
        raise ValidationError(
            "faces/src/dst: missing; call geodesic_distances(verts, faces, src, dst) or (mesh, src, dst)"
        )
    v, f = _mesh_np(verts, faces)
    check_index_tensor(src, "src", size=v.shape[0])
    check_index_tensor(dst, "dst", size=v.shape[0])
    if src.shape != dst.shape or src.dim() != 1:
        raise ShapeError(f"src/dst: expected two (K,) tensors, got {tuple(src.shape)} / {tuple(dst.shape)}")
    if method not in ("exact", "heat"):
        raise ValidationError(f"method: expected 'exact' or 'heat', got {method!r}")
    a = src.detach().cpu().long().numpy()
    b = dst.detach().cpu().long().numpy()
    out = np.zeros(a.shape[0], dtype=np.float64)
    pp3d = _pp3d()
    todo = a != b
    if method == "exact":
        try:
            solver = pp3d.EdgeFlipGeodesicSolver(v, f)
        except Exception as e:  # non-manifold / non-oriented meshes are rejected by the solver
            logger.warning("exact geodesics unavailable on this mesh (%s); using the heat method", e)
            method = "heat"
        else:
            pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1)[todo], axis=0)
            lengths = {(int(i), int(j)): _path_length(solver.find_geodesic_path(int(i), int(j))) for i, j in pairs}
            out[todo] = [lengths[(int(min(i, j)), int(max(i, j)))] for i, j in zip(a[todo], b[todo])]
    if method == "heat":
        solver = pp3d.MeshHeatMethodDistanceSolver(v, f)
        for t in np.unique(b[todo]):
            sel = todo & (b == t)
            out[sel] = solver.compute_distance(int(t))[a[sel]]
    return torch.from_numpy(out).to(verts.device)


def geodesic_error(
    p2p: torch.Tensor,
    verts2: torch.Tensor | Mesh,
    faces2: torch.Tensor | None = None,
    gt_src: torch.Tensor | None = None,
    gt_tgt: torch.Tensor | None = None,
    *,
    method: str = "exact",
    normalize: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Geodesic error of a map (Kim et al. 2011): ``err_k = d_B(p2p[gt_src[k]], gt_tgt[k]) / sqrt(area(B))``.

    Multiply by 100 for the figures papers report. Called as ``geodesic_error(p2p, verts2, faces2, gt_src, gt_tgt)``
    or ``geodesic_error(p2p, mesh2, gt_src, gt_tgt)``.

    Args:
        p2p: ``(V_A,)`` for each vertex of the source A, its match on the target B.
        verts2: ``(V2, 3)``; faces2: ``(F2, 3)`` the target mesh B; or a single
            :class:`~geomot.structures.Mesh` B in place of both (the later arguments shift left by one).
        gt_src: ``(K,)`` vertices of A; gt_tgt: ``(K,)`` their true matches on B (0-based; ``.vts`` minus one).
        method: ``"exact"`` or ``"heat"`` (see :func:`geodesic_distances`).
        normalize: divide by ``sqrt(area(B))``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(K,)`` errors).
    """
    verts2, faces2, (gt_src, gt_tgt) = _split_mesh("geodesic_error", verts2, faces2, (gt_src, gt_tgt))
    if faces2 is None or gt_src is None or gt_tgt is None:
        raise ValidationError(
            "faces2/gt_src/gt_tgt: missing; call geodesic_error(p2p, verts2, faces2, gt_src, gt_tgt) or "
            "(p2p, mesh2, gt_src, gt_tgt)"
        )
    v, f = _mesh_np(verts2, faces2)
    check_index_tensor(p2p, "p2p", size=v.shape[0])
    if p2p.dim() != 1:
        raise ShapeError(f"p2p: expected a (V_A,) index tensor, got shape {tuple(p2p.shape)}")
    check_index_tensor(gt_src, "gt_src", size=p2p.shape[0])
    check_index_tensor(gt_tgt, "gt_tgt", size=v.shape[0])
    if gt_src.shape != gt_tgt.shape:
        raise ShapeError(f"gt_src/gt_tgt: expected equal shapes, got {tuple(gt_src.shape)} / {tuple(gt_tgt.shape)}")
    pred = p2p.detach().cpu().long()[gt_src.detach().cpu().long()]
    d = geodesic_distances(verts2, faces2, pred, gt_tgt.detach().cpu().long(), method=method).cpu()
    if normalize:
        tri = v[f]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        d = d / math.sqrt(area)
    return reduce(d.to(verts2.device), reduction)


def pck_curve(
    errors: torch.Tensor, thresholds: torch.Tensor | Sequence[float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentage of correct keypoints: ``pck(r) = mean_k [err_k <= r]``.

    Args:
        errors: ``(K,)`` normalised geodesic errors (``reduction="none"``).
        thresholds: ``(T,)`` radii; default 0, 0.005, ..., 0.25.

    Returns:
        ``(thresholds (T,), pck (T,))`` with ``pck`` non-decreasing in ``[0, 1]``.
    """
    check_float_tensor(errors, "errors", ndim=1)
    thr = (
        torch.linspace(0.0, 0.25, 51, dtype=errors.dtype, device=errors.device)
        if thresholds is None
        else torch.as_tensor(thresholds, dtype=errors.dtype, device=errors.device)
    )
    if thr.dim() != 1:
        raise ShapeError(f"thresholds: expected a 1-D sequence, got shape {tuple(thr.shape)}")
    return thr, (errors[None, :] <= thr[:, None]).to(errors.dtype).mean(1)


def coverage(p2p: torch.Tensor, n_target: int) -> float:
    """Fraction of the ``n_target`` target vertices hit by ``p2p (V_source,)`` (1 for a surjective map)."""
    check_index_tensor(p2p, "p2p", size=n_target)
    return float(torch.unique(p2p).numel()) / float(n_target)


def bijectivity(p2p_12: torch.Tensor, p2p_21: torch.Tensor) -> float:
    """Fraction of the source vertices ``i`` with ``p2p_21[p2p_12[i]] == i`` (1 for a bijection).

    Args:
        p2p_12: ``(V1,)`` indices into shape 2; p2p_21: ``(V2,)`` indices into shape 1.
    """
    check_index_tensor(p2p_21, "p2p_21", size=p2p_12.shape[0])
    check_index_tensor(p2p_12, "p2p_12", size=p2p_21.shape[0])
    idx = torch.arange(p2p_12.shape[0], device=p2p_12.device)
    return float((p2p_21[p2p_12] == idx).double().mean())


class PairEvaluation(NamedTuple):
    """One evaluated pair of :func:`evaluate_pairs`.

    Attributes:
        source, target: shape names.
        mean_error: mean normalised geodesic error (x1; multiply by 100 for papers).
        errors: ``(K,)`` per-correspondence errors.
        seconds: time spent by the matcher.
        coverage: :func:`coverage` of the predicted map.
    """

    source: str
    target: str
    mean_error: float
    errors: torch.Tensor
    seconds: float
    coverage: float


def evaluate_pairs(
    dataset: Any,
    pairs: Sequence[tuple[str, str]],
    matcher: Callable[[Any, Any], torch.Tensor],
    *,
    method: str = "exact",
    progress: bool = False,
) -> list[PairEvaluation]:
    """Evaluate a matcher over pairs of a dataset in the ``off/`` + ``corres/`` layout.

    Args:
        dataset: a :class:`geomot.io.ShapeDataset` (anything with ``load(name) -> Mesh`` and
            ``ground_truth(a, b) -> (src_idx, tgt_idx)``).
        pairs: ``(source, target)`` names.
        matcher: ``matcher(source_mesh, target_mesh) -> p2p (V_source,)`` (target vertex per source vertex).
        method: geodesic method, see :func:`geodesic_distances`.
        progress: show a tqdm bar.

    Returns:
        one :class:`PairEvaluation` per pair.
    """
    if not pairs:
        raise ValidationError("pairs: expected at least one (source, target) pair")
    it: Sequence[tuple[str, str]] | Any = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc="evaluating pairs")
    out: list[PairEvaluation] = []
    for a, b in it:
        ma, mb = dataset.load(a), dataset.load(b)
        src, tgt = dataset.ground_truth(a, b)
        t0 = time.perf_counter()
        p2p = matcher(ma, mb)
        sec = time.perf_counter() - t0
        err = geodesic_error(p2p, mb, src, tgt, method=method, reduction="none")
        out.append(PairEvaluation(a, b, float(err.mean()), err, sec, coverage(p2p, mb.verts.shape[0])))
        logger.info("%s -> %s: error %.2f (x100), %.2f s", a, b, 100 * out[-1].mean_error, sec)
    return out
