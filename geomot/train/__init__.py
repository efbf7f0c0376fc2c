"""L6: training machinery shared by every learned part: point-set datasets and ragged collate, atomic checkpoints,
the epoch loop (DDP, exact resume, logs), the point-cloud autoencoder's training and reconstruction, the learned
matcher's training, and the evaluation of matchers on dataset folders."""

from geomot.train.autoencoder import AUTOENCODER_LOSSES, AutoencoderConfig, loss_names, train_autoencoder
from geomot.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from geomot.train.data import PointSetDataset, collate_point_sets, normalize_points
from geomot.train.evaluate import PairResult, evaluate_dataset, merge_evaluations, pck_curve, summarize
from geomot.train.loop import DistContext, Trainer, distributed_context
from geomot.train.matcher import MatcherConfig, ShapeCollection, ShapePairDataset, load_matcher, train_matcher
from geomot.train.reconstruct import load_autoencoder, reconstruct

__all__ = [
    "AUTOENCODER_LOSSES",
    "CHECKPOINT_FORMAT",
    "AutoencoderConfig",
    "DistContext",
    "MatcherConfig",
    "PairResult",
    "PointSetDataset",
    "ShapeCollection",
    "ShapePairDataset",
    "Trainer",
    "collate_point_sets",
    "distributed_context",
    "evaluate_dataset",
    "load_autoencoder",
    "load_checkpoint",
    "load_matcher",
    "loss_names",
    "merge_evaluations",
    "normalize_points",
    "pck_curve",
    "reconstruct",
    "save_checkpoint",
    "summarize",
    "train_autoencoder",
    "train_matcher",
]
