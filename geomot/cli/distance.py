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
from pathlib import Path
from typing import NamedTuple

import torch

from geomot._core.errors import ValidationError
from geomot._core.registry import Registry
from geomot.cli._progress import Stages
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
    reduction: str = "mean"


DistanceFn = Callable[[Measure, Measure, DistanceOptions], torch.Tensor]
DISTANCES: Registry[DistanceFn] = Registry("distance")


def _common(o: DistanceOptions) -> dict:
    return {"p": o.p, "generator": o.generator, "reduction": o.reduction}


def _extent(m: Measure) -> float:
    """Diagonal of the bounding box of the positions (first three coordinates) of every atom of ``m``."""
    pts = m.support[..., :3][m.weights > 0]
    return float((pts.amax(0) - pts.amin(0)).norm())


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
    a, b, sigma=0.1 * _extent(b), reduction=o.reduction))
DISTANCES.add("sinkhorn", lambda a, b, o: sinkhorn_divergence(  # debiased, eps = (5% of b's extent)^2, stopped when
    # the value settles (rtol 1e-4); in float32: 5-8x faster than float64 on a CPU, and its ~0.5% difference (two
    # FAUST meshes) is below the sampling error of the --max-atoms estimate (0.5% between two draws)
    a.to(torch.float32), b.to(torch.float32), eps=(0.05 * _extent(b)) ** 2, reduction=o.reduction).double())
DISTANCES.add("chamfer", lambda a, b, o: chamfer_distance(
    a.support[..., :3], b.support[..., :3], x_lengths=a.lengths, y_lengths=b.lengths, reduction=o.reduction))

# distances whose inputs must be meshes turned into this measure
_FORCED_MEASURE = {"sw-varifold": "varifold"}
# default --max-atoms of the distances whose cost grows with the product of the two sizes (kernel sums, Sinkhorn)
# or that run an ascent over many projections: each finishes in seconds on a CPU at this size
MAX_ATOMS = {"sinkhorn": 2000, "varifold": 4000, "dsw": 3000, "vmf-dsw": 3000}


def _to_measure(shape: Mesh | PointCloud, kind: str, generator: torch.Generator | None, n_samples: int) -> Measure:
    if isinstance(shape, Mesh):
        return mesh_to_measure(shape, kind, generator=generator, n_samples=n_samples)
    return shape.to_measure()


def subsample(m: Measure, n: int, generator: torch.Generator | None) -> Measure:
    """The empirical measure of ``n`` atoms of each item of ``m`` drawn with probability equal to their weights (with
    replacement), an ``n``-point estimate of ``m``. Items with at most ``n`` atoms are kept as they are."""
    if int(m.lengths.max()) <= n:
        return m
    idx = torch.multinomial(m.weights.cpu(), n, replacement=True, generator=generator).to(m.support.device)
    return Measure(torch.gather(m.support, 1, idx[..., None].expand(-1, -1, m.support.shape[-1])))


def _broadcast(ma: Measure, mb: Measure) -> tuple[Measure, Measure]:
    """Repeat a single measure to the batch size of the other."""
    na, nb = ma.support.shape[0], mb.support.shape[0]
    if na == nb:
        return ma, mb
    if min(na, nb) != 1:
        raise ValidationError(f"a/b: batches of {na} and {nb} shapes; give equal batch sizes or one single shape")
    if na == 1:
        return Measure(ma.support.expand(nb, -1, -1), ma.weights.expand(nb, -1), lengths=ma.lengths.expand(nb)), mb
    return ma, Measure(mb.support.expand(na, -1, -1), mb.weights.expand(na, -1), lengths=mb.lengths.expand(na))


