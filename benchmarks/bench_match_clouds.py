"""``geomot.match`` on point clouds: the vertices of FAUST_r / TOSCA_r / SMAL_r meshes matched as ``PointCloud``s,
error on the target mesh (mean geodesic error x100, exact geodesics, normalised by sqrt(target area), as in
``bench_matching.py``).

Split (fixed before any measurement): FAUST_r subjects 0-4 (tr_reg_000-049) development, 6-7 (tr_reg_060-079)
validation; TOSCA_r and SMAL_r shapes in sorted order alternate (even positions development, odd validation),
TOSCA_r pairs within a class. ``--pairs`` pairs per dataset are drawn with ``random.Random("cloud-<split>-<ds>")``.

To compare two versions, run the script twice with ``--root`` pointing at each checkout (e.g. a ``git worktree``)
and different ``--json`` files.

Run: ``python benchmarks/bench_match_clouds.py --split val --datasets FAUST_r:10,TOSCA_r:6,SMAL_r:6 --json out.json``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def pairs_of(dataset: str, names: list[str], split: str, n: int) -> list[tuple[str, str]]:
    names = sorted(names)
    if dataset == "FAUST_r":
        pool = [x for x in names if (int(x[-3:]) < 50 if split == "dev" else int(x[-3:]) >= 60)]
    else:
        pool = names[0::2] if split == "dev" else names[1::2]
    pairs = [(a, b) for a in pool for b in pool if a < b]
    if dataset == "TOSCA_r":
        pairs = [(a, b) for a, b in pairs if a.rstrip("0123456789") == b.rstrip("0123456789")]
    return sorted(random.Random(f"cloud-{split}-{dataset}").sample(pairs, min(n, len(pairs))))


def cloud_error(src, tgt, gs, gt, cache: str | None) -> tuple[float, float]:
    """``geomot.match`` of the vertex clouds of two meshes: (error x100 on the target mesh, seconds)."""
    from geomot.correspondence import match
    from geomot.metrics import geodesic_error
    from geomot.structures import PointCloud

    t0 = time.perf_counter()
    res = match(PointCloud(src.verts), PointCloud(tgt.verts), cache_dir=cache)
    sec = time.perf_counter() - t0
    return 100 * float(geodesic_error(res.p2p_21, tgt.verts, tgt.faces, gs, gt)), sec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("dev", "val"), default="val")
    ap.add_argument("--datasets", default="FAUST_r:10,TOSCA_r:6,SMAL_r:6", help="NAME:PAIRS,...")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--root", default=str(ROOT), help="checkout whose geomot is imported")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="eigenbasis cache folder")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sys.path.insert(0, args.root)
    import torch

    from geomot.io import ShapeDataset

    torch.set_num_threads(args.threads)
    out: dict = {"split": args.split, "root": args.root, "threads": args.threads, "pairs": {}, "summary": {}}
    for item in args.datasets.split(","):
        name, n = item.split(":")
        ds = ShapeDataset(Path(args.data) / name)
        rows = []
        for a, b in pairs_of(name, ds.names, args.split, int(n)):
            src, tgt = ds.load(a, dtype=torch.float64), ds.load(b, dtype=torch.float64)
            gs, gt = ds.ground_truth(a, b)
            err, sec = cloud_error(src, tgt, gs, gt, args.cache)
            rows.append({"source": a, "target": b, "error": err, "seconds": sec})
            print(f"{name} {a} -> {b}: {err:.2f} ({sec:.1f} s)", flush=True)
        errs = [r["error"] for r in rows]
        out["pairs"][name] = rows
        out["summary"][name] = {
            "n": len(rows),
            "mean": statistics.mean(errs),
            "median": statistics.median(errs),
            "n_above_10": sum(e > 10 for e in errs),
            "median_seconds": statistics.median(r["seconds"] for r in rows),
        }
        print(name, out["summary"][name], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
