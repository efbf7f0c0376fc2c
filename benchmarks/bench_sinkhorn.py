"""Sinkhorn: geomot vs POT and GeomLoss, in one process on the same inputs.

Inputs: ``x`` uniform in ``[0, 1]^3``, ``y ~ N(0.5, 0.15^2 I_3)`` (``N = M``, uniform weights, seed 0), cost
``||x - y||^2``, ``eps = 0.05^2`` in those units. Sections (``--only``):

- ``values`` (float64, N = 500): ``transport_cost`` vs ``ot.sinkhorn2(method="sinkhorn_log")``.
- ``speed`` (float32, N in ``--sizes``): time to marginal error ``--tol`` (1e-5).
    * geomot ``fast``: ``sinkhorn(x, y, eps=eps, tol=1e-5, init="gaussian", relaxation=1.7, eps_scaling=None)``;
      geomot ``default``: ``sinkhorn(x, y, eps=eps, tol=1e-5)`` (``init="auto"`` = Gaussian, ``relaxation="auto"``).
      Both stop on the L1 error of both marginals measured on their float32 kernel.
    * POT: ``ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", stopThr=1e-5)`` on numpy float32 (its own
      criterion: L2 norm of the column-marginal violation, checked every 10 iterations; weaker than ours).
    * GeomLoss: ``SamplesLoss("sinkhorn", p=2, blur=0.05 / sqrt(2), debias=False, backend="tensorized")`` (cost
      ``|x-y|^2 / 2`` and eps ``blur^2``, i.e. half of our problem). GeomLoss has no stopping criterion: its
      default run follows its eps-scaling schedule (``scaling=0.5``, 10 iterations here) and stops far from the
      marginals (kept as an informative column: it is NOT an equal-accuracy comparison); ``--geomloss-extra K``
      also times it with ``K`` more iterations at the final blur appended to its own schedule, up to
      ``--geomloss-extra-max-n``.
    * GeomLoss at equal accuracy (:func:`geomloss_sweep`, ``--geomloss-budget`` seconds per size): its
      ``scaling`` in (0.5, 0.9, 0.99), then extra iterations at the final blur (200, 400, ... ) after the
      scaling with the lowest error, until a run reaches marginal error ``--tol`` or the budget is spent. The
      equal-accuracy ratio is GeomLoss's fastest run with error <= tol over geomot's time; if no run got there,
      its (fastest near-)lowest-error run gives a lower bound on the ratio (``speedup_equal_accuracy_lower_bound``),
      and ``matched`` times geomot stopped at the error GeomLoss did reach. (Trials at N = 1,000: 0.99 + 200
      extra reached 5.6e-4 in the time 0.5 + 300 reached 4.2e-3 and 0.9 + 300 1.4e-3; 0.995 alone 8.6e-3.)
    Every solver's potentials are re-evaluated in float64 by one function: ``err = |P 1 - a|_1 + |P^T 1 - b|_1``
    (float32 potentials cannot be checked much below ~1e-5 here: rounding ``f`` to float32 moves ``f / eps`` by
    ~2e-5).
- ``sns`` (float64, N = 2,000, eps = 0.05^2): iterations and time to marginal error 1e-9, plain Sinkhorn
  (no eps-scaling, no relaxation) vs ``method="sns"``.
- ``large``: Sinkhorn divergence at N = M = ``--n-large`` (float32, online backend, eps = ``--eps-large``,
  Gaussian initialisation, each problem to marginal error ``--tol-large``, OT(x, y) over-relaxed by
  ``--relax-large``), run in a subprocess to read its peak RSS.

Usage: ``python benchmarks/bench_sinkhorn.py [--only speed] [--sizes 2000 4000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

import geomot

logger = logging.getLogger("bench_sinkhorn")
EPS = 0.05**2


def inputs(n: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.15 + 0.5
    return x.to(dtype), y.to(dtype)


def marginal_error(x, y, f, g, eps) -> float:
    """``|P 1 - a|_1 + |P^T 1 - b|_1`` in float64 for ``P = exp((f + g - C) / eps) / (N M)``."""
    x, y, f, g = (torch.as_tensor(t).double().reshape(t.shape[0] if t.ndim else -1, *t.shape[1:])
                  for t in (x, y, f, g))
    f, g = f.reshape(-1), g.reshape(-1)
    n, m = x.shape[0], y.shape[0]
    rows = torch.zeros(n, dtype=torch.float64)
    cols = torch.zeros(m, dtype=torch.float64)
    for i in range(0, n, 1000):
        c = torch.cdist(x[i:i + 1000], y) ** 2
        p = torch.exp((f[i:i + 1000, None] + g[None] - c) / eps) / (n * m)
        rows[i:i + 1000] = p.sum(1)
        cols += p.sum(0)
    return float((rows - 1 / n).abs().sum() + (cols - 1 / m).abs().sum())


def timed(fn, repeat: int = 1):
    """``(result, seconds)``: the fastest of ``repeat`` runs (the machine is shared; the minimum is the least
    disturbed measurement)."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def bench_values() -> dict:
    import ot

    x, y = inputs(500, torch.float64)
    c = (torch.cdist(x, y) ** 2).numpy()
    a = np.full(500, 1 / 500)
    ref = float(ot.sinkhorn2(a, a, c, EPS, method="sinkhorn_log", stopThr=1e-13, numItermax=200000))
    r = geomot.sinkhorn(x, y, eps=EPS, tol=1e-12, max_iter=100000)
    rel = abs(float(r.transport_cost) / ref - 1)
    print(f"values   float64 N=500: geomot {float(r.transport_cost):.12f}  POT {ref:.12f}  rel.diff {rel:.2e}")
    return {"geomot": float(r.transport_cost), "pot": ref, "rel_diff": rel}


