"""Extrinsic candidate maps: principal-axes alignment and smooth non-rigid ICP.

The spectral initialisation of :func:`geomot.correspondence.match` assumes that the low-frequency
eigenfunctions of the two shapes correspond up to sign. Between different species (a cow and a hippo, a lion and a
horse: SMAL) they reorder and mix, and no sign pattern gives a good map. In space the two shapes still look alike:
a head, four legs, a tail. This module aligns them extrinsically, without using how they are placed:

1. each shape is expressed in its principal axes (eigenvectors of the area-weighted covariance of its vertices,
   longest first). The axes are known up to sign, and the two shorter ones may swap when their variances are
   close, so :func:`frame_hypotheses` lists the signed permutations that keep the long axis and give a proper
   rotation: 8 alignments, one of which is right whenever the longest axes correspond (a quadruped's body
   length, a standing human's height; not, say, a human with arms spread wider than tall against one standing);
2. :func:`nonrigid_icp` then deforms the source onto the target from each alignment, coarse to fine:
   ``x -> x R + t + Phi(x) A`` with a rotation ``R``, a translation ``t`` and a displacement field spanned by the
   source's first Laplace-Beltrami eigenfunctions ``Phi`` (a smooth field, as in the shells of Eisenberger et al.
   2020), fitted to closest points in both directions (source to target and target to source, so that the
   deformed source covers the target instead of collapsing onto part of it). The basis grows level by level,
   from the rigid motion alone to ``levels[-1]`` eigenfunctions, and the closest points are recomputed
   ``max_iter`` times a level. The remaining symmetric Chamfer distance ranks the alignments;
3. :func:`extrinsic_refine` polishes a dense map between shapes that differ by more than an isometry: it fits
   the same deformation model to the map's correspondences and moves every source vertex to the target vertex
   closest to its deformed position, a few times per basis size (the extrinsic half of the final alignment of
   Smooth Shells). Intrinsic refinements (ZoomOut, geodesic anchors) assume that distances are kept, which fails
   between species; the smooth deformation does not.

Invariant to rigid motions of either shape (principal axes move with the shape and every sign is tried), and
never a mirror image (only proper rotations).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_int
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence._argmin import argmin_along
from geomot.correspondence.p2p import knn_indices
from geomot.ops.alignment import corresponding_points_alignment
from geomot.ops.geometry import vertex_normals
from geomot.ops.graph import ring_neighbourhoods
from geomot.transport import pairwise_cost

__all__ = ["ExtrinsicRefineResult", "NonrigidICPResult", "extrinsic_refine", "frame_hypotheses", "nonrigid_icp",
           "principal_frame"]


def principal_frame(verts: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of ``verts (V, 3)`` in their principal axes: ``((verts - c) U (V, 3), U (3, 3))``.

    ``c = sum_i w_i x_i / sum_i w_i``; the columns of ``U`` are the eigenvectors of the weighted covariance
    ``sum_i w_i (x_i - c)^T (x_i - c)``, largest variance first (each known up to sign). ``weights (V,)`` are
    non-negative (vertex areas for a mesh), uniform when None.
    """
    check_float_tensor(verts, "verts", ndim=2, last_dim=3)
    if weights is None:
        weights = torch.ones(verts.shape[0], dtype=verts.dtype, device=verts.device)
    if weights.shape != (verts.shape[0],) or bool((weights < 0).any()) or not float(weights.sum()) > 0:
        raise ValidationError(f"weights: expected ({verts.shape[0]},) non-negative, not all zero")
    w = (weights / weights.sum()).to(verts.dtype)
    x = verts - (w[:, None] * verts).sum(0)
    _, axes = torch.linalg.eigh((w[:, None] * x).T @ x)
    axes = axes.flip(1)
    return x @ axes, axes


