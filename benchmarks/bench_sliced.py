"""Sliced Wasserstein: geomot against POT, a plain torch implementation and the numpy sort floor.

All contenders run in this process on the same inputs and the SAME projection matrix; the table reports ratios
(the machine may be shared, so absolute times are indicative only). Each time is the best of ``--repeats`` runs,
contenders interleaved.

Cases (CPU, float32, d = 3, L = 100 directions):

1. one pair, N = M = 100,000, forward + backward w.r.t. x:
   - geomot: ``geomot.sliced_wasserstein(x, y, projections=P)`` then ``.backward()``;
   - POT: ``ot.sliced_wasserstein_distance(x, y, projections=P)`` (torch backend) then ``.backward()``;
   - torch: projections, ``torch.sort``, mean of squared differences, root, ``.backward()``;
   - floor: ``numpy.sort`` of the (L, N) projected values of x, once (no gradient, no y). With numba installed
     geomot sorts with its own radix kernels (x with its permutation, and y), which beat this floor.
2. a batch of B = 64 pairs of N = 2,048 points, forward + backward: one geomot call on ``(B, N, 3)`` against a
   Python loop of POT calls.
3. unequal sizes (N = 20,000, M = 25,000) with random weights (the quantile path), forward + backward, against
   POT with the same weights.

On a machine with a CUDA device the single and batched cases are repeated on the GPU (geomot against POT's torch
backend on the same device, both synchronised before the clock stops).

Run: ``python benchmarks/bench_sliced.py`` (``--quick`` for smaller sizes). Writes
``benchmarks/results/bench_sliced.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import ot
import torch

import geomot
from geomot.ops.directions import random_directions
from geomot.transport import _radix

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def compare(runs: dict, peer: str, repeats: int) -> tuple[dict[str, float], float]:
    """Gradient agreement of geomot with ``peer``, then the best time of every run over ``repeats`` interleaved
    rounds (contenders alternate so that load changes hit them alike)."""
    ga, gb = runs["geomot"](), runs[peer]()
    rel_grad = float((ga - gb).norm() / gb.norm())
    times = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k] = min(times[k], best_of(fn, 1))
    return times, rel_grad


def fwd_bwd(loss_fn, x: torch.Tensor):
    def run():
        xx = x.detach().clone().requires_grad_(True)
        loss_fn(xx).sum().backward()
        if xx.is_cuda:
            torch.cuda.synchronize()
        return xx.grad

    return run


def without_numba(fn):
    """``fn`` run with geomot's numba kernels switched off (the numpy sort path)."""

    def run():
        _radix.AVAILABLE = False
        try:
            return fn()
        finally:
            _radix.AVAILABLE = True

    return run


