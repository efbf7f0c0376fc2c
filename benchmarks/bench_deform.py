"""Cost of one optimisation step of :func:`geomot.deform.fit` on fsaverage5 white -> pial (10,242 vertices).

Times, separately: the kernel field (10 Euler steps forward + backward), each data term (forward + backward),
the Laplacian regulariser, and whole steps of ``fit`` with its defaults (mean over ``--steps`` steps after one
warm-up step; the neighbour searches of the kernel field are counted). Reads the data in place.

    python benchmarks/bench_deform.py --threads 1 --steps 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import geomot
from geomot.deformation.fit import make_field
from geomot.deformation.integrate import integrate
from geomot.deformation.losses import DEFORM_REGULARIZERS, make_loss
from geomot.deformation.normalize import choose_frames
from geomot.structures import Mesh

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fsaverage5"


def _time(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    white = geomot.load_fsaverage5("white", root=DATA.resolve())
    pial = geomot.load_fsaverage5("pial", root=DATA.resolve())
    norm = choose_frames(white.verts, white.faces, pial.verts, pial.faces)
    x0, f = norm.source.apply(white.verts), white.faces
    tgt = Mesh(norm.target.apply(pial.verts), pial.faces)
    field = make_field("kernel", x0, f, seed=0)
    with torch.no_grad():
        field.momenta.normal_(std=0.02 * field.sigma, generator=torch.Generator().manual_seed(0))

    def field_step() -> None:
        field.zero_grad()
        integrate(field, x0, times=2, n_steps=10).points[-1].square().sum().backward()

    rows = {"kernel field, 10 Euler steps, fwd + bwd": _time(field_step, args.repeat)}
    gen = torch.Generator().manual_seed(0)
    for name in ("sw-varifold", "surface", "chamfer", "sw-varifold+surface"):
        fn = make_loss(name, int(f.shape[0]))
        x = x0.clone().requires_grad_()
        rows[f"data term {name}, fwd + bwd"] = _time(
            lambda fn=fn, x=x: fn(x, f, tgt, generator=gen, progress=0.5).backward(), args.repeat)
    x = x0.clone().requires_grad_()
    lap = DEFORM_REGULARIZERS.get("laplacian")
    rows["laplacian regulariser, fwd + bwd"] = _time(lambda: lap(x * 1.01, f, x0).backward(), args.repeat)
    res = geomot.deform.fit(white, pial, max_iter=args.steps + 1, metrics=False, progress=False)
    rows[f"fit step, defaults (mean of {args.steps + 1})"] = res.wall_time / res.n_steps
    print(f"threads: {torch.get_num_threads()}; vertices: {x0.shape[0]}; neighbour searches in the fit: "
          f"{res.field.n_searches}")
    for k, v in rows.items():
        print(f"  {k:48s} {v * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
