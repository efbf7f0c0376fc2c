"""Data terms and regularisers of a deformation fit, by name.

Data terms (:data:`DEFORM_LOSSES`) compare the deformed mesh ``phi(S)`` with the target ``T``:

- ``"sw-varifold"``: ``SW_2^2`` between the oriented varifolds ``sum_f a_f delta_{(c_f, lambda n_f)}`` in ``R^6``
  (Le et al., "Diffeomorphic Mesh Deformation via Efficient Optimal Transport for Cortical Surface
  Reconstruction", ICLR 2024, Sec. 3) — :func:`geomot.sliced_wasserstein`. With ``atoms="faces"`` the atoms are
  the faces with their areas as masses (``measure="varifold"``); with ``atoms="samples"`` (default) they are
  ``n_samples`` area-uniform surface samples paired with their face normals, a Monte-Carlo discretisation of the
  same varifold whose equal masses let the 1-D transport use plain sorting (several times faster);
- ``"sw"``: ``SW_2^2`` between ``n_samples`` points sampled uniformly on each surface (``measure="samples"``);
- ``"varifold"``: the squared kernel varifold distance (Charon & Trouvé 2013), :func:`geomot.losses.varifold_distance`;
- ``"sinkhorn"``: the Sinkhorn divergence between sampled points (Feydy et al., AISTATS 2019);
- ``"chamfer"``: the symmetric Chamfer distance between sampled points (the usual baseline).

Regularisers (:data:`DEFORM_REGULARIZERS`, weighted terms, from :mod:`geomot.losses.regularizers`): ``"edge"``
(squared deviation of edge lengths from the source's mean edge length), ``"laplacian"`` (squared uniform
Laplacian of the displacement ``x - x_0``), ``"displacement"`` (its squared length), ``"tangential"`` (its squared
part along the source's tangent planes), ``"normal"`` (normal consistency of adjacent faces), ``"fold"`` (a hinge on
faces whose projected area on their source normal falls below 10 % of their source area: flipped faces).

The loss modules live in ``geomot.losses`` (layer L4) and are imported when a term is first used, so a missing
optional module fails with a message naming the term rather than at ``import geomot.deformation``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping

import numpy as np
import torch
from scipy.spatial import cKDTree

from geomot._core.checks import check_positive
from geomot._core.errors import ValidationError
from geomot._core.registry import Registry
from geomot.losses.chamfer import chamfer_distance
from geomot.losses.regularizers import normal_consistency_loss
from geomot.losses.sinkhorn import sinkhorn_divergence
from geomot.losses.sliced import sliced_wasserstein
from geomot.losses.varifold import varifold_distance
from geomot.ops.geometry import edges, vertex_areas, vertex_normals
from geomot.ops.sampling import sample_surface
from geomot.structures import Mesh

__all__ = ["ANNEALED", "COMBINATION_WEIGHTS", "DEFORM_LOSSES", "DEFORM_REGULARIZERS", "default_loss_options",
           "make_loss", "parse_loss"]

LossFn = Callable[..., torch.Tensor]
#: ``name -> fn(verts (V, 3), faces (F, 3), target: Mesh, *, generator, **options) -> scalar``.
DEFORM_LOSSES: Registry[LossFn] = Registry("deformation loss")
#: ``name -> fn(verts (V, 3), faces (F, 3), source_verts (V, 3)) -> scalar``.
DEFORM_REGULARIZERS: Registry[LossFn] = Registry("deformation regulariser")


#: Weight of a term inside a combination ``"a+b"``: a sliced term is multiplied by the dimension ``d`` of its space,
#: since ``E_theta <theta, u>^2 = |u|^2 / d`` makes ``SW_2^2 ~ W_2^2 / d`` for small displacements ``u``; every term
#: is then a squared distance in the same unit. Other terms: 1.
COMBINATION_WEIGHTS: dict[str, float] = {"sw-varifold": 6.0, "sw": 3.0}
#: Global OT terms whose weight, inside a combination, decays as ``1 - progress`` over the run (continuation: they
#: bring the shapes into correspondence while they are far apart; their Monte-Carlo noise — random directions and
#: samples — would otherwise set the final accuracy, which the exact local term sets instead).
ANNEALED = frozenset({"sw-varifold", "sw", "sinkhorn"})
#: Lighter defaults of the annealed terms in a combination: they only have to bring the shapes into coarse
#: correspondence (the local term resolves the detail), so 100 directions and 5,000 samples suffice.
_GLOBAL_ROLE: dict[str, dict] = {"sw-varifold": {"n_projections": 100, "n_samples": 5000},
                                 "sw": {"n_projections": 100, "n_samples": 5000}}


def parse_loss(loss: str | Mapping[str, float]) -> dict[str, float]:
    """``{term: weight}`` of a loss spec: a name of :data:`DEFORM_LOSSES` (weight 1), a combination ``"a+b"``
    (weights :data:`COMBINATION_WEIGHTS`) or a mapping ``{name: weight}``."""
    if isinstance(loss, Mapping):
        terms = {str(k): float(check_positive(w, f"loss[{k!r}]", strict=False)) for k, w in loss.items()}
    elif isinstance(loss, str):
        names = [n.strip() for n in loss.split("+")]
        if len(set(names)) != len(names):
            raise ValidationError(f"loss: a term is repeated in {loss!r}")
        terms = {n: (1.0 if len(names) == 1 else COMBINATION_WEIGHTS.get(n, 1.0)) for n in names}
    else:
        raise ValidationError(f"loss: expected a name, 'a+b' or a {{name: weight}} mapping, got {loss!r}")
    if not terms:
        raise ValidationError("loss: no term given")
    for n in terms:
        DEFORM_LOSSES.get(n, arg="loss")
    return terms


def make_loss(loss: str | Mapping[str, float], n_faces: int, loss_options: Mapping | None = None) -> LossFn:
    """The data term ``fn(verts, faces, target, generator=..., progress=...) -> scalar`` of a loss spec
    (:func:`parse_loss`): ``sum_t w_t(p) L_t`` where ``w_t(p) = w_t`` except for the terms of :data:`ANNEALED` in a
    combination, ``w_t (1 - p)`` at the run's progress ``p in [0, 1]``. Options: :func:`default_loss_options`
    updated by ``loss_options`` — a flat dict for a single term, ``{term: {option: value}}`` for a combination."""
    terms = parse_loss(loss)
    given = dict(loss_options or {})
    if len(terms) == 1:
        (name,) = terms
        opts = {name: {**default_loss_options(name, n_faces), **given}}
    else:
        unknown = sorted(set(given) - set(terms))
        if unknown:
            raise ValidationError(f"loss_options: a combination takes {{term: options}} for its terms "
                                  f"{sorted(terms)}, got {unknown}")
        opts = {n: {**default_loss_options(n, n_faces), **(_GLOBAL_ROLE.get(n, {}) if n in ANNEALED else {}),
                    **dict(given.get(n) or {})} for n in terms}
    fns = {n: DEFORM_LOSSES.get(n, arg="loss") for n in terms}

    anneal = {n: len(terms) > 1 and n in ANNEALED for n in terms}

    def data_term(v: torch.Tensor, f: torch.Tensor, target: Mesh, *, generator=None,
                  progress: float = 0.0) -> torch.Tensor:
        total = None
        for n, w in terms.items():
            if anneal[n]:
                w = w * max(0.0, 1.0 - float(progress))
            if w == 0:
                continue
            value = fns[n](v, f, target, generator=generator, **opts[n])
            total = w * value if total is None else total + w * value
        return v.sum() * 0 if total is None else total

    return data_term


def default_loss_options(name: str, n_faces: int) -> dict:
    """Defaults of each data term for shapes normalised to unit RMS radius (see :func:`geomot.deform.fit`).

    ``n_samples`` grows with the mesh (``min(max(2 F, 2000), 20000)`` for ``F`` faces); the varifold kernel width
    is 0.05 of the RMS radius; ``normal_weight`` (``lambda``) is 0.1 so that normals refine but do not dominate
    positions of order 1.
    """
    n_samples = int(min(max(2 * n_faces, 2000), 20000))
    table = {
        "sw-varifold": {"n_projections": 200, "normal_weight": 0.1, "atoms": "samples", "n_samples": n_samples},
        "sw": {"n_projections": 200, "n_samples": n_samples},
        "varifold": {"sigma": 0.05, "kernel": "binet"},
        "sinkhorn": {"n_samples": min(n_samples, 2000), "blur": 0.05},
        "chamfer": {"n_samples": n_samples},
        "surface": {"k": 4},
    }
    return dict(table.get(name, {}))


@DEFORM_LOSSES.register("sw-varifold")
def _sw_varifold(v, f, target: Mesh, *, generator=None, n_projections=200, normal_weight=0.1, atoms="samples",
                 n_samples=5000, **_):
    if atoms == "faces":
        return sliced_wasserstein(Mesh(v, f), target, measure="varifold",
                                  measure_options={"normal_weight": normal_weight},
                                  n_projections=n_projections, generator=generator, root=False)
    if atoms != "samples":
        raise ValidationError(f"loss_options['atoms']: expected 'faces' or 'samples', got {atoms!r}")
    sx = sample_surface(v, f, n_samples, generator=generator)
    sy = sample_surface(target.verts, target.faces, n_samples, generator=generator)
    x = torch.cat([sx.points, normal_weight * sx.normals], -1)
    y = torch.cat([sy.points, normal_weight * sy.normals], -1)
    return sliced_wasserstein(x, y, n_projections=n_projections, generator=generator, root=False)


@DEFORM_LOSSES.register("sw")
def _sw_samples(v, f, target: Mesh, *, generator=None, n_projections=200, n_samples=5000, **_):
    return sliced_wasserstein(Mesh(v, f), target, measure="samples", measure_options={"n_samples": n_samples},
                              n_projections=n_projections, generator=generator, root=False)


@DEFORM_LOSSES.register("varifold")
def _varifold(v, f, target: Mesh, *, sigma=0.05, kernel="binet", **_):
    return varifold_distance(Mesh(v, f), target, sigma=sigma, kernel=kernel, normalize=True)


def _samples(v, f, target: Mesh, n_samples: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = sample_surface(v, f, n_samples, generator=generator).points
    y = sample_surface(target.verts, target.faces, n_samples, generator=generator).points
    return x, y


@DEFORM_LOSSES.register("sinkhorn")
def _sinkhorn(v, f, target: Mesh, *, generator=None, n_samples=2000, blur=0.05, **_):
    x, y = _samples(v, f, target, n_samples, generator)
    return sinkhorn_divergence(x, y, eps=blur**2)


@DEFORM_LOSSES.register("chamfer")
def _chamfer(v, f, target: Mesh, *, generator=None, n_samples=5000, **_):
    x, y = _samples(v, f, target, n_samples, generator)
    return chamfer_distance(x, y)


@DEFORM_REGULARIZERS.register("edge")
def _edge(v, f, v0, **_):
    """``mean_e (|e| - mean source edge length)^2``."""
    e = edges(f)
    length = (v0[e[:, 0]] - v0[e[:, 1]]).norm(dim=-1).mean().detach()
    return ((v[e[:, 0]] - v[e[:, 1]]).norm(dim=-1) - length).pow(2).mean()


@DEFORM_REGULARIZERS.register("laplacian")
def _laplacian(v, f, v0, **_):
    """``mean_i |L(x - x_0)_i|^2`` with the uniform Laplacian ``L(u)_i = u_i - mean_{j ~ i} u_j``: smooth
    displacements, any target curvature."""
    e = edges(f)
    u = v - v0
    i, j = e[:, 0], e[:, 1]
    deg = v.new_zeros(v.shape[0]).index_add_(0, i, v.new_ones(i.shape[0])).index_add_(0, j, v.new_ones(i.shape[0]))
    nb = v.new_zeros(v.shape).index_add(0, i, u[j]).index_add(0, j, u[i])
    lap = torch.where(deg[:, None] > 0, u - nb / deg.clamp_min(1.0)[:, None], torch.zeros_like(u))
    return lap.pow(2).sum(-1).mean()


@DEFORM_REGULARIZERS.register("tangential")
def _tangential(v, f, v0, **_):
    """``mean_i |(I - n_i n_i^T)(x_i - x0_i)|^2``: the squared tangential part of each vertex's displacement, with
    ``n_i`` the unit area-weighted normal of the source at vertex ``i`` (not differentiated). The data terms that
    compare surfaces are blind to motion along the surface, so without it vertices may slide freely."""
    with torch.no_grad():
        n = vertex_normals(v0.detach(), f)
    u = v - v0
    ut = u - (u * n).sum(-1, keepdim=True) * n
    return ut.pow(2).sum(-1).mean()


@DEFORM_REGULARIZERS.register("displacement")
def _displacement(v, f, v0, **_):
    """``mean_i |x_i - x0_i|^2``: the squared length of each vertex's displacement, a discrete kinetic energy of
    the straight path (the LDDMM prior: among the deformations that fit, the shortest). Independent of any
    frame or normal, so it treats a bump that grows and a bump that retracts alike."""
    return (v - v0).pow(2).sum(-1).mean()


#: Projected area ratio below which ``"fold"`` starts to push a face back (see :func:`_fold`).
FOLD_MARGIN = 0.1


@DEFORM_REGULARIZERS.register("fold")
def _fold(v, f, v0, **_):
    """``mean_f max(0, m - s_f)^2`` with ``s_f = <A_f(x), n_f(x_0)> / a_f(x_0)``: the area vector of each deformed
    face projected on the face's unit source normal, relative to its source area, and ``m`` = :data:`FOLD_MARGIN`.
    ``s_f < 0`` is a flipped face (its normal turned by more than 90 degrees, what
    :func:`geomot.metrics.flipped_faces` counts); the term is 0 for every face whose projected area stays above
    ``m`` of its source area, so it leaves an unfolded fit alone and pushes back only the faces about to turn over
    (thin faces on the flanks of a growing bump). Degenerate source faces are skipped."""
    with torch.no_grad():
        a0 = torch.linalg.cross(v0[f[:, 1]] - v0[f[:, 0]], v0[f[:, 2]] - v0[f[:, 0]])
        area0 = a0.norm(dim=-1)
        ok = area0 > 0
        n0 = a0 / area0.clamp_min(torch.finfo(a0.dtype).tiny)[:, None]
    a = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    s = (a * n0).sum(-1) / area0.clamp_min(torch.finfo(a0.dtype).tiny)
    return torch.where(ok, (FOLD_MARGIN - s).clamp_min(0.0).pow(2), torch.zeros_like(s)).mean()


@DEFORM_REGULARIZERS.register("normal")
def _normal(v, f, v0, **_):
    """``mean_{f ~ g} 1 - <n_f, n_g>`` over faces sharing an edge."""
    return normal_consistency_loss(v, faces=f)


# -- local term: squared point-to-surface distance, both ways ----------------------------------------------------
def _closest_on_triangles(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Barycentric coordinates ``(..., 3)`` of the closest point of triangle ``tri (..., 3, 3)`` to ``p (..., 3)``
    (Ericson, "Real-Time Collision Detection", 2005, Sec. 5.1.5: the plane projection when it falls inside, else
    the closest point of the three edges). Not differentiated; degenerate triangles fall back to their edges."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    n = torch.linalg.cross(ab, ac)
    nn_ = (n * n).sum(-1)
    ok = nn_ > 1e-30
    inv = torch.where(ok, 1.0 / nn_.clamp_min(1e-30), torch.zeros_like(nn_))
    v = (torch.linalg.cross(ap, ac) * n).sum(-1) * inv
    w = (torch.linalg.cross(ab, ap) * n).sum(-1) * inv
    inside = ok & (v >= 0) & (w >= 0) & (v + w <= 1)
    bary_in = torch.stack([1 - v - w, v, w], -1)
    best = None
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    for (s, e, i, j) in ((a, b, 0, 1), (b, c, 1, 2), (c, a, 2, 0)):
        se = e - s
        den = (se * se).sum(-1)
        t = (((p - s) * se).sum(-1) / den.clamp_min(1e-30)).clamp(0.0, 1.0)
        t = torch.where(den > 0, t, zero)
        d2 = ((s + t[..., None] * se - p) ** 2).sum(-1)
        bary = [zero, zero, zero]
        bary[i], bary[j] = one - t, t
        bary_e = torch.stack(bary, -1)
        if best is None:
            best, best_b = d2, bary_e
        else:
            better = d2 < best
            best = torch.where(better, d2, best)
            best_b = torch.where(better[..., None], bary_e, best_b)
    return torch.where(inside[..., None], bary_in, best_b)


def _project(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor, k: int,
             tree: cKDTree | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest point on the triangles of ``(verts, faces)`` to each of ``points (P, 3)`` among the ``k`` faces with
    the nearest centroids: ``(face index (P,), barycentric coordinates (P, 3))``, not differentiated."""
    with torch.no_grad():
        tri = verts.detach()[faces]  # (F, 3, 3)
        if tree is None:
            tree = cKDTree(tri.mean(1).cpu().numpy())
        k = min(k, faces.shape[0])
        _, idx = tree.query(points.detach().cpu().numpy(), k=k)
        idx = torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(points.shape[0], k)).to(points.device)
        p = points.detach()[:, None, :].expand(-1, k, -1)
        bary = _closest_on_triangles(p, tri[idx])
        q = (bary[..., None] * tri[idx]).sum(-2)
        best = ((q - p) ** 2).sum(-1).argmin(1)
        rows = torch.arange(points.shape[0], device=points.device)
        return idx[rows, best], bary[rows, best]


