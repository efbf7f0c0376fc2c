"""Speed of the training-free ``geomot.match`` on FAUST_r pairs, per stage, against an earlier checkout of geomot.

Library code cannot be timed against its own past in one process, so two long-lived worker processes run the
same script in ``--worker`` mode: ``new`` imports geomot from this repository, ``base`` from ``--base`` (a
``git worktree`` of an earlier commit; omit it to time ``new`` alone). The driver sends them the same pairs one
at a time, alternating which goes first (ABBA), so that the load of the machine weighs on both alike; the
workers never run at the same time. Each worker times the shipped ``geomot.correspondence.match`` with its
stages (``prepare``, ``spectral_candidates``, ``extrinsic_candidates``, ``select_initial``, ``refine_map``,
``polish``) wrapped to record wall and CPU (``time.process_time``, all threads) seconds, and returns the maps;
the driver checks that both maps are identical (vertex for vertex and bit for bit in the functional map).

Inputs: ``--pairs N`` FAUST_r pairs among shapes 000-079 drawn with ``random.Random(--seed)`` from the sorted
list of unordered pairs (as ``bench_matching.py``), read in place from ``--data``; the defaults of ``MatchConfig``;
eigenbases cached in ``--cache-dir`` (computed before timing, so ``prepare`` times the cache read and the graphs;
``--no-cache`` times the eigensolver too); ``--threads`` torch thread counts, each run over all pairs; one
untimed warm-up match per worker (imports, compiled kernels) on the first pair. Records the 1-minute load average
before each match. Prints median seconds a pair per variant and thread count and the median of the per-pair
ratios base / new, and writes ``--json`` (default ``benchmarks/results/match_speed.json``).

Usage: ``.venv/bin/python benchmarks/bench_match_speed.py [--base /tmp/base] [--pairs 10] [--threads 2,1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
STAGES = ("prepare", "spectral_candidates", "extrinsic_candidates", "select_initial", "refine_map", "polish")


def _pairs(n: int, seed: int, data: Path) -> list[tuple[str, str]]:
    names = sorted(p.stem for p in (data / "FAUST_r" / "off").glob("tr_reg_*.off") if int(p.stem[-3:]) < 80)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    return sorted(random.Random(seed).sample(pairs, min(n, len(pairs))))


# -- worker: one process, one geomot (whichever PYTHONPATH gives), commands on stdin, JSON lines on stdout


def _worker() -> None:
    import torch

    import geomot
    from geomot.correspondence import pipeline
    from geomot.io.trimesh_formats import read_off

    stage_times: dict[str, list[float]] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                acc = stage_times.setdefault(name, [0.0, 0.0])
                acc[0] += time.perf_counter() - w
                acc[1] += time.process_time() - c

        return wrapper

    prepare = pipeline.prepare
    for name in STAGES:  # match() looks its stages up in the pipeline module
        setattr(pipeline, name, timed(name, getattr(pipeline, name)))

    def load(path: str):
        raw = read_off(Path(path))
        return torch.as_tensor(raw[0], dtype=torch.float64), torch.as_tensor(raw[1], dtype=torch.long)

    print(json.dumps({"geomot": str(Path(geomot.__file__).parent)}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        torch.set_num_threads(cmd["threads"])
        src, tgt = load(cmd["source"]), load(cmd["target"])
        if cmd.get("prepare_only"):  # the eigenbases into the cache, untimed
            prepare(src, tgt, cache_dir=cmd["cache_dir"])
            print(json.dumps({}), flush=True)
            continue
        stage_times.clear()
        load_avg = os.getloadavg()[0]
        w, c = time.perf_counter(), time.process_time()
        res = pipeline.match(src, tgt, cache_dir=cmd["cache_dir"])
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        out = {
            "wall_s": wall,
            "cpu_s": cpu,
            "load_avg_1min": load_avg,
            "stages": {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in stage_times.items()},
            "p2p_21": res.p2p_21.tolist(),
            "fmap_12_hex": res.fmap_12.double().numpy().tobytes().hex() if cmd.get("fmap") else None,
        }
        print(json.dumps(out), flush=True)


class _Worker:
    def __init__(self, root: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(root))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(root),
        )
        self.geomot = json.loads(self._read())["geomot"]

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with code {self.proc.wait()}")
        return line

    def run(self, **cmd) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def _summary(rows: list[dict], variant: str) -> dict:
    walls = [r[variant]["wall_s"] for r in rows]
    stages = {
        name: statistics.median(r[variant]["stages"].get(name, {"wall_s": 0.0})["wall_s"] for r in rows)
        for name in STAGES
    }
    return {
        "median_wall_s": statistics.median(walls),
        "mean_wall_s": statistics.fmean(walls),
        "median_cpu_s": statistics.median(r[variant]["cpu_s"] for r in rows),
        "median_stage_wall_s": stages,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--base", type=Path, default=None, help="root of an earlier geomot checkout (git worktree)")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", default="2,1", help="comma-separated torch thread counts (default: 2,1)")
    ap.add_argument("--cache-dir", default=None, help="eigenbasis cache (default: a temporary folder)")
    ap.add_argument("--no-cache", action="store_true", help="time the eigensolver too")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "match_speed.json")
    args = ap.parse_args()
    if args.worker:
        _worker()
        return
    if not (args.data / "FAUST_r").is_dir():
        sys.exit(f"FAUST_r not found under {args.data} (see ../shared/data/README.md)")
    pairs = _pairs(args.pairs, args.seed, args.data)
    off = args.data / "FAUST_r" / "off"
    tmp = tempfile.TemporaryDirectory()
    cache = None if args.no_cache else (args.cache_dir or tmp.name)
    roots = {"new": ROOT} | ({"base": args.base.resolve()} if args.base else {})
    workers = {name: _Worker(root) for name, root in roots.items()}
    threads = [int(t) for t in args.threads.split(",")]
    first = {"source": str(off / f"{pairs[0][0]}.off"), "target": str(off / f"{pairs[0][1]}.off")}
    for worker in workers.values():  # untimed: imports, compiled kernels, the eigenbases into the cache
        worker.run(threads=threads[0], cache_dir=cache, **first)
    if cache is not None:
        for a, b in pairs[1:]:
            workers["new"].run(
                threads=threads[0],
                cache_dir=cache,
                source=str(off / f"{a}.off"),
                target=str(off / f"{b}.off"),
                prepare_only=True,
            )
    out: dict = {
        "command": " ".join(["benchmarks/bench_match_speed.py", *sys.argv[1:]]),
        "geomot": {name: w.geomot for name, w in workers.items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu_count": os.cpu_count(),
        "eigenbases": "computed in the timed match" if cache is None else "read from the cache",
        "runs": {},
        "summary": {},
    }
    for n_threads in threads:
        rows = []
        for i, (a, b) in enumerate(pairs):
            cmd = {
                "source": str(off / f"{a}.off"),
                "target": str(off / f"{b}.off"),
                "threads": n_threads,
                "cache_dir": cache,
                "fmap": True,
            }
            order = list(workers) if i % 2 == 0 else list(workers)[::-1]
            row: dict = {"source": a, "target": b, "order": order}
            maps = {}
            for name in order:
                res = workers[name].run(**cmd)
                maps[name] = (res.pop("p2p_21"), res.pop("fmap_12_hex"))
                row[name] = res
            if "base" in maps:
                row["identical_p2p"] = maps["base"][0] == maps["new"][0]
                row["identical_fmap"] = maps["base"][1] == maps["new"][1]
                row["differing_vertices"] = sum(x != y for x, y in zip(maps["base"][0], maps["new"][0]))
                row["ratio_base_over_new"] = row["base"]["wall_s"] / row["new"]["wall_s"]
            rows.append(row)
            print(
                f"threads {n_threads} {a} -> {b}: "
                + ", ".join(f"{name} {row[name]['wall_s']:.2f} s (cpu {row[name]['cpu_s']:.2f})" for name in workers)
                + (f", identical {row['identical_p2p'] and row['identical_fmap']}" if "base" in maps else "")
                + f", load {row['new']['load_avg_1min']:.2f}",
                flush=True,
            )
            out["runs"][str(n_threads)] = rows
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1) + "\n")
        summ = {name: _summary(rows, name) for name in workers}
        if "base" in workers:
            ratios = [r["ratio_base_over_new"] for r in rows]
            summ["median_ratio_base_over_new"] = statistics.median(ratios)
            summ["ratio_of_medians"] = summ["base"]["median_wall_s"] / summ["new"]["median_wall_s"]
            summ["all_identical"] = all(r["identical_p2p"] and r["identical_fmap"] for r in rows)
        summ["load_avg_1min"] = [
            min(r["new"]["load_avg_1min"] for r in rows),
            max(r["new"]["load_avg_1min"] for r in rows),
        ]
        out["summary"][str(n_threads)] = summ
        print(
            f"threads {n_threads}: "
            + ", ".join(f"{name} median {summ[name]['median_wall_s']:.2f} s/pair" for name in workers)
            + (
                f", median ratio base/new {summ['median_ratio_base_over_new']:.2f}, identical {summ['all_identical']}"
                if "base" in workers
                else ""
            ),
            flush=True,
        )
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    for worker in workers.values():
        worker.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
