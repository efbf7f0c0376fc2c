"""Reconstructions of point clouds by a trained autoencoder, in the inputs' own coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from geomot._core.checks import check_int
from geomot.train.checkpoint import load_checkpoint

__all__ = ["load_autoencoder", "reconstruct"]


def load_autoencoder(run: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The autoencoder saved in a run folder (``RUN_DIR/checkpoint.pt``) or a checkpoint file, in eval mode, and
    its configuration.

    Raises:
        FileFormatError: no checkpoint, or a truncated / foreign file.
        ValidationError: a checkpoint of another kind of model.
    """
    from geomot.train.autoencoder import AutoencoderConfig, build_autoencoder
    from geomot.train.loop import CHECKPOINT_NAME

    path = Path(run)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    data = load_checkpoint(path, kind="autoencoder")
    config = AutoencoderConfig(**data["config"])
    model = build_autoencoder(config, device)
    model.load_state_dict(data["model"])
    return model.eval(), data["config"]


@torch.no_grad()
def reconstruct(
    run: str | Path,
    inputs: str | Path | Sequence[str | Path],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Encode and decode every cloud of ``inputs`` (``.npy`` ``(B, N, 3)`` files and/or mesh folders).

    Each input is normalised as in training (centred, scaled into the unit ball), reconstructed, and mapped back
    with its own centre and scale, so the output lies where the input lies.

    Returns:
        ``(B, n_points, 3)`` float32 reconstructions, in the order of the inputs.
    """
    from geomot.train.data import PointSetDataset, collate_point_sets

    batch_size = check_int(batch_size, "batch_size", at_least=1)
    model, config = load_autoencoder(run, device=device)
    sources = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    dataset = PointSetDataset(sources, n_points=config["n_points"], seed=config["seed"])
    out = []
    for start in range(0, len(dataset), batch_size):
        batch = collate_point_sets([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        pts, lengths = batch["points"].to(device), batch["lengths"].to(device)
        rec = model(pts, lengths=lengths)
        scale, centre = batch["scale"].to(device), batch["centre"].to(device)
        out.append((rec * scale[:, None, None] + centre[:, None, :]).cpu())
    return torch.cat(out).numpy().astype(np.float32)
