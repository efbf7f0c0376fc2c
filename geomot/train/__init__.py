"""L6: training machinery shared by every learned part: datasets of point sets, ragged collate, checkpoints."""

from geomot.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from geomot.train.data import PointSetDataset, collate_point_sets, normalize_points

__all__ = [
    "CHECKPOINT_FORMAT",
    "PointSetDataset",
    "collate_point_sets",
    "load_checkpoint",
    "normalize_points",
    "save_checkpoint",
]
