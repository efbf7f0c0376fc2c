"""``geomot demo``: the main job of ``make demo``, on the shapes shipped in ``data/``.

Steps (each prints a short table and writes its files under ``--out``):

1. **shapes**: load the shipped meshes, build their measures (vertices, faces, samples, varifold), print a summary
   and write a picture of them (``shapes.png``);
2. **distances**: OT distances between the shapes (sliced family, Sinkhorn divergence, varifold kernel, Chamfer);
3. **match**: training-free functional-map matching of the shipped pair, its geodesic error against the known
   ground truth, the map (``match_p2p.txt``) and a colour-transfer picture (``match.png``);
4. **deform**: neural-ODE deformation of the sphere into the blob driven by sliced Wasserstein on varifolds, its
   surface metrics, the trajectory (``deform.npz``), a GIF (``deform.gif``) and an offline HTML viewer
   (``deform.html``).

When ``data/`` is absent (an installed package, not a checkout), the same shapes are generated with
:mod:`geomot.io.synthetic`. Everything runs on the CPU in well under a minute and writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geomot._core.errors import ValidationError

__all__ = ["add_parser", "run_demo"]

_REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def _shapes(data: Path | None) -> dict[str, Any]:
    from geomot.io import ShapeDataset, load, synthetic

    if data is not None and (data / "icosphere.off").exists():
        pair = ShapeDataset(data / "pair")
        src, tgt = pair.names[0], pair.names[1]
        gt = pair.ground_truth(src, tgt)
        return {
            "icosphere": load(data / "icosphere.off", dtype=torch.float64),
            "torus": load(data / "torus.off", dtype=torch.float64),
            "blob": load(data / "blob.off", dtype=torch.float64),
            "pair": (pair.load(src, dtype=torch.float64), pair.load(tgt, dtype=torch.float64), gt.src_idx, gt.tgt_idx),
            "source": f"{data}",
        }
    p = synthetic.bumpy_pair()
    return {
        "icosphere": synthetic.icosphere(),
        "torus": synthetic.torus(),
        "blob": synthetic.blob(),
        "pair": (p.source, p.target, p.src_idx, p.tgt_idx),
        "source": "geomot.io.synthetic (data/ not found)",
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def step_shapes(ctx: dict[str, Any]) -> dict[str, Any]:
    """Summary of the shipped shapes and their measures, and a picture of them."""
    from geomot.structures import mesh_to_measure

    gen = torch.Generator().manual_seed(0)
    src, tgt = ctx["shapes"]["pair"][:2]
    meshes = {k: ctx["shapes"][k] for k in ("icosphere", "torus", "blob")} | {"pair source": src, "pair target": tgt}
    rows, out = [], {}
    for name, m in meshes.items():
        counts = {kind: int(mesh_to_measure(m, kind, n_samples=2000, generator=gen).lengths[0])
                  for kind in ("vertices", "faces", "samples", "varifold")}
        area = float(m.total_area()[0])
        rows.append([name, m.verts.shape[0], m.faces.shape[0], f"{area:.3f}", *counts.values()])
        out[name] = {"verts": m.verts.shape[0], "faces": m.faces.shape[0], "area": area, "atoms": counts}
    print(_table(rows, ["shape", "V", "F", "area", "vertices", "faces", "samples", "varifold"]))
    from geomot.viz import show

    picture = ctx["out"] / "shapes.png"
    show(list(meshes.values()), screenshot=picture, window_size=(1200, 800))
    print(f"picture: {picture}")
    return {"shapes": out, "files": [str(picture)]}


def step_distances(ctx: dict[str, Any]) -> dict[str, Any]:
    """OT distances between pairs of shipped shapes."""
    from geomot.cli.distance import compute_distance

    s = ctx["shapes"]
    pairs = {"icosphere-blob": (s["icosphere"], s["blob"]), "torus-blob": (s["torus"], s["blob"])}
    # (label, registered loss, mesh measure); the sliced family on area-uniform samples, and on varifolds
    losses = [
        ("sw (samples)", "sw", "samples"),
        ("cv-sw (samples)", "cv-sw", "samples"),
        ("ebsw (samples)", "ebsw", "samples"),
        ("max-sw (samples)", "max-sw", "samples"),
        ("sw-varifold", "sw-varifold", None),
        ("sinkhorn (samples)", "sinkhorn", "samples"),
        ("varifold kernel", "varifold", None),
        ("chamfer (samples)", "chamfer", "samples"),
    ]
    rows, out = [], {}
    for label, loss, measure in losses:
        if not _has_distance(loss):
            continue
        vals = []
        for pname, (a, b) in pairs.items():
            t = time.perf_counter()
            v = compute_distance(a, b, loss=loss, measure=measure, seed=0)
            vals.append(f"{v:.4g} ({1e3 * (time.perf_counter() - t):.0f} ms)")
            out.setdefault(pname, {})[label] = v
        rows.append([label, *vals])
    print(_table(rows, ["loss", *pairs]))
    return {"distances": out}


def _has_distance(name: str) -> bool:
    from geomot.cli.distance import DISTANCES

    return name in DISTANCES


def step_match(ctx: dict[str, Any]) -> dict[str, Any]:
    """Functional-map matching of the shipped pair, scored against its ground truth."""
    from geomot.correspondence import match
    from geomot.metrics import geodesic_error
    from geomot.viz import save_correspondence_png

    src, tgt, gt_src, gt_tgt = ctx["shapes"]["pair"]
    res = match(src, tgt)
    err = 100 * float(geodesic_error(res.p2p_21, tgt.verts, tgt.faces, gt_src, gt_tgt))
    p2p_file = ctx["out"] / "match_p2p.txt"
    p2p_file.write_text("\n".join(map(str, res.p2p_21.tolist())) + "\n")
    picture = save_correspondence_png(src.verts, src.faces, tgt.verts, tgt.faces, res.p2p_21, ctx["out"] / "match.png",
                                      n_lines=30, title="colour transfer (source <- target)")
    print(_table([[f"{src.verts.shape[0]} -> {tgt.verts.shape[0]}", f"{err:.2f}", f"{res.timings['total']:.1f}"]],
                 ["vertices", "geodesic error x100", "seconds"]))
    print(f"map: {p2p_file}\npicture: {picture}")
    return {"geodesic_error_x100": err, "timings": res.timings, "files": [str(p2p_file), str(picture)]}


def step_deform(ctx: dict[str, Any]) -> dict[str, Any]:
    """Neural-ODE deformation of the sphere into the blob (SW on varifolds), with a GIF and an HTML viewer."""
    import numpy as np

    from geomot.deformation import quick_fit
    from geomot.metrics import surface_metrics
    from geomot.viz import save_deformation_gif, save_deformation_html

    src, tgt = ctx["shapes"]["icosphere"], ctx["shapes"]["blob"]
    before = surface_metrics(src, tgt)
    res = quick_fit(src, tgt, max_iter=ctx["deform_steps"], progress=False)
    traj = res.trajectory.detach().to(torch.float32).numpy()
    npz = ctx["out"] / "deform.npz"
    np.savez(npz, verts=traj, faces=src.faces.numpy().astype(np.int64), times=res.times.numpy())
    gif = save_deformation_gif(traj, src.faces, ctx["out"] / "deform.gif", times=res.times)
    html = save_deformation_html(traj, src.faces, ctx["out"] / "deform.html", times=res.times, target=tgt)
    m = res.metrics
    rows = [["before", f"{before.assd:.4f}", f"{before.hd90:.4f}", "-", "-"],
            ["after", f"{m.assd:.4f}", f"{m.hd90:.4f}", str(max(res.frame_self_intersections)), f"{res.wall_time:.1f}"]]
    print(_table(rows, ["", "ASSD", "HD90", "self-intersections (max over frames)", "seconds"]))
    print(f"trajectory: {npz}\nanimation: {gif}\nviewer: {html}")
    return {"before": before._asdict(), "after": m._asdict(), "steps": res.n_steps, "wall_time": res.wall_time,
            "frame_self_intersections": list(res.frame_self_intersections), "files": [str(npz), str(gif), str(html)]}


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "shapes": step_shapes,
    "distances": step_distances,
    "match": step_match,
    "deform": step_deform,
}


def run_demo(
    out: str | Path = "out/demo",
    *,
    data: str | Path | None = None,
    steps: list[str] | None = None,
    deform_steps: int = 100,
) -> dict:
    """Run the demo steps, print their tables and write ``summary.json`` under ``out``; return the summary.

    ``deform_steps``: optimisation steps of the deformation (:func:`geomot.deformation.quick_fit`).
    """
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(STEPS) if not steps else steps
    for s in chosen:
        if s not in STEPS:
            raise ValidationError(f"--steps: unknown step {s!r}; valid: {', '.join(STEPS)}")
    data_dir = Path(data) if data is not None else (_REPO_DATA if _REPO_DATA.exists() else None)
    ctx: dict[str, Any] = {"out": out, "shapes": _shapes(data_dir), "deform_steps": deform_steps}
    print(f"geomot demo: shapes from {ctx['shapes']['source']}; outputs in {out}/")
    summary: dict[str, Any] = {"steps": {}}
    for s in chosen:
        print(f"\n== {s}: {STEPS[s].__doc__.strip().splitlines()[0]}")
        t = time.perf_counter()
        res = STEPS[s](ctx)
        res["seconds"] = round(time.perf_counter() - t, 2)
        summary["steps"][s] = res
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nsummary: {out / 'summary.json'}")
    return summary


def _run(args: argparse.Namespace) -> int:
    run_demo(args.out, data=args.data, steps=args.steps, deform_steps=args.deform_steps)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo on the shipped shapes (what `make demo` runs)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo", help="output folder (created; default out/demo)")
    p.add_argument("--data", default=None, help="folder with the shipped shapes (default: the checkout's data/)")
    p.add_argument("--steps", nargs="+", default=None, help=f"subset of steps to run: {', '.join(STEPS)}")
    p.add_argument("--deform-steps", type=int, default=100, help="optimisation steps of the deformation (default 100)")
    p.set_defaults(func=_run)
