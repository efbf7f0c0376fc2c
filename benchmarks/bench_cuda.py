"""CUDA: geomot's losses on the GPU against plain torch, POT and GeomLoss, same process, same inputs, same device.

Every time is forward + backward (the gradient w.r.t. the first input), ``torch.cuda.synchronize()`` before the
clock stops, after a warm-up run; the best of ``--repeats`` runs, contenders interleaved (a run longer than
``--slow`` seconds is timed once, its warm-up included). The table reports ratios ``peer / geomot`` (> 1: geomot
is faster), and each case records the values (contenders must agree) and the peak GPU memory of each contender.

Cases (float32, d = 3):

1. ``sliced``: sliced Wasserstein SW_2, L = 100 shared directions ``P (3, L)``;
   a) one pair, N = M = 100,000: ``geomot.sliced_wasserstein(x, y, projections=P)``;
      peers: plain torch (``sort(x @ P)``, ``sort(y @ P)`` along the points, root of the mean squared difference)
      and POT's ``ot.sliced_wasserstein_distance(x, y, projections=P)`` on the torch tensors (if POT imports);
   b) a batch of 64 pairs of 2,048 points: one geomot call on ``(64, 2048, 3)`` (``reduction="none"``, summed);
      peers: the same plain torch code on the batch, and a Python loop of POT calls.
2. ``sinkhorn``: x uniform in ``[0, 1]^3``, y ~ N(0.5, 0.15^2 I), N = M in (5,000, 20,000), cost ``|x - y|^2``,
   ``eps = 0.05^2``, marginal tolerance 1e-5. geomot: ``sinkhorn(x, y, eps=eps, tol=1e-5)`` (its defaults: dense
   below ~1 GiB of cost and kernel, else the online backend; Gaussian initialisation; adaptive over-relaxation),
   loss ``transport_cost`` (gradient at fixed potentials). Peers: a plain torch log-domain loop (dense cost,
   eps-scaling by halves from the largest cost, then iterations at eps until the same L1 marginal error,
   checked every 10 iterations; then ``<P, C>`` differentiated at the fixed potentials), and GeomLoss
   ``SamplesLoss("sinkhorn", p=2, blur=sqrt(eps / 2), debias=False, backend="tensorized")`` (its cost is
   ``|x - y|^2 / 2``, so this is the same problem) with its default ``scaling=0.5`` and with ``scaling=0.95``.
   GeomLoss has no stopping tolerance (it follows its annealing schedule), so every contender's marginal error
   ``|P 1 - a|_1 + |P^T 1 - b|_1`` is re-evaluated in float64 from its potentials and reported next to its time.
3. ``chamfer``: two clouds of N points uniform in the unit cube, N in (10,000, 100,000), squared distances, mean:
   ``geomot.chamfer_distance(x, y)`` against the dense ``d = torch.cdist(x, y) ** 2``,
   ``d.min(1).values.mean() + d.min(0).values.mean()`` (reported as out of memory if it does not fit).
4. ``varifold``: the icosphere subdivided 5 times (20,480 faces) and a copy with Gaussian vertex noise (0.01),
   ``geomot.varifold_distance(a, b, sigma=0.2, kernel="binet")`` (backend ``"auto"``: KeOps when importable, else
   blocked torch) against a dense torch double sum written here (centroids, unit normals and areas from the
   vertices, ``sum_ij a_i b_j exp(-|c_i - c_j|^2 / sigma^2) <n_i, n_j>^2`` for the three pairs); with pykeops
   importable the ``"torch"`` backend is timed too.
5. ``amortized``: (a) distributional SW between N = M = 20,000 points with a push-forward of the directions kept
   across calls (``DistributionalSlicedWasserstein(dim=3, n_projections=100, max_iter=5)``: five inner Adam steps on
   the directions, then the loss), against plain ``sliced_wasserstein`` with 100 random directions (the ratio is
   the price of learning the directions); (b) one Adam step of the amortised deformation model
   (``ConditionedDeformer``: PointNet code of 8 targets of 1,024 points -> conditioned velocity field -> 8 Euler
   steps of a 2,562-vertex template; Chamfer loss to the targets), on the GPU against the same step on the CPU.

Run on a machine with a CUDA device: ``python benchmarks/bench_cuda.py`` (``--quick`` for smaller sizes). Prints
a markdown table of ratios, writes ``--json`` (default ``benchmarks/results/bench_cuda_h200.json``) with the device,
the versions, every time, value and peak memory. Exits with a message (status 0) when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import geomot
from geomot.deformation.dataset import ConditionedDeformer
from geomot.io.synthetic import icosphere
from geomot.ops.directions import random_directions
from geomot.structures import Mesh

RESULTS = Path(__file__).resolve().parent / "results"
DEVICE = torch.device("cuda")


# -- device helpers (the only CUDA calls of the script) -------------------------------------------------------
def sync() -> None:
    torch.cuda.synchronize()


def reset_peak() -> None:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30


def device_info() -> dict:
    props = torch.cuda.get_device_properties(DEVICE)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# -- timing ---------------------------------------------------------------------------------------------------
def optional(name: str):
    """The module ``name``, or None when it is not installed (the peer is then skipped with a note)."""
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken optional dependency
        return None


def fwd_bwd(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], float]:
    """A run: fresh leaf copy of ``x``, loss, backward; returns the loss value (synchronised)."""

    def run() -> float:
        xx = x.detach().clone().requires_grad_(True)
        loss = loss_fn(xx).sum()
        loss.backward()
        sync()
        return float(loss.detach())

    return run


def time_runs(runs: dict[str, Callable[[], object]], repeats: int, slow: float) -> dict[str, dict]:
    """Warm-up (timed), then ``repeats`` interleaved rounds; a contender whose warm-up took more than ``slow``
    seconds keeps that time (one-off costs are small next to it). Out-of-memory contenders are recorded as such.

    Returns ``{name: {"time_s", "value", "peak_gib"} or {"error"}}``.
    """
    out: dict[str, dict] = {}
    for name, fn in runs.items():
        reset_peak()
        try:
            sync()
            t0 = time.perf_counter()
            value = fn()
            sync()
            t = time.perf_counter() - t0
        except RuntimeError as e:
            if not is_oom(e):
                raise
            out[name] = {"error": "out of memory"}
            print(f"    {name}: out of memory", flush=True)
            reset_peak()
            continue
        out[name] = {"time_s": t, "value": value, "peak_gib": peak_gib(), "timed_once": t > slow}
    for _ in range(repeats):
        for name, fn in runs.items():
            rec = out[name]
            if "error" in rec or rec["timed_once"]:
                continue
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            rec["time_s"] = min(rec["time_s"], time.perf_counter() - t0)
    for name, rec in out.items():
        if "time_s" in rec:
            print(f"    {name:<34s} {rec['time_s'] * 1e3:10.2f} ms   peak {rec['peak_gib']:6.2f} GiB", flush=True)
    return out


def value_of(rec: dict) -> float | None:
    v = rec.get("value")
    if isinstance(v, dict):
        v = v.get("loss")
    return None if v is None else float(v)


def check_values(res: dict, ref: str = "geomot", rtol: float = 1e-3) -> None:
    """Record the relative difference of every contender's value to geomot's (a mismatch is printed)."""
    v0 = value_of(res[ref])
    for name, rec in res.items():
        v = value_of(rec)
        if name == ref or v is None or v0 is None:
            continue
        rec["rel_diff_vs_geomot"] = abs(v - v0) / max(abs(v0), 1e-30)
        if rec["rel_diff_vs_geomot"] > rtol:
            print(f"    note: {name} value {v:.6g} differs from geomot's {v0:.6g} by "
                  f"{rec['rel_diff_vs_geomot']:.1e}", flush=True)


# -- 1. sliced Wasserstein ------------------------------------------------------------------------------------
def torch_sw(x: torch.Tensor, y: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Plain torch SW_2 with shared directions ``proj (D, L)``: sort the projections along the points;
    ``x (..., N, D)`` -> ``(...)``."""
    xs = torch.sort(x @ proj, dim=-2).values
    ys = torch.sort(y @ proj, dim=-2).values
    return (xs - ys).square().mean(dim=(-2, -1)).sqrt()


