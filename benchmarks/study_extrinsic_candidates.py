"""Study of the extrinsic candidates of ``geomot.match`` against the ground truth (SMAL_r by default).

For every unordered pair of the dataset (or ``--pairs N`` of them, drawn with ``random.Random(--seed)``) it
repeats what ``match`` does with the extrinsic candidates and scores each step against the ground truth:

1. the 8 principal-axes hypotheses (``frame_hypotheses``), each followed by the smooth non-rigid ICP of 500
   source samples onto 1,000 target samples (``nonrigid_icp``, the settings of ``match``). Each hypothesis's
   deformation is applied to every source vertex and snapped to the closest target vertex; its error is the mean
   Euclidean distance, at unit area, between those images and the true targets of the ground-truth vertices. A
   hypothesis is *right* when its error is within 0.1 of the pair's best. Reported: how often a right one is
   among the first 1, 2, 3 by Chamfer distance (``match`` keeps 2);
2. the ``--kept`` first (2, as ``match``) are refined on 1,000 samples
   (``anchor_refine``, as in ``match``) and scored by the deformation residual, by that residual divided by the
   share of distinct target vertices among the images of the samples (coverage), by the Chamfer order, and by the
   pick of ``match`` (the residual weighted by the error on the areas of geodesic balls, ``_pick_extrinsic``).
   Reported: for each key, the mean error (same proxy, on the ground-truth vertices among the samples) of the
   candidate it picks and the number of pairs where it picks one worse than the best kept by more than 0.2 (a
   body aligned head to tail scores about 0.5).

Errors here are Euclidean proxies at unit area (not the geodesic x100 of ``bench_matching.py``): they only serve
to tell a right alignment from a wrong one. Results: ``docs/notes/matching-development.md`` (2026-11-26).

Run (split over processes with ``--part``, then merge):
``python benchmarks/study_extrinsic_candidates.py --part 0 --parts 2 --jsonl out/ext0.jsonl`` (and part 1), then
``python benchmarks/study_extrinsic_candidates.py --summarise out/ext0.jsonl out/ext1.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def _prepare(ds, name: str, cache: dict, cache_dir: str | None):
    from geomot.correspondence import pipeline as P
    from geomot.correspondence.anchors import shape_graph
    from geomot.ops.spectral import spectral_basis

    if name not in cache:
        v, f, _ = P._as_shape(ds.load(name, dtype=torch.float64), name)
        v = P._unit_area(v, f)
        f = P._outward(v, f)
        basis = spectral_basis(v, f, k=140, cache_dir=cache_dir)
        samples = P.farthest_point_sampling(v, min(1000, v.shape[0]), start=0).long()
        cache[name] = (v, f, basis, samples, shape_graph(v, f))
    return cache[name]


def study_pair(ds, a: str, b: str, cache: dict, cache_dir: str | None = None, n_kept: int = 2) -> dict:
    """Scores of the 8 hypotheses and of the ``n_kept`` kept candidates of the pair ``a`` (source) -> ``b``
    (target)."""
    from geomot.correspondence import anchor_refine, fmap_from_p2p
    from geomot.correspondence import pipeline as P

    v2, f2, b2, s2, g2 = _prepare(ds, a, cache, cache_dir)
    v1, f1, b1, _, g1 = _prepare(ds, b, cache, cache_dir)
    gs, gt = (x.long() for x in ds.ground_truth(a, b))
    aligned = P._extrinsic_alignments(v1, b1, v2, b2, s2)  # the alignments of match, all 8 kept
    hyps = []
    for h in range(aligned.hyp.shape[0]):
        images = aligned.images(h)  # every source vertex
        hyps.append({"cost": float(aligned.fit.cost[h]), "err": float((v1[images[gs]] - v1[gt]).norm(dim=1).mean())})
    # the kept ones, refined on the samples as in match
    where = torch.full((v2.shape[0],), -1, dtype=torch.long)
    where[s2] = torch.arange(s2.shape[0])
    on_samples = where[gs] >= 0
    gs_i, gt_i = where[gs[on_samples]], gt[on_samples]
    e1f, e2f = b1.evecs.float(), b2.evecs.float()
    phi = e2f[s2, : P._DEFORMATION_K]
    kept, feats, images_kept = [], None, []
    for h in aligned.fit.cost.argsort()[:n_kept].tolist():
        images = aligned.images(h, s2)
        C = fmap_from_p2p(images, e1f[:, :64], e2f[s2, :64])
        ref = anchor_refine(C, e1f, e2f, b1.mass.float(), b2.mass.float(), v1, f1, v2, f2, n_anchors=128, max_iter=2,
                            graph1=g1, graph2=g2, samples2=s2, source_features=feats)
        feats = ref.source_features
        p = ref.p2p_21
        images_kept.append(p)
        kept.append({"residual": P._deformation_residual(v2[s2].float(), v1[p].float(), phi),
                     "coverage": torch.unique(p).numel() / p.numel(),
                     "err": float((v1[p[gs_i]] - v1[gt_i]).norm(dim=1).mean())})
    # the pick of match (residual, weighted by the geodesic-ball error when the candidates disagree on the balls)
    pick = P._pick_extrinsic(v1, f1, v2, f2, g1, g2, s2, [c["residual"] for c in kept], images_kept)
    for i, c in enumerate(kept):
        c["match_pick"] = i == pick
    return {"source": a, "target": b, "hypotheses": hyps, "kept": kept}


def summarise(rows: list[dict]) -> dict:
    out: dict = {"pairs": len(rows)}
    for k in (1, 2, 3):
        hit = 0
        for r in rows:
            errs = [h["err"] for h in r["hypotheses"]]
            order = sorted(range(len(errs)), key=lambda i: r["hypotheses"][i]["cost"])
            hit += any(errs[i] < min(errs) + 0.1 for i in order[:k])
        out[f"right_in_first_{k}_by_chamfer"] = hit
    keys = {"residual": lambda c, i: c["residual"], "residual/coverage": lambda c, i: c["residual"] / c["coverage"],
            "chamfer": lambda c, i: i, "oracle": lambda c, i: c["err"]}
    if all("match_pick" in c for r in rows for c in r["kept"]):
        keys["match (residual x ball areas)"] = lambda c, i: not c["match_pick"]
    for name, key in keys.items():
        total, worse = 0.0, 0
        for r in rows:
            kept = r["kept"]
            pick = min(range(len(kept)), key=lambda i: key(kept[i], i))
            total += kept[pick]["err"]
            worse += kept[pick]["err"] > min(c["err"] for c in kept) + 0.2
        out[f"kept_{name}"] = {"mean_err": total / len(rows), "worse_by_0.2": worse}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--dataset", default="SMAL_r")
    ap.add_argument("--pairs", type=int, default=0, help="pairs to draw (0: all unordered pairs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", type=int, default=0)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--kept", type=int, default=2, help="candidates kept, as match's n_extrinsic (default 2)")
    ap.add_argument("--cache-dir", default=None, help="spectral cache folder (geomot.ops.spectral_basis)")
    ap.add_argument("--jsonl", default=str(ROOT / "out" / "study_extrinsic.jsonl"))
    ap.add_argument("--summarise", nargs="+", metavar="JSONL", help="merge finished runs and print the summary")
    args = ap.parse_args(argv)
    if args.summarise:
        rows = [json.loads(line) for path in args.summarise for line in open(path)]
        print(json.dumps(summarise(rows), indent=1))
        return 0
    torch.set_num_threads(1)
    from geomot.io import ShapeDataset

    folder = Path(args.data) / args.dataset
    if not folder.is_dir():
        print(f"no dataset at {folder}", file=sys.stderr)
        return 2
    ds = ShapeDataset(folder)
    pairs = sorted(ds.pairs())
    if args.pairs:
        pairs = sorted(random.Random(args.seed).sample(pairs, min(args.pairs, len(pairs))))
    Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    rows = []
    with open(args.jsonl, "w") as out:
        for i, (a, b) in enumerate(pairs):
            if i % args.parts != args.part:
                continue
            t0 = time.perf_counter()
            row = study_pair(ds, a, b, cache, args.cache_dir, args.kept)
            row["seconds"] = time.perf_counter() - t0
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
    print(json.dumps(summarise(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
