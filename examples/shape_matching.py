"""Training-free shape matching from Python: the shipped pair (``data/pair``), or any two files.

    .venv/bin/python examples/shape_matching.py                       # data/pair/off/bumps_0.off -> bumps_1.off
    .venv/bin/python examples/shape_matching.py A.off B.off --gt-source A.vts --gt-target B.vts --screenshot m.png

Writes ``out/p2p.txt`` (one line per source vertex: the 0-based index of its matched target vertex), prints the
mean geodesic error (x100) when ground truth is available and saves a colour-transfer picture with
``--screenshot``. The same as ``geomot match SOURCE TARGET --out p2p.txt``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

import geomot
from geomot.metrics import coverage, geodesic_error, pck_curve

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT / "data" / "pair"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", default=str(PAIR / "off" / "bumps_0.off"))
    ap.add_argument("target", nargs="?", default=str(PAIR / "off" / "bumps_1.off"))
    ap.add_argument("--gt-source", default=None, help="source .vts (default: the shipped pair's)")
    ap.add_argument("--gt-target", default=None, help="target .vts (default: the shipped pair's)")
    ap.add_argument("--out", default=str(ROOT / "out" / "p2p.txt"))
    ap.add_argument("--screenshot", default=None, help="PNG of the colour transfer (needs pyvista)")
    ap.add_argument("--cache-dir", default=None, help="opt-in folder for cached eigenbases")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    source = geomot.load(args.source, dtype=torch.float64)
    target = geomot.load(args.target, dtype=torch.float64)
    res = geomot.match(source, target, cache_dir=args.cache_dir)  # p2p_21: a target vertex per source vertex
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(out, res.p2p_21.numpy(), fmt="%d")
    print(f"{out}: {res.p2p_21.shape[0]} source vertices matched in {res.timings['total']:.2f} s "
          f"(orientation ratio {res.orientation_ratio:.2f}; coverage {coverage(res.p2p_21, len(target.verts)):.2f})")

    gs, gt = args.gt_source, args.gt_target
    if gs is None and gt is None and Path(args.source).parent == PAIR / "off":
        gs, gt = (str(PAIR / "corres" / (Path(p).stem + ".vts")) for p in (args.source, args.target))
    if gs is not None and gt is not None:
        errors = geodesic_error(res.p2p_21, target.verts, target.faces, geomot.read_vts(gs), geomot.read_vts(gt),
                                reduction="none")
        _, pck = pck_curve(errors, [0.01, 0.025, 0.05])
        print(f"mean geodesic error {100 * float(errors.mean()):.2f} (x100); "
              f"PCK at 0.01 / 0.025 / 0.05: {', '.join(f'{float(p):.2f}' for p in pck)}")
    if args.screenshot:
        from geomot.viz import show_correspondence

        show_correspondence(source, target, res.p2p_21, screenshot=args.screenshot, off_screen=True)
        print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
