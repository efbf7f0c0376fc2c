"""The learned matcher on held-out shapes: train on some shapes of a dataset, report geodesic errors on others.

Training reads only the training shapes' meshes (no correspondence); evaluation uses the dataset's ``corres/``
ground truth on pairs of held-out shapes (``geomot.metrics.geodesic_error``, x100, normalised by the square root of
the target's area; the protocol of ``benchmarks/bench_matching.py``). Data are read in place from
``../shared/data``; the run folder (checkpoint, operator cache) goes to ``out/`` (ignored by git): models trained
on FAUST or SMAL may not be redistributed.

Default split (FAUST_r, shapes ``tr_reg_000-079`` = subjects 0-7, ten poses each): train on subjects 0-5
(``000-059``), evaluate on pairs among subjects 6-7 (``060-079``: same- and cross-subject pairs). SMAL_r:
``--dataset SMAL_r --held-out 4``: every fourth file held out.

``--eval-data DIR`` evaluates on another dataset folder (``off/`` + ``corres/``, for instance a re-discretised
copy written by ``benchmarks/make_robust_set.py``): pairs among its shapes whose names are in the held-out split.

Run: ``python benchmarks/bench_learned_matching.py [--dataset FAUST_r] [--minutes 60] [--pairs 40]
[--adapt-steps 0] [--anchor-iterations 1] [--run out/learned_faust] [--skip-training]``. Writes
``benchmarks/results/learned_matching_<dataset>.json`` (or ``--json``); a ``training_free`` comparison of an
earlier result on the same pairs is carried over.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def split(dataset: str, names: list[str], held_out: int) -> tuple[list[str], list[str]]:
    if dataset == "FAUST_r":
        test = [n for n in names if 60 <= int(n[-3:]) < 80]
    else:
        test = [n for i, n in enumerate(names) if i % held_out == held_out - 1]
    return [n for n in names if n not in test], test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="FAUST_r")
    ap.add_argument("--held-out", type=int, default=4, help="non-FAUST datasets: every N-th file is held out")
    ap.add_argument("--minutes", type=float, default=60.0, help="training budget (default: 60)")
    ap.add_argument("--epochs", type=int, default=1000, help="epoch cap (the budget usually stops first)")
    ap.add_argument("--pairs", type=int, default=40, help="held-out pairs evaluated (default: 40)")
    ap.add_argument("--adapt-steps", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", default="wks", choices=("wks", "xyz"), help="input features of the model (default: wks)")
    ap.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    ap.add_argument("--augment", default="none", choices=("none", "heading", "so3"))
    ap.add_argument("--run", default=None, help="run folder (default: out/learned_<dataset>)")
    ap.add_argument("--skip-training", action="store_true", help="evaluate the run folder's checkpoint as it is")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--headings", type=int, default=1, help="source headings tried (input xyz; default: 1)")
    ap.add_argument("--anchor-iterations", type=int, default=1, help="geodesic-anchor steps after ZoomOut")
    ap.add_argument("--eval-data", default=None, help="evaluate on this dataset folder (default: the dataset's)")
    ap.add_argument("--json", default=None, help="output (default: benchmarks/results/learned_matching_<dataset>.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from geomot.io import ShapeDataset
    from geomot.metrics import geodesic_error
    from geomot.train.matcher import MatcherConfig, load_matcher, train_matcher

    ds = ShapeDataset(DATA / args.dataset)
    train, test = split(args.dataset, ds.names, args.held_out)
    run = Path(args.run or ROOT / "out" / f"learned_{args.dataset}")
    config = MatcherConfig(seed=args.seed, input=args.input, lr_schedule=args.lr_schedule, augment=args.augment)
    t0 = time.perf_counter()
    if not args.skip_training:
        train_matcher([ds.path(n) for n in train], run, config=config, epochs=args.epochs, max_minutes=args.minutes,
                      resume=args.resume, progress=False)
    train_s = time.perf_counter() - t0
    model, config = load_matcher(run)
    if args.eval_data:  # the held-out shapes present in another folder (a re-discretised copy)
        ds = ShapeDataset(Path(args.eval_data))
        test = [n for n in ds.names if n in set(test)]
    pairs = [(a, b) for a in test for b in test if a != b]
    pairs = sorted(random.Random(args.seed).sample(pairs, min(args.pairs, len(pairs))))
    rows = []
    for a, b in pairs:
        src, tgt = ds.load(a, dtype=torch.float64), ds.load(b, dtype=torch.float64)
        gs, gt = ds.ground_truth(a, b)
        t1 = time.perf_counter()
        res = model.match(src, tgt, adapt_steps=args.adapt_steps, anchor_iterations=args.anchor_iterations,
                          headings=args.headings,
                          cache_dir=run / "operators", generator=torch.Generator().manual_seed(0))
        secs = time.perf_counter() - t1
        err = 100 * float(geodesic_error(res.p2p_21, tgt, gs, gt))
        rows.append({"source": a, "target": b, "error": err, "seconds": secs,
                     "stages": {k: round(v, 3) for k, v in res.timings.items()}})
        logging.info("%s -> %s: %.2f (%.1f s)", a, b, err, secs)
    errs = [r["error"] for r in rows]
    log = json.loads((run / "log.json").read_text())
    if args.skip_training:  # the training time of the run, from its log
        train_s = sum(row["seconds"] for row in log)
    out = {
        "dataset": args.dataset, "eval_data": args.eval_data, "train_shapes": len(train), "test_shapes": len(test),
        "n_pairs": len(rows),
        "config": config.__dict__, "epochs_done": len(log), "train_seconds": train_s, "train_log": log,
        "adapt_steps": args.adapt_steps, "anchor_iterations": args.anchor_iterations, "headings": args.headings,
        "mean": statistics.fmean(errs), "median": statistics.median(errs),
        "share_above_10": sum(e > 10 for e in errs) / len(errs), "max": max(errs),
        "median_seconds": statistics.median(r["seconds"] for r in rows),
        "machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"), "pairs": rows,
    }
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / f"learned_matching_{args.dataset}.json"
    if path.exists():  # a comparison added to an earlier result on the same pairs is kept
        earlier = json.loads(path.read_text())
        if "training_free" in earlier and [(r["source"], r["target"]) for r in earlier["pairs"]] == pairs:
            out["training_free"] = earlier["training_free"]
    path.write_text(json.dumps(out, indent=1))
    print(f"{args.dataset}: {len(rows)} held-out pairs, mean {out['mean']:.2f}, median {out['median']:.2f}, "
          f"max {out['max']:.2f}, {out['median_seconds']:.2f} s a pair; wrote {path}")


if __name__ == "__main__":
    main()
