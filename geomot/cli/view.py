"""``geomot view FILE``: look at a mesh, a point cloud, a deformation trajectory or a match.

* a mesh or cloud file (any format of ``geomot.load``; a ``(B, N, 3)`` ``.npy`` shows B clouds on a grid);
* a ``result.npz`` written by ``geomot deform`` (``verts (T, V, 3)``): time slider and play button, or a GIF/MP4;
* a match: ``geomot view SOURCE --target TARGET --p2p p2p.txt`` (colour transfer, the file ``geomot match`` wrote).

With a screen and no output flag an interactive window opens. Without a usable screen (``DISPLAY`` and
``WAYLAND_DISPLAY`` unset, or no display server answering at them) an output flag is required: the command exits
with status 2 and one line saying what to do; with an output flag rendering is offscreen.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot.io.files import load
from geomot.viz import display_problem, load_p2p, load_trajectory, show, show_correspondence, show_deformation

__all__ = ["add_parser"]

log = logging.getLogger(__name__)

def _is_trajectory(path: Path) -> bool:
    """True for an ``.npz`` whose ``verts`` array is ``(T, V, 3)`` (what ``geomot deform`` writes)."""
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return "verts" in data.files and data["verts"].ndim == 3
    except (OSError, ValueError) as e:
        raise FileFormatError(f"{path}: cannot read it as an .npz file ({e})") from None


def _load_shape(path: Path) -> Any:
    """A Mesh or PointCloud from any ``geomot.load`` format; a ``(B, N, 3)`` ``.npy`` becomes B clouds."""
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise FileFormatError(f"{path}: cannot read it as an .npy file ({e})") from None
        if arr.ndim == 3:
            if arr.shape[-1] != 3 or not np.issubdtype(arr.dtype, np.floating):
                raise FileFormatError(
                    f"{path}: expected a float (B, N, 3) array of clouds, got {arr.dtype} {arr.shape}"
                )
            return torch.from_numpy(np.array(arr, dtype=np.float64))  # a copy: the memory map is read-only
    return load(path, dtype=torch.float64)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 800x600, got {text!r}") from None
    return w, h


def _run(args: argparse.Namespace) -> int:
    wants_file = args.screenshot is not None or args.gif is not None or args.html is not None
    problem = None if wants_file else display_problem()
    if problem is not None:
        print(f"geomot view: error: {problem}", file=sys.stderr)
        return 2
    path = Path(args.file)
    common: dict[str, Any] = {"screenshot": args.screenshot, "html": args.html, "title": args.title or path.name}
    if args.size is not None:
        common["window_size"] = args.size
    if args.p2p is not None:
        if args.target is None:
            raise ValidationError("--p2p: needs --target (the shape the map points into)")
        if args.gif is not None:
            raise ValidationError("--gif: a match is a still picture; use --screenshot or --html")
        source = _load_shape(path)
        target = _load_shape(Path(args.target))
        show_correspondence(source, target, load_p2p(args.p2p), n_lines=args.lines, **common)
    elif _is_trajectory(path):
        target = None if args.target is None else _load_shape(Path(args.target))
        show_deformation(
            load_trajectory(path), target=target, animation=args.gif, time=args.time, fps=args.fps,
            n_frames=args.frames, **common,
        )
    else:
        if args.gif is not None:
            raise ValidationError(
                f"--gif: {path.name} is a single shape; animations need a trajectory .npz written by geomot deform"
            )
        shapes = [_load_shape(path)]
        if args.target is not None:
            shapes.append(_load_shape(Path(args.target)))
        show(shapes if len(shapes) > 1 else shapes[0], **common)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "view",
        help="show a mesh, a point cloud, a deformation (result.npz) or a match; or write PNG/GIF/MP4/HTML",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="mesh / cloud file, a trajectory .npz from geomot deform, or a match's source shape")
    p.add_argument("--target", help="target shape: of a match (with --p2p), or drawn next to / behind FILE")
    p.add_argument("--p2p", help="point-to-point map from geomot match: one target vertex index per source vertex")
    p.add_argument("--lines", type=int, default=0, help="segments joining sampled matched pairs (default 0)")
    p.add_argument("--screenshot", metavar="OUT.png", help="write a PNG picture (works without a screen)")
    p.add_argument(
        "--gif", "--mp4", dest="gif", metavar="OUT.gif", help="write an animation of a trajectory (.gif or .mp4)"
    )
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML viewer (opens offline)")
    p.add_argument("--time", type=float, help="time of the screenshot of a trajectory (default: the last frame)")
    p.add_argument("--frames", type=int, help="frames of the animation (default: max(T, 30))")
    p.add_argument("--fps", type=float, default=12.0, help="frames per second of the animation (default 12)")
    p.add_argument("--size", type=_size, metavar="WxH", help="picture size in pixels, e.g. 800x600")
    p.add_argument("--title", help="title written in the corner (default: the file name)")
    p.set_defaults(func=_run)
    return p
