"""Match every pair of a dataset folder, score the maps against the ground truth and plot the PCK curve (a template).

A dataset folder holds shapes in ``DIR/off/`` and their ground truth in ``DIR/corres/`` (one 1-based ``.vts``
file per shape, line ``k`` of every file naming the same point), the layout of FAUST_r, SCAPE_r, TOSCA_r or
SMAL_r and of the shipped ``data/pair``. ``geomot.train.evaluate_dataset`` matches ordered pairs of it with the
training-free ``geomot.match`` (functional maps, ZoomOut, geodesic anchors, extrinsic candidates) or, with
``--checkpoint RUN_DIR`` (a run folder of ``geomot train matcher``), with a learned matcher, and scores each map
by its mean geodesic error: ``d_T(p2p(s_k), t_k) / sqrt(area(T))`` over the ground-truth points, x100. The script
prints a row per pair and the mean / median errors, and writes the per-pair results with their summary
(``evaluation.json``) and the mean PCK curve (share of points whose error is at most ``r``, ``pck.png``) to
``--out``.

Without ``--data`` it first builds a small folder in a temporary directory, so that it runs anywhere: three
shapes made from ``geomot.io.synthetic.bumpy_sphere`` (a sphere with five bumps of different sizes), two of them
bent and twisted by ``synthetic.bend_twist`` by different amounts, each with its vertices shuffled, and the exact
ground truth.

    python examples/match_a_folder.py                         # generated folder, 3 shapes of 1,000 vertices, 6 pairs
    python examples/match_a_folder.py --quick                 # 3 shapes of 400 vertices, 2 pairs drawn
    python examples/match_a_folder.py --data data/pair        # the shipped pair (2 shapes of 2,000 vertices)
    python examples/match_a_folder.py --data ../shared/data/FAUST_r --pairs 20 --jobs 2
    python examples/match_a_folder.py --data DIR --checkpoint runs/matcher      # a learned matcher

A training-free match costs a few seconds a pair of a thousand vertices on one CPU core (the Laplacian
eigenbases dominate); ``--jobs`` spreads pairs over processes, ``--threads 1`` is often fastest on a CPU whose
cores are busy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import geomot
from geomot.io import synthetic
from geomot.structures import Mesh
from geomot.train import evaluate_dataset, summarize

ROOT = Path(__file__).resolve().parents[1]

#: (bend, twist, shuffle seed) of the generated shapes; the first is the undeformed bumpy sphere
SHAPES = ((None, None, 0), (0.12, 0.12, 1), (0.08, -0.15, 2))


def make_folder(root: Path, n_verts: int) -> Path:
    """Write ``root/off/bumps_k.off`` and ``root/corres/bumps_k.vts`` for the shapes of :data:`SHAPES`.

    Shape ``k`` is the bumpy sphere, deformed, with its vertices shuffled: template vertex ``i`` becomes vertex
    ``inv_k[i]`` of shape ``k``, so line ``i`` of every ``.vts`` file (``inv_k[i] + 1``) names the same point.
    """
    (root / "off").mkdir(parents=True, exist_ok=True)
    (root / "corres").mkdir(parents=True, exist_ok=True)
    template = synthetic.bumpy_sphere(n_verts)
    for k, (bend, twist, seed) in enumerate(SHAPES):
        verts = template.verts if bend is None else synthetic.bend_twist(template.verts, bend=bend, twist=twist)
        perm = np.random.default_rng(seed).permutation(n_verts)  # new vertex j is template vertex perm[j]
        inv = np.empty_like(perm)
        inv[perm] = np.arange(n_verts)
        perm_t, inv_t = torch.as_tensor(perm), torch.as_tensor(inv)
        geomot.save(Mesh(verts[perm_t], inv_t[template.faces]), root / "off" / f"bumps_{k}.off")
        geomot.io.write_vts(root / "corres" / f"bumps_{k}.vts", inv_t)
    return root


def plot_pck(summary: dict, path: Path, label: str) -> None:
    """The mean PCK curve, drawn with a matplotlib ``Figure`` (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.8), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(summary["pck_radii"], summary["pck"], marker=".", label=f"{label} (mean error {summary['mean']:.2f})")
    ax.set_xlabel("geodesic error / sqrt(area)")
    ax.set_ylabel("share of ground-truth points")
    ax.set_title(f"PCK over {summary['n_pairs']} pairs")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path)


def evaluate(data: Path, args: argparse.Namespace) -> dict:
    results = evaluate_dataset(data, checkpoint=args.checkpoint, n_pairs=args.pairs, seed=args.seed, jobs=args.jobs,
                               adapt_steps=args.adapt_steps, progress=True)
    print(f"{'source':>14} {'target':>14} {'error x100':>10} {'seconds':>8}")
    for r in results:
        print(f"{r.source:>14} {r.target:>14} {r.error:10.2f} {r.seconds:8.2f}")
    summary = summarize(results)
    label = "learned" if args.checkpoint else "training-free"
    print(f"{label}, {summary['n_pairs']} pairs: mean geodesic error {summary['mean']:.2f}, median "
          f"{summary['median']:.2f}, max {summary['max']:.2f} (x100); {100 * summary['share_above_10']:.0f} % of "
          f"pairs above 10; {summary['median_seconds']:.2f} s a pair (median)")

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"data": str(args.data or "generated"), "checkpoint": args.checkpoint, "summary": summary,
              "pairs": [asdict(r) for r in results]}
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=1))
    plot_pck(summary, args.out / "pck.png", label)
    print(f"wrote {args.out / 'evaluation.json'} and {args.out / 'pck.png'}")
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (DIR/off + DIR/corres); default: generated")
    ap.add_argument("--checkpoint", default=None, metavar="RUN_DIR", help="a learned matcher (geomot train matcher)")
    ap.add_argument("--adapt-steps", type=int, default=0, help="test-time adaptation steps of a learned matcher")
    ap.add_argument("--pairs", type=int, default=None, help="evaluate this many ordered pairs, drawn with --seed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vertices", type=int, default=1000, help="vertices of the generated shapes")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "match_a_folder")
    ap.add_argument("--quick", action="store_true", help="generated shapes of 400 vertices, 2 pairs")
    args = ap.parse_args(argv)
    if args.quick:
        args.vertices, args.pairs = 400, args.pairs or 2
    if args.threads:
        torch.set_num_threads(args.threads)  # a process-wide setting: the application's choice

    if args.data is not None:
        evaluate(args.data, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "bumps", args.vertices)
        print(f"generated {len(SHAPES)} shapes of {args.vertices} vertices in {folder}")
        evaluate(folder, args)


if __name__ == "__main__":
    main()