def _fmt(name: str, v: dict) -> str:
    its = f", {v['iters']} it" if "iters" in v else ""
    return f"{name} {v['time']:.2f}s (err {v['err']:.1e}{its})"


def _geomloss(x, y, extra: int, repeat: int = 1, scaling: float = 0.5):
    """GeomLoss tensorized potentials (ours = 2 x theirs), its own eps-scaling schedule (``scaling``, from the
    diameter down to ``blur = 0.05 / sqrt(2)``) followed by ``extra`` more iterations at the final blur: GeomLoss
    has no stopping rule, so running it longer means annealing more slowly or extending its own schedule
    (``epsilon_schedule``). Returns ``(f, g, seconds, schedule length)``; each schedule entry is one symmetric
    update (two softmin passes), plus GeomLoss's initial and final passes."""
    from geomloss import SamplesLoss
    from geomloss._legacy import sinkhorn_divergence as sd

    orig = sd.epsilon_schedule
    used: list[int] = []

    def schedule(p, diameter, blur, scaling):
        out = orig(p, diameter, blur, scaling) + [blur**p] * extra
        used.append(len(out))  # iterations = length of the schedule (one symmetric update per entry)
        return out

    sd.epsilon_schedule = schedule
    try:
        loss = SamplesLoss("sinkhorn", p=2, blur=0.05 / math.sqrt(2), debias=False, backend="tensorized",
                           potentials=True, scaling=scaling)
        (pf, pg), t = timed(lambda: loss(x, y), repeat)
    finally:
        sd.epsilon_schedule = orig
    return 2 * pf, 2 * pg, t, used[-1]


GL_SCALINGS = (0.5, 0.9, 0.99)
GL_EXTRAS = (200, 400, 800, 1600, 3200, 6400)