def case_sliced(n: int, bsz: int, nb: int, n_proj: int, args, notes: list[str]) -> dict:
    ot = optional("ot")
    if ot is None:
        notes.append("POT not importable: its sliced-Wasserstein columns are skipped")
    g = torch.Generator().manual_seed(args.seed)
    out = {}
    # a) one pair
    x = torch.randn(n, 3, generator=g).to(DEVICE)
    y = (torch.randn(n, 3, generator=g) * 0.7 + 0.5).to(DEVICE)
    proj = random_directions(n_proj, 3, generator=g).T.contiguous().to(DEVICE)
    runs = {"geomot": fwd_bwd(lambda a: geomot.sliced_wasserstein(a, y, projections=proj), x),
            "torch sort": fwd_bwd(lambda a: torch_sw(a, y, proj), x)}
    if ot is not None:
        runs["POT"] = fwd_bwd(lambda a: ot.sliced_wasserstein_distance(a, y, projections=proj), x)
    print(f"  sliced, one pair N = M = {n:,}, L = {n_proj}", flush=True)
    res = time_runs(runs, args.repeats, args.slow)
    check_values(res)
    out["single"] = {"n": n, "n_projections": n_proj, "results": res}
    # b) a batch
    xb = torch.randn(bsz, nb, 3, generator=g).to(DEVICE)
    yb = (torch.randn(bsz, nb, 3, generator=g) * 0.7 + 0.5).to(DEVICE)
    runs = {"geomot": fwd_bwd(lambda a: geomot.sliced_wasserstein(a, yb, projections=proj, reduction="none"), xb),
            "torch sort": fwd_bwd(lambda a: torch_sw(a, yb, proj), xb)}
    if ot is not None:
        runs["POT loop"] = fwd_bwd(
            lambda a: torch.stack([ot.sliced_wasserstein_distance(a[b], yb[b], projections=proj) for b in range(bsz)]),
            xb)
    print(f"  sliced, batch of {bsz} pairs of {nb:,} points", flush=True)
    res = time_runs(runs, args.repeats, args.slow)
    check_values(res)
    out["batched"] = {"batch": bsz, "n": nb, "n_projections": n_proj, "results": res}
    return out


