"""Point-cloud autoencoders trained with different losses, one budget for all, compared on held-out shapes.

The protocol of "Self-Attention Amortized Distributional Projection Optimization for Sliced Wasserstein
Point-Cloud Reconstruction" (Nguyen, Nguyen & Ho, ICML 2023), on the clouds this machine has: every loss trains
the same :class:`geomot.models.PointNetAutoencoder` (same seed, epochs, batch size and learning rate) through
:func:`geomot.train.train_autoencoder`, and each is scored on the test split by

- Chamfer: ``geomot.chamfer_distance`` (squared distances, mean over each cloud, both directions);
- SW_2 x 100: ``geomot.sliced_wasserstein`` with ``L = 100`` directions from a fixed generator;
- EMD: the exact ``W_2`` (POT's network simplex, root of the optimal cost);

all between a test cloud (centred, scaled into the unit ball) and its reconstruction, averaged over the test
clouds, together with the seconds per training epoch (mean over epochs, all losses in this one process).

Data (read in place from ``../shared/data``; a split copy of the ShapeNet rows is written to a temporary folder
outside the project): ShapeNet-55 clouds (rows 40-49 held out), the meshes of FAUST_r (subject 7, shapes
070-079, held out), TOSCA_r (classes centaur and wolf held out), SMAL_r (every fourth file held out), deform_sph
(every fifth held out) and common3d (every third held out). Meshes are sampled by area. Held-out groups are whole
subjects or classes where the dataset has them, so no pose of a test body is trained on.

Run: ``python benchmarks/bench_autoencoder.py [--points 1024] [--epochs 30] [--losses sw amortized-attention-vmf
...]``; ``--quick`` for a smoke run. Writes ``benchmarks/results/autoencoder_reconstruction.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import ot
import torch

import geomot
from geomot.train import AutoencoderConfig, PointSetDataset, collate_point_sets, load_autoencoder, train_autoencoder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_LOSSES = [
    "sw", "max-sw", "vmf-dsw", "amortized-linear-vmf", "amortized-generalized-linear-vmf",
    "amortized-nonlinear-vmf", "amortized-attention-vmf", "amortized-efficient-attention-vmf",
    "amortized-linformer-vmf", "chamfer", "emd",
]
PAPER_MODELNET40 = {  # Table 1 of the paper: CD (x100), SW_2 (x100), EMD, seconds per epoch (their GPU)
    "sw": (0.68, 89.61, 191.12, 106), "vmf-dsw": (0.67, 85.03, 187.75, 633),
    "amortized-attention-vmf": (0.67, 83.08, 186.27, 230),
    "amortized-efficient-attention-vmf": (0.68, 82.05, 186.46, 125),
    "amortized-linformer-vmf": (0.68, 81.03, 185.26, 123), "chamfer": (1.25, 681.20, 653.52, 95),
    "emd": (0.40, 94.54, 168.60, 208),
}


def split(tmp: Path) -> tuple[list[Path], list[Path]]:
    """Train and test sources (files), held-out groups as in the module docstring."""
    train: list[Path] = []
    test: list[Path] = []
    rows = np.load(DATA / "shapenet50" / "reconstruct_random_50_shapenetcore55.npy")
    np.save(tmp / "shapenet_train.npy", rows[:40])
    np.save(tmp / "shapenet_test.npy", rows[40:])
    train.append(tmp / "shapenet_train.npy")
    test.append(tmp / "shapenet_test.npy")
    rules = {
        "FAUST_r": lambda name, i: int(re.findall(r"\d+", name)[-1]) // 10 == 7,
        "TOSCA_r": lambda name, i: name.startswith(("centaur", "wolf")),
        "SMAL_r": lambda name, i: i % 4 == 3,
        "deform_sph": lambda name, i: i % 5 == 4,
    }
    for folder, held_out in rules.items():
        for i, f in enumerate(sorted((DATA / folder / "off").glob("*.off"))):
            (test if held_out(f.stem, i) else train).append(f)
    for i, f in enumerate(sorted((DATA / "common3d").glob("*.obj"))):
        (test if i % 3 == 2 else train).append(f)
    return train, test


@torch.no_grad()
def evaluate(run: Path, test: list[Path], n_points: int) -> dict[str, float]:
    model, _ = load_autoencoder(run)
    ds = PointSetDataset(test, n_points=n_points, seed=123)
    batch = collate_point_sets([ds[i] for i in range(len(ds))])
    x = batch["points"]
    rec = model(x)
    gen = torch.Generator().manual_seed(0)
    cd = geomot.chamfer_distance(rec, x, reduction="none")
    sw = geomot.sliced_wasserstein(rec, x, n_projections=100, generator=gen, reduction="none")
    emd = []
    for b in range(x.shape[0]):
        c = torch.cdist(rec[b].double(), x[b].double()).square().numpy()
        u = np.full(n_points, 1.0 / n_points)
        emd.append(float(np.sqrt(ot.emd2(u, u, c, numItermax=2_000_000))))
    return {"chamfer": float(cd.mean()), "sw2_x100": 100 * float(sw.mean()), "emd_w2": float(np.mean(emd)),
            "n_test": int(x.shape[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--losses", nargs="+", default=DEFAULT_LOSSES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "autoencoder_reconstruction.json"))
    ap.add_argument("--quick", action="store_true", help="256 points, 2 epochs, three losses")
    args = ap.parse_args()
    if args.quick:
        args.points, args.epochs, args.losses = 256, 2, ["sw", "amortized-attention-vmf", "chamfer"]
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        train, test = split(tmp)
        print(f"{len(PointSetDataset(train, n_points=args.points))} training clouds, "
              f"{len(PointSetDataset(test, n_points=args.points))} test clouds, {args.points} points each")
        for loss in args.losses:
            cfg = AutoencoderConfig(loss=loss, n_points=args.points, seed=args.seed)
            t0 = time.perf_counter()
            hist = train_autoencoder(train, tmp / loss, config=cfg, epochs=args.epochs, batch_size=args.batch_size,
                                     progress=False)
            row = {"loss": loss, "seconds_per_epoch": float(np.mean([h["seconds"] for h in hist])),
                   "train_seconds": time.perf_counter() - t0, "final_train_loss": hist[-1]["loss"],
                   **evaluate(tmp / loss, test, args.points)}
            rows.append(row)
            print(f"{loss:36s} CD {row['chamfer']:.5f}  SW2x100 {row['sw2_x100']:.3f}  EMD {row['emd_w2']:.4f}  "
                  f"{row['seconds_per_epoch']:.2f} s/epoch", flush=True)
            write(args, rows)


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    """Write the results so far (after every loss, so that a long run that is stopped keeps what it measured)."""
    base = next((r for r in rows if r["loss"] == "sw"), None)
    if base is not None:
        for r in rows:
            r["sw2_vs_sw"] = r["sw2_x100"] / base["sw2_x100"]
            r["time_vs_sw"] = r["seconds_per_epoch"] / base["seconds_per_epoch"]
    out = {
        "machine": platform.processor() or platform.machine(), "node": platform.node(),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "points": args.points, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
        "rows": rows, "paper_modelnet40": PAPER_MODELNET40,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