def geomloss_sweep(x, y, tol: float, budget: float, repeat: int) -> dict:
    """GeomLoss towards marginal error ``tol`` (float64 re-check of its potentials), within ``budget`` seconds.

    First its annealing ratio ``scaling`` over :data:`GL_SCALINGS` (slower annealing = more, better-placed
    updates); then, from the scaling that reached the lowest error, ``extra`` iterations at the final blur over
    :data:`GL_EXTRAS` (along this family error falls and time grows monotonically). A run starts only if its
    predicted time (seconds per update of the last run of its kind; updates at the final blur cost ~4x annealed
    ones, whose kernels underflow less) fits in what is left of the budget; runs shorter than 3 s are timed
    best of ``repeat``. The sweep stops at the first run with error <= ``tol`` (every run before it was cheaper
    and missed). Returns the runs and a summary: ``reached`` and ``best`` = the fastest run with error <=
    ``tol``, else the fastest run within 10% of the lowest error (then ``best.time`` bounds GeomLoss's time to
    ``tol`` from below along the extended family: more extra iterations take longer). The extension also stops
    when doubling the extra iterations lowers the error by less than 20% (GeomLoss's float32 floor).
    """
    runs: list[dict] = []
    t_start = time.perf_counter()
    rate: dict[bool, float] = {}  # seconds per update, annealed (False) / with extra iterations (True)

    def attempt(scaling: float, extra: int) -> dict | None:
        n_upd = len(_gl_schedule(x, y, scaling)) + extra
        per = rate.get(extra > 0, 4 * rate[False] if extra > 0 and False in rate else None)
        left = budget - (time.perf_counter() - t_start)
        if per is not None and per * n_upd > left:
            return None
        pf, pg, t, n_upd = _geomloss(x, y, extra, 1, scaling)
        if t < 3.0 and repeat > 1:
            pf, pg, t2, _ = _geomloss(x, y, extra, repeat - 1, scaling)
            t = min(t, t2)
        rate[extra > 0] = t / n_upd
        run = {"scaling": scaling, "extra": extra, "updates": n_upd, "time": t,
               "err": marginal_error(x, y, pf, pg, EPS), "value": float(pf.double().mean() + pg.double().mean())}
        runs.append(run)
        print(f"         geomloss scaling={scaling:g} extra={extra}: {n_upd} updates, {t:.2f}s, err {run['err']:.2e}",
              flush=True)
        return run

    reached = False
    for s in GL_SCALINGS:
        r = attempt(s, 0)
        if r is None:
            break
        if r["err"] <= tol:
            reached = True
            break
    if not reached and runs:
        base = min(runs, key=lambda r: r["err"])["scaling"]
        prev = math.inf
        for k in GL_EXTRAS:
            r = attempt(base, k)
            if r is None or r["err"] <= tol or r["err"] > 0.8 * prev:
                break  # reached, out of budget, or on its precision floor (float32: ~2.8e-5 at N = 2,000)
            prev = r["err"]
    ok = [r for r in runs if r["err"] <= tol]
    if ok:
        best = min(ok, key=lambda r: r["time"])
    else:  # the fastest run within 10% of the lowest error (a plateau: later runs only cost more)
        low = min(r["err"] for r in runs)
        best = min((r for r in runs if r["err"] <= 1.1 * low), key=lambda r: r["time"])
    return {"tol": tol, "budget_s": budget, "spent_s": time.perf_counter() - t_start, "reached": bool(ok),
            "best": best, "runs": runs}


def _gl_schedule(x, y, scaling: float) -> list[float]:
    """GeomLoss's own eps schedule for these inputs (as ``scaling_parameters`` builds it)."""
    from geomloss._legacy.kernel_samples import max_diameter
    from geomloss._legacy.sinkhorn_divergence import epsilon_schedule

    diameter = max_diameter(x.view(-1, x.shape[-1]), y.view(-1, y.shape[-1]))
    return epsilon_schedule(2, diameter, 0.05 / math.sqrt(2), scaling)


