"""k-NN backends and Chamfer distance: geomot vs plain torch (dense ``torch.cdist``), same process, same inputs.

Inputs: two clouds of ``n`` points uniform in the unit cube (float32), for n in ``--sizes``. Timed calls:
``geomot.ops.knn_points(x, y, k=1, backend=B)`` for B in torch (blocked brute force) and kdtree (scipy cKDTree,
distances recomputed in torch), and the Chamfer distance (squared, mean) by
``geomot.losses.chamfer_distance(x, y)`` (backend "auto") vs the dense peer
``d = torch.cdist(x, y) ** 2; d.min(1).values.mean() + d.min(0).values.mean()`` (skipped above ``--dense-max``
points, where its n x n matrix is too large). The crossover of the two k-NN backends sets
``geomot.ops.knn.KDTREE_MIN_PAIRS``.

Run: ``.venv/bin/python benchmarks/bench_chamfer.py [--sizes 500,1000,2000,5000,20000] [--threads 1]``.
Prints a table (seconds and ratios) and writes ``out/bench_chamfer.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

log = logging.getLogger("bench_chamfer")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500,1000,2000,5000,20000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dense-max", type=int, default=10000)
    ap.add_argument("--json", default="out/bench_chamfer.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from geomot.losses.chamfer import chamfer_distance
    from geomot.ops.knn import knn_points

    torch.set_num_threads(args.threads)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        g = torch.Generator().manual_seed(n)
        x, y = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
        row: dict[str, float] = {"n": n}
        row["knn_torch"] = _time(lambda x=x, y=y: knn_points(x, y, backend="torch"), args.repeats)
        row["knn_kdtree"] = _time(lambda x=x, y=y: knn_points(x, y, backend="kdtree"), args.repeats)
        row["chamfer_geomot"] = _time(lambda x=x, y=y: chamfer_distance(x, y), args.repeats)
        if n <= args.dense_max:

            def dense(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                d = torch.cdist(x, y) ** 2
                return d.min(1).values.mean() + d.min(0).values.mean()

            row["chamfer_dense"] = _time(dense, args.repeats)
            row["chamfer_abs_diff"] = float((dense() - chamfer_distance(x, y)).abs())
        log.info("%s", row)
        rows.append(row)
    print(f"\n{'n':>7} {'knn torch':>10} {'knn tree':>10} {'torch/tree':>10} {'chamfer':>9} {'dense':>9} "
          f"{'dense/geomot':>12}")
    for r in rows:
        dense = ""
        if "chamfer_dense" in r:
            dense = f"{r['chamfer_dense']:>9.4f} {r['chamfer_dense'] / r['chamfer_geomot']:>12.2f}"
        print(f"{r['n']:>7} {r['knn_torch']:>10.4f} {r['knn_kdtree']:>10.4f} {r['knn_torch'] / r['knn_kdtree']:>10.2f} "
              f"{r['chamfer_geomot']:>9.4f} {dense}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
