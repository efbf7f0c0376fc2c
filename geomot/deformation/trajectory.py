"""Deformation trajectories on disk: the ``.npz`` files written by ``geomot deform`` and read by ``geomot view``.

Layout: ``verts (T, V, 3)`` float32, ``faces (F, 3)`` int64, ``times (T,)`` float32 — frame ``k`` is the mesh
``(verts[k], faces)`` at time ``times[k]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from geomot._core.checks import describe
from geomot._core.errors import FileFormatError, ShapeError, ValidationError

__all__ = ["load_trajectory", "save_trajectory"]


def save_trajectory(
    path: str | os.PathLike, verts: torch.Tensor, faces: torch.Tensor, times: torch.Tensor, **extra: object
) -> Path:
    """Write a trajectory ``.npz``.

    Args:
        path: output file (``.npz`` is appended by numpy when missing).
        verts: ``(T, V, 3)`` positions.
        faces: ``(F, 3)`` integer faces.
        times: ``(T,)`` times.
        extra: further arrays (e.g. ``loss_history``) stored alongside.

    Returns:
        the written path.
    """
    for name, t in (("verts", verts), ("faces", faces), ("times", times)):
        if not isinstance(t, (torch.Tensor, np.ndarray)):
            raise ShapeError(f"{name}: expected a tensor or an array, got {describe(t)}")
    v = np.asarray(verts.detach().cpu() if isinstance(verts, torch.Tensor) else verts, dtype=np.float32)
    f = np.asarray(faces.detach().cpu() if isinstance(faces, torch.Tensor) else faces, dtype=np.int64)
    t = np.asarray(times.detach().cpu() if isinstance(times, torch.Tensor) else times, dtype=np.float32)
    if v.ndim != 3 or v.shape[-1] != 3:
        raise ShapeError(f"verts: expected shape (T, V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ShapeError(f"faces: expected shape (F, 3), got {f.shape}")
    if t.shape != (v.shape[0],):
        raise ShapeError(f"times: expected shape ({v.shape[0]},) to match verts, got {t.shape}")
    if not np.isfinite(v).all():
        raise ValidationError("verts: the trajectory contains NaN/Inf")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a) for k, a in extra.items()}
    np.savez(p, verts=v, faces=f, times=t, **arrays)
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def load_trajectory(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read ``(verts (T, V, 3) float32, faces (F, 3) int64, times (T,))`` from a trajectory ``.npz``."""
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"path: no trajectory file at {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("verts", "faces", "times") if k not in z.files]
            if missing:
                raise FileFormatError(f"path: {p} lacks {missing} (has {z.files})")
            v, f, t = z["verts"], z["faces"], z["times"]
    except (OSError, ValueError) as e:
        raise FileFormatError(f"path: cannot read {p} as .npz: {e}") from None
    if v.ndim != 3 or v.shape[-1] != 3 or f.ndim != 2 or f.shape[1] != 3 or t.shape != (v.shape[0],):
        raise FileFormatError(f"path: {p} has verts {v.shape}, faces {f.shape}, times {t.shape}; expected "
                              "(T, V, 3), (F, 3), (T,)")
    return torch.from_numpy(v), torch.from_numpy(f.astype(np.int64)), torch.from_numpy(t)
