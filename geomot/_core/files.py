"""Small file helpers shared by the layers that write checkpoints (deformation fits, trainers)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_torch_save", "config_differences"]


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to a temporary file in ``path``'s folder (created), flushed to disk, then renamed over
    ``path`` with :func:`os.replace`: a process killed during the write leaves the previous file intact, and the
    temporary file is removed on any failure. Returns the path."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Sorted names of the settings whose values differ between two configurations (missing counts as None)."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
