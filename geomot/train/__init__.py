"""L6: training machinery shared by every learned part: point-set datasets and ragged collate, atomic checkpoints,
the epoch loop (DDP, exact resume, logs), and the point-cloud autoencoder's training and reconstruction."""

from geomot.train.autoencoder import AUTOENCODER_LOSSES, AutoencoderConfig, loss_names, train_autoencoder
from geomot.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from geomot.train.data import PointSetDataset, collate_point_sets, normalize_points
from geomot.train.loop import DistContext, Trainer, distributed_context
from geomot.train.reconstruct import load_autoencoder, reconstruct

__all__ = [
    "AUTOENCODER_LOSSES",
    "CHECKPOINT_FORMAT",
    "AutoencoderConfig",
    "DistContext",
    "PointSetDataset",
    "Trainer",
    "collate_point_sets",
    "distributed_context",
    "load_autoencoder",
    "load_checkpoint",
    "loss_names",
    "normalize_points",
    "reconstruct",
    "save_checkpoint",
    "train_autoencoder",
]
