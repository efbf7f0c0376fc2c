"""Diffeomorphic cortical-surface deformation with OT losses (Le et al., ICLR 2024) on fsaverage5.

Part 1 (``--part cortex``), fsaverage5 left hemisphere (10,242 vertices, 20,480 faces):
  * white -> pial;
  * sphere (centred on the white surface's centre and scaled to its RMS radius) -> white.
  For each data term — SW between varifolds, SW between surface samples, the kernel varifold distance,
  Chamfer, the exact point-to-surface term and the default combination (SW-varifold annealed + point-to-surface)
  — the same kernel velocity field, regulariser and solver are fitted for the same wall-time budget (``--budget``
  seconds, ``fit(max_time=...)``, whose schedule follows the budget); reported: ASSD, HD90 (mm),
  self-intersecting faces (max over the trajectory), flipped faces, steps done and time.

Part 2 (``--part dataset``), ``deform_sph`` (64 deformed spheres, 1,922 vertices; ``deform_sph_1``, a sphere,
  projected onto its mean radius is the template): one shape-conditioned flow (PointNet code + conditioned MLP
  velocity, trained on the exact point-to-surface term + Laplacian) deforms the template into 47 training shapes
  and is evaluated on the 16 it never saw, against fitting unseen shapes one by one with ``fit``'s defaults.

Results go to ``deformation_cortex.json`` and ``deformation_cortex.png`` in ``--out`` (default
``out/deform_cortex``; ``--docs`` writes the files the docs show, ``docs/deformation_cortex.*``). The figure is a
bar chart of the metrics, with no picture of the data. Data are read in place from ``../shared/data``
(fsaverage5 also ships inside nilearn); nothing is copied.

    python examples/deform_cortex.py --part cortex --budget 60 --threads 1 --docs
    python examples/deform_cortex.py --part dataset --threads 1 --docs
    python examples/deform_cortex.py --part figure --docs
    python examples/deform_cortex.py --quick       # white -> pial, sw-varifold for 2 s, then the figure
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

import geomot
from geomot.deformation.dataset import evaluate_conditioned, train_conditioned
from geomot.deformation.normalize import surface_frame
from geomot.metrics import surface_metrics
from geomot.structures import Mesh

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
JSON_NAME, PNG_NAME = "deformation_cortex.json", "deformation_cortex.png"
LOSSES = ("sw-varifold", "sw", "varifold", "chamfer", "surface", "sw-varifold+surface")
log = logging.getLogger("deform_cortex")


def _update(out: Path, key: str, value: object) -> None:
    path = out / JSON_NAME
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _fsaverage(surface: str) -> Mesh:
    root = SHARED / "fsaverage5"
    return geomot.load_fsaverage5(surface, root=root if root.is_dir() else None)


def cortex(out: Path, budget: float, tasks: list[str], losses: list[str]) -> None:
    white, pial, sphere = _fsaverage("white"), _fsaverage("pial"), _fsaverage("sphere")
    fw, fs = surface_frame(white.verts, white.faces), surface_frame(sphere.verts, sphere.faces)
    sphere_on_white = Mesh((sphere.verts - fs.center) / fs.scale * fw.scale + fw.center, sphere.faces)
    pairs = {"white->pial": (white, pial), "sphere->white": (sphere_on_white, white)}
    for task in tasks:
        src, tgt = pairs[task]
        base = surface_metrics(src, tgt)
        rows = {"undeformed": {"assd": base.assd, "hd90": base.hd90}}
        for loss in losses:
            t0 = time.perf_counter()
            # same field (kernel on every vertex), solver, regulariser (Laplacian, weight 1), seed and schedule
            # (warm-up + cosine over the time budget); only the data term changes
            res = geomot.deform.fit(src, tgt, loss=loss, max_time=budget, max_iter=100_000, progress=False)
            m = res.metrics
            rows[loss] = {"assd": m.assd, "hd90": m.hd90, "hausdorff": m.hausdorff,
                          "self_intersections": max(res.frame_self_intersections),
                          "flipped_faces": m.flipped_faces, "steps": res.n_steps,
                          "fit_seconds": res.wall_time, "total_seconds": time.perf_counter() - t0,
                          "neighbour_searches": getattr(res.field, "n_searches", None),
                          "loss_history": res.loss_history[:: max(1, res.n_steps // 50)].tolist()}
            log.info("%s %s: ASSD %.3f HD90 %.3f SI %d in %d steps", task, loss, m.assd, m.hd90,
                     max(res.frame_self_intersections), res.n_steps)
        _update(out, task, {"budget_seconds": budget, "threads": torch.get_num_threads(), "rows": rows})


def _deform_sph() -> tuple[Mesh, list[Mesh], list[str]]:
    folder = SHARED / "deform_sph" / "off"
    names = sorted((p.stem for p in folder.glob("*.off")), key=lambda s: int(s.rsplit("_", 1)[1]))
    shapes = [geomot.load(folder / f"{n}.off") for n in names]
    # the template: deform_sph_1 (a near-perfect sphere) projected onto its mean radius — same connectivity
    v0 = shapes[0].verts
    r = v0.norm(dim=1, keepdim=True)
    template = Mesh(v0 / r * r.mean(), shapes[0].faces)
    return template, shapes[1:], names[1:]


def dataset(out: Path, steps: int, n_per_shape: int, per_shape_steps: int | None, loss: str = "surface",
            lr: float = 3e-3, laplacian: float = 1.0, n_shapes: int | None = None) -> None:
    template, shapes, names = _deform_sph()
    if n_shapes is not None:  # a smaller run: the first shapes, a quarter of them held out
        shapes, names = shapes[:n_shapes], names[:n_shapes]
    n_test = 16 if n_shapes is None else max(1, len(shapes) // 4)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(shapes), generator=g).tolist()
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    train = [shapes[i] for i in train_idx]
    test = [shapes[i] for i in test_idx]
    checkpoint_dir = ROOT / "out" if out == ROOT / "docs" else out  # the model never goes into docs/
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    regs = {"laplacian": laplacian} if laplacian > 0 else {}
    fitted = train_conditioned(template, train, loss=loss, lr=lr, regularizers=regs, max_iter=steps, batch_size=4,
                               code_dim=64, n_time_steps=5,
                               field_options={"hidden": 128, "fourier_features": 16},
                               checkpoint=checkpoint_dir / "deform_sph_model.pt", checkpoint_every=100)
    train_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    learned = evaluate_conditioned(fitted, template, test)
    infer_time = (time.perf_counter() - t1) / len(test)
    seen = evaluate_conditioned(fitted, template, train)
    undeformed = [surface_metrics(template, t) for t in test]
    per_shape = []
    for t in test[:n_per_shape]:
        res = geomot.deform.fit(template, t, max_iter=per_shape_steps, progress=False)
        per_shape.append({"assd": res.metrics.assd, "hd90": res.metrics.hd90, "seconds": res.wall_time,
                          "steps": res.n_steps, "self_intersections": max(res.frame_self_intersections)})
        log.info("per-shape fit: %s", per_shape[-1])
    summary = {
        "train_shapes": len(train), "test_shapes": len(test), "train_steps": steps,
        "threads": torch.get_num_threads(), "loss": loss, "lr": lr, "regularizers": regs,
        "train_seconds": train_time, "inference_seconds_per_shape": infer_time,
        "undeformed_assd": float(np.mean([m.assd for m in undeformed])),
        "undeformed_hd90": float(np.mean([m.hd90 for m in undeformed])),
        "learned_assd": float(np.mean([m.assd for m in learned])),
        "learned_hd90": float(np.mean([m.hd90 for m in learned])),
        "learned_train_assd": float(np.mean([m.assd for m in seen])),
        "learned_self_intersections": int(max(m.self_intersections for m in learned)),
        "learned_flipped_faces": int(max(m.flipped_faces for m in learned)),
        "per_shape_self_intersections": [p["self_intersections"] for p in per_shape],
        "per_shape_steps_done": [p["steps"] for p in per_shape],
        "undeformed_assd_same_shapes": float(np.mean([m.assd for m in undeformed[:max(n_per_shape, 1)]])),
        "learned_hd90_same_shapes": float(np.mean([m.hd90 for m in learned[:max(n_per_shape, 1)]])),
        "per_shape_n": n_per_shape, "per_shape_steps": per_shape_steps,
        "per_shape_assd": float(np.mean([p["assd"] for p in per_shape])) if per_shape else None,
        "per_shape_hd90": float(np.mean([p["hd90"] for p in per_shape])) if per_shape else None,
        "per_shape_seconds": float(np.mean([p["seconds"] for p in per_shape])) if per_shape else None,
        "learned_assd_same_shapes": float(np.mean([m.assd for m in learned[:max(n_per_shape, 1)]])),
        "test_names": [names[i] for i in test_idx],
    }
    log.info("dataset: %s", summary)
    # only the default training run goes to the JSON read by the docs; variants are printed
    if (loss, lr, laplacian, n_shapes) == ("surface", 3e-3, 1.0, None):
        _update(out, "deform_sph", summary)


def figure(out: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no backend chosen, no global state changed

    data = json.loads((out / JSON_NAME).read_text())
    tasks = [t for t in ("white->pial", "sphere->white") if t in data]
    if not tasks:
        log.info("no cortex results in %s: no figure", out / JSON_NAME)
        return
    fig = Figure(figsize=(5 * 2 * len(tasks), 3.6))
    axes = np.atleast_1d(fig.subplots(1, 2 * len(tasks)))
    for k, task in enumerate(tasks):
        rows = data[task]["rows"]
        names = ["undeformed", *[n for n in LOSSES if n in rows]]
        for j, metric in enumerate(("assd", "hd90")):
            ax = axes[2 * k + j]
            colors = ["0.6", "C0", "C1", "C2", "C3", "C4", "C5"][: len(names)]
            ax.bar(names, [rows[n][metric] for n in names], color=colors)
            ax.set_title(f"{task}: {metric.upper()} (mm), {data[task]['budget_seconds']:.0f} s each")
            ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out / PNG_NAME, dpi=110)
    log.info("wrote %s", out / PNG_NAME)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["cortex", "dataset", "figure"], default=None,
                        help="required, except with --quick (cortex, then figure)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of fitting per loss (cortex)")
    parser.add_argument("--tasks", default="white->pial,sphere->white")
    parser.add_argument("--losses", default=",".join(LOSSES), help="data terms compared (cortex)")
    parser.add_argument("--steps", type=int, default=500, help="training steps (dataset)")
    parser.add_argument("--per-shape", type=int, default=4, help="unseen shapes also fitted one by one")
    parser.add_argument("--per-shape-steps", type=int, default=None, help="default: fit's (by mesh size)")
    parser.add_argument("--loss", default="surface", help="training data term (dataset)")
    parser.add_argument("--lr", type=float, default=3e-3, help="training peak learning rate (dataset)")
    parser.add_argument("--laplacian", type=float, default=1.0, help="training Laplacian weight, 0 = none (dataset)")
    parser.add_argument("--n-shapes", type=int, default=None, help="use the first N shapes only (dataset)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "deform_cortex", help="folder of the results")
    parser.add_argument("--docs", action="store_true", help="write into docs/ (the files the docs show)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: cortex on white->pial with sw-varifold for 2 s (dataset: 5 "
                             "steps on 8 shapes, no per-shape fits), then the figure")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.part is None and not args.quick:
        parser.error("--part is required (or --quick)")
    out = ROOT / "docs" if args.docs else args.out
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.budget, args.tasks, args.losses = 2.0, "white->pial", "sw-varifold"
        args.steps, args.per_shape, args.n_shapes = 5, 0, args.n_shapes or 8
    parts = ["cortex", "figure"] if args.part is None else [args.part]
    for part in parts:
        if part == "cortex":
            cortex(out, args.budget, args.tasks.split(","), args.losses.split(","))
        elif part == "dataset":
            dataset(out, args.steps, args.per_shape, args.per_shape_steps, args.loss, args.lr, args.laplacian,
                    n_shapes=args.n_shapes)
        else:
            figure(out)


if __name__ == "__main__":
    main()