def bench_speed(sizes: list[int], pot_max_n: int, tol: float, gl_extra: int, gl_extra_max_n: int,
                repeat: int = 3, gl_budget: float = 200.0) -> list[dict]:
    import ot
    from geomloss import SamplesLoss

    rows = []
    # warm-up of every library (lazy imports, first-call kernel selection) on a small problem, not timed
    xw, yw = inputs(200, torch.float32)
    geomot.sinkhorn(xw, yw, eps=EPS, tol=tol, init="gaussian", relaxation=1.7, eps_scaling=None, grad="none")
    geomot.sinkhorn(xw, yw, eps=EPS, tol=tol, grad="none")
    SamplesLoss("sinkhorn", p=2, blur=0.05, debias=False, backend="tensorized", potentials=True)(xw, yw)
    ot.sinkhorn(np.full(200, 1 / 200, dtype=np.float32), np.full(200, 1 / 200, dtype=np.float32),
                ot.dist(xw.numpy(), yw.numpy()), EPS, method="sinkhorn_log", numItermax=10)
    for n in sizes:
        x, y = inputs(n, torch.float32)
        rec: dict = {"n": n, "load_before": os.getloadavg()[0]}
        fast, t_fast = timed(lambda x=x, y=y: geomot.sinkhorn(x, y, eps=EPS, tol=tol, init="gaussian",
                                                              relaxation=1.7, eps_scaling=None, grad="none"), repeat)
        rec["geomot_fast"] = {"time": t_fast, "iters": fast.n_iters,
                              "err": marginal_error(x, y, fast.f, fast.g, EPS), "cost": float(fast.transport_cost),
                              "value": float(fast.value)}
        dflt, t_dflt = timed(lambda x=x, y=y: geomot.sinkhorn(x, y, eps=EPS, tol=tol, grad="none"), repeat)
        rec["geomot_default"] = {"time": t_dflt, "iters": dflt.n_iters,
                                 "err": marginal_error(x, y, dflt.f, dflt.g, EPS), "cost": float(dflt.transport_cost),
                                 "value": float(dflt.value)}
        for key, extra in (("geomloss", 0), ("geomloss_extended", gl_extra)):
            if key == "geomloss_extended" and (not gl_extra or n > gl_extra_max_n):
                continue
            pf, pg, t_gl, n_its = _geomloss(x, y, extra, repeat if extra == 0 else 1)
            # its dual value <a, f> + <b, g> (on our scale) vs ours, and the error of its potentials
            rec[key] = {"time": t_gl, "iters": n_its, "err": marginal_error(x, y, pf, pg, EPS),
                        "value": float(pf.double().mean() + pg.double().mean())}
        if gl_budget > 0:
            rec["geomloss_sweep"] = sweep = geomloss_sweep(x, y, tol, gl_budget, repeat)
            best = sweep["best"]
            # equal accuracy: GeomLoss's fastest setting with error <= tol; if none got there within the budget,
            # its fastest run near its lowest error, whose time bounds its time to tol from below (the ratio too)
            key = "speedup_equal_accuracy" if sweep["reached"] else "speedup_equal_accuracy_lower_bound"
            rec["geomloss_equal_accuracy"] = {
                "reached": sweep["reached"], "time": best["time"], "err": best["err"], "scaling": best["scaling"],
                "extra": best["extra"], "updates": best["updates"], key: best["time"] / t_fast,
                key.replace("speedup", "speedup_default"): best["time"] / t_dflt}
            if not sweep["reached"]:
                # matched accuracy: geomot (defaults) stopped at the error GeomLoss did reach
                tol_m = max(best["err"], tol)
                m, t_m = timed(lambda x=x, y=y, t=tol_m: geomot.sinkhorn(x, y, eps=EPS, tol=t, grad="none"), repeat)
                rec["geomloss_equal_accuracy"]["matched"] = {
                    "geomot_tol": tol_m, "geomot_time": t_m, "geomot_iters": m.n_iters,
                    "geomot_err": marginal_error(x, y, m.f, m.g, EPS), "speedup": best["time"] / t_m}
        if n <= pot_max_n:
            xn, yn = x.numpy(), y.numpy()
            a = np.full(n, 1 / n, dtype=np.float32)

            def run_pot(xn=xn, yn=yn, a=a):
                c = ot.dist(xn, yn)
                return ot.sinkhorn(a, a, c, EPS, method="sinkhorn_log", stopThr=1e-5, numItermax=100000, log=True)

            (_plan, log), t_pot = timed(run_pot)
            f = EPS * (log["log_u"] - np.log(a))
            g = EPS * (log["log_v"] - np.log(a))
            rec["pot"] = {"time": t_pot, "iters": int(log.get("niter", -1)),
                          "err": marginal_error(x, y, torch.as_tensor(f), torch.as_tensor(g), EPS)}
        for k in ("geomloss", "geomloss_extended", "pot"):
            if k in rec:
                rec[f"speedup_vs_{k}"] = rec[k]["time"] / t_fast
                rec[f"speedup_default_vs_{k}"] = rec[k]["time"] / t_dflt
        rec["load_after"] = os.getloadavg()[0]
        rec["ratios"] = ("speedup_vs_* / speedup_default_vs_*: peer time over geomot's (fast recipe / defaults) at "
                         "each solver's own stopping point, NOT equal accuracy (see each 'err'); equal accuracy: "
                         "geomloss_equal_accuracy.speedup_equal_accuracy (GeomLoss reached tol) or "
                         ".speedup_equal_accuracy_lower_bound (it did not: fastest run near its lowest error), "
                         "and .matched.speedup (geomot stopped at the error GeomLoss reached)")
        rows.append(rec)
        print(f"speed    float32 N={n} (load {rec['load_before']:.1f} -> {rec['load_after']:.1f}): "
              + "  ".join(_fmt(k, rec[k]) for k in ("geomot_fast", "geomot_default", "geomloss", "geomloss_extended",
                                                     "pot") if k in rec), flush=True)
        print("         speed-up of geomot fast (default): " + "  ".join(
            f"vs {k[11:]} x{v:.1f} (x{rec['speedup_default_vs_' + k[11:]]:.1f})" for k, v in rec.items()
            if k.startswith("speedup_vs")) + "   [GeomLoss default run and POT: NOT equal accuracy, see errors]",
              flush=True)
        if "geomloss_equal_accuracy" in rec:
            ea = rec["geomloss_equal_accuracy"]
            setting = f"scaling={ea['scaling']:g} + {ea['extra']} extra it ({ea['updates']} updates)"
            if ea["reached"]:
                print(f"         EQUAL ACCURACY (err <= {tol:g}): GeomLoss fastest setting {setting}: "
                      f"{ea['time']:.2f}s, err {ea['err']:.1e} -> geomot fast x{ea['speedup_equal_accuracy']:.1f}, "
                      f"default x{ea['speedup_default_equal_accuracy']:.1f}", flush=True)
            else:
                mt = ea["matched"]
                print(f"         EQUAL ACCURACY (err <= {tol:g}): no GeomLoss setting got there within "
                      f"{gl_budget:g}s; lowest error {ea['err']:.1e} ({setting}) in {ea['time']:.2f}s -> ratio >= "
                      f"x{ea['speedup_equal_accuracy_lower_bound']:.1f} (geomot fast), "
                      f">= x{ea['speedup_default_equal_accuracy_lower_bound']:.1f} (default)", flush=True)
                print(f"         MATCHED ACCURACY: geomot default stopped at tol {mt['geomot_tol']:.1e}: "
                      f"{mt['geomot_time']:.3f}s, {mt['geomot_iters']} it, err {mt['geomot_err']:.1e} -> "
                      f"x{mt['speedup']:.1f}", flush=True)
    return rows


