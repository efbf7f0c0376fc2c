"""``geomot demo``: the main job of ``make demo``, on the shapes shipped in ``data/``.

Steps (each prints a short table and writes its files under ``--out``):

1. **shapes**: load the shipped meshes, build their measures (vertices, faces, samples, varifold), print a summary
   and write a picture of them (``shapes.png``);
2. **distances**: OT distances between the shapes (sliced family, Sinkhorn divergence, varifold kernel, Chamfer);

When ``data/`` is absent (an installed package, not a checkout), the same shapes are generated with
:mod:`geomot.io.synthetic`. Everything runs on the CPU in well under a minute and writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
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


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "shapes": step_shapes,
    "distances": step_distances,
}


def run_demo(out: str | Path = "out/demo", *, data: str | Path | None = None, steps: list[str] | None = None) -> dict:
    """Run the demo steps, print their tables and write ``summary.json`` under ``out``; return the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = list(STEPS) if not steps else steps
    for s in chosen:
        if s not in STEPS:
            raise ValidationError(f"--steps: unknown step {s!r}; valid: {', '.join(STEPS)}")
    data_dir = Path(data) if data is not None else (_REPO_DATA if _REPO_DATA.exists() else None)
    ctx: dict[str, Any] = {"out": out, "shapes": _shapes(data_dir)}
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
    run_demo(args.out, data=args.data, steps=args.steps)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo on the shipped shapes (what `make demo` runs)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo", help="output folder (created; default out/demo)")
    p.add_argument("--data", default=None, help="folder with the shipped shapes (default: the checkout's data/)")
    p.add_argument("--steps", nargs="+", default=None, help=f"subset of steps to run: {', '.join(STEPS)}")
    p.set_defaults(func=_run)