def compute_distance(
    a: Mesh | PointCloud,
    b: Mesh | PointCloud,
    *,
    loss: str = "sw",
    measure: str | None = None,
    p: float = 2.0,
    n_projections: int = 100,
    seed: int = 0,
    max_atoms: int | None = None,
    reduction: str = "mean",
) -> float | list[float]:
    """The distance ``loss`` of :data:`DISTANCES` between two shapes (what ``geomot distance`` prints).

    Args:
        a, b: shapes; a batch (a ``(B, N, 3)`` ``.npy``) is compared item by item with a batch of the same size,
            or with every item against a single shape.
        loss: a name of :data:`DISTANCES`.
        measure: how a mesh becomes a measure (default ``varifold`` for two meshes, ``samples`` otherwise).
        p, n_projections, seed: settings of the sliced distances; ``seed`` also drives sampling.
        max_atoms: measures with more atoms are replaced by ``max_atoms`` atoms drawn by weight (:func:`subsample`);
            ``None`` takes the loss's default from :data:`MAX_ATOMS` (no limit for the others), ``0`` no limit.
        reduction: ``"mean"`` (one float) or ``"none"`` (a list, one value per item of a batch).
    """
    fn = DISTANCES.get(loss, arg="loss")
    if reduction not in ("mean", "none"):
        raise ValidationError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    both_meshes = isinstance(a, Mesh) and isinstance(b, Mesh)
    forced = _FORCED_MEASURE.get(loss)
    if forced is not None:
        if not both_meshes:
            raise ValidationError(f"loss: {loss!r} compares two meshes, but an input is a point cloud")
        if measure not in (None, forced):
            raise ValidationError(f"measure: {loss!r} uses measure={forced!r}, got {measure!r}")
    limit = MAX_ATOMS.get(loss, 0) if max_atoms is None else int(max_atoms)
    if limit < 0:
        raise ValidationError(f"max_atoms: expected 0 (no limit) or a positive count, got {limit}")
    kind = forced or measure or ("varifold" if both_meshes else "samples")
    gen = torch.Generator().manual_seed(seed)
    n_samples = min(limit, 5000) if limit else 5000
    ma, mb = _to_measure(a, kind, gen, n_samples), _to_measure(b, kind, gen, n_samples)
    if limit:
        sizes = (int(ma.lengths.max()), int(mb.lengths.max()))
        ma, mb = subsample(ma, limit, gen), subsample(mb, limit, gen)
        if max(sizes) > limit:
            log.info("%s: estimated on %d atoms drawn by weight from measures of %d and %d atoms (--max-atoms %d; "
                     "0 uses all, slower)", loss, limit, sizes[0], sizes[1], limit)
    ma, mb = _broadcast(ma, mb)
    log.debug("distance %s between measures of %d and %d atoms in R^%d", loss, ma.support.shape[1],
              mb.support.shape[1], ma.dim)
    opts = DistanceOptions(p=p, n_projections=n_projections, generator=gen, reduction=reduction)
    with torch.no_grad():
        value = fn(ma, mb, opts)
    return value.tolist() if reduction == "none" else float(value)


def _run(args: argparse.Namespace) -> int:
    with Stages(3, desc=f"distance {args.loss}", enabled=not args.quiet) as stages:
        stages.next(f"loading {Path(args.a).name}")
        a = load(args.a, dtype=torch.float64)
        stages.next(f"loading {Path(args.b).name}")
        b = load(args.b, dtype=torch.float64)
        batched = len(a) > 1 or len(b) > 1
        reduction = args.reduction or ("none" if batched else "mean")
        stages.next(f"{args.loss}")
        value = compute_distance(
            a, b, loss=args.loss, measure=args.measure, p=args.p, n_projections=args.n_projections, seed=args.seed,
            max_atoms=args.max_atoms, reduction=reduction,
        )
    if isinstance(value, list):
        log.info("%d values, item i of %s against item i of %s (--reduction mean for their mean)", len(value),
                 args.a if len(a) > 1 else "A", args.b if len(b) > 1 else "B")
        print("\n".join(f"{v:.10g}" for v in value))
    else:
        if batched:
            log.info("mean over %d pairs (--reduction none for one value per pair)", max(len(a), len(b)))
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
    limits = ", ".join(f"{k} {v}" for k, v in MAX_ATOMS.items())
    p.add_argument("--max-atoms", type=int, default=None, metavar="N",
                   help=f"estimate the distance on N atoms drawn by weight from larger measures, so that the run takes "
                   f"seconds (default: "
                   f"{limits}; no limit for the others; 0 = use every atom)")
    p.add_argument("--reduction", default=None, choices=["mean", "none"],
                   help="for batches ((B, N, 3) .npy files): one value per pair (none, the default for batches) or "
                   "their mean")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_run)
    return p
