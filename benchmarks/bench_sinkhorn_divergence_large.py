"""Large Sinkhorn divergences on CPU: the clustered solver (coarse annealing on k-d cluster centroids, block-sparse
soft-mins with a certified truncation bound) at N = M = 50,000, and against the streamed path it replaces.

Inputs: ``x`` uniform in ``[0, 1]^3``, ``y ~ N(0.5, 0.15^2 I_3)``, float32, ``sinkhorn_divergence(x, y, eps=eps)``
with its defaults (value stop at ``rtol = 1e-4``), forward only.

- ``--n``: each ``eps`` of ``--eps`` in its own child process (so that ``ru_maxrss`` is that run's peak): time
  of the forward call and its peak RSS, then of a forward + backward call (gradient w.r.t. ``x``) and the peak
  after it, and the RSS after importing geomot and compiling the kernels on a small problem;
- ``--compare-n``: in one process on the same inputs, the clustered solver against the streamed numba soft-mins
  (``geomot.transport._debiased.multiscale_usable`` patched to False: the path that large problems took before)
  and against the stored-kernel path (``chunk_bytes`` large enough for the three kernels, ``12 N^2`` bytes):
  time ratios and relative differences of the values;
- ``--geomloss-n``: geomot against GeomLoss's KeOps ``online`` and ``multiscale`` backends (``--gl-scalings``),
  each value's error against a float64 geomot run to marginal error ``1e-7``.

Usage: ``python benchmarks/bench_sinkhorn_divergence_large.py --n 50000 --compare-n 10000 --geomloss-n 10000
--json benchmarks/results/sinkhorn_divergence_large.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

import geomot
from geomot.transport import _debiased


def inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.15 + 0.5
    return x.float(), y.float()


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_one(n: int, eps: float) -> dict:
    x, y = inputs(n)
    geomot.sinkhorn_divergence(x[:2000], y[:2000], eps=eps, chunk_bytes=1 << 16)  # compile the kernels
    base = _peak_gib()
    t0 = time.perf_counter()
    v = geomot.sinkhorn_divergence(x, y, eps=eps)
    t = time.perf_counter() - t0
    peak = _peak_gib()
    xg = x.clone().requires_grad_(True)
    t0 = time.perf_counter()
    geomot.sinkhorn_divergence(xg, y, eps=eps).backward()
    t_grad = time.perf_counter() - t0
    return {"n": n, "eps": eps, "value": float(v), "time_s": t, "peak_rss_gib": peak,
            "forward_backward_time_s": t_grad, "peak_rss_with_backward_gib": _peak_gib(),
            "grad_finite": bool(torch.isfinite(xg.grad).all()), "rss_after_warmup_gib": base,
            "load_avg": os.getloadavg()}


def compare(n: int, eps: float) -> dict:
    x, y = inputs(n)
    geomot.sinkhorn_divergence(x[:2000], y[:2000], eps=eps, chunk_bytes=1 << 16)
    usable = _debiased.multiscale_usable
    stored_bytes = 4 * n * n * 4  # the three kernels fit: computed once at the final eps (dense path)
    out = {}
    for name in ("clustered", "streamed", "stored"):
        _debiased.multiscale_usable = usable if name == "clustered" else (lambda *a: False)
        try:
            t0 = time.perf_counter()
            v = float(geomot.sinkhorn_divergence(x, y, eps=eps, **({"chunk_bytes": stored_bytes}
                                                                   if name == "stored" else {})))
            out[name] = {"time_s": time.perf_counter() - t0, "value": v}
        finally:
            _debiased.multiscale_usable = usable
    for other in ("streamed", "stored"):
        out[f"{other}_over_clustered"] = out[other]["time_s"] / out["clustered"]["time_s"]
        out[f"value_rel_diff_{other}"] = abs(out["clustered"]["value"] / out[other]["value"] - 1)
    out.update(n=n, eps=eps, load_avg=os.getloadavg())
    return out


def against_geomloss(n: int, eps: float, scalings: list[float]) -> dict:
    """geomot's clustered divergence (float32, defaults) and GeomLoss's ``SamplesLoss("sinkhorn", p=2,
    blur=sqrt(eps / 2), scaling=s)`` (its value doubled: GeomLoss's cost is ``|x - y|^2 / 2``) with the KeOps
    ``online`` and ``multiscale`` backends, errors against a float64 geomot run to marginal error 1e-7."""
    import math

    from geomloss import SamplesLoss

    x, y = inputs(n)
    t0 = time.perf_counter()
    ref = float(geomot.sinkhorn_divergence(x.double(), y.double(), eps=eps, tol=1e-7))
    out: dict = {"n": n, "eps": eps, "reference": ref, "reference_time_s": time.perf_counter() - t0, "runs": []}
    geomot.sinkhorn_divergence(x[:2000], y[:2000], eps=eps)
    t0 = time.perf_counter()
    v = float(geomot.sinkhorn_divergence(x, y, eps=eps))
    out["runs"].append({"solver": "geomot", "time_s": time.perf_counter() - t0, "rel_error": abs(v / ref - 1)})
    for backend in ("online", "multiscale"):
        for s in scalings:
            loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps / 2), scaling=s, backend=backend)
            loss(x[:500], y[:500])  # KeOps builds its formulas on first use
            t0 = time.perf_counter()
            v = 2 * float(loss(x, y))
            out["runs"].append({"solver": f"geomloss {backend}", "scaling": s, "time_s": time.perf_counter() - t0,
                                "rel_error": abs(v / ref - 1)})
            print(out["runs"][-1], flush=True)
    out["load_avg"] = os.getloadavg()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--eps", type=float, nargs="+", default=[0.05**2, 0.1**2])
    p.add_argument("--compare-n", type=int, default=0, help="clustered vs streamed at this N (0: skip)")
    p.add_argument("--geomloss-n", type=int, default=0, help="against GeomLoss (KeOps) at this N (0: skip)")
    p.add_argument("--gl-scalings", type=float, nargs="+", default=[0.5, 0.9])
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.n, args.eps[0])))
        return
    out: dict = {"torch_threads": torch.get_num_threads(), "large": [], "compare": [], "geomloss": []}
    for eps in args.eps:
        res = subprocess.run([sys.executable, __file__, "--one", "--n", str(args.n), "--eps", repr(eps)],
                             capture_output=True, text=True, check=True)
        out["large"].append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(out["large"][-1], flush=True)
    if args.compare_n:
        for eps in args.eps:
            out["compare"].append(compare(args.compare_n, eps))
            print(out["compare"][-1], flush=True)
    if args.geomloss_n:
        for eps in args.eps:
            out["geomloss"].append(against_geomloss(args.geomloss_n, eps, args.gl_scalings))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
