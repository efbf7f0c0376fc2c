"""Backend-neutral scenes: layers of meshes, points and line segments over time, drawn by pyvista or as HTML.

A :class:`Scene` is built once from the user's inputs (:func:`shapes_scene`, :func:`correspondence_scene`,
:func:`trajectory_scene`) and then rendered by :mod:`geomot.viz._pyvista` (windows, PNG, GIF, MP4) or
:mod:`geomot.viz._html` (a stand-alone page), so that both show the same colours, layout and camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from geomot._core.errors import ValidationError
from geomot.ops.sampling import farthest_point_sampling
from geomot.viz._data import (
    Shape,
    Trajectory,
    bounds_of,
    check_cmap,
    color_range,
    coordinate_colors,
    grid_offsets,
    scalar_colors,
)

__all__ = [
    "DEFAULT_COLOR",
    "Layer",
    "Scene",
    "correspondence_scene",
    "default_point_size",
    "interpolate",
    "layer_colors",
    "scene_bounds",
    "shapes_scene",
    "trajectory_scene",
]

#: Colour of shapes drawn without scalars (a light warm grey that shows shading well).
DEFAULT_COLOR = "#d6c7ae"
TARGET_COLOR = "#7f8c9a"


class Layer(NamedTuple):
    """One drawable item.

    Attributes:
        kind: ``"mesh"``, ``"points"`` or ``"lines"`` (consecutive pairs of points are segments).
        frames: ``(T, N, 3)`` positions, ``T`` = 1 for a static layer.
        faces: ``(F, 3)`` int64 triangles of a mesh, else None.
        scalars: ``(T or 1, N)`` values mapped through the scene's colour map, or None.
        rgb: ``(N, 3)`` uint8 fixed colours, or None.
        color: uniform colour (any matplotlib colour) used when there are neither scalars nor rgb.
        opacity: in ``(0, 1]``.
        size: point diameter / line width in pixels.
    """

    kind: str
    frames: np.ndarray
    faces: np.ndarray | None = None
    scalars: np.ndarray | None = None
    rgb: np.ndarray | None = None
    color: str = DEFAULT_COLOR
    opacity: float = 1.0
    size: float = 4.0


class Scene(NamedTuple):
    """Layers sharing a time axis ``times (T,)``, a colour map and colour limits (None: no scalar bar).

    ``eye_dome``: eye-dome lighting (pyvista only), a screen-space depth cue for clouds drawn as flat points.
    """

    layers: list[Layer]
    times: np.ndarray
    cmap: str = "viridis"
    clim: tuple[float, float] | None = None
    scalar_title: str = ""
    title: str | None = None
    background: str = "white"
    eye_dome: bool = False


def default_point_size(n_points: int) -> float:
    """Default point diameter in pixels: large for sparse clouds, small for dense ones (between 2 and 9)."""
    return float(np.clip(400.0 / np.sqrt(max(n_points, 1)), 2.0, 9.0))


def _shape_layer(shape: Shape, offset: np.ndarray, **kw: object) -> Layer:
    frames = (shape.verts + offset)[None]
    if shape.faces is None:
        kw.setdefault("size", default_point_size(len(shape.verts)))
        return Layer("points", frames, **kw)  # type: ignore[arg-type]
    return Layer("mesh", frames, shape.faces, **kw)  # type: ignore[arg-type]


def shapes_scene(
    shapes: Sequence[Shape],
    scalars: Sequence[np.ndarray] | None,
    *,
    cmap: str,
    clim: object,
    color: str | None,
    scalar_title: str,
    title: str | None,
    point_size: float | None,
) -> Scene:
    """Static shapes laid out on a grid; per-vertex scalars share one colour range."""
    offsets = grid_offsets([s.verts for s in shapes]) if len(shapes) > 1 else np.zeros((1, 3))
    check_cmap(cmap)
    lim = None if scalars is None else color_range(scalars, clim)
    layers = []
    for i, (shape, off) in enumerate(zip(shapes, offsets)):
        kw: dict[str, object] = {"color": color or DEFAULT_COLOR}
        if scalars is not None:
            kw["scalars"] = scalars[i][None]
        if point_size is not None:
            kw["size"] = float(point_size)
        layers.append(_shape_layer(shape, off, **kw))
    return Scene(layers, np.zeros(1), cmap, lim, scalar_title, title)


def correspondence_scene(
    source: Shape,
    target: Shape,
    p2p_21: np.ndarray,
    *,
    n_lines: int,
    title: str | None,
    point_size: float | None,
) -> Scene:
    """Colour transfer through ``p2p_21`` (source vertex ``i`` -> target vertex ``p2p_21[i]``).

    The target is coloured by its normalised coordinates (:func:`~geomot.viz._data.coordinate_colors`),
    ``c_target (V_t, 3)``; the source receives the pull-back ``c_source = c_target[p2p_21]``, so that matched
    regions share a colour and errors show as colour jumps. The source is drawn on the left, the target on the
    right; ``n_lines`` segments join farthest-point-sampled source vertices to their matches.
    """
    c_target = coordinate_colors(target.verts)
    c_source = c_target[p2p_21]
    offsets = grid_offsets([source.verts, target.verts], columns=2)
    kw: dict[str, object] = {} if point_size is None else {"size": float(point_size)}
    layers = [
        _shape_layer(source, offsets[0], rgb=c_source, **kw),
        _shape_layer(target, offsets[1], rgb=c_target, **kw),
    ]
    if n_lines < 0:
        raise ValidationError(f"n_lines: expected a non-negative number of lines, got {n_lines}")
    if n_lines > 0:
        k = min(int(n_lines), len(source.verts))
        idx = farthest_point_sampling(torch.from_numpy(source.verts), k, start=0).numpy()
        ends = np.empty((2 * k, 3))
        ends[0::2] = source.verts[idx] + offsets[0]
        ends[1::2] = target.verts[p2p_21[idx]] + offsets[1]
        layers.append(Layer("lines", ends[None], rgb=np.repeat(c_source[idx], 2, axis=0), size=1.5))
    return Scene(layers, np.zeros(1), title=title)


def trajectory_scene(
    trajectory: Trajectory,
    scalars: object,
    *,
    cmap: str,
    clim: object,
    color: str | None,
    target: Shape | None,
    title: str | None,
    point_size: float | None,
) -> Scene:
    """A moving shape; ``scalars``: ``"displacement"`` (``|x_t - x_0|`` per vertex), None, or ``(T, V)``/``(V,)``."""
    verts = trajectory.verts
    n_frames, n_verts = verts.shape[:2]
    values: np.ndarray | None
    title_s = ""
    if isinstance(scalars, str):
        if scalars != "displacement":
            raise ValidationError(f"scalars: expected 'displacement', None or an array, got {scalars!r}")
        values = np.linalg.norm(verts - verts[:1], axis=-1)
        title_s = "displacement"
    elif scalars is None:
        values = None
    else:
        s = scalars.detach().cpu().numpy() if isinstance(scalars, torch.Tensor) else np.asarray(scalars, dtype=float)
        if s.shape == (n_verts,):
            s = s[None]
        if s.shape not in ((1, n_verts), (n_frames, n_verts)):
            raise ValidationError(
                f"scalars: expected shape ({n_verts},) or ({n_frames}, {n_verts}) for this trajectory, got {s.shape}"
            )
        if not np.isfinite(s).all():
            raise ValidationError("scalars: contains NaN/Inf values")
        values = s.astype(np.float64)
    check_cmap(cmap)
    lim = None if values is None else color_range([values], clim)
    kw: dict[str, object] = {"color": color or DEFAULT_COLOR, "scalars": values}
    if point_size is not None:
        kw["size"] = float(point_size)
    elif trajectory.faces is None:
        kw["size"] = default_point_size(n_verts)
    kind = "points" if trajectory.faces is None else "mesh"
    layers = [Layer(kind, verts, trajectory.faces, **kw)]  # type: ignore[arg-type]
    if target is not None:
        layers.append(_shape_layer(target, np.zeros(3), color=TARGET_COLOR, opacity=0.3))
    return Scene(layers, trajectory.times, cmap, lim, title_s, title)


# -- evaluation ------------------------------------------------------------------------------------------
def interpolate(frames: np.ndarray, times: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation in time of ``frames (T, ...)`` sampled at ``times (T,)``; static when ``T`` = 1."""
    if frames.shape[0] == 1 or len(times) == 1:
        return frames[0]
    t = float(np.clip(t, times[0], times[-1]))
    k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
    span = times[k + 1] - times[k]
    a = 0.0 if span <= 0 else (t - times[k]) / span
    return (1 - a) * frames[k] + a * frames[k + 1]


def scene_bounds(scene: Scene) -> np.ndarray:
    """``(2, 3)`` box holding every layer at every time (the camera frames it, so nothing leaves the view)."""
    boxes = np.stack([bounds_of(layer.frames) for layer in scene.layers])
    return np.stack([boxes[:, 0].min(0), boxes[:, 1].max(0)])


def layer_colors(layer: Layer, scene: Scene) -> np.ndarray:
    """``(T or 1, N, 3)`` uint8 colours of a layer, frame by frame."""
    from matplotlib.colors import to_rgb

    n = layer.frames.shape[1]
    if layer.rgb is not None:
        return layer.rgb[None]
    if layer.scalars is not None and scene.clim is not None:
        return np.stack([scalar_colors(s, cmap=scene.cmap, clim=scene.clim) for s in layer.scalars])
    rgb = np.round(255 * np.asarray(to_rgb(layer.color))).astype(np.uint8)
    return np.broadcast_to(rgb, (1, n, 3)).copy()
