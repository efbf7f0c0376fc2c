"""Sliced Wasserstein at large N on CPU: forward + backward against the ``numpy.sort`` floor, and the in-kernel
gradient reduction against the former stored-derivative path, same process, same inputs, interleaved.

Inputs: ``x, y`` uniform in the unit cube, ``(N, 3)`` float32, ``L = 100`` random directions ``P`` (the same for
every contender). Contenders, best of ``--repeats`` interleaved rounds:

- ``geomot``: ``geomot.sliced_wasserstein(x, y, projections=P)`` (``P`` ``(3, L)``: columns are directions)
  then ``.backward()`` w.r.t. ``x`` (numba kernel that projects, sorts, and reduces ``d/dx = sum_l G_l theta_l``
  while it walks each sorted row; from 524,288 points the ``y`` rows are sorted by ``numpy.sort``);
- ``stored rows``: the same call with the former autograd node, which keeps the ``(L, N)`` derivatives ``G`` from
  the kernel (:func:`geomot.transport._radix.projected_power`) and multiplies them by the directions in backward;
- ``numpy.sort floor``: ``numpy.sort`` of the ``(L, N)`` projected values of ``x`` (one side, no gradient).

Peak memory of each contender: growth of the resident set during one call (``VmHWM`` after a reset through
``/proc/self/clear_refs``; Linux only).

The machine may be shared: each row records the 1-minute load average before and after its timed rounds (the
floor runs on one thread, geomot on ``torch.get_num_threads()``, so a busy machine inflates geomot's ratio).

Run: ``.venv/bin/python benchmarks/bench_sliced_large.py [--sizes 100000,1000000] [--repeats 3] [--threads 2]``.
Writes ``benchmarks/results/bench_sliced_large.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import geomot
from geomot.ops.directions import random_directions
from geomot.transport import _radix, ot1d

RESULTS = Path(__file__).resolve().parent / "results"


class _StoredRows(torch.autograd.Function):
    """The former fused node: the kernel returns the (B, L, n) derivatives; backward multiplies them (two GEMMs)."""

    @staticmethod
    def forward(ctx, x, y, theta, p):
        cost, gx, gy = _radix.projected_power(
            x.detach().contiguous().numpy(), y.detach().contiguous().numpy(), theta.detach().contiguous().numpy(),
            p, need_gx=ctx.needs_input_grad[0], need_gy=ctx.needs_input_grad[1],
        )
        ctx.save_for_backward(*(None if a is None else torch.from_numpy(a) for a in (gx, gy)), theta)
        return torch.from_numpy(cost).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        gx, gy, theta = ctx.saved_tensors
        scaled_t = (grad_out.unsqueeze(-1) * theta).transpose(1, 2)
        dx = torch.bmm(scaled_t, gx).transpose(1, 2) if gx is not None else None
        dy = torch.bmm(scaled_t, gy).transpose(1, 2) if gy is not None else None
        return dx, dy, None, None


@contextlib.contextmanager
def _stored_rows():
    saved = ot1d._ProjectedPower
    ot1d._ProjectedPower = _StoredRows
    try:
        yield
    finally:
        ot1d._ProjectedPower = saved


def _peak_growth_mib(fn) -> float:
    def read(key: str) -> int:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key))

    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return float("nan")
    base = read("VmRSS:")
    fn()
    return (read("VmHWM:") - base) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--projections", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for geomot (default: torch's setting)")
    ap.add_argument("--json", default=str(RESULTS / "bench_sliced_large.json"))
    args = ap.parse_args(argv)
    if not _radix.AVAILABLE:
        raise SystemExit("numba is not installed: nothing to compare")
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    out = {"machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
           "versions": {"torch": torch.__version__, "numpy": np.__version__}, "n_projections": args.projections,
           "rows": []}
    for n in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(n, 3, generator=g)
        y = torch.rand(n, 3, generator=g)
        theta = random_directions(args.projections, 3, generator=g)
        proj = (theta @ x.T).contiguous().numpy()

        def sw(x=x, y=y, theta=theta):
            xx = x.clone().requires_grad_(True)
            geomot.sliced_wasserstein(xx, y, projections=theta.T).backward()
            return xx.grad

        def stored(sw=sw):
            with _stored_rows():
                return sw()

        runs = {"geomot": sw, "stored rows": stored, "numpy.sort floor": lambda proj=proj: np.sort(proj, axis=-1)}
        ga, gb = sw(), stored()  # also compiles
        rel = float((ga - gb).norm() / gb.norm())
        times = {k: float("inf") for k in runs}
        load = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k] = min(times[k], time.perf_counter() - t0)
        load.append(os.getloadavg()[0])
        mem = {k: _peak_growth_mib(fn) for k, fn in runs.items()}
        row = {"n": n, "times_s": times, "peak_growth_MiB": mem, "grad_rel_diff_vs_stored_rows": rel,
               "load_avg_1min": load,
               "ratio_to_floor": {k: times[k] / times["numpy.sort floor"] for k in ("geomot", "stored rows")}}
        out["rows"].append(row)
        print(f"N={n:>9,}  geomot {times['geomot']:.3f} s ({row['ratio_to_floor']['geomot']:.2f}x floor, "
              f"{mem['geomot']:.0f} MiB)  stored rows {times['stored rows']:.3f} s "
              f"({row['ratio_to_floor']['stored rows']:.2f}x floor, {mem['stored rows']:.0f} MiB)  "
              f"floor {times['numpy.sort floor']:.3f} s  grad rel diff {rel:.1e}  load {load[0]:.2f}-{load[1]:.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