# -- 2. Sinkhorn ----------------------------------------------------------------------------------------------
def marginal_error(x: torch.Tensor, y: torch.Tensor, f: torch.Tensor, g: torch.Tensor, eps: float) -> float:
    """``|P 1 - a|_1 + |P^T 1 - b|_1`` in float64 for ``P_ij = exp((f_i + g_j - |x_i - y_j|^2) / eps) / (N M)``
    (uniform weights), by row blocks."""
    x, y = x.detach().double(), y.detach().double()
    f, g = f.detach().double().reshape(-1), g.detach().double().reshape(-1)
    n, m = x.shape[0], y.shape[0]
    rows = torch.empty(n, dtype=torch.float64, device=x.device)
    cols = torch.zeros(m, dtype=torch.float64, device=x.device)
    step = max(1, 2**25 // m)
    for s in range(0, n, step):
        c = torch.cdist(x[s:s + step], y).square_()
        p = torch.exp((f[s:s + step, None] + g[None, :] - c) / eps) / (n * m)
        rows[s:s + step] = p.sum(1)
        cols += p.sum(0)
    return float((rows - 1.0 / n).abs().sum() + (cols - 1.0 / m).abs().sum())


def torch_sinkhorn(x: torch.Tensor, y: torch.Tensor, eps: float, tol: float, max_iter: int):
    """Plain log-domain Sinkhorn on a dense cost (uniform weights): eps-scaling by halves from the largest cost
    (one iteration per level), then iterations at ``eps`` until the L1 error of the row marginal (the columns
    are exact after their update) is <= ``tol``, checked every 10 iterations. Returns ``(<P, C>, f, g, iters)``
    with ``<P, C>`` differentiable in ``x`` at the fixed potentials."""
    n, m = x.shape[0], y.shape[0]
    la, lb = -math.log(n), -math.log(m)
    with torch.no_grad():
        c = torch.cdist(x, y).square_()
        f, g = x.new_zeros(n), x.new_zeros(m)
        e = float(c.max())
        while e > eps:
            f = -e * torch.logsumexp((g[None, :] - c) / e + lb, dim=1)
            g = -e * torch.logsumexp((f[:, None] - c) / e + la, dim=0)
            e *= 0.5
        it = 0
        while it < max_iter:
            f = -eps * torch.logsumexp((g[None, :] - c) / eps + lb, dim=1)
            g = -eps * torch.logsumexp((f[:, None] - c) / eps + la, dim=0)
            it += 1
            if it % 10 == 0:
                row = torch.exp((f[:, None] + g[None, :] - c) / eps + (la + lb)).sum(1)
                if float((row - 1.0 / n).abs().sum()) <= tol:
                    break
        del c
    cost = torch.cdist(x, y).square()
    plan = torch.exp((f[:, None] + g[None, :] - cost.detach()) / eps + (la + lb))
    return (plan * cost).sum(), f, g, it


def case_sinkhorn(sizes: list[int], args, notes: list[str]) -> dict:
    gl = optional("geomloss")
    if gl is None:
        notes.append("GeomLoss not importable: its Sinkhorn columns are skipped")
    eps, tol = 0.05**2, 1e-5
    out = {}
    for n in sizes:
        g = torch.Generator().manual_seed(args.seed)
        x = torch.rand(n, 3, generator=g).to(DEVICE)
        y = (torch.randn(n, 3, generator=g) * 0.15 + 0.5).to(DEVICE)
        info: dict[str, dict] = {}

        def geomot_run(x=x, y=y, info=info):
            xx = x.detach().clone().requires_grad_(True)
            r = geomot.sinkhorn(xx, y, eps=eps, tol=tol, max_iter=5000)
            r.transport_cost.backward()
            sync()
            info["geomot"] = {"f": r.f, "g": r.g, "iters": r.n_iters}
            return float(r.transport_cost.detach())

        def torch_run(x=x, y=y, info=info):
            xx = x.detach().clone().requires_grad_(True)
            loss, f, gg, it = torch_sinkhorn(xx, y, eps, tol, max_iter=3000)
            loss.backward()
            sync()
            info["torch log loop"] = {"f": f, "g": gg, "iters": it}
            return float(loss.detach())

        runs: dict[str, Callable[[], object]] = {"geomot": geomot_run, "torch log loop": torch_run}
        if gl is not None:
            for scaling in (0.5, 0.95):
                def gl_run(x=x, y=y, info=info, scaling=scaling):
                    loss_fn = gl.SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps / 2), debias=False,
                                             backend="tensorized", scaling=scaling)
                    xx = x.detach().clone().requires_grad_(True)
                    loss = loss_fn(xx, y)
                    loss.backward()
                    sync()
                    return float(loss.detach())

                runs[f"GeomLoss scaling={scaling}"] = gl_run
        print(f"  sinkhorn N = M = {n:,}, eps = {eps:g}, tol = {tol:g}", flush=True)
        res = time_runs(runs, args.repeats, args.slow)
        for name in ("geomot", "torch log loop"):
            if name in info and "time_s" in res[name]:
                res[name]["iterations"] = info[name]["iters"]
                res[name]["marginal_error"] = marginal_error(x, y, info[name]["f"], info[name]["g"], eps)
        if gl is not None:  # its potentials (of the halved cost: ours = 2 x theirs), for the marginal error
            for scaling in (0.5, 0.95):
                name = f"GeomLoss scaling={scaling}"
                if "time_s" not in res[name]:
                    continue
                pot = gl.SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps / 2), debias=False, backend="tensorized",
                                     scaling=scaling, potentials=True)
                with torch.no_grad():
                    pf, pg = pot(x, y)
                res[name]["marginal_error"] = marginal_error(x, y, 2 * pf, 2 * pg, eps)
                res[name]["value_kind"] = "OT_eps (regularised), not <P, C>"
        for name, rec in res.items():
            if "marginal_error" in rec:
                print(f"    {name:<34s} marginal error {rec['marginal_error']:.2e}"
                      + (f", {rec['iterations']} iterations" if "iterations" in rec else ""), flush=True)
        check_values({k: v for k, v in res.items() if "value_kind" not in v}, rtol=1e-3)
        out[str(n)] = {"n": n, "eps": eps, "tol": tol, "results": res}
        del info
    return out