class _TargetIndex:
    """Per-target data of the local term, built once per target mesh: k-d tree of face centroids, vertex weights."""

    def __init__(self, target: Mesh) -> None:
        v, f = target.verts.detach(), target.faces
        self.verts, self.faces = v, f
        self.tree = cKDTree(v[f].mean(1).cpu().numpy())
        self.weights = _vertex_weights(v, f)


_TARGET_CACHE: dict[int, tuple[weakref.ref, _TargetIndex]] = {}


def _target_index(target: Mesh) -> _TargetIndex:
    hit = _TARGET_CACHE.get(id(target))
    if hit is not None and hit[0]() is target:
        return hit[1]
    for key in [k for k, (r, _) in _TARGET_CACHE.items() if r() is None]:
        del _TARGET_CACHE[key]
    index = _TargetIndex(target)
    _TARGET_CACHE[id(target)] = (weakref.ref(target), index)
    return index


def _vertex_weights(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """One third of the area of the faces around each vertex, normalised to sum 1 (``(V,)``, not differentiated)."""
    a = vertex_areas(v.detach(), f)
    return a / a.sum().clamp_min(torch.finfo(a.dtype).tiny)


@DEFORM_LOSSES.register("surface")
def _surface(v, f, target: Mesh, *, k=4, **_):
    """``1/2 [sum_i a_i |x_i - P_T(x_i)|^2 + sum_j b_j |y_j - P_S(y_j)|^2]``: squared distances from the deformed
    vertices ``x_i`` to the target surface ``T`` and from the target's vertices ``y_j`` to the deformed surface
    ``S``, weighted by vertex areas ``a, b`` (sum 1). ``P`` is the closest point on the surface, found among the
    triangles of the ``k`` nearest centroids; its gradient is that of the squared distance to the surface
    (``2 (x - P(x))``, envelope theorem), and on the deformed side it moves the three corners of the closest face
    by their barycentric weights."""
    ti = _target_index(target)
    fi, bary = _project(v, ti.verts, ti.faces, k, ti.tree)
    to_target = (bary[..., None] * ti.verts[ti.faces[fi]]).sum(-2)
    d_st = ((v - to_target) ** 2).sum(-1)
    fj, bary_s = _project(ti.verts, v, f, k)
    on_source = (bary_s[..., None] * v[f[fj]]).sum(-2)
    d_ts = ((ti.verts - on_source) ** 2).sum(-1)
    return 0.5 * ((_vertex_weights(v, f) * d_st).sum() + (ti.weights * d_ts).sum())
