"""``geomot reconstruct RUN INPUT --out OUT.npy``: reconstructions of point clouds by a trained autoencoder."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from geomot.train.reconstruct import reconstruct

__all__ = ["add_parser"]


def _run(args: argparse.Namespace) -> int:
    rec = reconstruct(args.run, args.input, batch_size=args.batch_size, device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, rec)
    print(f"wrote {out}: {rec.shape[0]} reconstructions of {rec.shape[1]} points")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct point clouds with a trained autoencoder",
        description="Encode and decode the clouds of INPUT (a .npy (B, N, 3) file or a folder of meshes) with the "
        "autoencoder of RUN (a run folder of geomot train autoencoder, or its checkpoint file) and write the "
        "(B, N, 3) reconstructions, in the inputs' own coordinates, to OUT.",
    )
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint file")
    p.add_argument("input", nargs="+", metavar="INPUT", help=".npy file(s) of clouds and/or mesh folder(s)")
    p.add_argument("--out", required=True, metavar="OUT.npy", help="output .npy file")
    p.add_argument("--batch-size", type=int, default=32, help="clouds per forward pass (default: 32)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.set_defaults(func=_run)
    return p
