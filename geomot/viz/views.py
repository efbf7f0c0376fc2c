"""Public viewers: shapes, correspondences and deformations, in a window or written to PNG / GIF / MP4 / HTML.

Every function builds one backend-neutral scene and then either opens an interactive pyvista window (when there
is a screen and no output file is asked for) or writes the requested files without a screen. The rendering mode
is picked automatically: offscreen (EGL or OSMesa, no X server needed) when ``DISPLAY`` and ``WAYLAND_DISPLAY``
are unset, interactive otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from geomot._core.checks import check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot.viz._backend import has_display
from geomot.viz._data import (
    Shape,
    as_scalars,
    as_shapes,
    as_trajectory,
    check_output_path,
    check_p2p,
)
from geomot.viz._html import write_html
from geomot.viz._pyvista import ANIMATION_WRITERS, PyvistaScene, write_animation
from geomot.viz._scene import Scene, correspondence_scene, shapes_scene, trajectory_scene

__all__ = ["Rendered", "show", "show_correspondence", "show_deformation"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
HTML_SUFFIXES = (".html", ".htm")


class Rendered(NamedTuple):
    """What a viewer produced.

    Attributes:
        image: ``(H, W, 3)`` uint8 picture of the final view when it was rendered offscreen, else None (an
            interactive window, or only an HTML page).
        files: the files written, in the order screenshot, animation, HTML.
    """

    image: np.ndarray | None
    files: tuple[Path, ...]


def _single(shape: Any, name: str) -> Shape:
    shapes = as_shapes(shape, name=name)
    if len(shapes) != 1:
        raise ShapeError(f"{name}: expected a single shape, got a batch of {len(shapes)}")
    return shapes[0]


def _render(
    scene: Scene,
    *,
    screenshot: str | Path | None,
    html: str | Path | None,
    animation: str | Path | None = None,
    off_screen: bool | None,
    window_size: tuple[int, int],
    view: str,
    azimuth: float,
    elevation: float,
    start_time: float | None = None,
    n_frames: int | None = None,
    fps: float = 12.0,
    period: float = 4.0,
    time_controls: bool = False,
) -> Rendered:
    """Write the requested files offscreen; then open a window when ``off_screen`` is False, or when it is None,
    no file is asked for and there is a screen. With neither files nor a window, return an offscreen picture."""
    shot = None if screenshot is None else check_output_path(screenshot, "screenshot", IMAGE_SUFFIXES)
    page = None if html is None else check_output_path(html, "html", HTML_SUFFIXES)
    anim = None if animation is None else check_output_path(animation, "animation", tuple(ANIMATION_WRITERS))
    if off_screen is False and not has_display():
        raise ValidationError(
            "off_screen: False needs a screen, but DISPLAY and WAYLAND_DISPLAY are unset; "
            "pass screenshot=, html= or animation= (or off_screen=None) to render without one"
        )
    fps = check_positive(fps, "fps")
    period = check_positive(period, "period")
    if n_frames is not None and (int(n_frames) != n_frames or n_frames < 2):
        raise ValidationError(f"n_frames: expected an integer >= 2, got {n_frames!r}")
    t_show = float(scene.times[-1] if start_time is None else start_time)
    common = {"window_size": window_size, "view": view, "azimuth": azimuth, "elevation": elevation}
    files: list[Path] = []
    wants_files = shot is not None or anim is not None or page is not None
    window = off_screen is False or (off_screen is None and not wants_files and has_display())
    image = None
    if shot is not None or anim is not None or not (wants_files or window):
        pv_scene = PyvistaScene(scene, off_screen=True, **common)
        try:
            if anim is not None:
                count = int(n_frames) if n_frames is not None else max(len(scene.times), 30)
                write_animation(pv_scene, anim, n_frames=count, fps=fps, hold=round(fps / 2))
            pv_scene.set_time(t_show)
            image = pv_scene.image() if shot is None else pv_scene.save_png(shot)
        finally:
            pv_scene.close()
        files += [p for p in (shot, anim) if p is not None]
        if not wants_files and off_screen is None:
            log.warning("no screen (DISPLAY/WAYLAND_DISPLAY unset): rendered offscreen; pass screenshot= to save it")
    if page is not None:
        write_html(scene, page, view=view, azimuth=azimuth, elevation=elevation, start_time=t_show, period=period)
        files.append(page)
    if window:
        pv_scene = PyvistaScene(scene, off_screen=False, time_label=False, **common)
        try:
            if time_controls:
                pv_scene.add_time_controls(period=period)
            pv_scene.set_time(float(scene.times[0]) if start_time is None else start_time)
            pv_scene.plotter.show(title=scene.title or "geomot")
        finally:
            pv_scene.close()
    return Rendered(image, tuple(files))


def show(
    shape: Any,
    faces: Any = None,
    *,
    scalars: Any = None,
    cmap: str = "viridis",
    clim: tuple[float, float] | None = None,
    color: str | None = None,
    scalar_title: str = "",
    title: str | None = None,
    point_size: float | None = None,
    eye_dome_lighting: bool = False,
    view: str = "xy",
    azimuth: float = 30.0,
    elevation: float = 15.0,
    window_size: tuple[int, int] = (800, 600),
    screenshot: str | Path | None = None,
    html: str | Path | None = None,
    off_screen: bool | None = None,
) -> Rendered:
    """Show meshes or point clouds; a batch is laid out on a grid.

    Meshes are drawn with smooth (Gouraud) shading under three white camera lights (head, key and fill); clouds
    as shaded spheres, or as flat points with eye-dome lighting. ``scalars`` are mapped through ``cmap`` on one
    colour range shared by the batch, with a scalar bar.

    Args:
        shape: a :class:`~geomot.Mesh`, a :class:`~geomot.PointCloud`, a ``(V, 3)``/``(B, V, 3)`` tensor or
            array (a cloud, or a mesh with ``faces``), a ``(verts, faces)`` pair, or a list of these.
        faces: ``(F, 3)`` or ``(B, F, 3)`` triangles for raw vertex arrays.
        scalars: per-vertex values: ``(V,)`` for one shape, ``(B, V)`` or a list of ``(V_b,)`` for a batch.
        cmap: matplotlib colour map name. clim: ``(low, high)`` colour range (data range by default).
        color: uniform colour without scalars. scalar_title: scalar bar title. title: text in the corner.
        point_size: point diameter in pixels (from the point count by default).
        eye_dome_lighting: draw clouds as flat points with eye-dome lighting (a depth cue; window/PNG only).
        view: camera direction (``"xy"`` looks down the z axis with y up; see ``geomot.viz.VIEWS``), turned by
            ``azimuth`` and ``elevation`` degrees. window_size: ``(width, height)`` pixels.
        screenshot: write a PNG there. html: write a self-contained HTML viewer there.
        off_screen: True never opens a window; False opens one (after writing any file); None (default) opens one
            only when there is a screen and no file is asked for.

    Returns:
        :class:`Rendered`. Without a screen and without output files, the picture is rendered offscreen and
        returned in ``image`` (with a warning).

    Raises:
        ShapeError / ValidationError: bad shapes, faces out of range, wrong scalars, an output folder that does
            not exist or a wrong file suffix.
    """
    shapes = as_shapes(shape, faces)
    scene = shapes_scene(
        shapes, as_scalars(scalars, shapes), cmap=cmap, clim=clim, color=color, scalar_title=scalar_title,
        title=title, point_size=point_size,
    )._replace(eye_dome=bool(eye_dome_lighting))
    return _render(scene, screenshot=screenshot, html=html, off_screen=off_screen, window_size=window_size,
                   view=view, azimuth=azimuth, elevation=elevation)


def show_correspondence(
    source: Any,
    target: Any,
    p2p_21: Any,
    *,
    n_lines: int = 0,
    title: str | None = None,
    point_size: float | None = None,
    view: str = "xy",
    azimuth: float = 0.0,
    elevation: float = 10.0,
    window_size: tuple[int, int] = (1000, 550),
    screenshot: str | Path | None = None,
    html: str | Path | None = None,
    off_screen: bool | None = None,
) -> Rendered:
    """Colour transfer through a point-to-point map, source on the left and target on the right.

    The map is the one ``geomot match SOURCE TARGET`` writes: ``p2p_21[i]`` is the target vertex matched to
    source vertex ``i`` (shape 1 = target, shape 2 = source, pyFM's naming). The target is coloured by its
    normalised coordinates, ``c_t(y) = 0.1 + 0.85 (y - min) / (max - min)`` read as RGB, and the source shows
    the pull-back ``c_s(i) = c_t(p2p_21[i])``: a good map gives the source the same smooth colouring, a wrong
    one shows colour jumps (Ovsjanikov et al. 2012, functional maps, Fig. 7 style).

    Args:
        source: a single mesh or cloud (see :func:`show` for the accepted types); ``V_s`` vertices.
        target: a single mesh or cloud; ``V_t`` vertices.
        p2p_21: ``(V_s,)`` integer indices in ``[0, V_t)``.
        n_lines: number of segments joining farthest-point-sampled source vertices to their matches (0: none).
        others: as in :func:`show`.

    Returns:
        :class:`Rendered`.

    Raises:
        ShapeError: a map of the wrong length (with a hint when it has the target's length, i.e. is reversed).
        ValidationError: indices out of range, bad output paths.
    """
    src = _single(source, "source")
    tgt = _single(target, "target")
    p2p = check_p2p(p2p_21, n_source=len(src.verts), n_target=len(tgt.verts))
    scene = correspondence_scene(src, tgt, p2p, n_lines=n_lines, title=title, point_size=point_size)
    return _render(scene, screenshot=screenshot, html=html, off_screen=off_screen, window_size=window_size,
                   view=view, azimuth=azimuth, elevation=elevation)


def show_deformation(
    trajectory: Any,
    faces: Any = None,
    *,
    times: Any = None,
    scalars: Any = "displacement",
    cmap: str = "viridis",
    clim: tuple[float, float] | None = None,
    color: str | None = None,
    target: Any = None,
    title: str | None = None,
    point_size: float | None = None,
    time: float | None = None,
    view: str = "xy",
    azimuth: float = 30.0,
    elevation: float = 15.0,
    window_size: tuple[int, int] = (800, 600),
    screenshot: str | Path | None = None,
    animation: str | Path | None = None,
    html: str | Path | None = None,
    n_frames: int | None = None,
    fps: float = 12.0,
    period: float = 4.0,
    off_screen: bool | None = None,
) -> Rendered:
    """A deforming shape with a time slider and a play button, or its pictures, animation and HTML page.

    Positions between stored frames are interpolated linearly in time, ``x(t) = (1 - a) x_k + a x_{k+1}`` with
    ``a = (t - t_k) / (t_{k+1} - t_k)``. The default colouring is the displacement ``|x_t - x_0|`` on a colour
    range fixed over the whole trajectory; the camera frames the union of all frames.

    Args:
        trajectory: a ``.npz`` path written by ``geomot deform`` (``verts (T, V, 3)``, ``faces (F, 3)``,
            ``times (T,)``), a :class:`~geomot.viz.Trajectory`, a ``(T, V, 3)`` tensor/array, a mapping with
            those keys, or a list of ``T`` frames with the same vertex count.
        faces: ``(F, 3)`` triangles shared by the frames (None: a moving point cloud).
        times: ``(T,)`` non-decreasing frame times (``0, 1, ..., T-1`` by default).
        scalars: ``"displacement"``, None (uniform ``color``), ``(V,)`` or ``(T, V)`` values.
        target: optional shape drawn in translucent grey (what the deformation aims at).
        time: time of the screenshot / of the first view (the last frame by default).
        screenshot: PNG path. animation: ``.gif`` or ``.mp4`` path. html: HTML viewer path.
        n_frames: frames of the animation, evenly spaced in time (default ``max(T, 30)``).
        fps: frames per second of the animation. period: seconds per pass of the play button.
        others: as in :func:`show`.

    Returns:
        :class:`Rendered` (``image`` is the frame at ``time``).

    Raises:
        ShapeError: frames with different vertex counts, times of the wrong length.
        ValidationError: faces out of range, bad output paths, n_frames < 2.
        FileFormatError: an unreadable trajectory file.
    """
    traj = as_trajectory(trajectory, faces=faces, times=times)
    tgt = None if target is None else _single(target, "target")
    scene = trajectory_scene(
        traj, scalars, cmap=cmap, clim=clim, color=color, target=tgt, title=title, point_size=point_size
    )
    return _render(
        scene, screenshot=screenshot, html=html, animation=animation, off_screen=off_screen,
        window_size=window_size, view=view, azimuth=azimuth, elevation=elevation, start_time=time,
        n_frames=n_frames, fps=fps, period=period, time_controls=True,
    )
