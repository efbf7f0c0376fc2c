"""GPU benchmark pieces for the streaming Triton kernels: varifold and Chamfer, torch backend against triton, same
process, same inputs, interleaved; each function returns rows for ``benchmarks/bench_gpu.py`` to assemble.

- :func:`bench_varifold`: ``geomot.losses.varifold_distance(x, y, sigma=0.1, kernel=K, backend=B, x_normals=...,
  y_normals=...)`` between two sets of ``F`` oriented atoms on the unit sphere (positions uniform on the sphere,
  normals = positions, masses ``1/F``; the second set is the first with Gaussian noise of std 0.01), ``F`` = 20,480
  and 204,800 "faces", value alone and value + gradient w.r.t. the positions; B = ``"torch"`` (blocked, activation
  checkpointing) and ``"triton"``.
- :func:`bench_chamfer`: ``geomot.chamfer_distance(x, y, backend=B)`` (both directions, k = 1) between two uniform
  clouds in the unit cube, ``N = M`` = 100,000 and 1,000,000, forward + backward w.r.t. ``x``; B = ``"torch"``
  (blocked brute force) and ``"triton"``.

Each row holds the median time (CUDA synchronised before the clock stops), the peak memory allocated by torch
during one call beyond what was allocated before (``torch.cuda.max_memory_allocated``), the value, and the ratio
torch / triton. A backend that fails (e.g. out of memory) gets its error instead of a time.

``--dry-run`` runs tiny sizes on the CPU through Triton's interpreter (``TRITON_INTERPRET=1`` is set before torch
and triton are imported) to check the script end to end without a GPU.

Run: ``.venv/bin/python benchmarks/bench_gpu_kernels.py [--dry-run] [--repeats 3]``; writes
``benchmarks/results/bench_gpu_kernels_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
VARIFOLD_SIZES = (20_480, 204_800)
CHAMFER_SIZES = (100_000, 1_000_000)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats: int) -> dict[str, Any]:
    """Median time of ``fn()`` over ``repeats`` calls after one warm-up (which compiles), and its peak memory."""
    import torch

    out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = None
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return {"time_s": statistics.median(times), "peak_MiB": peak, "value": float(out)}


def _compare(row: dict[str, Any], runs: dict[str, Any], device, repeats: int) -> dict[str, Any]:
    for name, fn in runs.items():
        try:
            row[name] = _timed(fn, device, repeats)
        except Exception as e:  # reported in the row (out of memory on the larger sizes, a missing triton, ...)
            row[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
    t, r = row.get("torch", {}), row.get("triton", {})
    if "time_s" in t and "time_s" in r:
        row["speedup_triton"] = t["time_s"] / r["time_s"]
        row["value_rel_diff"] = abs(t["value"] - r["value"]) / max(abs(t["value"]), 1e-30)
    return row


def _sphere_atoms(n: int, device, generator) -> tuple[Any, Any, Any]:
    import torch

    p = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    q = p + 0.01 * torch.randn(n, 3, generator=generator)
    return p.to(device), q.to(device), torch.full((n,), 1.0 / n, device=device)


def bench_varifold(device, sizes=VARIFOLD_SIZES, kernel: str = "binet", repeats: int = 3) -> list[dict[str, Any]]:
    """Varifold distance, torch against triton, value and value + gradient (module docstring)."""
    import torch

    from geomot.losses.varifold import varifold_distance

    g = torch.Generator().manual_seed(0)
    rows = []
    for n in sizes:
        x, y, w = _sphere_atoms(n, device, g)
        for grad in (False, True):
            def call(backend: str, grad=grad, x=x, y=y, w=w):
                xx = x.clone().requires_grad_(grad)
                d = varifold_distance(xx, y, x_normals=x, y_normals=y, x_weights=w, y_weights=w, sigma=0.1,
                                      kernel=kernel, backend=backend)
                if grad:
                    d.backward()
                return d.detach()

            row = {"case": "varifold", "faces": n, "kernel": kernel, "gradient": grad}
            rows.append(_compare(row, {b: (lambda b=b: call(b)) for b in ("torch", "triton")}, device,
                                 repeats if n <= 50_000 else 1))
            _log(rows[-1])
    return rows


def bench_chamfer(device, sizes=CHAMFER_SIZES, repeats: int = 3) -> list[dict[str, Any]]:
    """Chamfer distance (k = 1 both ways), torch against triton, forward + backward (module docstring)."""
    import torch

    from geomot.losses.chamfer import chamfer_distance

    g = torch.Generator().manual_seed(1)
    rows = []
    for n in sizes:
        x = torch.rand(n, 3, generator=g).to(device)
        y = torch.rand(n, 3, generator=g).to(device)

        def call(backend: str, x=x, y=y):
            xx = x.clone().requires_grad_(True)
            d = chamfer_distance(xx, y, backend=backend)
            d.backward()
            return d.detach()

        row = {"case": "chamfer", "points": n}
        rows.append(_compare(row, {b: (lambda b=b: call(b)) for b in ("torch", "triton")}, device,
                             repeats if n <= 200_000 else 1))
        _log(rows[-1])
    return rows


def _log(row: dict[str, Any]) -> None:
    def fmt(r: dict[str, Any]) -> str:
        if "error" in r:
            return r["error"][:60]
        mem = "" if r["peak_MiB"] is None else f", {r['peak_MiB']:.0f} MiB"
        return f"{r['time_s'] * 1e3:.1f} ms{mem}"

    size = row.get("faces", row.get("points"))
    tag = f"{row['case']} {size:,}" + (" +grad" if row.get("gradient") else "")
    print(f"{tag:<26} torch {fmt(row['torch']):<28} triton {fmt(row['triton']):<28} "
          f"speed-up {row.get('speedup_triton', float('nan')):.2f}x", flush=True)


def run_all(device, *, dry_run: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Every case on ``device``; tiny sizes when ``dry_run``."""
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    vs, cs = ((64, 96), (200, 300)) if dry_run else (VARIFOLD_SIZES, CHAMFER_SIZES)
    return {
        "device": name,
        "torch": torch.__version__,
        "dry_run": dry_run,
        "varifold": bench_varifold(device, vs, repeats=repeats),
        "chamfer": bench_chamfer(device, cs, repeats=repeats),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU through the Triton interpreter")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before torch / triton are imported
    import torch

    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device: use --dry-run", file=sys.stderr)
        return 1
    out = run_all(device, dry_run=args.dry_run, repeats=1 if args.dry_run else args.repeats)
    tag = "dry_run" if args.dry_run else out["device"].lower().replace(" ", "_")
    path = Path(args.json) if args.json else RESULTS / f"bench_gpu_kernels_{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
