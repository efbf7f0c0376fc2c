"""``geomot.match`` on re-discretised shapes, point clouds and partial shapes, with a development/validation split.

Inputs: the originals, read in place from ``../shared/data`` (FAUST_r, TOSCA_r, SMAL_r), and the re-discretised
copies of ``benchmarks/make_robust_set.py`` in ``out/robust_set`` (anisotropic remeshing ``_aniso``, non-uniform
decimation ``_decim``, tangential jitter ``_jitter``, and FAUST_r at two densities: source ``_3k``, target
``_8k``). Ground truth of the copies: the nearest re-discretised vertex to each ``.vts`` vertex (see that script).

Split, fixed before any tuning (the shapes are those of :func:`make_robust_set.split_shapes`): FAUST_r subjects
0-4 (tr_reg_000-049) development, subjects 6-7 (tr_reg_060-079) validation; TOSCA_r classes alternate in sorted
order (development: cat, david, horse, victoria; validation: centaur, dog, michael, wolf; pairs within a class);
SMAL_r shapes alternate in sorted order (even positions development, odd validation; pairs across species). Pairs
are drawn once per dataset and split with ``random.Random(seed)`` and are the same for every variant, so each
variant is compared with the originals on the same shape pairs.

Call: ``geomot.match(source, target, cache_dir=...)`` (defaults). Development pairs are also matched the other
way (B -> A) and both maps are stored (``out/match_robust/maps``) for the consistency study
(``--analyse``, which scores them with :mod:`geomot.correspondence.consistency`). Error: mean geodesic error x100
(:func:`geomot.metrics.geodesic_error`, exact geodesics, normalised by sqrt(target area)).

Extras (``--extras``): FAUST_r validation pairs matched as vertex clouds (``geomot.PointCloud`` of the vertices;
error on the target mesh), and partial -> full: the source cut by the horizontal plane 30 % up its height (the
lower legs removed), the error measured on the kept ground-truth vertices.

Writes ``benchmarks/results/match_robust.json`` after every pair (per-pair rows, per set and split: mean, median,
pairs above 10, seconds a pair). Run: ``.venv/bin/python benchmarks/bench_match_robust.py [--dev-pairs 3]
[--val-pairs 3] [--extras] [--analyse]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_match_clouds import cloud_error
from bench_matching import _summary
from make_robust_set import split_shapes

log = logging.getLogger("bench_match_robust")

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
ROBUST = ROOT / "out" / "robust_set"
WORK = ROOT / "out" / "match_robust"
VARIANTS = {"FAUST_r": ("aniso", "decim", "jitter", "density"), "TOSCA_r": ("aniso",), "SMAL_r": ("aniso",)}


def _pairs(dataset: str, names: list[str], split: str, n: int, per_split: int, seed: int) -> list[tuple[str, str]]:
    shapes = split_shapes(dataset, names, split, per_split, seed)
    if dataset == "TOSCA_r":
        pool = [
            (a, b)
            for i, a in enumerate(shapes)
            for b in shapes[i + 1 :]
            if a.rstrip("0123456789") == b.rstrip("0123456789")
        ]
    else:
        pool = [(a, b) for i, a in enumerate(shapes) for b in shapes[i + 1 :]]
    return sorted(random.Random(f"{seed}-{dataset}-{split}-pairs").sample(pool, min(n, len(pool))))


def _folders(dataset: str, variant: str, data: Path) -> tuple[Path, Path]:
    if variant == "orig":
        return data / dataset, data / dataset
    if variant == "density":
        return ROBUST / f"{dataset}_3k", ROBUST / f"{dataset}_8k"
    return ROBUST / f"{dataset}_{variant}", ROBUST / f"{dataset}_{variant}"


def _summ(rows: list[dict]) -> dict:
    s = _summary([r["error"] for r in rows], [r["seconds"] for r in rows])
    if s:
        s["n_above_10"] = sum(r["error"] > 10 for r in rows)
        s["above_10"] = [round(r["error"], 1) for r in rows if r["error"] > 10]
    return s


def _run_one(match, geodesic_error, src, tgt, gs, gt, cache) -> tuple[float, float, torch.Tensor]:
    t0 = time.perf_counter()
    res = match(src, tgt, cache_dir=cache)
    sec = time.perf_counter() - t0
    err = 100 * float(geodesic_error(res.p2p_21, tgt.verts, tgt.faces, gs, gt))
    return err, sec, res.p2p_21


def _write(results: dict, path: Path) -> None:
    summary: dict = {}
    for key, rows in results["pairs"].items():
        summary[key] = _summ(rows)
    results["summary"] = summary
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def run_sets(args, results: dict, out: Path) -> None:
    from geomot.correspondence import match
    from geomot.io import ShapeDataset
    from geomot.metrics import geodesic_error

    data = Path(args.data)
    jobs = []  # interleaved: pair i of every set (anisotropic first, originals third) before pair i + 1 of any
    for dataset in args.datasets.split(","):
        names = ShapeDataset(data / dataset).names
        for split, n in (("dev", args.dev_pairs), ("val", args.val_pairs)):
            for i, pair in enumerate(_pairs(dataset, names, split, n, args.per_split, args.seed)):
                for variant in ("orig", *VARIANTS[dataset]):
                    jobs.append((i, dataset, split, variant, pair))
    order = ("aniso", "density", "orig", "decim", "jitter")
    jobs.sort(key=lambda j: (j[0], order.index(j[3])))
    (WORK / "maps").mkdir(parents=True, exist_ok=True)
    for _, dataset, split, variant, (a, b) in jobs:
        key = f"{dataset}/{variant}/{split}"
        if any((r["source"], r["target"]) == (a, b) for r in results["pairs"].get(key, [])):
            continue  # done by the run resumed (--resume)
        fa, fb = _folders(dataset, variant, data)
        if not (fa / "off").is_dir() or not (fb / "off").is_dir():
            log.warning("skipping %s: run benchmarks/make_robust_set.py first", key)
            continue
        da, db = ShapeDataset(fa), ShapeDataset(fb)
        src, tgt = da.load(a, dtype=torch.float64), db.load(b, dtype=torch.float64)
        ca, cb = da.correspondence(a), db.correspondence(b)
        err, sec, p2p_ab = _run_one(match, geodesic_error, src, tgt, ca, cb, args.cache)
        row = {
            "source": a,
            "target": b,
            "error": err,
            "seconds": sec,
            "load_avg_1min": os.getloadavg()[0],
            "n_verts": [int(src.verts.shape[0]), int(tgt.verts.shape[0])],
        }
        if split == "dev":  # the other direction, for the consistency study
            err_ba, sec_ba, p2p_ba = _run_one(match, geodesic_error, tgt, src, cb, ca, args.cache)
            row.update(error_ba=err_ba, seconds_ba=sec_ba)
            np.savez(
                WORK / "maps" / f"{dataset}__{variant}__{a}__{b}.npz",
                p2p_ab=p2p_ab.numpy(),
                p2p_ba=p2p_ba.numpy(),
                folder_a=str(fa),
                folder_b=str(fb),
            )
        results["pairs"].setdefault(key, []).append(row)
        log.info(
            "%s %s -> %s: %.2f (%.1f s)%s",
            key,
            a,
            b,
            err,
            sec,
            f", back {row['error_ba']:.2f}" if "error_ba" in row else "",
        )
        _write(results, out)


def _cut(mesh, frac: float):
    """Faces whose three vertices lie above the plane ``y = y_min + frac (y_max - y_min)``, re-indexed; returns
    ``(verts, faces, old index of each kept vertex)``."""
    v, f = mesh.verts, mesh.faces.long()
    y = v[:, 1]
    keep_v = y > y.min() + frac * (y.max() - y.min())
    f = f[keep_v[f].all(1)]
    used = torch.unique(f)
    new = torch.full((v.shape[0],), -1, dtype=torch.long)
    new[used] = torch.arange(used.numel())
    return v[used], new[f], used


def run_extras(args, results: dict, out: Path) -> None:
    from geomot.correspondence import match
    from geomot.io import ShapeDataset
    from geomot.metrics import geodesic_error

    ds = ShapeDataset(Path(args.data) / "FAUST_r")
    pairs = _pairs("FAUST_r", ds.names, "val", 4, args.per_split, args.seed + 1)
    for a, b in pairs:
        src, tgt = ds.load(a, dtype=torch.float64), ds.load(b, dtype=torch.float64)
        gs, gt = ds.ground_truth(a, b)
        err, sec = cloud_error(src, tgt, gs, gt, args.cache)
        results["pairs"].setdefault("FAUST_r/cloud/val", []).append(
            {"source": a, "target": b, "error": err, "seconds": sec}
        )
        log.info("cloud %s -> %s: %.2f (%.1f s)", a, b, err, sec)
        _write(results, out)
        v, f, used = _cut(src, 0.3)
        new = torch.full((src.verts.shape[0],), -1, dtype=torch.long)
        new[used] = torch.arange(used.numel())
        kept = new[gs] >= 0
        t0 = time.perf_counter()
        res = match((v, f), tgt, cache_dir=args.cache)
        sec = time.perf_counter() - t0
        err = 100 * float(geodesic_error(res.p2p_21, tgt.verts, tgt.faces, new[gs][kept], gt[kept]))
        results["pairs"].setdefault("FAUST_r/partial/val", []).append(
            {
                "source": a,
                "target": b,
                "error": err,
                "seconds": sec,
                "kept_vertices": int(used.numel()),
                "kept_share": float(used.numel()) / src.verts.shape[0],
            }
        )
        log.info("partial %s -> %s: %.2f (%.1f s, %d of %d vertices)", a, b, err, sec, used.numel(), src.verts.shape[0])
        _write(results, out)


def _mirror(verts: torch.Tensor) -> torch.Tensor:
    """Approximate left-right self-map of a shape: the reflection through the centroid across the principal
    plane (of the three) whose reflected vertices land nearest the shape, then the nearest vertex."""
    from scipy.spatial import cKDTree

    x = (verts - verts.mean(0)).numpy()
    axes = np.linalg.svd(x, full_matrices=False)[2]
    tree = cKDTree(x)
    best = None
    for n in axes:
        d, idx = tree.query(x - 2.0 * np.outer(x @ n, n))
        if best is None or d.mean() < best[0]:
            best = (d.mean(), idx)
    return torch.as_tensor(best[1], dtype=torch.long)


def analyse(results: dict, out: Path) -> None:
    """Consistency scores of the stored development maps, beside their errors (see the module docstring).

    Beside each map ``T21`` (and the other direction ``T12``) it scores two mirrored versions made with the
    approximate left-right self-map ``S`` of each shape (:func:`_mirror`): ``S1 o T21`` with ``T12 o S1`` (both
    directions flipped, as a symmetric flip of the matcher would give) and ``S1 o T21`` with ``T12`` unchanged (one
    direction flipped). Their errors are measured like the matcher's."""
    from geomot.correspondence.consistency import map_consistency
    from geomot.io import ShapeDataset
    from geomot.metrics import geodesic_error

    rows = []
    for f in sorted((WORK / "maps").glob("*.npz")):
        z = np.load(f)
        dataset, variant, a, b = f.stem.split("__")
        da, db = ShapeDataset(str(z["folder_a"])), ShapeDataset(str(z["folder_b"]))
        ma, mb = da.load(a, dtype=torch.float64), db.load(b, dtype=torch.float64)
        ca, cb = da.correspondence(a), db.correspondence(b)
        p_ab, p_ba = torch.as_tensor(z["p2p_ab"]), torch.as_tensor(z["p2p_ba"])
        row = next(r for r in results["pairs"][f"{dataset}/{variant}/dev"] if (r["source"], r["target"]) == (a, b))
        for direction, (m1, m2, p12, p21, g1, g2, err) in {
            "ab": (mb, ma, p_ba, p_ab, cb, ca, row["error"]),
            "ba": (ma, mb, p_ab, p_ba, ca, cb, row["error_ba"]),
        }.items():
            # p21: the evaluated map (vertices of 2 -> vertices of 1), p12 the other direction
            s1 = _mirror(m1.verts)
            flipped = s1[p21]
            err_flip = 100 * float(geodesic_error(flipped, m1.verts, m1.faces, g2, g1))
            for kind, (q21, q12, e) in {
                "matcher": (p21, p12, err),
                "mirrored_both": (flipped, p12[s1], err_flip),
                "mirrored_one": (flipped, p12, err_flip),
            }.items():
                c = map_consistency(q21, q12, m2.verts, m2.faces, m1.verts, m1.faces)
                rows.append(
                    {
                        "set": f"{dataset}/{variant}",
                        "source": a if direction == "ab" else b,
                        "target": b if direction == "ab" else a,
                        "map": kind,
                        "error": e,
                        **c._asdict(),
                    }
                )
                log.info(
                    "%s %s: %s",
                    f.stem,
                    kind,
                    {k: round(v, 3) for k, v in rows[-1].items() if k not in ("set", "source", "target", "map")},
                )
    results["consistency"] = rows
    _write(results, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--datasets", default="FAUST_r,TOSCA_r,SMAL_r")
    ap.add_argument("--dev-pairs", type=int, default=3)
    ap.add_argument("--val-pairs", type=int, default=3)
    ap.add_argument("--per-split", type=int, default=8, help="as in make_robust_set.py (default: 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(WORK / "cache"), help="cache_dir of match (spectral bases)")
    ap.add_argument("--extras", action="store_true", help="also point clouds and partial shapes")
    ap.add_argument("--extras-only", action="store_true")
    ap.add_argument("--resume", action="store_true", help="keep the rows of --json and run the missing pairs only")
    ap.add_argument("--analyse", action="store_true", help="only score the stored development maps")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "match_robust.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.json)
    if args.analyse or args.extras_only or args.resume:
        results = json.loads(out.read_text())
    else:
        results = {
            "pairs": {},
            "command": " ".join(["benchmarks/bench_match_robust.py", *(argv or sys.argv[1:])]),
            "torch_threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "split": {
                "FAUST_r": "dev tr_reg_000-049, val tr_reg_060-079",
                "TOSCA_r": "dev cat, david, horse, victoria; val centaur, dog, michael, wolf",
                "SMAL_r": "sorted names, even positions dev, odd val",
            },
        }
    if args.analyse:
        analyse(results, out)
        return 0
    if args.extras or args.extras_only:
        run_extras(args, results, out)
    if not args.extras_only:
        run_sets(args, results, out)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    _write(results, out)
    print(f"{'set':28s} {'pairs':>5s} {'mean':>7s} {'median':>7s} {'>10':>4s} {'s/pair':>7s}")
    for key, s in results["summary"].items():
        if s:
            print(
                f"{key:28s} {s['n_pairs']:5d} {s['mean']:7.2f} {s['median']:7.2f} {s['n_above_10']:4d} "
                f"{s['seconds_per_pair']:7.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
