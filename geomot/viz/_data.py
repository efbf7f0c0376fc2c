"""Inputs of the viewers as plain numpy arrays: shapes, trajectories, point-to-point maps, output paths, colours.

Everything drawn by :mod:`geomot.viz` first goes through these functions, so that a ``Mesh``, a ``PointCloud``,
a batch of them, a ``(verts, faces)`` pair of tensors or arrays, and a trajectory file are all validated once,
with messages that name the argument.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, describe
from geomot._core.errors import FileFormatError, ShapeError, ValidationError
from geomot.structures import Mesh, PointCloud

__all__ = [
    "Shape",
    "Trajectory",
    "as_scalars",
    "as_shapes",
    "as_trajectory",
    "bounds_of",
    "check_cmap",
    "check_output_path",
    "check_p2p",
    "color_range",
    "coordinate_colors",
    "grid_offsets",
    "load_p2p",
    "load_trajectory",
    "scalar_colors",
]


class Shape(NamedTuple):
    """One shape to draw.

    Attributes:
        verts: ``(V, 3)`` float64 positions.
        faces: ``(F, 3)`` int64 triangles, or None for a point cloud.
    """

    verts: np.ndarray
    faces: np.ndarray | None


class Trajectory(NamedTuple):
    """A deforming shape with fixed connectivity, as written by ``geomot deform``.

    Attributes:
        verts: ``(T, V, 3)`` positions of the ``T`` frames.
        faces: ``(F, 3)`` int64 triangles shared by all frames, or None for a moving point cloud.
        times: ``(T,)`` non-decreasing times of the frames.
    """

    verts: np.ndarray
    faces: np.ndarray | None
    times: np.ndarray


def _float_array(x: object, name: str, *, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Validate a float tensor/array of last dimension 3 and return it as a float64 numpy array."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise ShapeError(f"{name}: expected a floating-point array, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        x = x.detach()
    check_float_tensor(x, name, ndim=ndim, last_dim=3)
    return x.cpu().double().numpy()  # type: ignore[union-attr]


def _faces_array(f: object, name: str, n_verts: int) -> np.ndarray:
    """Validate ``(F, 3)`` integer triangles with indices in ``[0, n_verts)``; return int64 numpy."""
    if isinstance(f, np.ndarray):
        if not np.issubdtype(f.dtype, np.integer):
            raise ShapeError(f"{name}: expected an integer array, got dtype {f.dtype}")
        f = torch.from_numpy(np.ascontiguousarray(f).astype(np.int64, copy=False))
    if not isinstance(f, torch.Tensor):
        raise ShapeError(f"{name}: expected an (F, 3) integer tensor or array, got {describe(f)}")
    if f.dim() != 2 or f.shape[1] != 3:
        raise ShapeError(f"{name}: expected triangles of shape (F, 3), got shape {tuple(f.shape)}")
    if f.shape[0] == 0:
        raise ValidationError(f"{name}: no faces (pass faces=None to draw the vertices as a point cloud)")
    check_index_tensor(f, name, size=n_verts, ncols=3)
    return f.detach().cpu().long().numpy()


def _is_index(x: object) -> bool:
    if isinstance(x, torch.Tensor):
        return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer)


def as_shapes(shape: Any, faces: Any = None, *, name: str = "shape") -> list[Shape]:
    """Turn what the viewers accept into a list of :class:`Shape`.

    Accepted: a :class:`~geomot.Mesh` or :class:`~geomot.PointCloud` (batched or not), a ``(V, 3)`` or
    ``(B, V, 3)`` float tensor/array (with ``faces`` ``(F, 3)`` shared or ``(B, F, 3)``, a cloud without), a
    ``(verts, faces)`` pair, or a list of any of these.
    """
    if isinstance(shape, Mesh):
        if faces is not None:
            raise ValidationError(f"faces: not accepted with a Mesh {name} (it has its own faces)")
        return [
            Shape(_float_array(v, f"{name}.verts", ndim=2), f.detach().cpu().long().numpy())
            for v, f in zip(shape.verts_list(), shape.faces_list())
        ]
    if isinstance(shape, PointCloud):
        if faces is not None:
            raise ValidationError(f"faces: not accepted with a PointCloud {name}")
        return [Shape(_float_array(p, f"{name}.points", ndim=2), None) for p in shape.points_list()]
    if isinstance(shape, tuple) and len(shape) == 2 and _is_index(shape[1]):
        if faces is not None:
            raise ValidationError(f"faces: given twice (in the {name} pair and as faces=)")
        return as_shapes(shape[0], shape[1], name=name)
    if isinstance(shape, (list, tuple)):
        if len(shape) == 0:
            raise ShapeError(f"{name}: expected at least one shape, got an empty {type(shape).__name__}")
        if faces is not None:
            raise ValidationError("faces: not accepted with a list of shapes; pass (verts, faces) pairs")
        return [s for i, item in enumerate(shape) for s in as_shapes(item, name=f"{name}[{i}]")]
    if isinstance(shape, (torch.Tensor, np.ndarray)):
        v = _float_array(shape, name, ndim=(2, 3))
        batch = [v] if v.ndim == 2 else list(v)
        if faces is None:
            return [Shape(x, None) for x in batch]
        fdim = faces.dim() if isinstance(faces, torch.Tensor) else np.ndim(faces)
        if fdim == 3:
            if len(faces) != len(batch):
                raise ShapeError(f"faces: expected {len(batch)} face arrays (one per shape), got {len(faces)}")
            return [Shape(x, _faces_array(f, f"faces[{i}]", len(x))) for i, (x, f) in enumerate(zip(batch, faces))]
        return [Shape(x, _faces_array(faces, "faces", len(x))) for x in batch]
    raise ShapeError(
        f"{name}: expected a Mesh, a PointCloud, a (V, 3) tensor/array, a (verts, faces) pair or a list of them, "
        f"got {describe(shape)}"
    )


# -- trajectories ----------------------------------------------------------------------------------------
def load_trajectory(path: str | Path) -> Trajectory:
    """Read a trajectory ``.npz`` (keys ``verts`` ``(T, V, 3)``, optional ``faces`` ``(F, 3)`` and ``times`` ``(T,)``).

    Raises:
        FileFormatError: the file is missing, not a readable ``.npz`` or lacks ``verts``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"trajectory: no such file {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise FileFormatError(f"trajectory: cannot read {str(p)!r} as an .npz file ({e})") from None
    if "verts" not in arrays:
        raise FileFormatError(f"trajectory: {str(p)!r} has no 'verts' array (found: {', '.join(arrays) or 'none'})")
    if arrays["verts"].ndim != 3:
        raise FileFormatError(
            f"trajectory: 'verts' in {str(p)!r} must have shape (T, V, 3), got {arrays['verts'].shape}"
        )
    return as_trajectory(arrays["verts"], faces=arrays.get("faces"), times=arrays.get("times"))


