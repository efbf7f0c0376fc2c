"""Checkpoint files of the deformation fits: plain ``torch.save`` dictionaries of tensors, numbers and strings,
written atomically (a temporary file in the same folder, then ``os.replace``, so a run killed while writing leaves
the previous checkpoint intact) and read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot._core.files import atomic_torch_save, config_differences

__all__ = ["check_config", "read_checkpoint", "write_checkpoint"]


def write_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`geomot._core.files.atomic_torch_save`); return the path."""
    return atomic_torch_save(state, path)


def read_checkpoint(path: str | os.PathLike, fmt: str, *, name: str = "checkpoint") -> dict:
    """Read a checkpoint written with ``state["format"] == fmt``.

    Raises:
        FileFormatError: no file, an unreadable file, or a file of another format.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{name}: no file at {p} to resume from")
    try:
        state = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for corrupted files
        raise FileFormatError(f"{name}: cannot read {p}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise FileFormatError(f"{name}: {p} is not a geomot checkpoint of this kind ({fmt})")
    return state


def check_config(state: dict, config: dict, *, name: str = "checkpoint") -> None:
    """Raise :class:`ValidationError` naming the differing settings when ``state["config"] != config``."""
    saved = state.get("config", {})
    if saved != config:
        diff = config_differences(saved, config)
        raise ValidationError(f"{name}: made with {saved}, this run uses {config} (different: {', '.join(diff)})")
