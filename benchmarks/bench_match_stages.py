"""Matching stages: the candidates + selection stages of ``geomot.match`` with and without the final
nearest-neighbour map of each sampled ZoomOut, in one process on the same inputs.

The candidates (:func:`geomot.correspondence.matching.spectral_candidates`) and the selection
(:func:`~geomot.correspondence.matching.select_initial`) use only the functional maps of their sampled ZoomOuts;
``zoomout(..., final_map=False)`` also computes the point map of the samples at the final size, the largest of
its nearest-neighbour searches, which they discard, and scans the bases for NaN / Inf on every call. ``old``: the
stages with ``zoomout(..., final_map=False).fmap_12`` patched in; ``new``: as shipped (``_zoomout_fmap``: no final
search, the bases checked once per stage). Both must give identical maps (checked with
``torch.equal`` on every candidate and on the selected map). Runs are interleaved (ABAB) and the ratio of the
medians is reported, with the number of nearest-neighbour searches of ``p2p_from_fmap`` in each.

Inputs: one pair of ``--data`` (default FAUST_r tr_reg_000 -> tr_reg_001), the defaults of ``MatchConfig``,
``--threads`` torch threads (2), eigenbases cached in ``--cache-dir``.

Usage: ``python benchmarks/bench_match_stages.py --data ../shared/data [--rounds 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path

import torch

from geomot.correspondence import matching, p2p
from geomot.correspondence.matching import candidates as cand_mod
from geomot.correspondence.matching import selection as sel_mod
from geomot.io.trimesh_formats import read_off

# the module (geomot.correspondence.zoomout is also the name of the function the package exports)
zoomout = importlib.import_module("geomot.correspondence.zoomout")


def _load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    raw = read_off(path)
    return torch.as_tensor(raw[0], dtype=torch.float64), torch.as_tensor(raw[1], dtype=torch.long)


def _old_zoomout_fmap(fmap_12, evecs1, evecs2, check_bases=True, **kw):  # the stages' call before
    return zoomout.zoomout(fmap_12, evecs1, evecs2, final_map=False, **kw).fmap_12, None


def _run(pair, cfg, variant: str) -> tuple[float, int, list[torch.Tensor]]:
    fn = _old_zoomout_fmap if variant == "old" else zoomout._zoomout_fmap
    cand_mod._zoomout_fmap = sel_mod._zoomout_fmap = fn
    calls = [0]
    knn = p2p.knn_indices

    def counted(x, y):
        calls[0] += 1
        return knn(x, y)

    p2p.knn_indices = counted  # p2p_from_fmap looks it up in its module
    try:
        t = time.perf_counter()
        cands = matching.spectral_candidates(pair, cfg)
        ext = matching.extrinsic_candidates(pair, cfg, cands.orientation)
        sel = matching.select_initial(pair, cands, ext, cfg)
        elapsed = time.perf_counter() - t
    finally:
        p2p.knn_indices = knn
        cand_mod._zoomout_fmap = sel_mod._zoomout_fmap = zoomout._zoomout_fmap
    return elapsed, calls[0], [c.fmap_12 for c in cands.candidates] + [sel.fmap_12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--source", default="FAUST_r/off/tr_reg_000.off")
    ap.add_argument("--target", default="FAUST_r/off/tr_reg_001.off")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = matching.MatchConfig()
    pair = matching.prepare(_load(args.data / args.source), _load(args.data / args.target), cfg,
                            cache_dir=args.cache_dir)
    times: dict[str, list[float]] = {"old": [], "new": []}
    calls: dict[str, int] = {}
    maps: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.rounds):
        for variant in ("old", "new"):
            elapsed, n_calls, fmaps = _run(pair, cfg, variant)
            times[variant].append(elapsed)
            calls[variant] = n_calls
            maps[variant] = fmaps
            print(f"{variant}: {elapsed:.2f} s, {n_calls} knn_indices calls", flush=True)
    identical = all(torch.equal(a, b) for a, b in zip(maps["old"], maps["new"], strict=True))
    med = {key: statistics.median(val) for key, val in times.items()}
    out = {
        "pair": [args.source, args.target],
        "threads": args.threads,
        "rounds": args.rounds,
        "stages": "spectral_candidates + extrinsic_candidates + select_initial",
        "seconds": times,
        "median_seconds": med,
        "knn_calls": calls,
        "speedup_old_over_new": med["old"] / med["new"],
        "identical_maps": identical,
        "torch": torch.__version__,
    }
    print(json.dumps({key: out[key] for key in ("median_seconds", "knn_calls", "speedup_old_over_new",
                                                  "identical_maps")}))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
