"""Point-set datasets for training: ``.npy`` batches and folders of meshes, with a ragged collate function.

Every learned part of geomot (the point-cloud autoencoder, the learned matcher) reads its shapes through this
layer: a :class:`torch.utils.data.Dataset` whose items are dictionaries of tensors, and :func:`collate_point_sets`,
which pads a list of items of different sizes into the project's ragged-batch convention (padded ``(B, N, 3)`` +
``lengths (B,)``).
"""

from __future__ import annotations

import os
import tokenize
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geomot._core.batch import list_to_padded
from geomot._core.checks import check_int
from geomot._core.errors import FileFormatError, ValidationError
from geomot.io._formats import FORMATS, suffix_of
from geomot.io.files import load
from geomot.ops.sampling import sample_surface
from geomot.structures import Mesh

__all__ = ["PointSetDataset", "collate_point_sets", "normalize_points"]

_ARRAY_SUFFIXES = (".npy",)


def normalize_points(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre a cloud at its mean and scale it into the unit ball: ``x' = (x - c) / s``, ``s = max_i ||x_i - c||``.

    Args:
        points: ``(N, 3)``.

    Returns:
        ``(normalised (N, 3), centre (3,), scale ())``; ``x = x' * s + c`` undoes it. A cloud of coincident points
        keeps ``s = 1``.
    """
    centre = points.mean(0)
    radius = (points - centre).norm(dim=-1).max()
    scale = torch.where(radius > 0, radius, torch.ones_like(radius))
    return (points - centre) / scale, centre, scale


def _mesh_files(folder: Path) -> list[Path]:
    """Mesh files directly in ``folder`` or in its ``off/`` subfolder (the dataset-folder layout), sorted."""
    roots = [folder / "off"] if (folder / "off").is_dir() else [folder]
    files = []
    for root in roots:
        for p in root.iterdir():
            if p.is_file() and suffix_of(p) in FORMATS and suffix_of(p) not in _ARRAY_SUFFIXES:
                files.append(p)
    return sorted(files)


class _Source:
    """One shape of the dataset: a row of a ``.npy`` array or a mesh file (read on demand)."""

    __slots__ = ("array", "name", "path", "row")

    def __init__(self, name: str, *, array: np.ndarray | None = None, row: int = 0, path: Path | None = None):
        self.name, self.array, self.row, self.path = name, array, row, path


class PointSetDataset(Dataset):
    """Point sets of ``n_points`` points each, from ``.npy`` arrays and folders of meshes.

    Sources (any mix, in the given order):
        - a shape file (any format :func:`geomot.load` reads): one item;
        - a ``.npy`` file holding ``(B, N, 3)`` or ``(N, 3)`` float points: one item per row; with ``N >
          n_points`` a seeded random subset of ``n_points`` is kept, with ``N < n_points`` it raises;
        - a folder of meshes (any format :func:`geomot.load` reads, directly inside it or in its ``off/``
          subfolder): one item per mesh, ``n_points`` samples uniform by area (:func:`geomot.ops.sampling.
          sample_surface`); point-cloud files in the folder are subsampled like ``.npy`` rows.

    Sampling is seeded per item (``seed``, item index and, with ``resample=True``, the epoch set by
    :meth:`set_epoch`), so two datasets built alike give the same points whatever the worker or rank that reads
    them. With ``normalize=True`` each item is centred and scaled into the unit ball; the item keeps ``centre`` and
    ``scale`` so that outputs can be mapped back (``x = x' * scale + centre``). Shape files are read once and
    kept in memory (their points, or with ``resample=True`` the mesh), so later epochs cost no disk reads.

    Items are dictionaries: ``points (n, 3)``, ``centre (3,)``, ``scale ()``, ``index ()`` int64 and ``name`` (the
    file stem, with ``[row]`` for array rows).

    Args:
        sources: paths of ``.npy`` files, shape files and/or folders of shapes.
        n_points: points per item (``None``: every point of ``.npy`` rows; required for mesh folders).
        seed: base seed of the sampling.
        normalize: centre and scale each item into the unit ball.
        resample: draw new samples each epoch (after :meth:`set_epoch`) instead of fixed ones.
        dtype: floating dtype of the points.

    Raises:
        FileFormatError: a missing path, a folder with no shape, an unreadable ``.npy``.
        ValidationError: a bad ``n_points``, an array of the wrong shape, fewer points than ``n_points``.
    """

    def __init__(
        self,
        sources: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        n_points: int | None = 2048,
        seed: int = 0,
        normalize: bool = True,
        resample: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        if len(sources) == 0:
            raise ValidationError("sources: expected at least one .npy file or mesh folder, got none")
        self.n_points = None if n_points is None else check_int(n_points, "n_points", at_least=1)
        self.seed = check_int(seed, "seed", at_least=0)
        self.normalize, self.resample, self.dtype = bool(normalize), bool(resample), dtype
        self.epoch = 0
        self._cache: dict[int, object] = {}
        self._items: list[_Source] = []
        for src in sources:
            self._items += self._scan(Path(src))

    def _scan(self, path: Path) -> list[_Source]:
        if not path.exists():
            raise FileFormatError(f"{path}: no such file or folder")
        if path.is_dir():
            files = _mesh_files(path)
            if not files:
                raise FileFormatError(
                    f"{path}: no shape files found (looked for {', '.join(sorted(FORMATS.names()))} files in the "
                    "folder or its off/ subfolder)"
                )
            if self.n_points is None:
                raise ValidationError(f"n_points: required to sample the meshes of {path}, got None")
            return [_Source(p.stem, path=p) for p in files]
        if suffix_of(path) in FORMATS and suffix_of(path) not in _ARRAY_SUFFIXES:
            if self.n_points is None:
                raise ValidationError(f"n_points: required to sample the mesh {path}, got None")
            return [_Source(path.stem, path=path)]
        if suffix_of(path) != ".npy":
            raise FileFormatError(f"{path}: expected a .npy array of points, a shape file or a folder of shapes")
        try:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError, SyntaxError, tokenize.TokenError) as e:  # the header is parsed by literal_eval
            raise FileFormatError(f"{path}: not a readable .npy array ({e})") from e
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValidationError(f"{path}: expected points of shape (B, N, 3) or (N, 3), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValidationError(f"{path}: expected floating-point points, got dtype {arr.dtype}")
        if self.n_points is not None and arr.shape[1] < self.n_points:
            raise ValidationError(f"{path}: items have {arr.shape[1]} points, fewer than n_points={self.n_points}")
        return [_Source(f"{path.stem}[{b}]", array=arr, row=b) for b in range(arr.shape[0])]

    def set_epoch(self, epoch: int) -> None:
        """Epoch used in the sampling seed when ``resample=True`` (as :class:`DistributedSampler.set_epoch`)."""
        self.epoch = check_int(epoch, "epoch", at_least=0)

    def __len__(self) -> int:
        return len(self._items)

    def _generator(self, index: int) -> torch.Generator:
        epoch = self.epoch if self.resample else 0
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7_919 + index)

    def _subset(self, pts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.n_points is None or pts.shape[0] == self.n_points:
            return pts
        if pts.shape[0] < self.n_points:
            raise ValidationError(f"a shape has {pts.shape[0]} points, fewer than n_points={self.n_points}")
        return pts[torch.randperm(pts.shape[0], generator=gen)[: self.n_points]]

    def __getitem__(self, index: int) -> dict[str, object]:
        if not 0 <= index < len(self._items):
            raise IndexError(f"index {index} out of range for a dataset of {len(self._items)} shapes")
        src, gen = self._items[index], self._generator(index)
        if src.array is not None:
            pts = self._subset(torch.as_tensor(np.array(src.array[src.row], dtype=np.float64)), gen)
        elif not self.resample and index in self._cache:
            pts = self._cache[index]  # type: ignore[assignment]
        else:
            shape = self._cache[index] if index in self._cache else load(src.path, dtype=torch.float64)
            if isinstance(shape, Mesh):
                pts = sample_surface(shape.verts, shape.faces, self.n_points, generator=gen).points
            else:
                pts = self._subset(shape.points, gen)
            self._cache[index] = shape if self.resample else pts
        if not bool(torch.isfinite(pts).all()):
            raise ValidationError(f"{src.name}: contains NaN/Inf coordinates")
        if self.normalize:
            pts, centre, scale = normalize_points(pts)
        else:
            centre, scale = pts.new_zeros(3), pts.new_ones(())
        return {
            "points": pts.to(self.dtype),
            "centre": centre.to(self.dtype),
            "scale": scale.to(self.dtype),
            "index": torch.tensor(index),
            "name": src.name,
        }


def collate_point_sets(items: Sequence[dict[str, object]]) -> dict[str, object]:
    """Batch dataset items of possibly different sizes: ``points (B, N_max, 3)`` zero-padded + ``lengths (B,)``.

    The other tensor fields are stacked (``centre (B, 3)``, ``scale (B,)``, ``index (B,)``); ``name`` becomes a
    list. Use as ``DataLoader(dataset, collate_fn=collate_point_sets)``.
    """
    if len(items) == 0:
        raise ValidationError("collate_point_sets: expected at least one item, got none")
    points, lengths = list_to_padded([it["points"] for it in items])  # type: ignore[misc]
    out: dict[str, object] = {"points": points, "lengths": lengths}
    for key in ("centre", "scale", "index"):
        out[key] = torch.stack([it[key] for it in items])  # type: ignore[misc]
    out["name"] = [it["name"] for it in items]
    return out
