"""Varifold kernel distance: blocked torch backend vs pykeops, same process, same inputs.

Inputs: the unit icosphere subdivided ``--subdiv`` times (5 -> 20,480 faces) and a copy with Gaussian vertex
noise (std 0.01), float32. For each normal kernel it times
``geomot.losses.varifold_distance(a, b, sigma=0.2, kernel=K, backend=B)`` with B = "torch" and "keops":
the value alone (no grad) and value + gradient w.r.t. the perturbed vertices. The KeOps compile time (first call
minus a warm call) is reported separately and not counted in the timings. Both libraries get ``--threads``
threads (torch.set_num_threads and OMP_NUM_THREADS, set before pykeops is imported).

Memory: peak resident-set growth during one torch evaluation with gradient (``VmHWM`` from /proc/self/status
after resetting it through /proc/self/clear_refs), compared with the size of one dense F x F float32 matrix. It
runs in a fresh subprocess with ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed blocks go back to the system and
the peak reflects live memory, not glibc's heap retention (``--memory-only`` runs just this probe).

Run: ``.venv/bin/python benchmarks/bench_varifold.py [--subdiv 5] [--threads 1] [--repeats 3]``.
Prints a table of times and ratios torch / keops; writes ``out/bench_varifold.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("bench_varifold")


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _memory(args: argparse.Namespace) -> dict:
    """Run the memory probe in a fresh process (see the module docstring) and log its result."""
    cmd = [sys.executable, __file__, "--memory-probe", "--subdiv", str(args.subdiv), "--threads", str(args.threads),
           "--kernels", args.kernels]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    mem = json.loads(res.stdout.strip().splitlines()[-1])
    if mem:
        log.info("torch (value + gradient) peak RSS growth %.1f MiB; one dense F x F float32 matrix: %.1f MiB",
                 mem["peak_growth_MiB"], mem["dense_FxF_float32_MiB"])
    return mem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subdiv", type=int, default=5, help="icosphere subdivisions (5 -> 20,480 faces)")
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and KeOps (OpenMP)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    ap.add_argument("--kernels", default="binet,gaussian_oriented,linear")
    ap.add_argument("--no-keops", action="store_true", help="time the torch backend only")
    ap.add_argument("--json", default="out/bench_varifold.json")
    ap.add_argument("--memory-only", action="store_true", help="only measure the peak memory of torch")
    ap.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    from geomot.io.synthetic import icosphere
    from geomot.losses.varifold import varifold_distance
    from geomot.structures import Mesh

    sphere = icosphere(args.subdiv, dtype=torch.float32)
    v, f = sphere.verts, sphere.faces
    g = torch.Generator().manual_seed(0)
    v2 = v + 0.01 * torch.randn(v.shape, generator=g)
    a = Mesh(v, f)
    nf = f.shape[0]
    kernel0 = args.kernels.split(",")[0]
    if args.memory_probe:  # child process: one torch evaluation with gradient, print the peak growth
        if not _reset_peak():
            print(json.dumps({}))
            return 0
        base = _rss_kib()
        vv = v2.clone().requires_grad_(True)
        varifold_distance(a, Mesh(vv, f), sigma=0.2, kernel=kernel0, backend="torch").backward()
        grow = (_peak_rss_kib() - base) / 1024
        print(json.dumps({"peak_growth_MiB": grow, "dense_FxF_float32_MiB": nf * nf * 4 / 2**20}))
        return 0
    if args.memory_only:
        mem = _memory(args)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"faces": nf, "kernel": kernel0, "memory": mem}, indent=2))
        return 0
    log.info("inputs: two icospheres, %d faces each (float32), sigma=0.2, %d thread(s)", nf, args.threads)

    def run(kernel: str, backend: str, grad: bool) -> tuple[float, float]:
        vv = v2.clone().requires_grad_(grad)
        t0 = time.perf_counter()
        d = varifold_distance(a, Mesh(vv, f), sigma=0.2, kernel=kernel, backend=backend)
        if grad:
            d.backward()
        return time.perf_counter() - t0, float(d.detach())

    backends = ["torch"] if args.no_keops else ["torch", "keops"]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for kernel in args.kernels.split(","):
        row: dict[str, object] = {"kernel": kernel, "faces": nf}
        for backend in backends:
            for grad in (False, True):
                tag = f"{backend}_{'grad' if grad else 'value'}"
                first, val = run(kernel, backend, grad)
                # KeOps compiles on its first call: time it apart; torch's first call is an ordinary sample
                n_more = args.repeats if backend == "keops" else args.repeats - 1
                times = ([] if backend == "keops" else [first]) + [run(kernel, backend, grad)[0] for _ in range(n_more)]
                row[tag] = statistics.median(times)
                row[f"{tag}_value"] = val
                if backend == "keops":
                    row[f"{tag}_compile"] = max(0.0, first - row[tag])
                log.info("%-18s %-12s %8.3f s (first call %.2f s), value %.6g", kernel, tag, row[tag], first, val)
        if "keops_value" in row:
            row["ratio_value"] = row["torch_value"] / row["keops_value"]
            row["ratio_grad"] = row["torch_grad"] / row["keops_grad"]
            row["rel_diff"] = abs(row["torch_value_value"] - row["keops_value_value"]) / abs(row["keops_value_value"])
        rows.append(row)
        out.write_text(json.dumps({"threads": args.threads, "faces": nf, "rows": rows}, indent=2))  # partial

    mem = _memory(args)

    print(f"\n{'kernel':<18} {'torch val':>10} {'keops val':>10} {'ratio':>6} {'torch grad':>11} {'keops grad':>11} "
          f"{'ratio':>6} {'compile':>8}")
    for r in rows:
        if "ratio_value" in r:
            print(f"{r['kernel']:<18} {r['torch_value']:>10.3f} {r['keops_value']:>10.3f} {r['ratio_value']:>6.2f} "
                  f"{r['torch_grad']:>11.3f} {r['keops_grad']:>11.3f} {r['ratio_grad']:>6.2f} "
                  f"{r['keops_value_compile'] + r['keops_grad_compile']:>8.1f}")
        else:
            print(f"{r['kernel']:<18} {r['torch_value']:>10.3f} {'-':>10} {'-':>6} {r['torch_grad']:>11.3f}")
    out.write_text(json.dumps({"threads": args.threads, "faces": nf, "rows": rows, "memory": mem}, indent=2))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
