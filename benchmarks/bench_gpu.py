"""The GPU benchmark: one script, one JSON, about 8 minutes on an H100/H200.

Sections (each in its own module, run here in this order, same process):

1. Sinkhorn (:func:`bench_gpu_sinkhorn.bench_sinkhorn_gpu`): marginal error 1e-4, ``eps = 0.05^2``, uniform clouds
   in the unit cube, ``N = M`` in 10k, 50k, 200k, 1M: geomot ``backend="triton"`` against geomot's torch CUDA
   backends (dense where it fits, online), GeomLoss and flash-sinkhorn when importable, at equal marginal error,
   with peak memory;
2. the debiased Sinkhorn divergence, forward + backward (``geomot.sinkhorn_divergence``, default settings,
   ``eps = 0.05^2``), N = M in 10k and 50k, with peak memory;
3. varifold at 20k and 200k faces and Chamfer at 100k and 1M points (:func:`bench_gpu_kernels.run_all`): today's
   torch CUDA path against the Triton kernels, with peak memory.

Each Sinkhorn row also records the throughput of the soft-min passes, ``2 N M iterations / time`` (pairs per
second): one pair costs a fused multiply-add chain of ~8 flops and one ``exp``, so the compute bound of the card's
special-function units (an ``exp`` each) is the one that applies once the tiles stay in registers; compare the
figure with the card's SFU rate (H100 SXM: about 1.9e12 ``exp``/s in float32) to see how close a kernel is.

``--dry-run``: every section at tiny sizes on CPU through Triton's interpreter (``TRITON_INTERPRET=1``, set
before triton is imported), to check the script without a GPU. Writes
``benchmarks/results/bench_gpu_<device>.json``.

Usage: ``python benchmarks/bench_gpu.py [--dry-run] [--budget 60] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

if "--dry-run" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gpu_kernels
import bench_gpu_sinkhorn

import geomot

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_divergence(dev: torch.device, sizes: tuple[int, ...], budget: float) -> list[dict]:
    """``sinkhorn_divergence(x, y, eps=0.05**2)`` forward + backward (gradient in x), default settings."""
    rows = []
    g = torch.Generator().manual_seed(1)
    for n in sizes:
        x = torch.rand(n, 3, generator=g).to(dev).requires_grad_(True)
        y = torch.rand(n, 3, generator=g).to(dev)
        rec: dict = {"n": n}
        try:
            geomot.sinkhorn_divergence(x[:64], y[:64], eps=0.05**2).backward()  # warm-up / compile
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            _sync(dev)
            t0 = time.perf_counter()
            value = geomot.sinkhorn_divergence(x, y, eps=0.05**2)
            value.backward()
            _sync(dev)
            rec.update(time=time.perf_counter() - t0, value=float(value.detach()),
                       peak_gib=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None)
        except Exception as err:  # out of memory...: recorded, not fatal
            rec["error"] = str(err)[:200]
        print(json.dumps(rec), flush=True)
        rows.append(rec)
        if rec.get("time", 0.0) > budget:
            break
    return rows


def _throughput(rows: list[dict]) -> None:
    for rec in rows:
        n = rec["n"]
        for v in rec.values():
            if isinstance(v, dict) and v.get("time") and v.get("iters"):
                v["pairs_per_second"] = 2.0 * n * n * v["iters"] / v["time"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU through the Triton interpreter")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds; a solver slower than this stops growing N")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.dry_run:
        dev = torch.device("cpu")
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    else:
        print("no CUDA device: use --dry-run", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (Triton interpreter)"
    out: dict = {"device": name, "torch": torch.__version__, "dry_run": args.dry_run}
    if args.dry_run:
        out["sinkhorn"] = bench_gpu_sinkhorn.bench_sinkhorn_gpu([32], tol=0.05, device="cpu")
        out["divergence"] = bench_divergence(dev, (48,), args.budget)
    else:
        out["sinkhorn"] = bench_gpu_sinkhorn.bench_sinkhorn_gpu(tol=1e-4, budget=args.budget)
        out["divergence"] = bench_divergence(dev, (10_000, 50_000), args.budget)
    _throughput(out["sinkhorn"])
    out.update({k: v for k, v in bench_gpu_kernels.run_all(dev, dry_run=args.dry_run,
                                                            repeats=1 if args.dry_run else 3).items()
                if k in ("varifold", "chamfer")})
    out["seconds"] = time.perf_counter() - t0
    tag = "dry_run" if args.dry_run else re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    path = Path(args.json) if args.json else RESULTS / f"bench_gpu_{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
