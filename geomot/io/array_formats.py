"""NumPy files (``.npy``, ``.npz``; never unpickled) and plain-text ``.xyz`` point lists.

* ``.npy``: one ``(N, 3)`` float array of points, or a ``(B, N, 3)`` batch of B clouds of N points each.
* ``.npz``: ``verts (V, 3)`` + ``faces (F, 3)`` for a mesh, or ``points (N, 3)`` [+ ``normals (N, 3)``]
  [+ ``weights (N,)``] for a (weighted) cloud.
* ``.xyz``: whitespace-separated text, one point per line, 3 columns (``x y z``) or 6 (``x y z nx ny nz``). It is
  parsed with numpy rather than open3d because open3d silently skips malformed lines, and a ragged row must be an
  error.
"""

from __future__ import annotations

import tokenize
import zipfile
from pathlib import Path

import numpy as np

from geomot._core.errors import FileFormatError
from geomot.io._formats import FileFormat, RawShape
from geomot.io.mesh_parsers import _floats, _rows, _text

__all__ = ["ARRAY_FORMATS"]


def _as_xyz(arr: object, path: Path, key: str, *, batch: bool = False) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim not in ((2, 3) if batch else (2,)) or a.shape[-1] != 3:
        want = "(N, 3) or (B, N, 3)" if batch else "(N, 3)"
        raise FileFormatError(f"{path}: array {key!r} must have shape {want}, got {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise FileFormatError(f"{path}: array {key!r} must be numeric, got dtype {a.dtype}")
    return a


def _np_load(path: Path, what: str) -> object:
    """``np.load`` whose failures (bad magic, truncated data, pickled objects, broken zip) are FileFormatErrors."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise FileFormatError(f"{path}: cannot read as {what}: it holds Python objects (pickled data), which "
                                  "geomot never unpickles; save plain numeric arrays") from None
        raise FileFormatError(f"{path}: cannot read as {what}: truncated or corrupted file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise FileFormatError(f"{path}: cannot read as {what}: not a NumPy file or a truncated one ({e})") from None
    except (SyntaxError, tokenize.TokenError) as e:  # numpy parses the header with ast.literal_eval
        raise FileFormatError(f"{path}: cannot read as {what}: corrupted header ({e})") from None


def read_npy(path: Path) -> RawShape:
    return RawShape(_as_xyz(_np_load(path, "NumPy array"), path, "points", batch=True))


def write_npy(path: Path, shape: RawShape) -> None:
    if shape.normals is not None:
        raise FileFormatError(f"{path}: .npy stores the points only and would drop the normals; use .npz")
    with open(path, "wb") as fh:
        np.save(fh, shape.verts, allow_pickle=False)


def read_npz(path: Path) -> RawShape:
    archive = _np_load(path, "NumPy archive")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FileFormatError(f"{path}: cannot read as NumPy archive: it is a single .npy array, not an .npz archive")
    try:
        return _read_npz_arrays(archive, path)
    except FileFormatError:
        raise
    except Exception as e:  # zipfile / zlib / numpy errors of a damaged member
        if "pickle" in str(e):
            raise FileFormatError(f"{path}: cannot read as NumPy archive: it holds Python objects (pickled data), "
                                  "which geomot never unpickles; save plain numeric arrays") from None
        raise FileFormatError(f"{path}: cannot read as NumPy archive: a truncated or corrupted array ({e})") from None
    finally:
        archive.close()


def _read_npz_arrays(z: np.lib.npyio.NpzFile, path: Path) -> RawShape:
    keys = set(z.files)
    if {"verts", "faces"} <= keys:
        faces = np.asarray(z["faces"])
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise FileFormatError(
                f"{path}: array 'faces' must be an integer (F, 3) array, "
                f"got shape {faces.shape}, dtype {faces.dtype}"
            )
        return RawShape(_as_xyz(z["verts"], path, "verts"), faces)
    if "points" in keys:
        pts = _as_xyz(z["points"], path, "points")
        normals = _as_xyz(z["normals"], path, "normals") if "normals" in keys else None
        weights = np.asarray(z["weights"]) if "weights" in keys else None
        if weights is not None and (weights.shape != (len(pts),) or not np.issubdtype(weights.dtype, np.number)):
            raise FileFormatError(
                f"{path}: array 'weights' must be numeric of shape ({len(pts)},), "
                f"got {weights.dtype} {weights.shape}"
            )
        return RawShape(pts, None, normals, weights)
    raise FileFormatError(
    f"{path}: expected arrays 'verts' + 'faces' (a mesh) or 'points' [+ 'normals'] (a cloud), "
    f"found {sorted(keys)}"
    )


def write_npz(path: Path, shape: RawShape) -> None:
    if shape.faces is not None:
        arrays = {"verts": shape.verts, "faces": shape.faces}
    else:
        arrays = {"points": shape.verts}
        if shape.normals is not None:
            arrays["normals"] = shape.normals
        if shape.weights is not None:
            arrays["weights"] = shape.weights
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def read_xyz(path: Path) -> RawShape:
    rows = _rows(_text(path.read_bytes(), path, "XYZ"))
    if not rows:
        raise FileFormatError(f"{path}: the file holds no vertices (empty XYZ file)")
    lineno, first = rows[0]
    n = len(first)
    if n not in (3, 6):
        raise FileFormatError(f"{path}: line {lineno}: expected 3 (x y z) or 6 (x y z nx ny nz) columns, got {n}")
    for ln, tok in rows:
        if len(tok) != n:
            raise FileFormatError(f"{path}: line {ln}: expected {n} columns like line {lineno}, found {len(tok)}: "
                                  f"{' '.join(tok)!r}")
    a = _floats(rows, n, path, "point")
    return RawShape(a[:, :3], None, a[:, 3:] if n == 6 else None)


def write_xyz(path: Path, shape: RawShape) -> None:
    cols = [shape.verts] if shape.normals is None else [shape.verts, shape.normals]
    np.savetxt(path, np.concatenate(cols, axis=1), fmt="%.9g")


ARRAY_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("NumPy array", (".npy",), read_npy, write_npy, meshes=False, points=True, backend="numpy"),
    FileFormat(
        "NumPy archive", (".npz",), read_npz, write_npz, meshes=True, points=True, backend="numpy", weights=True
    ),
    FileFormat("XYZ text", (".xyz",), read_xyz, write_xyz, meshes=False, points=True, backend="numpy"),
)
