"""Checkpoints of learned models, written atomically and read back with checks.

A checkpoint is one ``torch.save`` file holding a dictionary with a ``"format"`` tag, the model ``"kind"`` (for
example ``"autoencoder"`` or ``"matcher"``), its ``"config"`` (the constructor arguments, so that the model can be
rebuilt without the script that trained it) and whatever state the trainer keeps (weights, optimisers, epoch, RNG
states, log). Writing goes to a temporary file in the same folder followed by :func:`os.replace`, so a kill
during the write leaves the previous checkpoint intact; reading refuses another kind of model and names a
truncated or foreign file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot._core.files import atomic_torch_save

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

#: tag stored in every checkpoint written by :func:`save_checkpoint`
CHECKPOINT_FORMAT = "geomot-checkpoint-1"


def save_checkpoint(path: str | os.PathLike, *, kind: str, config: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write ``{"format", "kind", "config", **state}`` to ``path`` atomically (temporary file + ``os.replace``).

    Args:
        path: destination file (its folder is created).
        kind: model kind, checked by :func:`load_checkpoint`.
        config: JSON-like constructor arguments of the model.
        state: tensors and other picklable state (weights, optimiser states, epoch, RNG states...).

    Returns:
        the written path.
    """
    if not isinstance(kind, str) or not kind:
        raise ValidationError(f"kind: expected a non-empty string, got {kind!r}")
    reserved = {"format", "kind", "config"} & set(state)
    if reserved:
        raise ValidationError(f"state: keys {sorted(reserved)} are reserved for the checkpoint header")
    payload = {"format": CHECKPOINT_FORMAT, "kind": kind, "config": dict(config), **state}
    return atomic_torch_save(payload, path)


def load_checkpoint(
    path: str | os.PathLike, *, kind: str | None = None, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``: tensors and plain
    Python containers only, no arbitrary objects are unpickled).

    Args:
        path: the file.
        kind: the expected model kind; another kind raises.
        map_location: passed to :func:`torch.load`.

    Raises:
        FileFormatError: a missing, truncated or corrupted file, or a file that is not a geomot checkpoint.
        ValidationError: a checkpoint of another model kind.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such checkpoint file")
    try:
        data = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        if isinstance(e, pickle.UnpicklingError):  # torch's text is about weights_only, not about the file
            reason = "not a file written by torch.save, or one holding more than tensors and plain containers"
        else:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise FileFormatError(f"{p}: not a readable checkpoint (truncated or corrupted file: {reason})") from e
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(f"{p}: not a geomot checkpoint (no {CHECKPOINT_FORMAT!r} header)")
    if kind is not None and data.get("kind") != kind:
        raise ValidationError(f"{p}: a checkpoint of a {data.get('kind')!r} model, expected {kind!r}")
    return data
