"""Matching a whole dataset folder and scoring it against its ground truth (``geomot evaluate``).

:func:`evaluate_dataset` matches ordered pairs of the shapes of a dataset folder (``DIR/off/`` + ``DIR/corres/``,
:class:`geomot.io.ShapeDataset`) with the training-free :func:`geomot.correspondence.match` or a learned matcher,
and scores each map by its mean geodesic error (:func:`geomot.metrics.geodesic_error`: exact geodesics on the
target, normalised by the square root of its area). Pairs can be spread over worker processes (``jobs``) and over
machines: ``shard=(i, n)`` keeps every ``n``-th pair starting at ``i`` (under ``torchrun`` the rank and world size
are used), so a scheduler can run the shards apart and :func:`merge_evaluations` joins their JSON files.

The percentage of correct keypoints (PCK, Kim et al. 2011) of a set of maps is the share of ground-truth points
whose image lies within a geodesic radius ``r`` of the true one, as a function of ``r`` (:func:`pck_curve`).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geomot._core.checks import check_int
from geomot._core.errors import ValidationError

__all__ = ["PairResult", "evaluate_dataset", "merge_evaluations", "pck_curve", "select_pairs", "summarize"]

#: radii of the PCK curve (geodesic distance / sqrt(area))
PCK_RADII = tuple(i / 100 for i in range(0, 26))


@dataclass(frozen=True)
class PairResult:
    """Score of one matched pair.

    Attributes:
        source, target: shape names.
        error: mean geodesic error x100 (normalised by ``sqrt(area)`` of the target).
        seconds: wall time of the match (operators included).
        pck: share of ground-truth points within each radius of :data:`PCK_RADII`.
    """

    source: str
    target: str
    error: float
    seconds: float
    pck: tuple[float, ...]


def select_pairs(names: Sequence[str], *, n_pairs: int | None = None, seed: int = 0,
                 shard: tuple[int, int] = (0, 1)) -> list[tuple[str, str]]:
    """All ordered pairs of distinct names (or ``n_pairs`` of them drawn with ``random.Random(seed)``), sorted, then
    the shard ``i::n`` of them."""
    pairs = [(a, b) for a in names for b in names if a != b]
    if n_pairs is not None and check_int(n_pairs, "pairs", at_least=1) < len(pairs):
        pairs = random.Random(seed).sample(pairs, n_pairs)
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise ValidationError(f"shard: expected (i, n) with 0 <= i < n, got {shard!r}")
    return sorted(pairs)[i::n]


def pck_curve(distances: torch.Tensor, radii: Sequence[float] = PCK_RADII) -> tuple[float, ...]:
    """Share of ``distances`` (normalised geodesic errors of the ground-truth points) at most each radius."""
    d = distances.reshape(-1).double()
    return tuple(float((d <= r).double().mean()) for r in radii)


def _pair_errors(p2p_21: torch.Tensor, target: Any, gt: Any) -> torch.Tensor:
    from geomot.metrics.geodesic import geodesic_error

    return geodesic_error(p2p_21, target, gt.src_idx, gt.tgt_idx, reduction="none")


def _worker(job: tuple[str, str, str, str | None, int, int]) -> PairResult:
    root, a, b, checkpoint, adapt_steps, threads = job
    if threads:
        # worker processes run one pair each; the pool divides the cores between them
        torch.set_num_threads(threads)
    return _match_pair(Path(root), a, b, _model(checkpoint), adapt_steps)


_MODELS: dict[str, Any] = {}


def _model(checkpoint: str | None) -> Any:
    if checkpoint is None:
        return None
    if checkpoint not in _MODELS:
        from geomot.train.matcher import load_matcher

        _MODELS[checkpoint] = load_matcher(checkpoint)[0]
    return _MODELS[checkpoint]


def _match_pair(root: Path, a: str, b: str, model: Any, adapt_steps: int) -> PairResult:
    from geomot.correspondence.pipeline import match
    from geomot.io.dataset import ShapeDataset

    ds = ShapeDataset(root)
    src, tgt = ds.load(a, dtype=torch.float64), ds.load(b, dtype=torch.float64)
    gt = ds.ground_truth(a, b)
    t0 = time.perf_counter()
    if model is None:
        res = match(src, tgt)
    else:
        res = match(src, tgt, model=model, adapt_steps=adapt_steps)
    seconds = time.perf_counter() - t0
    d = _pair_errors(res.p2p_21, tgt, gt)
    return PairResult(a, b, 100 * float(d.mean()), seconds, pck_curve(d))


def evaluate_dataset(
    data: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    n_pairs: int | None = None,
    seed: int = 0,
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    adapt_steps: int = 0,
    progress: bool = True,
) -> list[PairResult]:
    """Match ordered pairs of a dataset folder and score them (see the module docstring).

    Args:
        data: a dataset folder with ``off/`` (or the shapes directly) and ``corres/`` ground truth.
        checkpoint: a learned matcher's run folder or checkpoint (None: the training-free ``match``).
        n_pairs: evaluate that many pairs drawn with ``seed`` (None: all ordered pairs).
        seed: seed of the draw.
        jobs: worker processes (each with ``cpu_count / jobs`` torch threads); 1 runs in this process.
        shard: ``(i, n)``: keep every ``n``-th pair from the ``i``-th; None uses ``torchrun``'s ``RANK`` /
            ``WORLD_SIZE`` when set, else ``(0, 1)``.
        adapt_steps: test-time adaptation steps of a learned matcher.
        progress: a tqdm bar.

    Returns:
        one :class:`PairResult` per pair of this shard, in pair order.
    """
    from tqdm.auto import tqdm

    from geomot.io.dataset import ShapeDataset

    ds = ShapeDataset(data)
    names = [n for n in ds.names if ds.has_correspondence(n)]
    if len(names) < 2:
        raise ValidationError(f"data: {data} has {len(names)} shape(s) with a corres/ ground truth; need two")
    if shard is None:
        shard = (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    pairs = select_pairs(names, n_pairs=n_pairs, seed=seed, shard=shard)
    jobs = check_int(jobs, "jobs", at_least=1)
    ckpt = None if checkpoint is None else str(checkpoint)
    if ckpt is not None:
        _model(ckpt)  # fail early on a bad checkpoint
    if jobs == 1:
        model = _model(ckpt)
        return [_match_pair(Path(data), a, b, model, adapt_steps)
                for a, b in tqdm(pairs, desc="pairs", disable=not progress)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    work = [(str(data), a, b, ckpt, adapt_steps, threads) for a, b in pairs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(tqdm(pool.map(_worker, work), total=len(work), desc="pairs", disable=not progress))


def summarize(results: Sequence[PairResult]) -> dict[str, Any]:
    """Mean / median / max error, share of pairs above 10, median seconds and the mean PCK curve."""
    if not results:
        raise ValidationError("results: no pairs to summarise")
    errs = [r.error for r in results]
    return {
        "n_pairs": len(results), "mean": statistics.fmean(errs), "median": statistics.median(errs),
        "max": max(errs), "share_above_10": sum(e > 10 for e in errs) / len(errs),
        "median_seconds": statistics.median(r.seconds for r in results),
        "pck_radii": list(PCK_RADII),
        "pck": [statistics.fmean(r.pck[i] for r in results) for i in range(len(PCK_RADII))],
    }


def merge_evaluations(parts: Sequence[Sequence[dict[str, Any]]]) -> list[PairResult]:
    """Join the ``"pairs"`` lists of several shards' JSON files (dicts as written by ``geomot evaluate``)."""
    seen: dict[tuple[str, str], PairResult] = {}
    for rows in parts:
        for r in rows:
            seen[(r["source"], r["target"])] = PairResult(r["source"], r["target"], float(r["error"]),
                                                          float(r["seconds"]), tuple(r["pck"]))
    return [seen[k] for k in sorted(seen)]
