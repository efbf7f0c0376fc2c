"""``geomot train autoencoder`` / ``geomot train matcher``: train a point-cloud autoencoder with one of geomot's
losses, or a learned matcher (DiffusionNet + deep functional maps) on folders of meshes, without correspondences.

Under ``torchrun --nproc_per_node K -m geomot.cli train ...`` each process trains on its share of the data with
DistributedDataParallel (Gloo on the CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import json

from geomot.train.autoencoder import AutoencoderConfig, loss_names, train_autoencoder
from geomot.train.loop import LR_SCHEDULES
from geomot.train.matcher import MATCHER_AUGMENTATIONS, MatcherConfig, train_matcher

__all__ = ["add_parser"]


def _run_autoencoder(args: argparse.Namespace) -> int:
    config = AutoencoderConfig(
        loss=args.loss, n_points=args.points, latent_dim=args.latent_dim, encoder_widths=tuple(args.encoder_widths),
        decoder_widths=tuple(args.decoder_widths), n_projections=args.n_projections,
        kappa=args.kappa, lr=args.lr, projector_lr=args.projector_lr, projector_betas=tuple(args.projector_betas),
        seed=args.seed,
    )
    history = train_autoencoder(
        args.data, args.out, config=config, epochs=args.epochs, batch_size=args.batch_size, resume=args.resume,
        max_minutes=args.max_minutes, device=args.device, progress=not args.quiet,
    )
    if history:
        print(json.dumps(history[-1]))
    return 0


def _run_matcher(args: argparse.Namespace) -> int:
    config = MatcherConfig(
        input=args.input, k_eig=args.k_eig, k_fmap=args.k_fmap, width=args.width, n_blocks=args.blocks,
        out_channels=args.out_channels, w_sw=args.w_sw, lr=args.lr, lr_schedule=args.lr_schedule,
        min_lr=args.min_lr, max_vertices=args.max_vertices, augment=args.augment, up_axis=args.up_axis,
        pairs_per_epoch=args.pairs_per_epoch, seed=args.seed,
    )
    history = train_matcher(
        args.data, args.out, config=config, epochs=args.epochs, batch_size=args.batch_size, resume=args.resume,
        max_minutes=args.max_minutes, cache_dir=args.cache_dir, device=args.device, progress=not args.quiet,
    )
    if history:
        print(json.dumps(history[-1]))
    return 0


def _add_run_options(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, unit: str) -> None:
    p.add_argument("--epochs", type=int, default=epochs, help=f"total number of epochs (default: {epochs})")
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help=f"{unit} per step and process (default: {batch_size})")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoint.pt, log.json)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget: no epoch starts that would overrun it")
    p.add_argument("--device", default=None, help="torch device (default: CUDA when available, else the CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_matcher(kinds: argparse._SubParsersAction) -> None:
    d = MatcherConfig()
    m = kinds.add_parser(
        "matcher",
        help="a learned matcher (DiffusionNet + deep functional maps), unsupervised",
        description="Train DiffusionNet features with the unsupervised deep functional map loss (bijectivity, "
        "orthogonality, coupling with the soft point maps and the sliced-Wasserstein feature alignment) on every "
        "ordered pair of the shapes in --data; no correspondence is read. Shapes are scaled to unit area and "
        "decimated to --max-vertices for training; their operators are cached. Use the result with "
        "geomot match SRC TGT --checkpoint RUN_DIR.",
    )
    m.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="folders of meshes (DIR/off/ or DIR) and/or mesh files")
    m.add_argument("--input", default=d.input, choices=("wks", "xyz"), help=f"input features (default: {d.input})")
    m.add_argument("--augment", default=d.augment, choices=MATCHER_AUGMENTATIONS,
                   help="with --input xyz: turn every training shape by a random rotation about --up-axis "
                   f"('heading') or in SO(3) (default: {d.augment})")
    m.add_argument("--up-axis", type=int, default=d.up_axis, choices=(0, 1, 2),
                   help=f"the axis 'heading' rotations turn about, 0/1/2 = x/y/z (default: {d.up_axis})")
    m.add_argument("--k-eig", type=int, default=d.k_eig, help=f"eigenpairs of the diffusion (default: {d.k_eig})")
    m.add_argument("--k-fmap", type=int, default=d.k_fmap,
                   help=f"eigenfunctions of the functional maps (default: {d.k_fmap})")
    m.add_argument("--width", type=int, default=d.width, help=f"DiffusionNet width (default: {d.width})")
    m.add_argument("--blocks", type=int, default=d.n_blocks, help=f"DiffusionNet blocks (default: {d.n_blocks})")
    m.add_argument("--out-channels", type=int, default=d.out_channels,
                   help=f"feature channels (default: {d.out_channels})")
    m.add_argument("--w-sw", type=float, default=d.w_sw,
                   help=f"weight of the sliced-Wasserstein feature alignment (default: {d.w_sw:g})")
    m.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default: {d.lr:g})")
    m.add_argument("--lr-schedule", default=d.lr_schedule, choices=LR_SCHEDULES,
                   help=f"learning-rate schedule over the epochs or the --max-minutes budget "
                   f"(default: {d.lr_schedule})")
    m.add_argument("--min-lr", type=float, default=d.min_lr,
                   help=f"learning rate the cosine schedule ends at (default: {d.min_lr:g})")
    m.add_argument("--max-vertices", type=int, default=d.max_vertices,
                   help=f"decimate training shapes to this many vertices, 0 never (default: {d.max_vertices})")
    m.add_argument("--pairs-per-epoch", type=int, default=d.pairs_per_epoch,
                   help=f"ordered pairs drawn per epoch (default: {d.pairs_per_epoch})")
    m.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of weights, pairs and directions (default: {d.seed})")
    m.add_argument("--cache-dir", default=None, help="operator cache (default: RUN_DIR/operators)")
    _add_run_options(m, epochs=20, batch_size=1, unit="pairs")
    m.set_defaults(func=_run_matcher)


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
    ae.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    ae.add_argument("--latent-dim", type=int, default=256, help="width of the code (default: 256)")
    ae.add_argument("--encoder-widths", type=int, nargs="+", default=[64, 64, 64, 128, 1024], metavar="W",
                    help="widths of the encoder's per-point layers (default: 64 64 64 128 1024)")
    ae.add_argument("--decoder-widths", type=int, nargs="+", default=[1024, 1024], metavar="W",
                    help="hidden widths of the decoder (default: 1024 1024)")
    ae.add_argument("--n-projections", type=int, default=100, help="directions of the sliced losses (default: 100)")
    ae.add_argument("--kappa", type=float, default=None,
                    help="vMF concentration of the vMF losses (default: 10 for vmf-dsw, 1 for the amortised losses)")
    ae.add_argument("--projector-lr", type=float, default=1e-3,
                    help="learning rate of the projector's Adam (amortized-* losses; default: 1e-3)")
    ae.add_argument("--projector-betas", type=float, nargs=2, default=[0.0, 0.9], metavar=("B1", "B2"),
                    help="betas of the projector's Adam (default: 0 0.9)")
    ae.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and directions (default: 0)")
    _add_run_options(ae, epochs=100, batch_size=32, unit="clouds")
    ae.set_defaults(func=_run_autoencoder)
    _add_matcher(kinds)
    return p
