"""``geomot deform SOURCE TARGET --out result.npz``: fit a neural-ODE diffeomorphism of SOURCE onto TARGET with
an OT loss (:func:`geomot.deform.fit`), write the trajectory (``verts (T, V, 3)`` float32, ``faces (F, 3)``
int64, ``times (T,)``) and print the surface metrics."""

from __future__ import annotations

import argparse
import logging
import warnings

import torch

from geomot._core.errors import GeomotDeprecationWarning, ValidationError
from geomot.deformation.fit import DEFAULT_LOSS, DEFAULT_REGULARIZERS, DEFAULT_TIME_STEPS, fit
from geomot.deformation.integrate import SOLVERS
from geomot.deformation.losses import DEFORM_LOSSES, DEFORM_REGULARIZERS, parse_loss
from geomot.deformation.normalize import NORMALIZATIONS
from geomot.deformation.trajectory import save_trajectory
from geomot.io.files import load
from geomot.models.velocity import VELOCITY_FIELDS

__all__ = ["add_parser"]

log = logging.getLogger(__name__)

DESCRIPTION = """\
Fit a smooth, invertible deformation (the flow of a neural-ODE velocity field) that moves SOURCE onto TARGET,
write its trajectory to --out (an .npz with verts (T, V, 3), faces (F, 3) and times (T,)) and print how close
the result is (ASSD, HD90, Hausdorff, Chamfer, self-intersections, flipped faces).

The field acts in a normalised frame (the source's centre and RMS radius), so widths and learning rates are in
units of the source's RMS radius. With --checkpoint the run's state is saved every --checkpoint-every
iterations; after an interruption, the same command with --resume continues it to the same result.
"""

#: CLI option -> (field_options key, fields it applies to).
_FIELD_OPTIONS = {
    "control_points": ("n_control", {"kernel"}),
    "sigma": ("sigma", {"kernel"}),
    "sigma_factor": ("sigma_factor", {"kernel"}),
    "time_bins": ("n_time_bins", {"kernel"}),
    "hidden": ("hidden", {"mlp"}),
    "layers": ("layers", {"mlp"}),
    "fourier_features": ("fourier_features", {"mlp"}),
}


