"""Entropic transport plan and dual potentials between two point clouds, checked and drawn (a template to copy).

Two 2-D clouds, generated from a seeded ``torch.Generator``: the source is a mixture of two Gaussian blobs with
non-uniform masses ``a``, the target a noisy crescent with uniform masses ``b``. ``geomot.sinkhorn`` solves

    OT_eps(a, b) = min_{P >= 0, P 1 = a, P^T 1 = b} <P, C> + eps KL(P | a x b),   C_ij = |x_i - y_j|^2,

in the log domain (``eps = blur^2``, in the units of the squared distance) and returns the dual potentials
``f (N,)``, ``g (M,)`` with ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, the lazy plan and its own
marginal error. The script forms the dense ``N x M`` plan (fine for a few thousand points; use ``plan @ v`` and
``backend="online"`` beyond) and prints, computed again from the plan:

* the marginal errors ``|P 1 - a|_1`` and ``|P^T 1 - b|_1`` (the solver reports the first, after a column update
  that makes the second exact up to rounding);
* the transport cost ``<P, C>`` (``result.transport_cost``), the regularised value and the dual objective
  ``<a, f> + <b, g>``, equal at convergence;
* the debiased Sinkhorn divergence ``S_eps = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2``
  (``geomot.sinkhorn_divergence``, Feydy et al. 2019), which is 0 for identical measures.

The picture (``--out``, a PNG drawn with a matplotlib ``Figure``, no pyplot state) has three panels: the clouds
with the heaviest plan entries as segments and each source point's barycentric image ``(P y)_i / a_i``; the plan
as an image; and the potentials ``f`` on the source and ``g`` on the target.

    python examples/sinkhorn_plan.py                       # 600 x 800 points, float64, writes out/sinkhorn_plan.png
    python examples/sinkhorn_plan.py --quick               # 150 x 200 points
    python examples/sinkhorn_plan.py --blur 0.02 --out plan.png

``--threads 1`` is often fastest on a CPU whose cores are busy.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import geomot

ROOT = Path(__file__).resolve().parents[1]


def make_clouds(n: int, m: int, gen: torch.Generator, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Source: two Gaussian blobs (masses 2:1), target: a noisy crescent; ``(N, 2), (N,), (M, 2), (M,)``."""
    half = n // 2
    centres = torch.tensor([[-0.55, 0.45], [-0.4, -0.5]], dtype=dtype)
    which = (torch.arange(n) >= half).long()
    x = centres[which] + 0.18 * torch.randn(n, 2, generator=gen, dtype=dtype)
    a = torch.where(which == 0, 2.0, 1.0).to(dtype)
    a = a / a.sum()  # the upper blob carries twice the mass of the lower one per point
    angle = math.pi * (torch.rand(m, generator=gen, dtype=dtype) - 0.5)
    radius = 0.9 + 0.08 * torch.randn(m, generator=gen, dtype=dtype)
    y = torch.stack([radius * torch.cos(angle) - 0.1, radius * torch.sin(angle)], dim=1)
    b = torch.full((m,), 1.0 / m, dtype=dtype)
    return x, a, y, b


def solve(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, b: torch.Tensor, eps: float) -> dict:
    """The plan, its potentials and the checks printed by the script."""
    res = geomot.sinkhorn(x, y, eps=eps, x_weights=a, y_weights=b, tol=1e-9)
    plan = res.plan.dense()  # (N, M)
    cost = torch.cdist(x, y) ** 2  # (N, M), the squared Euclidean cost of the problem
    return {
        "result": res,
        "plan": plan,
        "row_error": float((plan.sum(1) - a).abs().sum()),
        "col_error": float((plan.sum(0) - b).abs().sum()),
        "cost_from_plan": float((plan * cost).sum()),
        "dual": float(a @ res.f + b @ res.g),
        "image": res.plan.barycentric_map(),  # (N, 2): sum_j P_ij y_j / a_i
        "divergence": float(geomot.sinkhorn_divergence(x, y, eps=eps, x_weights=a, y_weights=b)),
    }