def as_trajectory(trajectory: Any, faces: Any = None, times: Any = None) -> Trajectory:
    """Validate a trajectory given as a file path, a :class:`Trajectory`, a mapping with ``verts``/``faces``/
    ``times``, a ``geomot.deformation.DeformResult`` (its ``trajectory``, ``mesh.faces`` and ``times``), a
    ``(T, V, 3)`` tensor/array or a list of ``T`` frames (``(V, 3)`` arrays or single meshes).

    Raises:
        ShapeError: frames with different vertex counts, bad ranks.
        ValidationError: faces out of range, times of the wrong length or decreasing.
    """
    if isinstance(trajectory, (str, Path)):
        if faces is not None or times is not None:
            raise ValidationError("faces/times: not accepted with a trajectory file (they are read from it)")
        return load_trajectory(trajectory)
    if isinstance(getattr(trajectory, "mesh", None), Mesh) and hasattr(trajectory, "trajectory"):
        # a geomot.deformation.DeformResult (duck-typed, so that viz does not import the deformation stack)
        faces = trajectory.mesh.faces if faces is None else faces
        times = getattr(trajectory, "times", None) if times is None else times
        trajectory = trajectory.trajectory
    if isinstance(trajectory, (Trajectory, dict)):
        fields = trajectory._asdict() if isinstance(trajectory, Trajectory) else trajectory
        if "verts" not in fields:
            raise ValidationError(f"trajectory: the mapping has no 'verts' (keys: {', '.join(map(str, fields))})")
        faces = fields.get("faces") if faces is None else faces
        times = fields.get("times") if times is None else times
        trajectory = fields["verts"]
    if isinstance(trajectory, Mesh):
        trajectory = list(trajectory) if len(trajectory) > 1 else [trajectory]
    if isinstance(trajectory, (list, tuple)):
        if len(trajectory) == 0:
            raise ShapeError("trajectory: expected at least one frame, got an empty list")
        frames = []
        for t, item in enumerate(trajectory):
            (shape,) = as_shapes(item, name=f"trajectory[{t}]")
            if shape.verts.shape[0] != (frames[0].shape[0] if frames else shape.verts.shape[0]):
                raise ShapeError(
                    f"trajectory: frame {t} has {shape.verts.shape[0]} vertices but frame 0 has "
                    f"{frames[0].shape[0]}; every frame must have the same vertices (fixed connectivity)"
                )
            if faces is None and shape.faces is not None:
                faces = shape.faces
            frames.append(shape.verts)
        verts = np.stack(frames)
    else:
        verts = _float_array(trajectory, "trajectory", ndim=3)
    n_frames, n_verts = verts.shape[:2]
    if n_verts == 0:
        raise ShapeError(f"trajectory: the frames have no vertices (shape {verts.shape})")
    f = None if faces is None else _faces_array(faces, "faces", n_verts)
    if times is None:
        t = np.arange(n_frames, dtype=np.float64)
    else:
        t = np.asarray(times.detach().cpu() if isinstance(times, torch.Tensor) else times, dtype=np.float64)
        if t.shape != (n_frames,):
            raise ShapeError(f"times: expected shape ({n_frames},) (one time per frame), got {t.shape}")
        if not np.isfinite(t).all() or (np.diff(t) < 0).any():
            raise ValidationError("times: expected finite, non-decreasing frame times")
    return Trajectory(verts, f, t)