def bench_sns(n: int) -> dict:
    """Plain Sinkhorn (``relaxation=1``), over-relaxed Sinkhorn (``relaxation="auto"``, our default) and SNS, all
    from the Gaussian initialisation without eps-scaling, to marginal error 1e-9 in float64."""
    x, y = inputs(n, torch.float64)
    common = dict(eps=EPS, tol=1e-9, eps_scaling=None, grad="none")
    geomot.sinkhorn(x[:200], y[:200], method="sns", **common)  # warm-up
    plain, t_plain = timed(lambda: geomot.sinkhorn(x, y, max_iter=100000, relaxation=1.0, **common))
    relaxed, t_rel = timed(lambda: geomot.sinkhorn(x, y, max_iter=100000, **common))
    sns, t_sns = timed(lambda: geomot.sinkhorn(x, y, method="sns", max_iter=1000, **common))
    rel = abs(float(sns.transport_cost) / float(plain.transport_cost) - 1)
    print(f"sns      float64 N={n}: Sinkhorn {plain.n_iters} it {t_plain:.2f}s (err {float(plain.marginal_error):.1e})"
          f"  relaxed Sinkhorn {relaxed.n_iters} it {t_rel:.2f}s"
          f"  SNS {sns.n_iters} it {t_sns:.2f}s (err {float(sns.marginal_error):.1e})"
          f"  iteration ratio x{plain.n_iters / sns.n_iters:.1f}  time ratio x{t_plain / t_sns:.2f}"
          f"  cost rel.diff {rel:.1e}  (torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f})")
    return {"n": n, "sinkhorn_iters": plain.n_iters, "sinkhorn_time": t_plain, "relaxed_iters": relaxed.n_iters,
            "relaxed_time": t_rel, "sns_iters": sns.n_iters, "sns_time": t_sns, "cost_rel_diff": rel,
            "load_avg": os.getloadavg()}