# -- 3. Chamfer -----------------------------------------------------------------------------------------------
def dense_chamfer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, y) ** 2
    return d.min(1).values.mean() + d.min(0).values.mean()


def case_chamfer(sizes: list[int], args) -> dict:
    out = {}
    for n in sizes:
        g = torch.Generator().manual_seed(args.seed)
        x = torch.rand(n, 3, generator=g).to(DEVICE)
        y = torch.rand(n, 3, generator=g).to(DEVICE)
        runs = {"geomot": fwd_bwd(lambda a, y=y: geomot.chamfer_distance(a, y), x),
                "dense torch.cdist": fwd_bwd(lambda a, y=y: dense_chamfer(a, y), x)}
        print(f"  chamfer N = M = {n:,}", flush=True)
        res = time_runs(runs, args.repeats, args.slow)
        check_values(res, rtol=1e-4)
        out[str(n)] = {"n": n, "results": res}
    return out


# -- 4. varifold ----------------------------------------------------------------------------------------------
def _faces_geometry(v: torch.Tensor, f: torch.Tensor):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = torch.linalg.cross(b - a, c - a, dim=-1)
    twice = cross.norm(dim=-1)
    return (a + b + c) / 3.0, cross / twice[:, None], 0.5 * twice


def dense_varifold(v1: torch.Tensor, f1: torch.Tensor, v2: torch.Tensor, f2: torch.Tensor, sigma: float):
    """``<S, S> + <T, T> - 2 <S, T>`` with ``<S, T> = sum_ij a_i b_j exp(-|c_i - c_j|^2 / sigma^2) <n_i, m_j>^2``,
    every ``F x F`` matrix formed."""
    c1, n1, a1 = _faces_geometry(v1, f1)
    c2, n2, a2 = _faces_geometry(v2, f2)

    def inner(ca, na, aa, cb, nb, ab):
        k = torch.exp(-torch.cdist(ca, cb).square() / sigma**2) * (na @ nb.T).square()
        return aa @ (k @ ab)

    return inner(c1, n1, a1, c1, n1, a1) + inner(c2, n2, a2, c2, n2, a2) - 2.0 * inner(c1, n1, a1, c2, n2, a2)