def frame_hypotheses(det: float = 1.0, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 8 signed permutation matrices ``D (8, 3, 3)`` that keep the first axis in place (up to sign), keep or
    swap the other two, and have determinant ``det`` (+1 or -1).

    Between shapes in principal coordinates ``x_2 = (v_2 - c_2) U_2`` and ``x_1 = (v_1 - c_1) U_1``, the candidate
    rotations are ``U_2 D U_1^T``: pass ``det = det(U_2) det(U_1)`` so that every candidate is proper.
    """
    if det not in (1.0, -1.0):
        raise ValidationError(f"det: expected +1 or -1, got {det!r}")
    out = []
    for perm in ((0, 1, 2), (0, 2, 1)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            D = torch.zeros(3, 3, dtype=dtype)
            for row, (col, s) in enumerate(zip(perm, signs)):
                D[row, col] = s
            if float(torch.linalg.det(D)) * det > 0:
                out.append(D)
    return torch.stack(out)


class NonrigidICPResult(NamedTuple):
    """Result of :func:`nonrigid_icp` (a leading hypothesis axis ``B``).

    Attributes:
        points: ``(B, S, 3)`` the deformed source, ``x R + t + Phi A``.
        R: ``(B, 3, 3)`` rotations; t: ``(B, 3)`` translations; A: ``(B, K, 3)`` displacement coefficients.
        cost: ``(B,)`` symmetric Chamfer distance ``mean_s min_y |p_s - y| + mean_y min_s |p_s - y|``.
    """

    points: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    A: torch.Tensor
    cost: torch.Tensor


def _damping(evals: torch.Tensor, kmax: int, like: torch.Tensor) -> torch.Tensor:
    """``lambda_j / lambda_1`` for the first ``kmax`` eigenvalues (``lambda_1`` the first positive one): the weights
    of the smoothness penalty, which damp the high frequencies."""
    positive = evals[evals > 1e-8 * evals.abs().max().clamp_min(1e-30)]
    lam1 = float(positive[0]) if positive.numel() else 1.0
    return (evals[:kmax].to(like) / lam1).clamp_min(0.0)


def _check_schedule(
    levels: Sequence[int], phi: torch.Tensor, evals: torch.Tensor, n_s: int, *, lowest: int
) -> list[int]:
    """Validate increasing basis sizes ``>= lowest`` against the eigenfunctions ``phi (n_s, >= K)`` and eigenvalues
    ``(>= K,)`` (``K`` the largest size); returns the sizes as ints."""
    sizes = [int(k) for k in levels]
    if not sizes or sizes[0] < lowest or any(b <= a for a, b in itertools.pairwise(sizes)):
        kind = "non-negative" if lowest == 0 else f">= {lowest}"
        raise ValidationError(f"levels: expected increasing {kind} sizes, got {sizes}")
    kmax = sizes[-1]
    check_float_tensor(phi, "phi", ndim=2)
    if phi.shape[0] != n_s or phi.shape[1] < kmax:
        raise ShapeError(f"phi: expected ({n_s}, >= {kmax}), got {tuple(phi.shape)}")
    if evals.shape[0] < kmax:
        raise ShapeError(f"evals: expected at least {kmax} values, got {evals.shape[0]}")
    return sizes


def _fit_motion(
    xs: torch.Tensor, goal: torch.Tensor, ph: torch.Tensor, coef: torch.Tensor, damp: torch.Tensor, reg: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One alternation of the fit of ``x R + t + Phi A`` to ``goal``: the rotation and translation for the current
    displacement ``ph @ coef`` (Kabsch, proper rotations), then the ridge solve of ``A`` for what remains.

    ``xs, goal (B, N, 3)``, ``ph (B, N, k)``, ``coef (B, k, 3)``, ``damp (k,)``; returns ``(R (B, 3, 3), t (B, 3),
    A (B, k, 3))`` (``A`` unchanged when ``k = 0``)."""
    rot, shift, _ = corresponding_points_alignment(xs, goal - ph @ coef)
    k = ph.shape[-1]
    if k == 0:
        return rot, shift, coef
    resid = goal - (xs @ rot + shift[:, None])
    gram = ph.transpose(1, 2) @ ph + reg * ph.shape[1] * torch.diag_embed(damp[:k].expand(ph.shape[0], k))
    return rot, shift, torch.linalg.solve(gram, ph.transpose(1, 2) @ resid)


@renamed_kwargs(n_iter="max_iter")
def nonrigid_icp(
    source: torch.Tensor,
    target: torch.Tensor,
    phi: torch.Tensor,
    evals: torch.Tensor,
    *,
    levels: Sequence[int] = (0, 4, 8, 16, 32),
    max_iter: int = 4,
    reg: float = 1e-3,
    source_normals: torch.Tensor | None = None,
    target_normals: torch.Tensor | None = None,
    normal_weight: float = 0.0,
) -> NonrigidICPResult:
    """Deform ``source`` onto ``target`` by a rigid motion and a smooth displacement, coarse to fine.

    Minimises over ``R`` (proper rotation), ``t`` and ``A (K, 3)`` (``K = levels[-1]``), with ``p = x R + t + Phi A``
    and closest points recomputed ``max_iter`` times per level:

    ``sum_s |p_s - y_{nn(s)}|^2 + sum_y |p_{nn(y)} - y|^2 + reg (S + Y) sum_j (lambda_j / lambda_1) |A_j|^2``

    (closest points in both directions; ``lambda_1`` is the first positive eigenvalue, so the weights damp the
    high frequencies). At level ``k`` only the
    first ``k`` coefficients are free (level 0: the rigid motion alone); ``R, t`` and ``A`` are updated
    alternately (Kabsch for the rotation, a ridge solve for ``A``). With ``normal_weight = w > 0`` the closest
    points are those of ``|p_s - y|^2 + w^2 |n_s R - n_y|^2`` (``n`` the unit normals of the points, the source's
    turned by the current rotation; the displacement's own turning is neglected), so that a point does not snap
    onto a part that faces the other way: a hind leg onto the belly, the outside of a leg onto its twin.

    Args:
        source: ``(S, 3)`` or ``(B, S, 3)`` points (B alignments of the same source, e.g. from
            :func:`frame_hypotheses`).
        target: ``(Y, 3)`` points.
        phi: ``(S, K0)`` the source's Laplace-Beltrami eigenfunctions at the points, ``K0 >= levels[-1]``.
        evals: ``(K0,)`` their eigenvalues (ascending).
        levels: increasing basis sizes, from 0.
        max_iter: closest-point updates per level (``n_iter`` is a deprecated alias).
        reg: weight of the smoothness penalty.
        source_normals: unit normals of the source points, the shape of ``source`` (needed when
            ``normal_weight > 0``); target_normals: ``(Y, 3)``.
        normal_weight: weight ``w`` of the normals in the closest points, in the units of the points (``0``:
            positions only, what :func:`geomot.match` uses; 0.1 at unit area is about 7 mean edge lengths of a
            5,000-vertex mesh).

    Returns:
        :class:`NonrigidICPResult` (with the ``B`` axis, of size 1 for ``(S, 3)`` input). Its ``cost`` is the
        Chamfer distance of positions alone, whatever ``normal_weight``.
    """
    check_float_tensor(target, "target", ndim=2, last_dim=3)
    check_float_tensor(source, "source", last_dim=3)
    x = source[None] if source.dim() == 2 else source
    if x.dim() != 3:
        raise ShapeError(f"source: expected (S, 3) or (B, S, 3), got {tuple(source.shape)}")
    bsz, n_s = x.shape[:2]
    levels = _check_schedule(levels, phi, evals, n_s, lowest=0)
    kmax = levels[-1]
    if max_iter < 1 or not reg >= 0:
        raise ValidationError(f"max_iter, reg: expected >= 1 and >= 0, got {max_iter}, {reg}")
    if not normal_weight >= 0:
        raise ValidationError(f"normal_weight: expected >= 0, got {normal_weight}")
    if normal_weight > 0:
        if source_normals is None or target_normals is None:
            raise ValidationError("normal_weight > 0 needs source_normals and target_normals")
        if source_normals.shape != source.shape or target_normals.shape != target.shape:
            raise ShapeError(f"source_normals, target_normals: expected shapes {tuple(source.shape)} and "
                             f"{tuple(target.shape)}, got {tuple(source_normals.shape)} and "
                             f"{tuple(target_normals.shape)}")
        n_x = source_normals.reshape(x.shape).to(x)
        y6 = torch.cat([target, normal_weight * target_normals], 1).to(x).expand(bsz, -1, -1)  # (B, Y, 6)
    y = target.to(x)
    phi = phi[:, :kmax].to(x)
    damp = _damping(evals, kmax, x)
    rot = torch.eye(3, dtype=x.dtype, device=x.device).expand(bsz, 3, 3).clone()
    shift = torch.zeros(bsz, 3, dtype=x.dtype, device=x.device)
    coef = torch.zeros(bsz, kmax, 3, dtype=x.dtype, device=x.device)
    rows = torch.arange(n_s, device=x.device).expand(bsz, n_s)
    targets_y = y.expand(bsz, *y.shape)

    def deformed() -> torch.Tensor:
        return x @ rot + shift[:, None] + phi @ coef

    for k in levels:
        for _ in range(max_iter):
            p = deformed()
            if normal_weight > 0:  # (B, S, Y) squared distances of positions and weighted normals
                d2 = pairwise_cost(torch.cat([p, normal_weight * n_x @ rot], 2), y6)
            else:
                d2 = pairwise_cost(p, targets_y)  # (B, S, Y) squared distances
            fwd = argmin_along(d2, 2)  # (B, S): closest target point of each source point
            bwd = argmin_along(d2, 1)  # (B, Y): closest source point of each target point
            idx = torch.cat([rows, bwd], 1)
            goal = torch.cat([y[fwd], targets_y], 1)
            xs = torch.gather(x, 1, idx[..., None].expand(-1, -1, 3))
            rot, shift, coef[:, :k] = _fit_motion(xs, goal, phi[idx, :k], coef[:, :k], damp, reg)
    p = deformed()
    d = pairwise_cost(p, targets_y).sqrt()
    cost = d.min(2).values.mean(1) + d.min(1).values.mean(1)
    return NonrigidICPResult(p, rot, shift, coef, cost)


class ExtrinsicRefineResult(NamedTuple):
    """Result of :func:`extrinsic_refine`.

    Attributes:
        p2p_21: ``(S,)`` int64, the target vertex of each source vertex after the last snap.
        points: ``(S, 3)`` the deformed source, ``x R + t + Phi A``, of the last fit.
    """

    p2p_21: torch.Tensor
    points: torch.Tensor


@renamed_kwargs(n_iter="max_iter")
def extrinsic_refine(
    source: torch.Tensor,
    target: torch.Tensor,
    p2p_21: torch.Tensor,
    phi: torch.Tensor,
    evals: torch.Tensor,
    *,
    levels: Sequence[int] = (32, 64),
    max_iter: int = 3,
    reg: float = 1e-4,
    source_faces: torch.Tensor | None = None,
    target_faces: torch.Tensor | None = None,
    normal_weight: float = 0.0,
    symmetric: bool = False,
    window: int = 0,
) -> ExtrinsicRefineResult:
    """Refine a dense map by deforming the source smoothly onto its images and snapping to the closest points.

    Each step fits ``p = x R + t + Phi A`` to the current correspondences, decreasing

    ``sum_s |p_s - y_{T(s)}|^2 + reg S sum_j (lambda_j / lambda_1) |A_j|^2``

    by one alternation (Kabsch for ``R, t``, a ridge solve for ``A``, the coefficients carried over from the
    previous step), then replaces ``T(s)`` by the target point closest to ``p_s`` (with ``normal_weight = w > 0``:
    closest in ``|p_s - y|^2 + w^2 |n_s - n_y|^2``, ``n`` the unit vertex normals of the deformed source mesh and of
    the target, so that a point does not snap onto the far side of a thin part or onto a touching part that faces
    the other way); ``max_iter`` steps per basis size in ``levels``. With ``symmetric=True`` the fits after the first
    also pull, for each target vertex ``y``, its closest deformed source vertex ``p_{s(y)}`` towards it (the terms
    ``sum_y |p_{s(y)} - y|^2`` join the sum above, as in two-sided Chamfer fitting), so that the deformed source
    covers the target: a long leg mapped onto a short one is drawn to the foot it would otherwise stop above.
    With ``window = r > 0`` each snap only looks at the target vertices within ``r`` mesh edges of the current
    image ``T(s)`` (:func:`geomot.ops.graph.ring_neighbourhoods`), so a point slides along the surface by at most
    ``r`` edges a step and never jumps to another part that the deformed source happens to touch (an arm against
    the hip): a local polish of a map that is right part by part.
    A swapped limb or a region left on its symmetric twin is pulled back by the smooth field fitted to the rest of
    the map, and every source point lands on the target surface near where the deformation puts it. Suited to
    shapes related by a pose change *and* a change of proportions (two species), where intrinsic refinements lose
    accuracy; between near-isometric shapes in very different poses the closest points can jump between parts that
    touch (an arm against the hip), so there an intrinsic map is usually better.

    Args:
        source: ``(S, 3)`` source vertices; target: ``(Y, 3)`` target vertices (any rigid placement: the fit
            includes the rotation).
        p2p_21: ``(S,)`` the initial map, a target index per source vertex.
        phi: ``(S, K0)`` the source's Laplace-Beltrami eigenfunctions, ``K0 >= levels[-1]``; evals: ``(K0,)``.
        levels: increasing basis sizes (positive).
        max_iter: fit-and-snap steps per size (``n_iter`` is a deprecated alias).
        reg: weight of the smoothness penalty (shapes at unit area).
        source_faces: ``(F2, 3)`` the source's triangles; target_faces: ``(F1, 3)`` the target's (both needed when
            ``normal_weight > 0``).
        normal_weight: weight ``w`` of the normals in the snap, in the units of the shapes (``0``: positions only;
            :func:`geomot.match` uses 0.02 at unit area, about 1.5 mean edge lengths of a 5,000-vertex mesh).
        symmetric: add the target-to-source closest-point terms to the fits (``match`` does).
        window: ``0`` to snap to the closest target vertex anywhere; ``r >= 1`` to snap within ``r`` edge rings of
            the current image (needs ``target_faces``).

    Returns:
        :class:`ExtrinsicRefineResult`.

    Raises:
        ShapeError: wrong shapes of the inputs or of the faces.
        ValidationError: a bad schedule, ``max_iter < 1``, ``reg <= 0``, ``normal_weight < 0`` or without faces,
            ``window < 0`` or ``window > 0`` without ``target_faces``.
    """
    check_float_tensor(source, "source", ndim=2, last_dim=3)
    check_float_tensor(target, "target", ndim=2, last_dim=3)
    n_s = source.shape[0]
    p2p = check_index_tensor(p2p_21, "p2p_21", size=target.shape[0]).to(source.device)
    if p2p.shape != (n_s,):
        raise ShapeError(f"p2p_21: expected ({n_s},) (one target index per source vertex), got {tuple(p2p.shape)}")
    levels = _check_schedule(levels, phi, evals, n_s, lowest=1)
    kmax = levels[-1]
    if max_iter < 1 or not reg > 0:
        raise ValidationError(f"max_iter, reg: expected >= 1 and > 0, got {max_iter}, {reg}")
    if not normal_weight >= 0:
        raise ValidationError(f"normal_weight: expected >= 0, got {normal_weight}")
    if normal_weight > 0:
        if source_faces is None or target_faces is None:
            raise ValidationError("normal_weight > 0 needs source_faces and target_faces (normals of both meshes)")
        fs = check_index_tensor(source_faces, "source_faces", size=n_s, ncols=3).to(source.device)
        ft = check_index_tensor(target_faces, "target_faces", size=target.shape[0], ncols=3).to(source.device)
    if check_int(window, "window", at_least=0) > 0:
        if target_faces is None:
            raise ValidationError("window > 0 needs target_faces (the rings are those of the target mesh)")
        ring, in_ring = (t.to(source.device) for t in ring_neighbourhoods(target_faces, target.shape[0], window))
    x = source[None]
    y = target.to(source)
    y_snap = torch.cat([y, normal_weight * vertex_normals(y, ft)], 1) if normal_weight > 0 else y
    phi = phi[:, :kmax].to(source)[None]
    damp = _damping(evals, kmax, source)
    coef = torch.zeros(1, kmax, 3, dtype=source.dtype, device=source.device)
    points = source
    nearest_source = None  # (Y,) the closest deformed source vertex of each target vertex (symmetric fits)
    for k in levels:
        for _ in range(max_iter):
            xs, goal, ph = x, y[p2p][None], phi[..., :k]
            if nearest_source is not None:
                xs = torch.cat([x, x[:, nearest_source]], 1)
                goal = torch.cat([goal, y[None]], 1)
                ph = torch.cat([ph, phi[:, nearest_source, :k]], 1)
            rot, shift, coef[:, :k] = _fit_motion(xs, goal, ph, coef[:, :k], damp, reg)
            points = (x @ rot + shift[:, None] + phi @ coef)[0]
            p_snap = torch.cat([points, normal_weight * vertex_normals(points, fs)], 1) if normal_weight > 0 else points
            if window > 0:  # the closest among the vertices within `window` rings of the current image
                near = ring[p2p]
                d2 = ((y_snap[near] - p_snap[:, None]) ** 2).sum(-1).masked_fill(~in_ring[p2p], math.inf)
                p2p = near.gather(1, d2.argmin(1, keepdim=True))[:, 0]
            else:
                p2p = knn_indices(p_snap, y_snap)
            if symmetric:
                nearest_source = knn_indices(y_snap, p_snap)
    return ExtrinsicRefineResult(p2p, points)
