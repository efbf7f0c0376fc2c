"""Varifold distance on CPU: the torch backend as it is (exponent clamped at half the dtype's ``exp`` floor; with a
gradient, a hand-written backward pass per block) against the former torch backend (unclamped ``exp``; with a
gradient, activation checkpointing and autograd), reproduced here, same process, same inputs.

Inputs: the unit icosphere subdivided ``--subdiv`` times (5 -> 20,480 faces) and a copy with Gaussian vertex noise
(std 0.01), float32; ``geomot.losses.varifold_distance(a, b, sigma=0.2, kernel=K, backend="torch")`` for each normal
kernel, the value alone and value + gradient w.r.t. the perturbed vertices. With ``sigma = 0.2`` on the unit sphere
most of the ``F x F`` exponents ``-|x - y|^2 / sigma^2`` lie below -87, where x86's ``exp`` leaves its fast path.
The two variants run interleaved (ABAB) and the medians are compared; the values and gradients are compared too.

Run: ``.venv/bin/python benchmarks/bench_varifold_cpu.py [--subdiv 5] [--threads 1] [--repeats 3]``.
Writes ``benchmarks/results/bench_varifold_cpu.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

log = logging.getLogger("bench_varifold_cpu")


def _unclamped_block(xa, nc, ac, ya, m, b, kern, sigma_n, folded):
    """The block of the torch backend without the clamp of the exponent."""
    import torch

    e = torch.bmm(xa, ya.transpose(1, 2))
    if torch.is_grad_enabled():
        k = e.exp()
        if not folded:
            k = k * kern.fn(torch.bmm(nc, m.transpose(1, 2)), sigma_n)
    else:
        k = e.exp_()
        if not folded:
            k.mul_(kern.fn(torch.bmm(nc, m.transpose(1, 2)), sigma_n))
    return (ac * torch.bmm(k, b[:, :, None])[..., 0]).sum(-1)


class _CheckpointedBlock:
    """The former gradient path: the unclamped block under activation checkpointing (autograd's backward)."""

    @staticmethod
    def apply(*args):
        from torch.utils.checkpoint import checkpoint

        return checkpoint(_unclamped_block, *args, use_reentrant=False)


@contextlib.contextmanager
def _unclamped():
    import geomot.losses.varifold as vmod

    saved = vmod._block, vmod._BlockGrad
    vmod._block, vmod._BlockGrad = _unclamped_block, _CheckpointedBlock
    try:
        yield
    finally:
        vmod._block, vmod._BlockGrad = saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subdiv", type=int, default=5, help="icosphere subdivisions (5 -> 20,480 faces)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kernels", default="binet,gaussian_oriented,linear")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "bench_varifold_cpu.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from geomot.io.synthetic import icosphere
    from geomot.losses.varifold import varifold_distance
    from geomot.structures import Mesh

    sphere = icosphere(args.subdiv, dtype=torch.float32)
    v, f = sphere.verts, sphere.faces
    v2 = v + 0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
    a = Mesh(v, f)

    def run(kernel: str, grad: bool, old: bool):
        vv = v2.clone().requires_grad_(grad)
        ctx = _unclamped() if old else contextlib.nullcontext()
        with ctx:
            t0 = time.perf_counter()
            d = varifold_distance(a, Mesh(vv, f), sigma=0.2, kernel=kernel, backend="torch")
            if grad:
                d.backward()
            dt = time.perf_counter() - t0
        return dt, float(d.detach()), (vv.grad if grad else None)

    rows = []
    for kernel in args.kernels.split(","):
        row: dict[str, object] = {"kernel": kernel, "faces": int(f.shape[0])}
        for grad in (False, True):
            tag = "grad" if grad else "value"
            times = {"unclamped": [], "clamped": []}
            res = {}
            for _ in range(args.repeats):  # ABAB
                for name, old in (("unclamped", True), ("clamped", False)):
                    dt, val, g = run(kernel, grad, old)
                    times[name].append(dt)
                    res[name] = (val, g)
            t_old, t_new = statistics.median(times["unclamped"]), statistics.median(times["clamped"])
            row[f"{tag}_unclamped_s"], row[f"{tag}_clamped_s"] = t_old, t_new
            row[f"{tag}_speedup"] = t_old / t_new
            row[f"{tag}_value_rel_diff"] = abs(res["clamped"][0] - res["unclamped"][0]) / abs(res["unclamped"][0])
            if grad:
                go, gn = res["unclamped"][1], res["clamped"][1]
                row["grad_rel_diff"] = float((gn - go).norm() / go.norm())
            log.info("%-18s %-5s unclamped %.3f s  clamped %.3f s  speed-up %.2fx", kernel, tag, t_old, t_new,
                     t_old / t_new)
        rows.append(row)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "faces": int(f.shape[0]), "sigma": 0.2,
                               "torch": torch.__version__, "rows": rows}, indent=1))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