def case_varifold(subdiv: int, args, notes: list[str]) -> dict:
    sigma = 0.2
    mesh = icosphere(subdiv, dtype=torch.float32)
    g = torch.Generator().manual_seed(args.seed)
    f = mesh.faces.to(DEVICE)
    v1 = (mesh.verts + 0.01 * torch.randn(mesh.verts.shape, generator=g)).to(DEVICE)
    v2 = mesh.verts.to(DEVICE)
    target = Mesh(v2, f)
    runs = {"geomot": fwd_bwd(lambda v: geomot.varifold_distance(Mesh(v, f), target, sigma=sigma, kernel="binet"),
                              v1),
            "dense torch": fwd_bwd(lambda v: dense_varifold(v, f, v2, f, sigma), v1)}
    if optional("pykeops") is not None:
        runs["geomot backend=torch"] = fwd_bwd(
            lambda v: geomot.varifold_distance(Mesh(v, f), target, sigma=sigma, kernel="binet", backend="torch"), v1)
    else:
        notes.append("pykeops not importable: varifold backend 'auto' is the blocked torch backend")
    print(f"  varifold, {f.shape[0]:,} faces per mesh, binet kernel, sigma = {sigma}", flush=True)
    res = time_runs(runs, args.repeats, args.slow)
    check_values(res, rtol=1e-3)
    return {"faces": int(f.shape[0]), "sigma": sigma, "kernel": "binet", "results": res}


