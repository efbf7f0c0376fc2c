"""Graph distances: geomot's compiled Dijkstra (``geomot.ops.graph``, numba, sources over torch's threads) against
``scipy.sparse.csgraph.dijkstra`` on the same graph and sources, one process, interleaved.

Input: the edge graph of FAUST_r ``tr_reg_000`` (5k vertices, read in place from ``../shared/data``); 128 and 600
random sources, whole searches and searches cut at ``limit=0.08`` (in the mesh's units), at 1 and 2 torch threads.
Every geomot result is checked equal to scipy's (``numpy.array_equal``). Reports the median of the per-round
ratios scipy / geomot and writes ``benchmarks/results/dijkstra.json``.

Run: ``.venv/bin/python benchmarks/bench_dijkstra.py [--reps 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "dijkstra.json")
    args = ap.parse_args()
    from scipy.sparse.csgraph import dijkstra

    from geomot.io.trimesh_formats import read_off
    from geomot.ops import graph

    raw = read_off(DATA / "FAUST_r" / "off" / "tr_reg_000.off")
    g = graph.edge_graph(torch.as_tensor(raw[0], dtype=torch.float64), torch.as_tensor(raw[1]))
    graph._dijkstra(g, np.arange(2), None)  # compile / load the kernel
    threads0 = torch.get_num_threads()
    rows = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for n_sources in (128, 600):
                idx = np.random.default_rng(n_sources).choice(g.shape[0], n_sources, replace=False)
                for limit in (None, 0.08):
                    t_scipy, t_geomot = [], []
                    for _ in range(args.reps):
                        t = time.perf_counter()
                        ref = dijkstra(g, directed=True, indices=idx, limit=np.inf if limit is None else limit)
                        t_scipy.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        out = graph._dijkstra(g, idx, limit)
                        t_geomot.append(time.perf_counter() - t)
                        if not np.array_equal(ref, out):
                            raise SystemExit("geomot's distances differ from scipy's")
                    row = {"threads": threads, "sources": n_sources, "limit": limit,
                           "scipy_ms": 1e3 * float(np.median(t_scipy)), "geomot_ms": 1e3 * float(np.median(t_geomot)),
                           "ratio_scipy_over_geomot": float(np.median(np.array(t_scipy) / np.array(t_geomot)))}
                    rows.append(row)
                    print(row, flush=True)
    finally:
        torch.set_num_threads(threads0)
    out = {"command": "benchmarks/bench_dijkstra.py", "graph": "FAUST_r tr_reg_000 edge_graph", "V": g.shape[0],
           "stored_entries": int(g.nnz), "reps": args.reps, "load_avg_1min": os.getloadavg()[0],
           "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
