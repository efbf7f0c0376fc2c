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
Laplacian of the displacement ``x - x_0``), ``"normal"`` (normal consistency of adjacent faces).

The loss modules live in ``geomot.losses`` (layer L4) and are imported when a term is first used, so a missing
optional module fails with a message naming the term rather than at ``import geomot.deformation``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from geomot._core.errors import MissingDependencyError, ValidationError
from geomot._core.registry import Registry
from geomot.structures import Mesh

__all__ = ["DEFORM_LOSSES", "DEFORM_REGULARIZERS", "default_loss_options"]

LossFn = Callable[..., torch.Tensor]
#: ``name -> fn(verts (V, 3), faces (F, 3), target: Mesh, *, generator, **options) -> scalar``.
DEFORM_LOSSES: Registry[LossFn] = Registry("deformation loss")
#: ``name -> fn(verts (V, 3), faces (F, 3), source_verts (V, 3)) -> scalar``.
DEFORM_REGULARIZERS: Registry[LossFn] = Registry("deformation regulariser")


def _attr(module: str, *names: str) -> Callable[..., torch.Tensor]:
    """First existing attribute among ``names`` of ``module`` (lazy import), with a clear error otherwise."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{module} is not available ({e}); choose another loss") from e
    for n in names:
        if hasattr(mod, n):
            return getattr(mod, n)
    raise MissingDependencyError(f"{module} has none of {names}; choose another loss")


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
    }
    return dict(table[name])


@DEFORM_LOSSES.register("sw-varifold")
def _sw_varifold(v, f, target: Mesh, *, generator=None, n_projections=200, normal_weight=0.1, atoms="samples",
                 n_samples=5000, **_):
    sw = _attr("geomot.losses.sliced", "sliced_wasserstein")
    if atoms == "faces":
        return sw(Mesh(v, f), target, measure="varifold", measure_options={"normal_weight": normal_weight},
                  n_projections=n_projections, generator=generator, root=False)
    if atoms != "samples":
        raise ValidationError(f"loss_options['atoms']: expected 'faces' or 'samples', got {atoms!r}")
    from geomot.ops.sampling import sample_surface

    sx = sample_surface(v, f, n_samples, generator=generator)
    sy = sample_surface(target.verts, target.faces, n_samples, generator=generator)
    x = torch.cat([sx.points, normal_weight * sx.normals], -1)
    y = torch.cat([sy.points, normal_weight * sy.normals], -1)
    return sw(x, y, n_projections=n_projections, generator=generator, root=False)


@DEFORM_LOSSES.register("sw")
def _sw_samples(v, f, target: Mesh, *, generator=None, n_projections=200, n_samples=5000, **_):
    sw = _attr("geomot.losses.sliced", "sliced_wasserstein")
    return sw(Mesh(v, f), target, measure="samples", measure_options={"n_samples": n_samples},
              n_projections=n_projections, generator=generator, root=False)


@DEFORM_LOSSES.register("varifold")
def _varifold(v, f, target: Mesh, *, sigma=0.05, kernel="binet", **_):
    vd = _attr("geomot.losses.varifold", "varifold_distance")
    return vd(Mesh(v, f), target, sigma=sigma, kernel=kernel, normalize=True)


def _samples(v, f, target: Mesh, n_samples: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    from geomot.ops.sampling import sample_surface

    x = sample_surface(v, f, n_samples, generator=generator).points
    y = sample_surface(target.verts, target.faces, n_samples, generator=generator).points
    return x, y


@DEFORM_LOSSES.register("sinkhorn")
def _sinkhorn(v, f, target: Mesh, *, generator=None, n_samples=2000, blur=0.05, **_):
    sd = _attr("geomot.losses.sinkhorn", "sinkhorn_divergence")
    x, y = _samples(v, f, target, n_samples, generator)
    return sd(x, y, eps=blur**2)


@DEFORM_LOSSES.register("chamfer")
def _chamfer(v, f, target: Mesh, *, generator=None, n_samples=5000, **_):
    ch = _attr("geomot.losses.chamfer", "chamfer_distance")
    x, y = _samples(v, f, target, n_samples, generator)
    return ch(x, y)


@DEFORM_REGULARIZERS.register("edge")
def _edge(v, f, v0, **_):
    """``mean_e (|e| - mean source edge length)^2``."""
    from geomot.ops.geometry import edges

    fn = _attr("geomot.losses.regularizers", "edge_length_loss")
    e = edges(f)
    length = float((v0[e[:, 0]] - v0[e[:, 1]]).norm(dim=-1).mean())
    return fn(v, f, target_length=length)


@DEFORM_REGULARIZERS.register("laplacian")
def _laplacian(v, f, v0, **_):
    """``mean_i |L(x - x_0)_i|^2`` with the uniform Laplacian: smooth displacements, any target curvature."""
    fn = _attr("geomot.losses.regularizers", "laplacian_residual")
    return (fn(v, f) - fn(v0, f)).pow(2).sum(-1).mean()


@DEFORM_REGULARIZERS.register("normal")
def _normal(v, f, v0, **_):
    """``mean_{f ~ g} 1 - <n_f, n_g>`` over faces sharing an edge."""
    fn = _attr("geomot.losses.regularizers", "normal_consistency_loss")
    return fn(v, f)