# -- 5. amortised models --------------------------------------------------------------------------------------
def case_amortized(n: int, subdiv: int, bsz: int, args) -> dict:
    g = torch.Generator().manual_seed(args.seed)
    out = {}
    # a) DSW with a persistent push-forward vs plain SW
    x = torch.randn(n, 3, generator=g).to(DEVICE)
    y = (torch.randn(n, 3, generator=g) * 0.7 + 0.5).to(DEVICE)
    dsw = geomot.DistributionalSlicedWasserstein(dim=3, n_projections=100, max_iter=5).to(DEVICE)
    gen = torch.Generator(device=DEVICE).manual_seed(args.seed)
    runs = {"geomot SW (100 random directions)":
            fwd_bwd(lambda a: geomot.sliced_wasserstein(a, y, n_projections=100, generator=gen), x),
            "geomot DSW (push-forward, 5 Adam steps)": fwd_bwd(lambda a: dsw(a, y, generator=gen), x)}
    print(f"  amortised directions: DSW vs SW, N = M = {n:,}", flush=True)
    out["dsw"] = {"n": n, "results": time_runs(runs, args.repeats, args.slow)}
    # b) one training step of the amortised deformation model, GPU vs CPU
    template = icosphere(subdiv, dtype=torch.float32)
    t0 = template.verts
    targets = []
    for b in range(bsz):
        w = torch.randn(3, 3, generator=g)
        bumped = t0 * (1.0 + 0.15 * torch.sin(3.0 * t0 @ w).sum(-1, keepdim=True)) * (1.0 + 0.1 * b / bsz)
        idx = torch.randperm(t0.shape[0], generator=g)[:1024]
        targets.append(bumped[idx])
    tgt = torch.stack(targets)
    torch.manual_seed(args.seed)  # the model's initial weights (the benchmark, not the library, seeds here)
    model = ConditionedDeformer(code_dim=64, n_points=1024, n_time_steps=8)

    def step_on(device: torch.device):
        m = copy.deepcopy(model).to(device)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        x0, tt = t0.to(device), tgt.to(device)

        def run() -> float:
            opt.zero_grad()
            loss = geomot.chamfer_distance(m(x0, tt), tt)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                sync()
            return float(loss.detach())

        return run

    runs = {"CUDA": step_on(DEVICE), "CPU": step_on(torch.device("cpu"))}
    print(f"  amortised deformation model: one Adam step, {bsz} targets x 1,024 points, template "
          f"{t0.shape[0]:,} vertices, {torch.get_num_threads()} CPU threads", flush=True)
    out["deformer_step"] = {"batch": bsz, "template_vertices": int(t0.shape[0]),
                            "results": time_runs(runs, max(1, args.repeats - 1), args.slow)}
    return out


