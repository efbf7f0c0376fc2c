"""``geomot match SOURCE TARGET --out p2p.txt [--checkpoint RUN_DIR]``: dense correspondence between two shape
files, training-free or with a learned matcher.

Writes one line per SOURCE vertex holding the 0-based index of its matched TARGET vertex (the ``p2p_21`` of
:func:`geomot.correspondence.match`). With ``--gt-source A.vts --gt-target B.vts`` (1-based ``.vts`` files whose
line ``k`` name corresponding vertices) it also prints the mean geodesic error (x100, normalised by the square
root of the target's area); ``--screenshot out.png`` saves a colour-transfer picture of the pair side by side
(:func:`geomot.viz.show_correspondence`, off-screen).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot.cli._progress import Stages
from geomot.correspondence.pipeline import match
from geomot.io.files import load
from geomot.io.vts import read_vts
from geomot.metrics.geodesic import geodesic_error
from geomot.structures import Mesh

__all__ = ["add_parser"]

log = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> int:
    if (args.gt_source is None) != (args.gt_target is None):
        raise ValidationError("--gt-source/--gt-target: give both ground-truth files or neither")
    with Stages(5, desc="match", enabled=not args.quiet) as stages:
        stages.next(f"loading {Path(args.source).name}")
        src = load(args.source, dtype=torch.float64)
        stages.next(f"loading {Path(args.target).name}")
        tgt = load(args.target, dtype=torch.float64)
        model = None
        if args.checkpoint is not None:
            from geomot.train.matcher import load_matcher

            stages.next(f"loading {Path(args.checkpoint).name}")
            model, _ = load_matcher(args.checkpoint)
        elif args.adapt_steps:
            raise ValidationError("--adapt-steps: test-time adaptation needs a learned matcher (--checkpoint)")
        elif args.headings != 1:
            raise ValidationError("--headings: the heading search needs a learned xyz matcher (--checkpoint)")
        res = match(src, tgt, k=args.k, refine=args.refine, n_extrinsic=args.extrinsic,
                    non_isometric=args.non_isometric, cache_dir=args.cache_dir, progress=stages, model=model,
                    adapt_steps=args.adapt_steps, model_options={"headings": args.headings} if model else None)
    out = Path(args.out)
    if out.is_dir():
        raise FileFormatError(f"--out: {out} is a directory, expected a file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(out, res.p2p_21.cpu().numpy().astype(np.int64), fmt="%d")
    print(f"wrote {out}: {res.p2p_21.shape[0]} source vertices -> target indices "
          f"({res.timings['total']:.2f} s)")
    if args.gt_source is not None:
        if not isinstance(tgt, Mesh):
            raise ValidationError("--gt-target: the geodesic error needs a target mesh (faces), got a point cloud")
        gs, gt = read_vts(args.gt_source), read_vts(args.gt_target)
        if gs.shape != gt.shape:
            raise FileFormatError(
                f"--gt-source/--gt-target: {gs.shape[0]} and {gt.shape[0]} lines; "
                "the files must correspond line by line"
            )
        if int(gs.max()) >= res.p2p_21.shape[0] or int(gt.max()) >= tgt.verts.shape[0]:
            raise FileFormatError("--gt-source/--gt-target: an index exceeds the vertex count of its shape")
        err = geodesic_error(res.p2p_21, tgt, gs, gt)
        print(f"mean geodesic error: {100 * float(err):.2f} (x100, normalised by sqrt(target area))")
    if args.screenshot is not None:
        from geomot.viz import show_correspondence

        show_correspondence(src, tgt, res.p2p_21, screenshot=args.screenshot, off_screen=True)
        print(f"wrote {args.screenshot}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "match", help="dense vertex map between two shapes (functional maps; training-free or learned)",
        description="Match two meshes / point clouds (any format geomot.load reads) with spectral descriptors, an "
        "orientation-aware initialisation, extrinsic alignments and ZoomOut, or with a learned matcher "
        "(--checkpoint). Writes one line per SOURCE vertex: the 0-based index of its matched TARGET vertex.",
    )
    p.add_argument("source", help="source shape file")
    p.add_argument("target", help="target shape file")
    p.add_argument("--out", required=True, help="output text file (one target index per source vertex)")
    p.add_argument("--gt-source", default=None, help="ground-truth .vts of the source (1-based)")
    p.add_argument("--gt-target", default=None, help="ground-truth .vts of the target (1-based)")
    p.add_argument("--screenshot", default=None, help="save a colour-transfer picture (PNG)")
    p.add_argument("--k", type=int, default=140, help="final number of eigenfunctions (default: 140)")
    p.add_argument("--refine", default="zoomout", choices=["zoomout", "sinkhorn", "none"],
                   help="refinement (default: zoomout)")
    p.add_argument("--extrinsic", type=int, default=2, metavar="N",
                   help="extrinsic candidates (principal axes + smooth non-rigid ICP) next to the spectral ones; they "
                   "matter between different species; 0 skips them, about 1 s faster (default: 2)")
    p.add_argument("--non-isometric", action="store_true",
                   help="the shapes differ by more than a change of pose (e.g. two species): polish every spectral "
                   "map extrinsically within 2 edge rings, not only those whose edge stretch says so (better across "
                   "species, worse between two poses of one body)")
    p.add_argument("--checkpoint", default=None, metavar="RUN_DIR",
                   help="match with a learned matcher (a run folder or checkpoint of geomot train matcher) instead "
                   "of the training-free pipeline; --k, --refine, --extrinsic and --non-isometric are then unused")
    p.add_argument("--adapt-steps", type=int, default=0, metavar="N",
                   help="with --checkpoint: N steps of test-time adaptation to the pair (default: 0)")
    p.add_argument("--headings", type=int, default=1, metavar="K",
                   help="with --checkpoint of an xyz-input matcher: try K headings of SOURCE about the y axis and "
                   "keep the one of lowest loss (default: 1, as given)")
    p.add_argument("--cache-dir", default=None, help="folder for cached Laplacian eigenbases (opt-in)")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_run)
    return p