def _weights(text: str | None) -> dict[str, float | tuple[float, float]] | None:
    """``"edge=0.1,laplacian=1,displacement=0.1:0"`` -> ``{"edge": 0.1, "laplacian": 1.0, "displacement": (0.1,
    0.0)}`` (``START:END``: a weight moved linearly over the run); None -> None (the defaults of
    :func:`geomot.deform.fit`); ``"none"`` -> ``{}``."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return {}
    out: dict[str, float | tuple[float, float]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--regularize: expected NAME=WEIGHT items, got {item!r}")
        try:
            parts = [float(x) for x in value.split(":")]
        except ValueError:
            raise ValidationError(f"--regularize: weight of {name.strip()!r} is not a number or START:END pair: "
                                  f"{value!r}") from None
        if len(parts) > 2:
            raise ValidationError(f"--regularize: weight of {name.strip()!r} is not a number or START:END pair: "
                                  f"{value!r}")
        out[name.strip()] = parts[0] if len(parts) == 1 else (parts[0], parts[1])
    return out


def _weight_text(w: float | tuple[float, float]) -> str:
    """A regulariser weight as ``--regularize`` reads it: ``W`` or ``START:END``."""
    return f"{w[0]:g}:{w[1]:g}" if isinstance(w, tuple) else f"{w:g}"


def _field_options(args: argparse.Namespace) -> dict:
    """``field_options`` of :func:`geomot.deform.fit` from the field flags; a flag of another field raises."""
    out = {}
    for flag, (key, fields) in _FIELD_OPTIONS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.field not in fields:
            raise ValidationError(f"--{flag.replace('_', '-')}: applies to --field {' or '.join(sorted(fields))}, "
                                  f"not {args.field}")
        out[key] = value
    return out


def _max_iter(args: argparse.Namespace) -> int | None:
    if args.steps is None:
        return args.max_iter
    if args.max_iter is not None:
        raise ValidationError("--steps: deprecated alias of --max-iter; give only --max-iter")
    warnings.warn("geomot deform: --steps is deprecated and will be removed in a future release; use --max-iter",
                  GeomotDeprecationWarning, stacklevel=2)
    return args.steps


def _run(args: argparse.Namespace) -> int:
    parse_loss(args.loss)
    options = _field_options(args)
    max_iter = _max_iter(args)
    if args.resume and args.checkpoint is None:
        raise ValidationError("--resume: needs --checkpoint PATH (the file of the interrupted run)")
    source = load(args.source, kind="mesh")
    target = load(args.target, kind="mesh")
    before = torch.get_num_threads()
    if args.threads:  # this command is the process: it may choose its thread count (restored for in-process use)
        torch.set_num_threads(args.threads)
    try:
        res = fit(
            source, target, loss=args.loss, field=args.field, max_iter=max_iter, lr=args.lr, method=args.method,
            n_time_steps=args.time_steps, n_frames=args.frames, regularizers=_weights(args.regularize),
            field_options=options, normalize=args.normalize, seed=args.seed, max_time=args.max_time,
            progress=not args.quiet, checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
            resume=args.resume,
        )
    finally:
        torch.set_num_threads(before)
    path = save_trajectory(args.out, res.trajectory, res.mesh.faces, res.times, loss_history=res.loss_history)
    m = res.metrics
    norm = res.normalization
    lines = [
        f"deformed {args.source} -> {args.target} with {args.loss} ({args.field} field), "
        f"{res.n_steps} iterations in {res.wall_time:.1f} s",
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
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="source mesh (any format geomot.load reads: OFF, OBJ, PLY, STL, GIFTI...)")
    p.add_argument("target", help="target mesh")
    p.add_argument("--out", required=True, help="output .npz trajectory")
    p.add_argument("--loss", default=DEFAULT_LOSS,
                   help=f"data term: one of {', '.join(sorted(DEFORM_LOSSES.names()))} or a combination a+b "
                        f"(default {DEFAULT_LOSS})")
    p.add_argument("--regularize", default=None,
                   help=f"weighted regularisers NAME=W,... ({', '.join(sorted(DEFORM_REGULARIZERS.names()))}, "
                        f"kinetic); W=START:END moves the weight linearly from START to END over the run; 'none' "
                        f"for none (default: "
                        f"{','.join(f'{k}={_weight_text(v)}' for k, v in DEFAULT_REGULARIZERS.items())})")
    p.add_argument("--max-iter", type=int, default=None, metavar="N",
                   help="optimisation iterations (default: from the vertex count, 100 to 300)")
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)  # deprecated alias of --max-iter
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: a quarter of the kernel width for the kernel field, "
                        "1e-3 for mlp)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                   help="stop optimising after this many seconds")
    g = p.add_argument_group("velocity field")
    g.add_argument("--field", default="kernel", choices=[n for n in VELOCITY_FIELDS.names() if n != "conditioned"],
                   help="kernel: Gaussian kernel on control points (default); mlp: a neural network")
    g.add_argument("--control-points", type=int, default=None, metavar="N",
                   help="kernel field: number of control points (default: every vertex; fewer are spread by "
                        "farthest-point sampling and give a smoother field)")
    g.add_argument("--sigma", type=float, default=None, metavar="WIDTH",
                   help="kernel field: kernel width in units of the source's RMS radius (default: the spacing of "
                        "the control points times --sigma-factor)")
    g.add_argument("--sigma-factor", type=float, default=None, metavar="F",
                   help="kernel field: kernel width as a multiple of the control-point spacing (default 1)")
    g.add_argument("--time-bins", type=int, default=None, metavar="N",
                   help="kernel field: time intervals with their own momenta (default 4; 1 = stationary)")
    g.add_argument("--hidden", type=int, default=None, metavar="WIDTH", help="mlp field: hidden width (default 128)")
    g.add_argument("--layers", type=int, default=None, metavar="N", help="mlp field: hidden layers (default 3)")
    g.add_argument("--fourier-features", type=int, default=None, metavar="N",
                   help="mlp field: random Fourier features of the input (default 64; 0 = raw coordinates)")
    g.add_argument("--method", default="euler", choices=sorted(SOLVERS.names()), help="ODE solver (default euler)")
    g.add_argument("--time-steps", type=int, default=DEFAULT_TIME_STEPS, metavar="N",
                   help=f"steps of a fixed-step solver over the flow's time (default {DEFAULT_TIME_STEPS})")
    o = p.add_argument_group("output and run")
    o.add_argument("--frames", type=int, default=11, help="frames written to the trajectory (default 11)")
    o.add_argument("--normalize", default="auto", choices=sorted(NORMALIZATIONS.names()),
                   help="frame policy (auto: align a target in another unit or far away, and say so)")
    o.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="save the run's state to PATH every --checkpoint-every iterations and at the end")
    o.add_argument("--checkpoint-every", type=int, default=50, metavar="N",
                   help="iterations between checkpoints (default 50)")
    o.add_argument("--resume", action="store_true",
                   help="continue the interrupted run saved in --checkpoint (same inputs and options)")
    o.add_argument("--threads", type=int, default=1,
                   help="torch threads of this command (default 1: on a machine whose cores are busy with other "
                        "jobs, 2 threads were 5x slower than 1; 0 = torch's own setting)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    return p
