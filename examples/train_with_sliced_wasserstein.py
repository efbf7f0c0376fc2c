"""Train a point-cloud autoencoder with a sliced-Wasserstein loss on padded, ragged batches (a template to copy).

What it does, step by step:

1. **Data.** Clouds sampled uniformly by area on the meshes shipped in ``data/`` (``icosphere``, ``torus``,
   ``blob`` and the two shapes of ``data/pair``), three times each at different sizes (384, 512 and 640 points),
   fresh samples every epoch. ``geomot.train.PointSetDataset`` samples and normalises each shape into the unit
   ball; a ``DataLoader`` with ``geomot.train.collate_point_sets`` pads a batch of clouds of different sizes into
   ``points (B, N_max, 3)`` + ``lengths (B,)``.
2. **Model.** A small ``geomot.models.PointNetAutoencoder`` (PointNet encoder whose max-pool skips the padding,
   fully connected decoder to 512 points, no batch norm), initialised from a seeded ``torch.Generator``.
3. **Loss.** ``geomot.sliced_wasserstein(reconstruction, points, y_lengths=lengths)``: the padding of the
   targets never enters the value or the gradient. ``--loss amortized`` uses ``geomot.AmortizedSlicedWasserstein``
   instead (an attention projector trained by its own ascent step inside every call, Nguyen et al., ICML 2023).
4. **Loop.** Adam, one line per epoch with the mean training loss, then an evaluation of every shape with the
   Sinkhorn divergence and a checkpoint (``model.pt``: the model's and optimiser's state, the settings) and
   ``log.json`` in ``--out``.

Every random draw comes from ``torch.Generator`` objects seeded by ``--seed`` (samples, batch order, initial
weights, projections), so two runs on the same machine print the same numbers. ``--device cuda`` runs on the GPU
(the default when one is present); the loss is then computed without host synchronisations inside
``geomot.data_checks(False)``.

Run from the repository root::

    python examples/train_with_sliced_wasserstein.py                  # 150 epochs, ~30 s on one CPU core
    python examples/train_with_sliced_wasserstein.py --quick          # 3 epochs of smaller clouds, a few seconds
    python examples/train_with_sliced_wasserstein.py --loss amortized --device cuda --epochs 200

``--data`` takes other mesh files or folders (a folder's meshes directly inside it or in its ``off/``
subfolder), or ``.npy`` arrays of clouds; ``--threads 1`` is often fastest on a CPU whose cores are busy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

import geomot
from geomot.models import AmortizedProjection, PointNetAutoencoder
from geomot.train import PointSetDataset, collate_point_sets

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = [ROOT / "data", ROOT / "data" / "pair"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA, help="mesh files/folders or .npy clouds")
    ap.add_argument("--sizes", type=int, nargs="+", default=[384, 512, 640], help="points per cloud, one copy each")
    ap.add_argument("--n-out", type=int, default=512, help="points of a reconstruction")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loss", choices=["sw", "amortized"], default="sw")
    ap.add_argument("--n-projections", type=int, default=100)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "train_with_sliced_wasserstein")
    ap.add_argument("--quick", action="store_true", help="3 epochs of clouds of 128-256 points (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.sizes, args.n_out = 3, [128, 192, 256], 256
    return args


def make_loader(args: argparse.Namespace) -> DataLoader:
    """Clouds of several sizes per shape (ragged), resampled every epoch, batched with padding + lengths."""
    parts = [
        PointSetDataset(args.data, n_points=n, seed=args.seed + i, normalize=True, resample=True)
        for i, n in enumerate(args.sizes)
    ]
    return DataLoader(
        ConcatDataset(parts),
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=collate_point_sets,
        generator=torch.Generator().manual_seed(args.seed),  # the batch order
    )


def make_model(args: argparse.Namespace, device: torch.device) -> PointNetAutoencoder:
    init = torch.Generator().manual_seed(args.seed)  # initial weights; torch's global seed is left alone
    model = PointNetAutoencoder(
        n_out=args.n_out,
        latent_dim=64,
        encoder_widths=(64, 128, 256),
        decoder_widths=(256, 256),
        batch_norm=False,
        generator=init,
    )
    return model.to(device)


def make_loss(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    if args.loss == "sw":
        return geomot.SlicedWasserstein(n_projections=args.n_projections)
    projector = AmortizedProjection("attention", dim=3, d_k=32, generator=torch.Generator().manual_seed(args.seed))
    return geomot.AmortizedSlicedWasserstein(
        projector=projector, distribution="vmf", kappa=10.0, n_projections=args.n_projections
    ).to(device)


def train(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    loader = make_loader(args)
    model = make_model(args, device)
    loss_fn = make_loss(args, device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    proj_gen = torch.Generator(device=device).manual_seed(args.seed + 1)  # directions, drawn on the data's device
    checks = device.type != "cuda"  # NaN scans read a flag back to the host: skip them on the GPU

    print(f"{len(loader.dataset)} clouds of {args.sizes} points, batches of {args.batch_size}, on {device}")
    history = []
    for epoch in range(args.epochs):
        for part in loader.dataset.datasets:
            part.set_epoch(epoch)  # new samples on the surfaces every epoch
        model.train()
        loss_fn.train()
        t0, total, batches = time.perf_counter(), torch.zeros((), device=device), 0
        for batch in loader:
            points = batch["points"].to(device)  # (B, N_max, 3), zero-padded
            lengths = batch["lengths"].to(device)  # (B,): how many rows of each item are real
            with geomot.data_checks(checks):
                recon = model(points, lengths)  # (B, n_out, 3)
                loss = loss_fn(recon, points, y_lengths=lengths, generator=proj_gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
            batches += 1
        mean = float(total) / max(batches, 1)  # one host synchronisation per epoch
        history.append(mean)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  {args.loss} loss {mean:.4f}  ({time.perf_counter() - t0:.1f} s)")

    # Evaluation: every cloud of the first size, Sinkhorn divergence (blur 0.05) between reconstruction and cloud.
    model.eval()
    loss_fn.eval()
    evaluation = next(iter(DataLoader(loader.dataset.datasets[0], batch_size=64, collate_fn=collate_point_sets)))
    with torch.no_grad():
        points, lengths = evaluation["points"].to(device), evaluation["lengths"].to(device)
        recon = model(points, lengths)
        div = geomot.sinkhorn_divergence(recon, points, y_lengths=lengths, eps=0.05**2, reduction="none")
    per_shape = dict(zip(evaluation["name"], div.tolist()))
    print("Sinkhorn divergence per shape:", {k: round(v, 4) for k, v in per_shape.items()})

    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["data"] = [str(p) for p in args.data]
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "loss": loss_fn.state_dict(),
                "settings": settings}, args.out / "model.pt")
    log = {"settings": settings, "epoch_loss": history, "sinkhorn_divergence": per_shape}
    (args.out / "log.json").write_text(json.dumps(log, indent=1))
    print(f"wrote {args.out / 'model.pt'} and {args.out / 'log.json'}")
    return log


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # a process-wide setting: the application's choice
    train(args)


if __name__ == "__main__":
    main()
