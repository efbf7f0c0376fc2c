"""``geomot evaluate [RUN_DIR] --data DIR``: match the pairs of a dataset folder and score them.

Matches ordered pairs of the shapes of ``DIR`` (``off/`` + ``corres/``) with a learned matcher (``RUN_DIR``) or the
training-free pipeline (no ``RUN_DIR``), and writes the geodesic error of every pair, their summary and the mean PCK
curve to ``--out`` (JSON) and a PCK picture to ``--plot`` (PNG). ``--jobs J`` spreads pairs over J processes;
``--shard i/n`` (or ``torchrun``'s rank and world size) keeps one share of the pairs, and ``--merge`` joins the
JSON files of the shards.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from geomot._core.errors import ValidationError
from geomot.train.evaluate import evaluate_dataset, merge_evaluations, summarize

__all__ = ["add_parser"]


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise ValidationError(f"--shard: expected i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValidationError(f"--shard: expected 0 <= i < n, got {text!r}")
    return i, n


def _plot(summary: dict, path: Path, label: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no backend is selected, nothing global changes

    fig = Figure(figsize=(4.5, 3.5), dpi=120)
    ax = fig.add_subplot()
    ax.plot(summary["pck_radii"], summary["pck"], label=f"{label} (mean {summary['mean']:.2f})")
    ax.set_xlabel("geodesic error / sqrt(area)")
    ax.set_ylabel("share of points")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def _run(args: argparse.Namespace) -> int:
    if args.merge:
        results = merge_evaluations([json.loads(Path(p).read_text())["pairs"] for p in args.merge])
    else:
        if args.data is None:
            raise ValidationError("--data: required (or --merge SHARD.json ...)")
        results = evaluate_dataset(args.data, checkpoint=args.run, n_pairs=args.pairs, seed=args.seed,
                                   jobs=args.jobs, shard=_shard(args.shard), adapt_steps=args.adapt_steps,
                                   progress=not args.quiet)
    summary = summarize(results)
    out = {"data": args.data, "checkpoint": args.run, "summary": summary, "pairs": [asdict(r) for r in results]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{summary['n_pairs']} pairs: mean geodesic error {summary['mean']:.2f}, median {summary['median']:.2f}, "
          f"max {summary['max']:.2f} (x100), {summary['median_seconds']:.2f} s a pair; wrote {args.out}")
    if args.plot:
        _plot(summary, Path(args.plot), "learned" if args.run else "training-free")
        print(f"wrote {args.plot}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="match the pairs of a dataset folder and report geodesic errors",
        description="Match ordered pairs of the shapes of a dataset folder (DIR/off + DIR/corres) with a learned "
        "matcher (RUN_DIR) or the training-free pipeline, and report mean geodesic errors (x100, normalised by "
        "sqrt(target area)) and the PCK curve.",
    )
    p.add_argument("run", nargs="?", default=None, metavar="RUN_DIR",
                   help="run folder or checkpoint of geomot train matcher (default: the training-free match)")
    p.add_argument("--data", default=None, metavar="DIR", help="dataset folder with off/ and corres/")
    p.add_argument("--pairs", type=int, default=None, metavar="N",
                   help="evaluate N pairs drawn at random (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair draw (default: 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="worker processes (default: 1)")
    p.add_argument("--shard", default=None, metavar="i/n",
                   help="keep every n-th pair from the i-th (default: torchrun's RANK/WORLD_SIZE, else all)")
    p.add_argument("--adapt-steps", type=int, default=0, metavar="N",
                   help="test-time adaptation steps of a learned matcher (default: 0)")
    p.add_argument("--merge", nargs="+", default=None, metavar="SHARD.json", help="join the JSON files of shards")
    p.add_argument("--out", default="evaluation.json", help="JSON output (default: evaluation.json)")
    p.add_argument("--plot", default=None, metavar="PCK.png", help="write the PCK curve as a PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    return p
