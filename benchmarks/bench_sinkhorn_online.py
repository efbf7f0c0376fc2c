"""Sinkhorn on CPU, bounded memory: the online backend (numba streaming kernels) against the dense backend and
GeomLoss, in one process on the same inputs, interleaved (ABAB); and the Sinkhorn divergence at a large N.

geomot's online backend is timed twice: as shipped (the block-sparse fused sweep on large items,
``online``) and with that sweep switched off (every pair every iteration, ``online_streamed``); each run records
the 1-minute load average after it.

Inputs: ``x`` uniform in ``[0, 1]^3``, ``y ~ N(0.5, 0.15^2 I_3)``, ``N = M`` (``--n``), float32 or float64
(``--dtype``), ``eps = 0.05^2``, cost ``|x - y|^2``. geomot: ``sinkhorn(x, y, eps=eps, tol=--tol, grad="none",
backend=...)`` (the requested ``tol`` is raised to the dtype's floor, see docs/sinkhorn.md: pass float64 for 1e-5).
Every solver's potentials are re-checked in float64 (``|P 1 - a|_1 + |P^T 1 - b|_1``). GeomLoss:
``SamplesLoss("sinkhorn", p=2, blur=0.05 / sqrt(2), debias=False, scaling=s)`` for each ``s`` of
``--gl-scalings``, with ``backend="online"`` when pykeops compiles here, else ``"tensorized"`` (recorded), after a
warm-up; GeomLoss has no stopping rule, so geomot's online backend is timed again stopped at the error each
GeomLoss run reached (equal accuracy).
``--n-large``: ``sinkhorn_divergence`` at that N in a child process, time and peak RSS (``ru_maxrss``).

Usage: ``python benchmarks/bench_sinkhorn_online.py --n 10000 --json benchmarks/results/sinkhorn_online.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

import geomot
from geomot.transport import _multiscale

EPS = 0.05**2


def inputs(n: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.15 + 0.5
    return x.to(dtype), y.to(dtype)


def marginal_error(x, y, f, g, eps=EPS) -> float:
    x, y, f, g = x.double(), y.double(), f.double().reshape(-1), g.double().reshape(-1)
    n, m = x.shape[0], y.shape[0]
    rows = torch.zeros(n, dtype=torch.float64)
    cols = torch.zeros(m, dtype=torch.float64)
    for i in range(0, n, 1000):
        p = torch.exp((f[i:i + 1000, None] + g[None] - torch.cdist(x[i:i + 1000], y) ** 2) / eps) / (n * m)
        rows[i:i + 1000] = p.sum(1)
        cols += p.sum(0)
    return float((rows - 1 / n).abs().sum() + (cols - 1 / m).abs().sum())


def _geomloss(x, y, scaling: float):
    from geomloss import SamplesLoss

    backend = "tensorized"
    try:
        import pykeops

        pykeops.test_numpy_bindings()
        backend = "online"
    except Exception:  # pykeops missing or unable to compile here
        backend = "tensorized"
    loss = SamplesLoss("sinkhorn", p=2, blur=0.05 / math.sqrt(2), debias=False, backend=backend, potentials=True,
                       scaling=scaling)
    return loss, backend


def _solve(x, y, tol: float, mode: str):
    """geomot.sinkhorn with backend ``dense`` or ``online``; ``online_streamed`` is the online backend with the
    block-sparse sweep switched off (every pair every iteration, the previous default)."""
    if mode == "online_streamed":
        saved = _multiscale.SWEEP_MIN_PAIRS
        _multiscale.SWEEP_MIN_PAIRS = math.inf
        try:
            return geomot.sinkhorn(x, y, eps=EPS, tol=tol, backend="online", grad="none")
        finally:
            _multiscale.SWEEP_MIN_PAIRS = saved
    return geomot.sinkhorn(x, y, eps=EPS, tol=tol, backend=mode, grad="none")


def bench(n: int, dtype: torch.dtype, tol: float, repeat: int, gl_scalings: list[float]) -> dict:
    x, y = inputs(n, dtype)
    geomot.sinkhorn(x[:300], y[:300], eps=EPS, tol=tol, backend="online", grad="none")  # compile the kernels
    geomot.sinkhorn(x[:2500], y[:2500], eps=EPS, tol=tol, backend="online", grad="none")  # and the sparse sweep's
    modes = ("dense", "online", "online_streamed")
    runs: dict[str, list[float]] = {k: [] for k in modes}
    loads: dict[str, list[float]] = {k: [] for k in modes}
    info: dict = {}
    for _ in range(repeat):  # interleaved: dense, online, online_streamed, dense, ...
        for be in modes:
            t0 = time.perf_counter()
            r = _solve(x, y, tol, be)
            runs[be].append(time.perf_counter() - t0)
            loads[be].append(os.getloadavg()[0])
            info[be] = {"iters": r.n_iters, "err": marginal_error(x, y, r.f, r.g), "value": float(r.value)}
            print(be, f"{runs[be][-1]:.2f} s, load {loads[be][-1]:.2f}", info[be], flush=True)
    out: dict = {k: {**info[k], "time": min(v), "times": v, "load_1min": loads[k]} for k, v in runs.items()}
    out["online_over_dense"] = out["online"]["time"] / out["dense"]["time"]
    out["online_streamed_over_dense"] = out["online_streamed"]["time"] / out["dense"]["time"]
    out["online_value_rel_diff_vs_streamed"] = (abs(info["online"]["value"] - info["online_streamed"]["value"])
                                                / abs(info["online_streamed"]["value"]))
    # GeomLoss has no stopping rule: each annealing ratio gives one (time, error); geomot's online backend is then
    # timed at the error GeomLoss reached (equal accuracy)
    gl = []
    for scaling in gl_scalings:
        loss, backend = _geomloss(x, y, scaling)
        loss(x[:200], y[:200])  # warm-up (KeOps builds its formulas on first use)
        t0 = time.perf_counter()
        pf, pg = loss(x, y)
        t_gl = time.perf_counter() - t0
        err = marginal_error(x, y, 2 * pf, 2 * pg)
        t0 = time.perf_counter()
        r = geomot.sinkhorn(x, y, eps=EPS, tol=err, backend="online", grad="none")
        t_m = time.perf_counter() - t0
        gl.append({"backend": backend, "scaling": scaling, "time": t_gl, "err": err, "geomot_online_time": t_m,
                   "geomot_online_err": marginal_error(x, y, r.f, r.g), "geomot_online_iters": r.n_iters,
                   "geomloss_over_geomot_online": t_gl / t_m})
        print(gl[-1], flush=True)
    out["geomloss"] = gl
    out.update(n=n, dtype=str(dtype), tol=tol, load_avg=os.getloadavg(), torch_threads=torch.get_num_threads())
    print(json.dumps(out, indent=1), flush=True)
    return out


def bench_large(n: int, eps: float) -> dict:
    x, y = inputs(n, torch.float32)
    t0 = time.perf_counter()
    v = geomot.sinkhorn_divergence(x, y, eps=eps)
    t = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "eps": eps, "value": float(v), "time": t, "peak_rss_gib": peak, "load_avg": os.getloadavg()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--gl-scalings", type=float, nargs="*", default=[0.9, 0.99])
    p.add_argument("--n-large", type=int, default=0, help="divergence at this N in a child process (0: skip)")
    p.add_argument("--eps-large", type=float, default=0.1**2)
    p.add_argument("--large-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.large_only:
        print(json.dumps(bench_large(args.n_large, args.eps_large)))
        return
    out = {"speed": bench(args.n, getattr(torch, args.dtype), args.tol, args.repeat, args.gl_scalings)}
    if args.n_large:
        res = subprocess.run([sys.executable, __file__, "--large-only", "--n-large", str(args.n_large),
                              "--eps-large", str(args.eps_large)], capture_output=True, text=True, check=True)
        out["large"] = json.loads(res.stdout.strip().splitlines()[-1])
        print(out["large"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
