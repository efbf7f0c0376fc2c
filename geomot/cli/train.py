"""``geomot train autoencoder``: train a point-cloud autoencoder with one of geomot's losses.

Under ``torchrun --nproc_per_node K -m geomot.cli train ...`` each process trains on its share of the data with
DistributedDataParallel (Gloo on the CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import json

from geomot.train.autoencoder import AutoencoderConfig, loss_names, train_autoencoder

__all__ = ["add_parser"]


def _run_autoencoder(args: argparse.Namespace) -> int:
    config = AutoencoderConfig(
        loss=args.loss, n_points=args.points, latent_dim=args.latent_dim, encoder_widths=tuple(args.encoder_widths),
        decoder_widths=tuple(args.decoder_widths), n_projections=args.n_projections,
        kappa=args.kappa, lr=args.lr, seed=args.seed,
    )
    history = train_autoencoder(
        args.data, args.out, config=config, epochs=args.epochs, batch_size=args.batch_size, resume=args.resume,
        max_minutes=args.max_minutes, device=args.device, progress=not args.quiet,
    )
    if history:
        print(json.dumps(history[-1]))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a model on a folder of shapes or a .npy batch of clouds")
    kinds = p.add_subparsers(dest="model", metavar="MODEL")
    kinds.required = True
    ae = kinds.add_parser(
        "autoencoder",
        help="a PointNet autoencoder of point clouds",
        description="Train a PointNet autoencoder (Conv1d 3-64-64-64-128-1024, max-pool, 256-d code, FC decoder) "
        "to reconstruct point clouds, with the loss given by --loss. A checkpoint is written to OUT/checkpoint.pt "
        "after every epoch and the loss and seconds of every epoch to OUT/log.json.",
    )
    ae.add_argument("--data", nargs="+", required=True, metavar="PATH",
                    help=".npy files of (B, N, 3) clouds and/or folders of meshes (sampled by area)")
    ae.add_argument("--loss", default="sw", metavar="LOSS", help=f"one of: {', '.join(loss_names())} (default: sw)")
    ae.add_argument("--points", type=int, default=2048, help="points per cloud (default: 2048)")
    ae.add_argument("--epochs", type=int, default=100, help="total number of epochs (default: 100)")
    ae.add_argument("--batch-size", type=int, default=32, help="clouds per step and process (default: 32)")
    ae.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    ae.add_argument("--latent-dim", type=int, default=256, help="width of the code (default: 256)")
    ae.add_argument("--encoder-widths", type=int, nargs="+", default=[64, 64, 64, 128, 1024], metavar="W",
                    help="widths of the encoder's per-point layers (default: 64 64 64 128 1024)")
    ae.add_argument("--decoder-widths", type=int, nargs="+", default=[1024, 1024], metavar="W",
                    help="hidden widths of the decoder (default: 1024 1024)")
    ae.add_argument("--n-projections", type=int, default=100, help="directions of the sliced losses (default: 100)")
    ae.add_argument("--kappa", type=float, default=10.0, help="vMF concentration of the vMF losses (default: 10)")
    ae.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and directions (default: 0)")
    ae.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoint.pt, log.json)")
    ae.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    ae.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock budget: no epoch starts that would overrun it")
    ae.add_argument("--device", default=None, help="torch device (default: CUDA when available, else the CPU)")
    ae.add_argument("--quiet", action="store_true", help="no progress bars")
    ae.set_defaults(func=_run_autoencoder)
    return p