def torch_sw(x: torch.Tensor, y: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Plain torch reference: sort both projected clouds along the points."""
    xs = torch.sort(proj.T @ x.T, dim=-1).values
    ys = torch.sort(proj.T @ y.T, dim=-1).values
    return (xs - ys).square().mean().sqrt()


def case_single(n: int, n_proj: int, repeats: int, seed: int, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = torch.randn(n, 3, generator=g) * 0.7 + 0.5
    proj = random_directions(n_proj, 3, generator=g).T.contiguous()  # (D, L)
    x, y, proj = x.to(device), y.to(device), proj.to(device)
    runs = {
        "geomot": fwd_bwd(lambda a: geomot.sliced_wasserstein(a, y, projections=proj), x),
        "POT": fwd_bwd(lambda a: ot.sliced_wasserstein_distance(a, y, projections=proj), x),
        "torch": fwd_bwd(lambda a: torch_sw(a, y, proj), x),
    }
    if device == "cpu":
        projected = (proj.T @ x.T).numpy()
        runs["numpy.sort floor"] = lambda: np.sort(projected, axis=-1)
        if _radix.AVAILABLE:  # what runs without numba
            runs["geomot, numpy sorts"] = without_numba(runs["geomot"])
    # check the contenders agree (value and gradient) before timing
    times, rel_grad = compare(runs, "POT", repeats)
    return {"n": n, "n_projections": n_proj, "times_s": times, "grad_rel_diff_vs_POT": rel_grad}


def case_weighted(n: int, m: int, n_proj: int, repeats: int, seed: int) -> dict:
    """Unequal sizes and non-uniform weights: the quantile (merged-CDF) path."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = torch.randn(m, 3, generator=g) * 0.7 + 0.5
    a = torch.rand(n, generator=g) + 0.1
    b = torch.rand(m, generator=g) + 0.1
    a, b = a / a.sum(), b / b.sum()
    proj = random_directions(n_proj, 3, generator=g).T.contiguous()
    runs = {
        "geomot": fwd_bwd(lambda t: geomot.sliced_wasserstein(t, y, x_weights=a, y_weights=b, projections=proj), x),
        "POT": fwd_bwd(lambda t: ot.sliced_wasserstein_distance(t, y, a, b, projections=proj), x),
    }
    times, rel_grad = compare(runs, "POT", repeats)
    return {"n": n, "m": m, "n_projections": n_proj, "times_s": times, "grad_rel_diff_vs_POT": rel_grad}


def case_batched(bsz: int, n: int, n_proj: int, repeats: int, seed: int, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, n, 3, generator=g)
    y = torch.randn(bsz, n, 3, generator=g) * 0.7 + 0.5
    proj = random_directions(n_proj, 3, generator=g).T.contiguous()
    x, y, proj = x.to(device), y.to(device), proj.to(device)

    def pot_loop(a):
        return torch.stack([ot.sliced_wasserstein_distance(a[b], y[b], projections=proj) for b in range(bsz)])

    runs = {
        "geomot": fwd_bwd(lambda a: geomot.sliced_wasserstein(a, y, projections=proj, reduction="none"), x),
        "POT loop": fwd_bwd(pot_loop, x),
    }
    times, rel_grad = compare(runs, "POT loop", repeats)
    return {"batch": bsz, "n": n, "n_projections": n_proj, "times_s": times, "grad_rel_diff_vs_POT": rel_grad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 20,000 and B = 16 (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, bsz = (20_000, 16) if args.quick else (100_000, 64)

    single = case_single(n, 100, args.repeats, args.seed)
    batched = case_batched(bsz, 2048, 100, args.repeats, args.seed)
    weighted = case_weighted(n // 5, n // 4, 100, args.repeats, args.seed)
    t1, t2, t3 = single["times_s"], batched["times_s"], weighted["times_s"]
    ratios = {
        "POT / geomot (single, fwd+bwd)": t1["POT"] / t1["geomot"],
        "torch.sort version / geomot (single)": t1["torch"] / t1["geomot"],
        "geomot / numpy.sort floor (single)": t1["geomot"] / t1["numpy.sort floor"],
        **({"geomot numpy sorts / geomot radix (single)": t1["geomot, numpy sorts"] / t1["geomot"]}
           if "geomot, numpy sorts" in t1 else {}),
        "POT loop / geomot (batched, fwd+bwd)": t2["POT loop"] / t2["geomot"],
        "POT / geomot (unequal sizes + weights, fwd+bwd)": t3["POT"] / t3["geomot"],
    }
    targets = {
        "POT / geomot (single, fwd+bwd)": (">=", 30.0),
        "geomot / numpy.sort floor (single)": ("<=", 5.0),
        "POT loop / geomot (batched, fwd+bwd)": (">=", 20.0),
    }
    print(f"CPU float32, d=3, L=100; torch {torch.__version__}, numpy {np.__version__}, POT {ot.__version__}, "
          f"{torch.get_num_threads()} torch threads; geomot CPU sorts: "
          f"{'numba radix' if _radix.AVAILABLE else 'numpy (numba not installed)'}")
    print(f"\nsingle pair N=M={n:,} (best of {args.repeats}):")
    for k, v in t1.items():
        print(f"  {k:<22s} {v:8.3f} s")
    print(f"\nbatch of {bsz} pairs, N=2,048 (best of {args.repeats}):")
    for k, v in t2.items():
        print(f"  {k:<22s} {v:8.3f} s")
    print(f"\nunequal sizes N={weighted['n']:,}, M={weighted['m']:,}, random weights (best of {args.repeats}):")
    for k, v in t3.items():
        print(f"  {k:<22s} {v:8.3f} s")
    print("\n| ratio | value | target |\n|---|---|---|")
    for k, v in ratios.items():
        tgt = targets.get(k)
        ok = "" if tgt is None else (" (met)" if (v >= tgt[1] if tgt[0] == ">=" else v <= tgt[1]) else " (MISSED)")
        print(f"| {k} | {v:.1f}x | {'' if tgt is None else f'{tgt[0]} {tgt[1]:g}x'}{ok} |")
    print(f"\ngradient relative difference vs POT: single {single['grad_rel_diff_vs_POT']:.1e}, "
          f"batched {batched['grad_rel_diff_vs_POT']:.1e}, weighted {weighted['grad_rel_diff_vs_POT']:.1e}")
    cuda = None
    if torch.cuda.is_available():  # the same code on the GPU, against POT's torch backend on the GPU
        cuda = {
            "device": torch.cuda.get_device_name(),
            "single": case_single(n, 100, args.repeats, args.seed, device="cuda"),
            "batched": case_batched(bsz, 2048, 100, args.repeats, args.seed, device="cuda"),
        }
        c1, c2 = cuda["single"]["times_s"], cuda["batched"]["times_s"]
        cuda["ratios"] = {"POT / geomot (single)": c1["POT"] / c1["geomot"],
                          "torch.sort version / geomot (single)": c1["torch"] / c1["geomot"],
                          "POT loop / geomot (batched)": c2["POT loop"] / c2["geomot"]}
        print(f"\nCUDA ({cuda['device']}), fwd+bwd, best of {args.repeats}:")
        print(f"  single N={n:,}: geomot {c1['geomot'] * 1e3:.2f} ms, POT {c1['POT'] * 1e3:.2f} ms, "
              f"torch {c1['torch'] * 1e3:.2f} ms")
        print(f"  batch {bsz} x 2,048: geomot {c2['geomot'] * 1e3:.2f} ms, POT loop {c2['POT loop'] * 1e3:.2f} ms")
        for k, v in cuda["ratios"].items():
            print(f"  {k}: {v:.1f}x")
    else:
        print("\nno CUDA device: GPU figures not measured")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "POT": ot.__version__},
        "sort_backend": "numba radix" if _radix.AVAILABLE else "numpy",
        "single": single, "batched": batched, "weighted": weighted, "ratios": ratios, "cuda": cuda,
    }
    (RESULTS / "bench_sliced.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
