"""The numba soft-min kernel (``row_sums`` of :mod:`geomot.transport._numba_softmin`) compiled with and without
FMA contraction, same process, same inputs, interleaved.

The shipped kernels allow one fast-math flag, ``contract`` (a multiply and an add may fuse into one FMA); this
script compiles the same source with ``fastmath=False`` too and reports ns per pair of each and their largest
relative difference. Inputs: ``N = M = --n`` points uniform in the unit cube, ``eps = 0.01``, one thread.

Run: ``python benchmarks/bench_numba_softmin.py [--n 3000] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from geomot.transport import _numba_softmin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "bench_numba_softmin.json"))
    args = ap.parse_args()
    rows = []
    for dtype in ("float32", "float64"):
        dt = np.dtype(dtype).type
        kernels = {"fastmath off": _numba_softmin.compile_kernels(dtype, False)[0],
                   "contract": _numba_softmin.compile_kernels(dtype, {"contract"})[0]}
        rng = np.random.default_rng(0)
        n = args.n
        p = rng.random((n, 3)).astype(dt)
        qt = np.ascontiguousarray(rng.random((n, 3)).astype(dt).T)
        h, s, w = np.zeros(n, dt), np.zeros(n, dt), np.full(n, 1.0 / n, dt)
        idx = np.arange(n)
        outs, best = {}, {k: math.inf for k in kernels}
        for rep in range(args.repeats + 1):
            for name, k in kernels.items():
                out, cost = np.empty(n, dt), np.empty(n, dt)
                t = time.perf_counter()
                k(p, qt, h, s, w, dt(100.0), idx, out, cost, False)
                if rep:  # the first round compiles
                    best[name] = min(best[name], time.perf_counter() - t)
                outs[name] = out
        row = {"dtype": dtype, "n": n, **{f"{k}_ns_per_pair": v / n / n * 1e9 for k, v in best.items()},
               "speedup": best["fastmath off"] / best["contract"],
               "max_rel_difference": float(np.max(np.abs(outs["contract"] / outs["fastmath off"] - 1.0)))}
        rows.append(row)
        print(f"{dtype}: off {row['fastmath off_ns_per_pair']:.2f} ns/pair, contract {row['contract_ns_per_pair']:.2f} "
              f"ns/pair, x{row['speedup']:.2f}, max rel diff {row['max_rel_difference']:.1e}")
    out = {"machine": platform.processor() or platform.machine(), "platform": platform.platform(),
           "date": datetime.date.today().isoformat(), "threads": 1, "rows": rows,
           "note": "shared 2-core CPU; compare the ratios"}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