def draw(x, a, y, b, out: dict, path: Path, blur: float) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure  # no pyplot: no backend chosen, no global state changed

    res, plan = out["result"], out["plan"]
    xs, ys, img = x.numpy(), y.numpy(), out["image"].numpy()
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)

    # 1. clouds, heaviest plan entries, barycentric images
    flat = plan.flatten()
    top = torch.topk(flat, k=min(4 * x.shape[0], flat.numel())).indices
    rows, cols = top // plan.shape[1], top % plan.shape[1]
    w = (flat[top] / flat[top].max()).numpy()
    segments = [[xs[i], ys[j]] for i, j in zip(rows.tolist(), cols.tolist())]
    colours = [(0.3, 0.3, 0.3, 0.05 + 0.5 * float(wij)) for wij in w]
    ax1.add_collection(LineCollection(segments, colors=colours, linewidths=0.5))
    ax1.scatter(xs[:, 0], xs[:, 1], s=4e3 * a.numpy(), c="tab:blue", label="source x (size: mass a)", zorder=3)
    ax1.scatter(ys[:, 0], ys[:, 1], s=4e3 * b.numpy(), c="tab:orange", label="target y", zorder=3)
    ax1.scatter(img[:, 0], img[:, 1], s=3, c="k", marker="x", label="barycentric image of x", zorder=4)
    ax1.set_title(f"plan (blur {blur:g}): {4 * x.shape[0]} heaviest entries")
    ax1.set_aspect("equal")
    ax1.legend(fontsize=7, loc="lower left")

    # 2. the plan, rows and columns ordered by height so that its structure shows
    order_x, order_y = torch.argsort(x[:, 1]), torch.argsort(y[:, 1])
    shown = plan[order_x][:, order_y].numpy()
    top_value = float(plan.max())
    norm = LogNorm(vmin=top_value * 1e-4, vmax=top_value, clip=True)  # entries below 1e-4 of the largest: black
    im = ax2.imshow(shown, aspect="auto", cmap="magma", norm=norm, interpolation="nearest")
    fig.colorbar(im, ax=ax2, shrink=0.8, label="P_ij (log scale)")
    ax2.set_xlabel("target points (by height)")
    ax2.set_ylabel("source points (by height)")
    ax2.set_title(f"P: {res.n_iters} iterations, marginal error {out['row_error']:.1e}")

    # 3. the dual potentials
    lo = float(min(res.f.min(), res.g.min()))
    hi = float(max(res.f.max(), res.g.max()))
    ax3.scatter(xs[:, 0], xs[:, 1], c=res.f.numpy(), s=12, cmap="coolwarm", vmin=lo, vmax=hi, marker="o")
    sc = ax3.scatter(ys[:, 0], ys[:, 1], c=res.g.numpy(), s=12, cmap="coolwarm", vmin=lo, vmax=hi, marker="s")
    fig.colorbar(sc, ax=ax3, shrink=0.8, label="f (circles), g (squares)")
    ax3.set_title("dual potentials")
    ax3.set_aspect("equal")
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=600, help="source points")
    ap.add_argument("--m", type=int, default=800, help="target points")
    ap.add_argument("--blur", type=float, default=0.05, help="entropic blur sigma; eps = sigma^2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "sinkhorn_plan.png", help="the picture (PNG)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="150 x 200 points")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.m = 150, 200
    if args.threads:
        torch.set_num_threads(args.threads)  # a process-wide setting: the application's choice

    gen = torch.Generator().manual_seed(args.seed)  # every random draw of the script
    x, a, y, b = make_clouds(args.n, args.m, gen, torch.float64)
    eps = args.blur**2
    out = solve(x, a, y, b, eps)
    res = out["result"]
    print(f"{args.n} -> {args.m} points, eps = {eps:g} (blur {args.blur:g}), float64")
    print(f"converged: {bool(res.converged)} in {res.n_iters} iterations")
    print(f"marginal error |P 1 - a|_1  = {out['row_error']:.2e}  (solver: {float(res.marginal_error):.2e})")
    print(f"marginal error |P^T 1 - b|_1 = {out['col_error']:.2e}")
    print(f"transport cost <P, C>  = {float(res.transport_cost):.6f}  (dense plan: {out['cost_from_plan']:.6f})")
    print(f"regularised value      = {float(res.value):.6f}  (dual <a, f> + <b, g>: {out['dual']:.6f})")
    print(f"Sinkhorn divergence    = {out['divergence']:.6f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(x, a, y, b, out, args.out, args.blur)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
