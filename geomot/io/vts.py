"""``.vts`` correspondence files: one **1-based** vertex index per line.

Line ``k`` of ``A.vts`` and line ``k`` of ``B.vts`` name corresponding vertices (both shapes are mapped from a
common template), so the ground-truth pairs of a shape pair are ``(A.vts[k], B.vts[k])``. In memory geomot uses
0-based int64 indices; the conversion happens here and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from geomot._core.errors import FileFormatError, ShapeError, ValidationError

__all__ = ["read_vts", "write_vts"]


def read_vts(path: str | os.PathLike, *, n_verts: int | None = None) -> torch.Tensor:
    """Read a ``.vts`` file and return its indices **0-based**.

    Args:
        path: the file; blank lines are ignored, every other line must hold one positive integer.
        n_verts: if given, also check that every index is a vertex of a mesh with that many vertices.

    Returns:
        ``(K,)`` int64 tensor ``idx`` with ``idx[k] = (line k of the file) - 1``.

    Raises:
        FileFormatError: missing file, a directory, an empty file, a line that is not one positive integer, or an
            index ``> n_verts``.
    """
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: no such file")
    if p.is_dir():
        raise FileFormatError(f"{p}: is a directory, expected a .vts file")
    try:
        text = p.read_text(encoding="ascii")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{p}: not a text .vts file ({e})") from e
    rows = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not rows:
        raise FileFormatError(f"{p}: empty .vts file")
    tokens = np.array([tok for _, tok in rows])
    bad = np.flatnonzero(~np.char.isdigit(tokens))
    if bad.size:
        lineno, tok = rows[int(bad[0])]
        raise FileFormatError(f"{p}: line {lineno}: expected one positive integer, got {tok!r}")
    values = tokens.astype(np.int64)
    if values.min() < 1:
        bad = rows[int(values.argmin())][0]
        raise FileFormatError(f"{p}: line {bad}: indices are 1-based and must be >= 1, got {values.min()}")
    if n_verts is not None and values.max() > n_verts:
        bad = rows[int(values.argmax())][0]
        raise FileFormatError(f"{p}: line {bad}: index {values.max()} exceeds the mesh's {n_verts} vertices")
    return torch.from_numpy(values - 1)


def write_vts(path: str | os.PathLike, idx: torch.Tensor | np.ndarray) -> Path:
    """Write 0-based vertex indices as a 1-based ``.vts`` file (one index per line).

    Args:
        path: destination file (its folder must exist).
        idx: ``(K,)`` integer tensor or array of 0-based indices, all ``>= 0``.

    Returns:
        the path written.
    """
    a = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
    if a.ndim != 1 or a.shape[0] == 0:
        raise ShapeError(f"idx: expected a non-empty 1-D index tensor (K,), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ShapeError(f"idx: expected integer indices, got dtype {a.dtype}")
    if a.min() < 0:
        raise ValidationError(f"idx: indices are 0-based and must be >= 0, got {a.min()}")
    p = Path(path)
    if p.is_dir():
        raise FileFormatError(f"{p}: is a directory, expected a file name")
    if not p.parent.is_dir():
        raise FileFormatError(f"{p}: the folder {p.parent} does not exist")
    p.write_text("".join(f"{int(v) + 1}\n" for v in a), encoding="ascii")
    return p