# -- main -----------------------------------------------------------------------------------------------------
def ratio(res: dict, peer: str, ref: str = "geomot") -> float | None:
    a, b = res.get(peer, {}), res.get(ref, {})
    if "time_s" not in a or "time_s" not in b:
        return None
    return a["time_s"] / b["time_s"]


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "geomot": geomot.__version__}
    for mod, key in (("scipy", "scipy"), ("ot", "POT"), ("geomloss", "geomloss"), ("pykeops", "pykeops"),
                     ("torchdiffeq", "torchdiffeq")):
        m = optional(mod)
        out[key] = getattr(m, "__version__", "?") if m is not None else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes (SW 20,000 and 16 x 2,048; Sinkhorn 2,000 / 5,000; Chamfer 2,000 / "
                             "10,000; varifold 1,280 faces; DSW 5,000; template 642 vertices)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (best kept)")
    parser.add_argument("--slow", type=float, default=5.0, help="runs longer than this (s) are timed once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["sliced", "sinkhorn", "chamfer", "varifold", "amortized"])
    parser.add_argument("--json", type=Path, default=RESULTS / "bench_cuda_h200.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA device here (torch.cuda.is_available() is False); nothing measured. "
              "Run it on a machine with a GPU.")
        return 0
    if args.quick:
        sw, bsz, sk, ch, vsub, dn, tsub, tb = 20_000, 16, [2_000, 5_000], [2_000, 10_000], 3, 5_000, 3, 4
    else:
        sw, bsz, sk, ch, vsub, dn, tsub, tb = 100_000, 64, [5_000, 20_000], [10_000, 100_000], 5, 20_000, 4, 8
    only = set(args.only or ["sliced", "sinkhorn", "chamfer", "varifold", "amortized"])
    dev = device_info()
    vers = versions()
    print(f"device {dev['name']} ({dev['memory_gib']} GiB, CUDA {dev['cuda']}); "
          + ", ".join(f"{k} {v}" for k, v in vers.items() if v is not None), flush=True)
    notes: list[str] = []
    cases: dict[str, dict] = {}
    t_start = time.perf_counter()
    if "sliced" in only:
        cases["sliced"] = case_sliced(sw, bsz, 2048, 100, args, notes)
    if "sinkhorn" in only:
        cases["sinkhorn"] = case_sinkhorn(sk, args, notes)
    if "varifold" in only:
        cases["varifold"] = case_varifold(vsub, args, notes)
    if "amortized" in only:
        cases["amortized"] = case_amortized(dn, tsub, tb, args)
    if "chamfer" in only:  # last: its dense peer may fill the device at the largest size
        cases["chamfer"] = case_chamfer(ch, args)
    total = time.perf_counter() - t_start

    rows: list[tuple[str, str, float | None]] = []
    if "sliced" in cases:
        s, b = cases["sliced"]["single"]["results"], cases["sliced"]["batched"]["results"]
        rows += [(f"SW one pair N={sw:,}", "torch sort / geomot", ratio(s, "torch sort")),
                 (f"SW one pair N={sw:,}", "POT / geomot", ratio(s, "POT")),
                 (f"SW batch {bsz}x2,048", "torch sort / geomot", ratio(b, "torch sort")),
                 (f"SW batch {bsz}x2,048", "POT loop / geomot", ratio(b, "POT loop"))]
    if "sinkhorn" in cases:
        for n, c in cases["sinkhorn"].items():
            r = c["results"]
            rows += [(f"Sinkhorn N={int(n):,}", "torch log loop / geomot", ratio(r, "torch log loop"))]
            rows += [(f"Sinkhorn N={int(n):,}", f"{k} / geomot", ratio(r, k)) for k in r if k.startswith("GeomLoss")]
    if "chamfer" in cases:
        for n, c in cases["chamfer"].items():
            rows.append((f"Chamfer N={int(n):,}", "dense torch.cdist / geomot",
                         ratio(c["results"], "dense torch.cdist")))
    if "varifold" in cases:
        r = cases["varifold"]["results"]
        rows.append((f"varifold {cases['varifold']['faces']:,} faces", "dense torch / geomot", ratio(r, "dense torch")))
        if "geomot backend=torch" in r:
            rows.append(("varifold", "geomot torch backend / geomot auto", ratio(r, "geomot backend=torch")))
    if "amortized" in cases:
        r = cases["amortized"]["dsw"]["results"]
        rows.append((f"DSW N={dn:,}", "DSW / SW (price of learnt directions)",
                     ratio(r, "geomot DSW (push-forward, 5 Adam steps)", "geomot SW (100 random directions)")))
        r = cases["amortized"]["deformer_step"]["results"]
        rows.append(("deformation model step", "CPU / CUDA", ratio(r, "CPU", "CUDA")))
    print(f"\nCUDA float32, fwd+bwd, best of {args.repeats} after a warm-up ({dev['name']}, total {total:.0f} s)\n")
    print("| case | ratio | value |\n|---|---|---|")
    for case, what, v in rows:
        print(f"| {case} | {what} | {'n/a' if v is None else f'{v:.2f}x'} |")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"device": dev, "versions": vers, "machine": {"platform": platform.platform(),
                                                            "cpu_threads": torch.get_num_threads()},
               "quick": args.quick, "repeats": args.repeats, "total_s": total, "notes": list(dict.fromkeys(notes)),
               "ratios": [{"case": c, "ratio": w, "value": v} for c, w, v in rows], "cases": cases}
    args.json.write_text(json.dumps(payload, indent=1, default=float))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