# -- point-to-point maps ---------------------------------------------------------------------------------
def check_p2p(p2p_21: Any, *, n_source: int, n_target: int) -> np.ndarray:
    """Validate a map ``p2p_21`` ``(V_source,)``: entry ``i`` is the target vertex matched to source vertex ``i``."""
    if isinstance(p2p_21, torch.Tensor):
        p2p_21 = p2p_21.detach().cpu().numpy()
    arr = np.asarray(p2p_21)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ShapeError(f"p2p_21: expected integer vertex indices, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ShapeError(f"p2p_21: expected a 1-D array (one target index per source vertex), got shape {arr.shape}")
    if arr.shape[0] != n_source:
        hint = " (it looks like the inverse map p2p_12: swap source and target)" if arr.shape[0] == n_target else ""
        raise ShapeError(
            f"p2p_21: expected {n_source} entries (one per source vertex), got {arr.shape[0]}{hint}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= n_target):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValidationError(f"p2p_21: index {bad} out of range for a target with {n_target} vertices")
    return arr.astype(np.int64)


def load_p2p(path: str | Path) -> np.ndarray:
    """Read a map written by ``geomot match``: one 0-based target vertex index per line (source order)."""
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"p2p: no such file {str(p)!r}")
    try:
        values = np.loadtxt(p, dtype=np.float64, ndmin=1)
    except ValueError as e:
        raise FileFormatError(f"p2p: {str(p)!r} is not a list of integer vertex indices ({e})") from None
    if values.ndim != 1 or not np.all(values == np.round(values)):
        raise FileFormatError(f"p2p: {str(p)!r} must hold one integer vertex index per line")
    return values.astype(np.int64)


# -- outputs ---------------------------------------------------------------------------------------------
def check_output_path(path: str | Path, name: str, suffixes: Sequence[str]) -> Path:
    """Check that ``path`` ends with one of ``suffixes`` and that its folder exists."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in suffixes:
        raise ValidationError(f"{name}: expected a file ending in {' or '.join(suffixes)}, got {str(p)!r}")
    if not p.parent.is_dir():
        raise ValidationError(f"{name}: the output folder {str(p.parent)!r} does not exist")
    return p


# -- layout and colours ----------------------------------------------------------------------------------
def bounds_of(points: np.ndarray) -> np.ndarray:
    """``(2, 3)`` axis-aligned box ``[min, max]`` of ``points (..., 3)``."""
    flat = points.reshape(-1, 3)
    return np.stack([flat.min(0), flat.max(0)])


def grid_offsets(shapes: Sequence[np.ndarray], *, gap: float = 0.25, columns: int | None = None) -> np.ndarray:
    """``(B, 3)`` translations that lay ``B`` point sets (each ``(..., 3)``) on a grid, left to right then top down.

    Every cell has the size of the largest box; cells are separated by ``gap`` times that size and each shape's
    box centre is put at its cell's centre. The first shape keeps its position, so a single shape never moves.
    """
    n = len(shapes)
    cols = columns or int(np.ceil(np.sqrt(n)))
    boxes = [bounds_of(s) for s in shapes]
    size = np.max([b[1] - b[0] for b in boxes], axis=0)
    size = np.where(size > 0, size, max(float(size.max()), 1.0))
    step = np.array([size[0] * (1 + gap), -size[1] * (1 + gap), 0.0])
    first = boxes[0].mean(0)
    offsets = np.zeros((n, 3))
    for i, b in enumerate(boxes):
        r, c = divmod(i, cols)
        offsets[i] = first + np.array([c, r, 0.0]) * step - b.mean(0)
    return offsets


def coordinate_colors(verts: np.ndarray, *, bounds: np.ndarray | None = None) -> np.ndarray:
    """Smooth colours of the positions: ``rgb = 0.1 + 0.85 * (x - min) / (max - min)`` per axis, as uint8.

    Args:
        verts: ``(V, 3)`` positions.
        bounds: ``(2, 3)`` box used for the normalisation (that of ``verts`` by default).

    Returns:
        ``(V, 3)`` uint8 colours.
    """
    b = bounds_of(verts) if bounds is None else bounds
    extent = np.where(b[1] - b[0] > 0, b[1] - b[0], 1.0)
    unit = np.clip((verts - b[0]) / extent, 0.0, 1.0)
    return np.round(255 * (0.1 + 0.85 * unit)).astype(np.uint8)


def check_cmap(cmap: object) -> str:
    """Check that ``cmap`` names a matplotlib colour map (pyvista and the HTML viewer both use matplotlib's)."""
    from matplotlib import colormaps

    if not isinstance(cmap, str) or cmap not in colormaps:
        raise ValidationError(f"cmap: unknown matplotlib colour map {cmap!r} (e.g. viridis, plasma, coolwarm)")
    return cmap


def scalar_colors(values: np.ndarray, *, cmap: str, clim: tuple[float, float]) -> np.ndarray:
    """Map ``values (N,)`` through the matplotlib colour map ``cmap`` on ``[clim[0], clim[1]]``; ``(N, 3)`` uint8."""
    from matplotlib import colormaps

    lo, hi = clim
    unit = np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return np.round(255 * colormaps[cmap](unit)[:, :3]).astype(np.uint8)


def color_range(values: Sequence[np.ndarray], clim: Any) -> tuple[float, float]:
    """Colour limits: ``clim`` validated, or the min and max over all ``values``."""
    if clim is not None:
        try:
            lo, hi = (float(c) for c in clim)
        except (TypeError, ValueError):
            raise ValidationError(f"clim: expected (low, high), got {clim!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValidationError(f"clim: expected finite low < high, got {clim!r}")
        return lo, hi
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def as_scalars(scalars: Any, shapes: Sequence[Shape]) -> list[np.ndarray] | None:
    """Per-vertex values for each shape: None, one ``(V,)`` array for a single shape, a ``(B, V)`` array or a list."""
    if scalars is None:
        return None
    if isinstance(scalars, torch.Tensor):
        scalars = scalars.detach().cpu().numpy()
    if isinstance(scalars, np.ndarray) and scalars.ndim == 1:
        items: list[Any] = [scalars]
    else:
        items = list(scalars)
    if len(items) != len(shapes):
        raise ShapeError(f"scalars: expected values for {len(shapes)} shape(s), got {len(items)}")
    out = []
    for i, (s, sh) in enumerate(zip(items, shapes)):
        a = np.asarray(s.detach().cpu() if isinstance(s, torch.Tensor) else s, dtype=np.float64)
        tag = "" if len(shapes) == 1 else f"[{i}]"
        if a.shape != (sh.verts.shape[0],):
            raise ShapeError(
                f"scalars{tag}: expected one value per vertex, shape ({sh.verts.shape[0]},), got {a.shape}"
            )
        if not np.isfinite(a).all():
            raise ValidationError(f"scalars{tag}: contains NaN/Inf values")
        out.append(a)
    return out
