"""``geomot distance A B --loss NAME``: print one OT distance between two shape files.

Adding a distance takes one line in :data:`DISTANCES` (below the "one line per distance" marker): a name and a
callable ``fn(a: Measure, b: Measure, opts: DistanceOptions) -> Tensor`` returning a scalar, e.g.::

    DISTANCES.add("sinkhorn", lambda a, b, o: sinkhorn_divergence(a, b, eps=0.01))

(import the function at the top; add any option the callable needs to :func:`add_parser`,
:class:`DistanceOptions` and :func:`compute_distance`). Both inputs arrive as :class:`~geomot.Measure`.

The files are read with :func:`geomot.io.load`; a mesh becomes a measure by ``--measure`` (default: ``varifold``
when both inputs are meshes, ``samples`` when a mesh is compared with a point cloud); a point cloud is the uniform
measure on its points.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import NamedTuple

import torch

from geomot._core.errors import ValidationError
from geomot._core.registry import Registry
from geomot.io.files import load
from geomot.losses.chamfer import chamfer_distance
from geomot.losses.sinkhorn import sinkhorn_divergence
from geomot.losses.sliced import sliced_wasserstein
from geomot.losses.sliced_variants import (
    distributional_sliced_wasserstein,
    energy_based_sliced_wasserstein,
    max_sliced_wasserstein,
    vmf_sliced_wasserstein,
)
from geomot.losses.varifold import varifold_distance
from geomot.structures import MESH_MEASURES, Measure, Mesh, PointCloud, mesh_to_measure

__all__ = ["DISTANCES", "DistanceOptions", "add_parser", "compute_distance"]

log = logging.getLogger(__name__)


class DistanceOptions(NamedTuple):
    """Settings shared by the registered distances."""

    p: float = 2.0
    n_projections: int = 100
    generator: torch.Generator | None = None


DistanceFn = Callable[[Measure, Measure, DistanceOptions], torch.Tensor]
DISTANCES: Registry[DistanceFn] = Registry("distance")


def _common(o: DistanceOptions) -> dict:
    return {"p": o.p, "generator": o.generator}


# -- one line per distance ------------------------------------------------------------------------------------
DISTANCES.add("sw", lambda a, b, o: sliced_wasserstein(a, b, n_projections=o.n_projections, **_common(o)))
DISTANCES.add("cv-sw", lambda a, b, o: sliced_wasserstein(
    a, b, n_projections=o.n_projections, control_variate="upper", **_common(o)))
DISTANCES.add("sw-varifold", lambda a, b, o: sliced_wasserstein(a, b, n_projections=o.n_projections, **_common(o)))
DISTANCES.add("max-sw", lambda a, b, o: max_sliced_wasserstein(a, b, **_common(o)))
DISTANCES.add("dsw", lambda a, b, o: distributional_sliced_wasserstein(
    a, b, n_projections=o.n_projections, **_common(o)))
DISTANCES.add("vmf-dsw", lambda a, b, o: vmf_sliced_wasserstein(a, b, n_projections=o.n_projections, **_common(o)))
DISTANCES.add("ebsw", lambda a, b, o: energy_based_sliced_wasserstein(
    a, b, n_projections=o.n_projections, **_common(o)))
DISTANCES.add("varifold", lambda a, b, o: varifold_distance(  # needs 6-D varifold measures; sigma = 10% of b's extent
    a, b, sigma=0.1 * float((b.support[0, :, :3].amax(0) - b.support[0, :, :3].amin(0)).norm())))
DISTANCES.add("sinkhorn", lambda a, b, o: sinkhorn_divergence(  # debiased, eps = (5% of b's extent)^2
    a, b, eps=(0.05 * float((b.support[0, :, :3].amax(0) - b.support[0, :, :3].amin(0)).norm())) ** 2))
DISTANCES.add("chamfer", lambda a, b, o: chamfer_distance(
    a.support[..., :3], b.support[..., :3], x_lengths=a.lengths, y_lengths=b.lengths))

# distances whose inputs must be meshes turned into this measure
_FORCED_MEASURE = {"sw-varifold": "varifold"}


def _to_measure(shape: Mesh | PointCloud, kind: str, generator: torch.Generator | None) -> Measure:
    if isinstance(shape, Mesh):
        return mesh_to_measure(shape, kind, generator=generator)
    return shape.to_measure()


def compute_distance(
    a: Mesh | PointCloud,
    b: Mesh | PointCloud,
    *,
    loss: str = "sw",
    measure: str | None = None,
    p: float = 2.0,
    n_projections: int = 100,
    seed: int = 0,
) -> float:
    """The distance ``loss`` of :data:`DISTANCES` between two shapes (what ``geomot distance`` prints)."""
    fn = DISTANCES.get(loss, arg="loss")
    both_meshes = isinstance(a, Mesh) and isinstance(b, Mesh)
    forced = _FORCED_MEASURE.get(loss)
    if forced is not None:
        if not both_meshes:
            raise ValidationError(f"loss: {loss!r} compares two meshes, but an input is a point cloud")
        if measure not in (None, forced):
            raise ValidationError(f"measure: {loss!r} uses measure={forced!r}, got {measure!r}")
    kind = forced or measure or ("varifold" if both_meshes else "samples")
    gen = torch.Generator().manual_seed(seed)
    ma, mb = _to_measure(a, kind, gen), _to_measure(b, kind, gen)
    log.debug("distance %s between measures of %d and %d atoms in R^%d", loss, ma.support.shape[1],
              mb.support.shape[1], ma.dim)
    opts = DistanceOptions(p=p, n_projections=n_projections, generator=gen)
    with torch.no_grad():
        return float(fn(ma, mb, opts))


def _run(args: argparse.Namespace) -> int:
    a = load(args.a, dtype=torch.float64)
    b = load(args.b, dtype=torch.float64)
    value = compute_distance(
        a, b, loss=args.loss, measure=args.measure, p=args.p, n_projections=args.n_projections, seed=args.seed
    )
    print(f"{value:.10g}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "distance", help="print an OT distance between two shape files",
        description="Print an optimal-transport distance between two meshes / point clouds (any format "
        "geomot.load reads). Meshes become measures by --measure.",
    )
    p.add_argument("a", help="first shape file")
    p.add_argument("b", help="second shape file")
    p.add_argument("--loss", default="sw", help=f"one of: {', '.join(DISTANCES.names())} (default: sw)")
    p.add_argument("--measure", default=None, choices=MESH_MEASURES.names(),
                   help="how a mesh becomes a measure (default: varifold for two meshes, samples otherwise)")
    p.add_argument("--n-projections", type=int, default=100, help="number of directions (default: 100)")
    p.add_argument("--p", type=float, default=2.0, help="order p >= 1 (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=_run)
    return p
