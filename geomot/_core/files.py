"""Small file helpers shared by the layers that write checkpoints (deformation fits, trainers) and caches
(spectral bases, DiffusionNet operators)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["atomic_savez", "atomic_torch_save", "atomic_write", "config_differences", "geometry_key"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """``write(fh)`` into a temporary file in ``path``'s folder (created), flushed to disk, then renamed over
    ``path`` with :func:`os.replace`: a process killed during the write leaves the previous file intact, and the
    temporary file is removed on any failure. Returns the path."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`atomic_write`. Returns the path."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, what: str) -> bool:
    """``numpy.savez`` of ``arrays`` to ``path`` through :func:`atomic_write`, for caches: an ``OSError`` (a full or
    read-only disk) is logged as a warning naming ``what`` and returns False instead of raising."""
    try:
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    except OSError as e:
        logger.warning("%s: could not write the cache file %s (%s)", what, path, e)
        return False
    return True


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Sorted names of the settings whose values differ between two configurations (missing counts as None)."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def geometry_key(version: str, settings: str, verts: np.ndarray, faces: np.ndarray | None) -> str:
    """SHA-256 (hex) of a cache format ``version``, the ``settings`` string and the geometry (vertices read as
    float64, faces as int64): the key of the on-disk caches of spectral bases and DiffusionNet operators."""
    h = hashlib.sha256()
    h.update(version.encode())
    h.update(settings.encode())
    h.update(np.ascontiguousarray(verts, dtype=np.float64).tobytes())
    if faces is not None:
        h.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    return h.hexdigest()