def bench_large(n: int, eps: float, tol: float, relaxation: float) -> dict:
    """S_eps = OT(x, y) - (OT(x, x) + OT(y, y)) / 2 on the online backend (float32, Gaussian initialisation, no
    eps-scaling), each problem run to marginal error ``tol``: OT(x, y) by the fused one-pass alternating
    iterations over-relaxed by ``relaxation``, the self terms by ``method="symmetric"``. Peak RSS of the process
    (``ru_maxrss``) covers inputs, solver and everything else."""
    x, y = inputs(n, torch.float32)
    opts = dict(eps=eps, tol=tol, backend="online", grad="none", max_iter=500, init="gaussian", eps_scaling=None)
    t0 = time.perf_counter()
    res, times = [], []
    for u, v, extra in ((x, y, {"relaxation": relaxation}), (x, x, {"method": "symmetric"}),
                        (y, y, {"method": "symmetric"})):
        t1 = time.perf_counter()
        res.append(geomot.sinkhorn(u, v, **opts, **extra))
        times.append(time.perf_counter() - t1)
        print(f"  term {len(res)}: {times[-1]:.1f}s, {res[-1].n_iters} iterations, marginal error "
              f"{float(res[-1].marginal_error):.1e}, value {float(res[-1].value):.6f}", flush=True)
    t = time.perf_counter() - t0
    div = float(res[0].value - 0.5 * (res[1].value + res[2].value))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    errs = [float(r.marginal_error) for r in res]
    rec = {"n": n, "eps": eps, "tol": tol, "relaxation": relaxation, "divergence": div, "time": t,
           "term_times": times, "peak_rss_gib": peak, "iters": [r.n_iters for r in res], "marginal_errors": errs,
           "converged": [bool(r.converged) for r in res], "load_avg": os.getloadavg()}
    print(f"large    float32 N=M={n}: divergence {div:.6f} in {t:.1f}s ({rec['iters']} iterations, marginal "
          f"errors {', '.join(f'{e:.1e}' for e in errs)}), peak RSS {peak:.2f} GiB")
    return rec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["values", "speed", "sns", "large"], action="append")
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000])
    p.add_argument("--pot-max-n", type=int, default=4000, help="skip POT above this N (it is slow)")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="geomot's stopping threshold (L1 error of both marginals, measured on its float32 kernel)")
    p.add_argument("--geomloss-extra", type=int, default=0,
                   help="also run GeomLoss with this many extra iterations at the final blur")
    p.add_argument("--geomloss-extra-max-n", type=int, default=2000)
    p.add_argument("--geomloss-budget", type=float, default=200.0,
                   help="seconds per size for the equal-accuracy GeomLoss sweep (scaling, then extra iterations); "
                        "0 skips it")
    p.add_argument("--repeat", type=int, default=3,
                   help="best of this many runs for geomot and GeomLoss's default run (POT and extended: 1)")
    p.add_argument("--n-sns", type=int, default=2000)
    p.add_argument("--n-large", type=int, default=50000)
    p.add_argument("--eps-large", type=float, default=0.1**2)
    p.add_argument("--tol-large", type=float, default=1e-4)
    p.add_argument("--relax-large", type=float, default=1.5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every library")
    p.add_argument("--json", default=None, help="write the results here ('-' for stdout, last line)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or ["values", "speed", "sns", "large"])
    out: dict = {"torch_threads": torch.get_num_threads()}
    if "values" in only:
        out["values"] = bench_values()
    if "speed" in only:
        out["speed"] = bench_speed(args.sizes, args.pot_max_n, args.tol, args.geomloss_extra,
                                   args.geomloss_extra_max_n, args.repeat, args.geomloss_budget)
    if "sns" in only:
        out["sns"] = bench_sns(args.n_sns)
    if "large" in only:
        if only == {"large"}:
            out = bench_large(args.n_large, args.eps_large, args.tol_large, args.relax_large)
        else:  # in a child process, so that its peak RSS is its own
            cmd = [sys.executable, __file__, "--only", "large", "--n-large", str(args.n_large), "--eps-large",
                   str(args.eps_large), "--tol-large", str(args.tol_large), "--relax-large", str(args.relax_large),
                   "--json", "-"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            print(res.stdout.strip().splitlines()[-2])
            out["large"] = json.loads(res.stdout.strip().splitlines()[-1])
    if args.json == "-":
        print(json.dumps(out))
    elif args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
