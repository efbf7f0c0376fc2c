"""``geomot deform SOURCE TARGET --out result.npz``: fit a neural-ODE diffeomorphism of SOURCE onto TARGET with
an OT loss (:func:`geomot.deform.fit`), write the trajectory (``verts (T, V, 3)`` float32, ``faces (F, 3)``
int64, ``times (T,)``) and print the surface metrics."""

from __future__ import annotations

import argparse
import logging

from geomot._core.errors import ValidationError
from geomot.deformation.fit import DEFAULT_LOSS, DEFAULT_REGULARIZERS, fit
from geomot.deformation.integrate import SOLVERS
from geomot.deformation.losses import DEFORM_LOSSES, DEFORM_REGULARIZERS, parse_loss
from geomot.deformation.normalize import NORMALIZATIONS
from geomot.deformation.trajectory import save_trajectory
from geomot.io.files import load
from geomot.models.velocity import VELOCITY_FIELDS

__all__ = ["add_parser"]

log = logging.getLogger(__name__)


def _weights(text: str | None) -> dict[str, float] | None:
    """``"edge=0.1,laplacian=1"`` -> ``{"edge": 0.1, "laplacian": 1.0}``; None -> None (the defaults of
    :func:`geomot.deform.fit`); ``"none"`` -> ``{}``."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return {}
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--regularize: expected NAME=WEIGHT items, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValidationError(f"--regularize: weight of {name.strip()!r} is not a number: {value!r}") from None
    return out


def _run(args: argparse.Namespace) -> int:
    parse_loss(args.loss)
    source = load(args.source, kind="mesh")
    target = load(args.target, kind="mesh")
    res = fit(
        source, target, loss=args.loss, field=args.field, steps=args.steps, lr=args.lr, method=args.method,
        n_time_steps=args.time_steps, n_frames=args.frames, regularizers=_weights(args.regularize),
        normalize=args.normalize, seed=args.seed, max_time=args.max_time, progress=not args.quiet,
        threads=args.threads or None,
    )
    path = save_trajectory(args.out, res.trajectory, res.mesh.faces, res.times, loss_history=res.loss_history)
    m = res.metrics
    norm = res.normalization
    lines = [
        f"deformed {args.source} -> {args.target} with {args.loss} ({args.field} field), "
        f"{res.n_steps} steps in {res.wall_time:.1f} s",
        f"  ASSD                 {m.assd:.4g}",
        f"  HD90                 {m.hd90:.4g}",
        f"  Hausdorff            {m.hausdorff:.4g}",
        f"  Chamfer              {m.chamfer:.4g}",
        f"  normal consistency   {m.normal_consistency:.4f}",
        f"  self-intersections   {m.self_intersections} (max over {len(res.frame_self_intersections)} frames: "
        f"{max(res.frame_self_intersections)})",
        f"  flipped faces        {m.flipped_faces}",
        f"  normalisation        {norm.mode}; target {'aligned' if norm.aligned else 'kept'} "
        f"(radius ratio {norm.scale_ratio:.3g}, centre offset {norm.offset:.3g} source radii)",
        f"  trajectory           {path} ({res.trajectory.shape[0]} frames)",
    ]
    print("\n".join(lines))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "deform", help="fit a diffeomorphic deformation of SOURCE onto TARGET (neural ODE + OT loss)",
        description=__doc__,
    )
    p.add_argument("source", help="source mesh (any format geomot.load reads: OFF, OBJ, PLY, STL, GIFTI...)")
    p.add_argument("target", help="target mesh")
    p.add_argument("--out", required=True, help="output .npz trajectory")
    p.add_argument("--loss", default=DEFAULT_LOSS,
                   help=f"data term: one of {', '.join(sorted(DEFORM_LOSSES.names()))} or a combination a+b "
                        f"(default {DEFAULT_LOSS}: the SW-varifold weight decays over the run, see docs)")
    p.add_argument("--field", default="kernel", choices=[n for n in VELOCITY_FIELDS.names() if n != "conditioned"],
                   help="velocity field")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: from the vertex count)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: per field)")
    p.add_argument("--method", default="euler", choices=sorted(SOLVERS.names()), help="ODE solver")
    p.add_argument("--time-steps", type=int, default=10, help="steps of a fixed-step solver")
    p.add_argument("--frames", type=int, default=11, help="frames written to the trajectory")
    p.add_argument("--regularize", default=None,
                   help=f"weighted regularisers NAME=W,... ({', '.join(sorted(DEFORM_REGULARIZERS.names()))}, "
                        f"kinetic); 'none' for none (default: {DEFAULT_REGULARIZERS})")
    p.add_argument("--normalize", default="auto", choices=sorted(NORMALIZATIONS.names()),
                   help="frame policy (auto: align a target in another unit or far away, and say so)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--max-time", type=float, default=None, help="stop optimising after this many seconds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads of the fit (default 1: on a machine whose cores are busy with "
                        "other jobs, 2 threads were 5x slower than 1; 0 = torch's current setting)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    return p
