"""Training-free shape matching: ``geomot.match`` vs pyFM (WKS + ZoomOut), same process, same pairs.

Inputs (read in place from ``../shared/data``, never copied): FAUST_r pairs among shapes 000-079, TOSCA_r
within-class pairs, SMAL_r pairs; ``--pairs N`` pairs per dataset drawn once with ``random.Random(--seed)`` from
the sorted list of unordered pairs (the sample depends only on the seed and N).

Timed calls, both from the files, operators included:

* geomot: ``geomot.correspondence.match(source, target)`` (defaults: unit area, 140 eigenfunctions, WKS,
  orientation-aware sign search, candidates ranked by orientation and map smoothness, ZoomOut);
* peer (pyFM 1.3, ``pip install pyfmaps``; the settings of its README): ``TriMesh(path, area_normalize=True)``,
  ``FunctionalMapping(target, source)``, ``preprocess(n_descr=100, descr_type="WKS", subsample_step=5)``,
  ``fit(K=(35, 35), w_descr=1, w_lap=1e-2, w_dcomm=1e-1, w_orient=0)``, ``zoomout_refine(nit=15, step=5)``,
  ``get_p2p()``.

Error: mean geodesic error x100 (exact geodesics of potpourri3d, normalised by sqrt(target area); see
``geomot.metrics.geodesic_error``). Prints a table (mean / median / share above 10 / seconds a pair and the time
ratio peer / geomot) and writes ``out/bench_matching.json``.

Run: ``.venv/bin/python benchmarks/bench_matching.py [--datasets FAUST_r,TOSCA_r,SMAL_r] [--pairs 20]
[--no-peer] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger("bench_matching")

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def _pairs(ds, name: str, n: int, seed: int) -> list[tuple[str, str]]:
    if name == "TOSCA_r":
        pairs = ds.pairs(within_class=True)
    else:
        names = ds.names
        if name == "FAUST_r":
            names = [s for s in names if s.startswith("tr_reg_") and int(s[-3:]) < 80]
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    rng = random.Random(seed)
    return sorted(rng.sample(sorted(pairs), min(n, len(pairs))))


def _pyfm_match(path_src: Path, path_tgt: Path):
    from pyFM.functional import FunctionalMapping
    from pyFM.mesh import TriMesh

    m_tgt = TriMesh(str(path_tgt), area_normalize=True, center=False)
    m_src = TriMesh(str(path_src), area_normalize=True, center=False)
    fm = FunctionalMapping(m_tgt, m_src)
    fm.preprocess(n_descr=100, descr_type="WKS", subsample_step=5, verbose=False)
    fm.fit(K=(35, 35), w_descr=1e0, w_lap=1e-2, w_dcomm=1e-1, w_orient=0, verbose=False)
    # pyFM 1.3 returns the refined map instead of storing it: pass it on, or get_p2p uses the 35 x 35 fit
    fmap_zo = fm.zoomout_refine(nit=15, step=5, verbose=False)
    return torch.as_tensor(fm.get_p2p(FM=fmap_zo, n_jobs=1), dtype=torch.long)


def _summary(errs: list[float], secs: list[float]) -> dict:
    if not errs:
        return {}
    return {
        "mean": statistics.fmean(errs), "median": statistics.median(errs),
        "share_above_10": sum(e > 10 for e in errs) / len(errs), "seconds_per_pair": statistics.fmean(secs),
        "n_pairs": len(errs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="FAUST_r,TOSCA_r,SMAL_r")
    ap.add_argument("--pairs", type=int, default=20, help="pairs per dataset (default: 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peer", action="store_true", help="skip pyFM")
    ap.add_argument("--peer-only", action="store_true", help="run pyFM only (e.g. to add the peer to a finished run)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_matching.json"))
    ap.add_argument("--data", default=str(DATA), help="folder holding the datasets (default: ../shared/data)")
    ap.add_argument("--part", type=int, default=0, help="run the pairs part::parts of each sample only (default: 0)")
    ap.add_argument("--parts", type=int, default=1, help="split each sample into this many parts (default: 1)")
    ap.add_argument("--non-isometric", action="store_true",
                    help="match(non_isometric=True): also polish spectral maps (for cross-species pairs)")
    ap.add_argument("--peer-every", type=int, default=1,
                    help="run the peer on every N-th pair of each (sorted) sample only, to save time (default: 1, all)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from geomot.correspondence import match
    from geomot.io import ShapeDataset
    from geomot.metrics import geodesic_error

    peer = not args.no_peer
    if peer:
        try:
            import pyFM  # noqa: F401
        except ImportError:
            log.warning("pyFM is not installed (pip install pyfmaps); running geomot only")
            peer = False
    results: dict = {"pairs": {}, "summary": {}, "peer": "pyFM" if peer else None,
                     "command": " ".join(["benchmarks/bench_matching.py", *(sys.argv[1:] if argv is None else argv)]),
                     "torch_threads": torch.get_num_threads(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in args.datasets.split(","):
        root = Path(args.data) / name
        if not root.is_dir():
            log.warning("skipping %s: %s not found (see ../shared/data/README.md)", name, root)
            continue
        ds = ShapeDataset(root)
        rows = []
        for i_pair, (a, b) in enumerate(_pairs(ds, name, args.pairs, args.seed)[args.part::max(1, args.parts)]):
            src, tgt = ds.load(a, dtype=torch.float64), ds.load(b, dtype=torch.float64)
            gs, gt = ds.ground_truth(a, b)
            run_peer = peer and i_pair % max(1, args.peer_every) == 0
            if args.peer_only and not run_peer:
                continue
            row = {"source": a, "target": b, "load_avg_1min": os.getloadavg()[0]}
            if not args.peer_only:
                t0 = time.perf_counter()
                res = match(src, tgt, non_isometric=args.non_isometric)
                row["geomot_s"] = time.perf_counter() - t0
                row["geomot"] = 100 * float(geodesic_error(res.p2p_21, tgt.verts, tgt.faces, gs, gt))
                row["geomot_stages_s"] = {key: round(val, 3) for key, val in res.timings.items()}
                row["orientation_ratio"] = res.orientation_ratio
            if run_peer:
                t0 = time.perf_counter()
                p2p = _pyfm_match(ds.path(a), ds.path(b))
                row["pyfm_s"] = time.perf_counter() - t0
                row["pyfm"] = 100 * float(geodesic_error(p2p, tgt.verts, tgt.faces, gs, gt))
            rows.append(row)
            log.info("%s %s -> %s:%s%s", name, a, b,
                     f" geomot {row['geomot']:.2f} ({row['geomot_s']:.1f} s)" if "geomot" in row else "",
                     f" pyFM {row['pyfm']:.2f} ({row['pyfm_s']:.1f} s)" if run_peer else "")
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            results["pairs"][name] = rows
            Path(args.json).write_text(json.dumps(results, indent=1))
        geo_rows = [r for r in rows if "geomot" in r]
        summ = {"geomot": _summary([r["geomot"] for r in geo_rows], [r["geomot_s"] for r in geo_rows])}
        peer_rows = [r for r in rows if "pyfm" in r]
        if peer_rows:
            summ["pyfm"] = _summary([r["pyfm"] for r in peer_rows], [r["pyfm_s"] for r in peer_rows])
        if peer_rows and geo_rows:
            summ["geomot_on_peer_pairs"] = _summary([r["geomot"] for r in peer_rows],
                                                    [r["geomot_s"] for r in peer_rows])
            summ["time_ratio_pyfm_over_geomot"] = (summ["pyfm"]["seconds_per_pair"]
                                                   / summ["geomot_on_peer_pairs"]["seconds_per_pair"])
        results["summary"][name] = summ
        Path(args.json).write_text(json.dumps(results, indent=1))
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"{'dataset':10s} {'method':8s} {'pairs':>5s} {'mean':>7s} {'median':>7s} {'>10':>6s} {'s/pair':>7s}")
    for name, summ in results["summary"].items():
        for method in ("geomot", "pyfm"):
            s = summ.get(method)
            if s:
                print(f"{name:10s} {method:8s} {s['n_pairs']:5d} {s['mean']:7.2f} {s['median']:7.2f} "
                      f"{100 * s['share_above_10']:5.1f}% {s['seconds_per_pair']:7.2f}")
        if "time_ratio_pyfm_over_geomot" in summ:
            print(f"{name:10s} time ratio pyFM / geomot: {summ['time_ratio_pyfm_over_geomot']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
