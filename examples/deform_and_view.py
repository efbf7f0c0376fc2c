"""Fit a diffeomorphic deformation of a template onto a target, then write a GIF and an offline HTML viewer.

The template is the shipped unit sphere (``data/icosphere.off``, 642 vertices) and the target the shipped bean
(``data/blob.off``); ``--source`` / ``--target`` take any two meshes ``geomot.load`` reads. ``geomot.deform.fit``
integrates the template's vertices along a time-dependent kernel velocity field (a neural ODE whose flow is a
diffeomorphism) and fits the field with Adam; by default the data term is the exact point-to-surface distance
with a Laplacian and a decaying displacement regulariser (``docs/deformation.md``), ``--loss sw-varifold`` uses
the sliced-Wasserstein distance between the surfaces' oriented varifolds instead.

It prints the surface metrics before and after (ASSD, 90th-percentile Hausdorff HD90, both in the target's
units) and the most self-intersecting faces over the trajectory, and writes to ``--out``:

* ``deform.npz``: the trajectory (``verts (T, V, 3)``, ``faces (F, 3)``, ``times (T,)``, ``loss_history``), the
  file ``geomot deform`` writes and ``geomot view`` reads;
* ``deform.gif``: the animation, coloured by the displacement ``|x_t - x_0|``;
* ``deform.html``: one self-contained page (no network) with a time slider, a play button and the target in
  translucent grey;
* ``last.png``: the last frame.

Rendering runs off-screen (no window, no X server needed; ``docs/visualisation.md``).

    python examples/deform_and_view.py                 # fit's default schedule (147 steps here), ~1 min on one core
    python examples/deform_and_view.py --quick         # 20 steps of an 8-step Euler flow, ~15 s
    python examples/deform_and_view.py --loss sw-varifold --max-iter 200
    geomot view out/deform_and_view/deform.npz         # the same trajectory in a window, with a time slider

``--threads 1`` is often fastest on a CPU whose cores are busy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import geomot
from geomot import viz
from geomot.metrics import surface_metrics

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=ROOT / "data" / "icosphere.off", help="the template")
    ap.add_argument("--target", type=Path, default=ROOT / "data" / "blob.off")
    ap.add_argument("--loss", default="surface", help="data term: surface, sw-varifold, chamfer, ... or a+b")
    ap.add_argument("--max-iter", type=int, default=None, help="optimisation steps (default: fit's, by mesh size)")
    ap.add_argument("--time-steps", type=int, default=20, help="Euler steps of the flow")
    ap.add_argument("--frames", type=int, default=None, help="frames of the GIF (default: viz's, at least 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "deform_and_view")
    ap.add_argument("--quick", action="store_true", help="20 steps of an 8-step flow, a GIF of 10 frames")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_iter, args.time_steps, args.frames = args.max_iter or 20, 8, args.frames or 10
    if args.threads:
        torch.set_num_threads(args.threads)  # a process-wide setting: the application's choice

    source = geomot.load(args.source, dtype=torch.float64)
    target = geomot.load(args.target, dtype=torch.float64)
    before = surface_metrics(source, target)
    print(f"{args.source.name} ({source.verts.shape[0]} vertices) -> {args.target.name} "
          f"({target.verts.shape[0]} vertices): ASSD {before.assd:.4f}, HD90 {before.hd90:.4f} before")

    # dx/dt = v(x, t) on the template's vertices; seeded, so two runs on one machine give the same result
    res = geomot.deform.fit(source, target, loss=args.loss, max_iter=args.max_iter, n_time_steps=args.time_steps,
                            seed=args.seed, progress=True)
    m = res.metrics
    print(f"after {res.n_steps} steps ({res.wall_time:.1f} s): ASSD {m.assd:.4f}, HD90 {m.hd90:.4f}, "
          f"self-intersecting faces (max over {len(res.frame_self_intersections)} frames) "
          f"{max(res.frame_self_intersections)}, flipped faces {m.flipped_faces}")

    args.out.mkdir(parents=True, exist_ok=True)
    npz = geomot.deform.save_trajectory(args.out / "deform.npz", res.trajectory, source.faces, res.times,
                                        loss_history=res.loss_history)
    shown = viz.show_deformation(res, target=target, animation=args.out / "deform.gif", html=args.out / "deform.html",
                                 n_frames=args.frames, title=f"{args.source.stem} -> {args.target.stem}")
    viz.show_deformation(res, time=1.0, screenshot=args.out / "last.png")
    for path in (npz, *shown.files, args.out / "last.png"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
