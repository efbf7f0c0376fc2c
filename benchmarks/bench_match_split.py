"""``geomot.match`` on fixed development or validation mesh pairs, per pair, with ``MatchConfig`` overrides: the
check that a change of the pipeline (a cheaper search, another constant) does not cost accuracy.

Split (as ``docs/notes/matching-robustness.md``): FAUST_r subjects 0-4 (``tr_reg_000-049``) development, subjects
6-7 (``060-079``) validation; TOSCA_r classes in sorted order alternate (development cat, david, horse, victoria;
validation centaur, dog, michael, wolf; pairs within a class); SMAL_r shapes in sorted order alternate (even
positions development, odd validation; pairs across species). 16 FAUST_r, 10 TOSCA_r and 10 SMAL_r unordered
pairs per split, drawn with ``random.Random("speed-<split>-<dataset>")``. Error: mean geodesic error x100
(``geomot.metrics.geodesic_error``). Data are read in place from ``../shared/data``.

Run: ``.venv/bin/python benchmarks/bench_match_split.py --split val [--config '{"n_target_samples": 0}']
[--cache-dir DIR] --json out.json``; ``--compare a.json b.json`` prints the per-dataset means, medians, maps above
10, identical maps and the pairs that moved by more than 0.5. To time an earlier checkout on the same pairs, run
this script with ``PYTHONPATH`` set to that checkout.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
SIZES = {"FAUST_r": 16, "TOSCA_r": 10, "SMAL_r": 10}


def split_pairs(dataset: str, ds, split: str) -> list[tuple[str, str]]:
    names = sorted(ds.names)
    dev = split == "dev"
    if dataset == "FAUST_r":
        lo, hi = (0, 50) if dev else (60, 80)
        names = [n for n in names if n.startswith("tr_reg_") and lo <= int(n[-3:]) < hi]
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    elif dataset == "TOSCA_r":
        classes = sorted({n.rstrip("0123456789") for n in names})
        keep = classes[0::2] if dev else classes[1::2]
        pairs = [p for p in ds.pairs(within_class=True) if p[0].rstrip("0123456789") in keep]
    else:
        names = names[0::2] if dev else names[1::2]
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    rng = random.Random(f"speed-{split}-{dataset}")
    return sorted(rng.sample(sorted(pairs), min(SIZES[dataset], len(pairs))))


def compare(path_a: Path, path_b: Path) -> None:
    a, b = (json.loads(p.read_text()) for p in (path_a, path_b))
    rows_a = {(r["dataset"], r["source"], r["target"]): r for r in a["rows"]}
    rows_b = {(r["dataset"], r["source"], r["target"]): r for r in b["rows"]}
    for dataset in SIZES:
        keys = [(r["dataset"], r["source"], r["target"]) for r in a["rows"] if r["dataset"] == dataset]
        keys = [k for k in keys if k in rows_b]
        if not keys:
            continue
        ea, eb = [rows_a[k]["error"] for k in keys], [rows_b[k]["error"] for k in keys]
        same = sum(rows_a[k]["p2p_sha1"] == rows_b[k]["p2p_sha1"] for k in keys)
        print(f"{dataset}: {len(keys)} pairs, mean {statistics.fmean(ea):.2f} -> {statistics.fmean(eb):.2f}, median "
              f"{statistics.median(ea):.2f} -> {statistics.median(eb):.2f}, above 10 {sum(e > 10 for e in ea)} -> "
              f"{sum(e > 10 for e in eb)}, identical maps {same}")
        for k, x, y in zip(keys, ea, eb):
            if abs(y - x) > 0.5:
                print(f"    {k[1]} -> {k[2]}: {x:.2f} -> {y:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("dev", "val"), default="val")
    ap.add_argument("--config", default="{}", help="MatchConfig fields as JSON")
    ap.add_argument("--cache-dir", default=None, help="eigenbasis cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--compare", nargs=2, type=Path, default=None, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    import hashlib

    import torch

    import geomot
    from geomot.correspondence import MatchConfig, match
    from geomot.io import ShapeDataset
    from geomot.metrics import geodesic_error

    torch.set_num_threads(args.threads)
    fields = json.loads(args.config)
    cfg = MatchConfig(**fields)
    rows = []
    for dataset in SIZES:
        ds = ShapeDataset(DATA / dataset)
        for a, b in split_pairs(dataset, ds, args.split):
            src, tgt = ds.load(a, dtype=torch.float64), ds.load(b, dtype=torch.float64)
            gs, gt = ds.ground_truth(a, b)
            t = time.perf_counter()
            res = match(src, tgt, config=cfg, cache_dir=args.cache_dir)
            secs = time.perf_counter() - t
            err = 100 * float(geodesic_error(res.p2p_21, tgt.verts, tgt.faces, gs, gt))
            digest = hashlib.sha1(res.p2p_21.numpy().tobytes()).hexdigest()[:16]
            rows.append({"dataset": dataset, "source": a, "target": b, "error": err, "seconds": secs,
                         "p2p_sha1": digest})
            print(f"{dataset} {a} -> {b}: {err:.2f} ({secs:.1f} s)", flush=True)
    out = {"command": "benchmarks/bench_match_split.py", "split": args.split, "config": fields,
           "geomot": str(Path(geomot.__file__).parent), "torch_threads": args.threads,
           "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    path = args.json or ROOT / "out" / f"match_split_{args.split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
