"""Batched dense Sinkhorn: the matrix-vector products of the scaling loop in two forms, same process, same inputs.

The dense backend stores the kernel ``E (B, N, M)`` and iterates with ``E (b v)`` and ``E^T (a u)``. On CPU,
``torch.bmm(E, v[..., None])`` (a one-column right factor) and its transposed twin run several times slower than
the row-vector form ``torch.bmm(v[:, None, :], E^T)`` that :func:`geomot.ops._products.gemv` gives. This
script times ``geomot.sinkhorn(..., backend="dense")`` with each form patched in (runs interleaved, best of
``--repeats``) and checks that both give the same value.

Run: ``python benchmarks/bench_sinkhorn_batched.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
import warnings
from pathlib import Path

import torch

import geomot
import geomot.transport._kernels as kernels
import geomot.transport._sinkhorn_loops as loops
from geomot.ops._products import gemv as SHIPPED


def column_form(mat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.bmm(mat, v.unsqueeze(2)).squeeze(2)


def use(fn) -> None:
    """Patch ``fn`` in as the product of the modules that call it (both import it by name)."""
    kernels.gemv = fn
    loops.gemv = fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "bench_sinkhorn_batched.json"))
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    rows = []
    cases = [(16, 512, torch.float32), (4, 2000, torch.float32), (1, 5000, torch.float32), (4, 1000, torch.float64)]
    for bsz, n, dtype in cases:
        x = torch.rand(bsz, n, 3, generator=g, dtype=dtype)
        y = torch.rand(bsz, n, 3, generator=g, dtype=dtype)
        times = {"column": [], "row": []}
        values = {}
        for _ in range(args.repeats):
            for name, fn in (("column", column_form), ("row", SHIPPED)):
                use(fn)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = geomot.sinkhorn(x, y, eps=0.01, tol=1e-5, backend="dense")
                times[name].append(time.perf_counter() - t)
                values[name] = r.value
        use(SHIPPED)
        same = float(((values["row"] - values["column"]).abs() / values["column"].abs()).max())
        row = {"batch": bsz, "n": n, "dtype": str(dtype).replace("torch.", ""), "iterations": r.n_iters,
               "column_form_s": min(times["column"]), "row_form_s": min(times["row"]),
               "speedup": min(times["column"]) / min(times["row"]), "max_rel_value_difference": same}
        rows.append(row)
        print(f"B={bsz:3d} N={n:5d} {row['dtype']:8s} column {row['column_form_s']:.3f} s  row "
              f"{row['row_form_s']:.3f} s  x{row['speedup']:.2f}  value diff {same:.1e}")
    out = {"machine": platform.processor() or platform.machine(), "platform": platform.platform(),
           "date": datetime.date.today().isoformat(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "eps": 0.01, "tol": 1e-5, "rows": rows, "note": "shared 2-core CPU; compare the ratios"}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
