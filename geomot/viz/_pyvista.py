"""Draw a :class:`~geomot.viz._scene.Scene` with pyvista: interactive windows, screenshots, GIF and MP4 animations.

pyvista is imported inside :class:`PyvistaScene` only (through :func:`geomot.viz._backend.import_pyvista`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geomot._core.errors import MissingDependencyError
from geomot._core.registry import Registry
from geomot.io.convert import to_pyvista
from geomot.structures import Mesh, PointCloud
from geomot.viz._backend import frame_camera, import_pyvista, new_plotter
from geomot.viz._scene import Layer, Scene, interpolate, scene_bounds

__all__ = ["ANIMATION_WRITERS", "PyvistaScene", "write_animation"]

log = logging.getLogger(__name__)


def _polydata(pv: Any, layer: Layer, points: np.ndarray) -> Any:
    """PolyData of one layer: meshes and clouds through :func:`geomot.io.to_pyvista`, segments as the VTK line
    cell array ``[2, a, b, 2, ...]``."""
    if layer.kind == "mesh":
        return to_pyvista(Mesh(torch.from_numpy(points), torch.from_numpy(layer.faces)))
    if layer.kind == "lines":
        n = len(points) // 2
        pairs = np.arange(2 * n, dtype=np.int64).reshape(n, 2)
        return pv.PolyData(points, lines=np.hstack([np.full((n, 1), 2, dtype=np.int64), pairs]).ravel())
    return to_pyvista(PointCloud(torch.from_numpy(points)))


class PyvistaScene:
    """A scene on a pyvista ``Plotter``, movable in time with :meth:`set_time`.

    Args:
        scene: what to draw.
        off_screen: render without a window.
        window_size: ``(width, height)`` in pixels.
        view, azimuth, elevation: camera (see :func:`geomot.viz._backend.camera_pose`).
        time_label: write ``t = ...`` in a corner when the scene has several frames.
    """

    def __init__(
        self,
        scene: Scene,
        *,
        off_screen: bool,
        window_size: tuple[int, int],
        view: str,
        azimuth: float,
        elevation: float,
        time_label: bool = True,
    ) -> None:
        pv = import_pyvista()
        self.scene = scene
        self.plotter = new_plotter(off_screen=off_screen, window_size=window_size, background=scene.background)
        self.meshes: list[tuple[Layer, Any]] = []
        t0 = float(scene.times[0])
        last_mapped = None
        for i, layer in enumerate(scene.layers):
            mesh = _polydata(pv, layer, interpolate(layer.frames, scene.times, t0))
            kw: dict[str, Any] = {"opacity": layer.opacity, "show_scalar_bar": False, "name": f"layer{i}"}
            if layer.rgb is not None:
                mesh.point_data["colors"] = layer.rgb
                kw.update(scalars="colors", rgb=True)
            elif layer.scalars is not None and scene.clim is not None:
                mesh.point_data["values"] = interpolate(layer.scalars, scene.times, t0)
                kw.update(scalars="values", cmap=scene.cmap, clim=scene.clim)
            else:
                kw["color"] = layer.color
            if layer.kind == "mesh":
                kw.update(smooth_shading=True, specular=0.25, specular_power=25.0, diffuse=0.9, ambient=0.15)
            elif layer.kind == "points":
                # shaded spheres; eye-dome lighting darkens them, so it comes with flat points instead
                kw.update(style="points", point_size=layer.size, render_points_as_spheres=not scene.eye_dome)
            else:
                kw.update(line_width=layer.size)
            actor = self.plotter.add_mesh(mesh, **kw)
            if "cmap" in kw:
                last_mapped = actor.mapper
            self.meshes.append((layer, mesh))
        if last_mapped is not None:
            self.plotter.add_scalar_bar(
                title=" ", mapper=last_mapped, color="black", n_labels=5, fmt="%.3g",
                vertical=False, position_x=0.3, position_y=0.02, width=0.4, height=0.1, title_font_size=16,
                label_font_size=13,
            )
            self.plotter.scalar_bar.SetTextPositionToPrecedeScalarBar()  # labels under the bar
            if scene.scalar_title:  # the title above the bar, where it cannot overlap the labels
                w, h = self.plotter.window_size
                text = self.plotter.add_text(scene.scalar_title, position=(w // 2, int(0.125 * h)), font_size=10,
                                             color="black")
                text.GetTextProperty().SetJustificationToCentered()
        if scene.eye_dome:
            self.plotter.enable_eye_dome_lighting()
        if scene.title:
            self.plotter.add_text(scene.title, position="upper_left", font_size=12, color="black")
        self._time_label = None
        if time_label and len(scene.times) > 1:  # a corner annotation, updated in place (no new actor per frame)
            self._time_label = self.plotter.add_text(" ", position="upper_right", font_size=11, color="black")
        self.time = t0
        frame_camera(self.plotter, scene_bounds(scene), view=view, azimuth=azimuth, elevation=elevation)
        self.set_time(t0)

    def set_time(self, t: float) -> None:
        """Show the scene at time ``t`` (linear interpolation between the stored frames)."""
        times = self.scene.times
        self.time = float(np.clip(t, times[0], times[-1]))
        for layer, mesh in self.meshes:
            if layer.frames.shape[0] > 1:
                mesh.points = interpolate(layer.frames, times, self.time)
            if layer.scalars is not None and layer.scalars.shape[0] > 1 and "values" in mesh.point_data:
                mesh.point_data["values"] = interpolate(layer.scalars, times, self.time)
        if self._time_label is not None:
            self._time_label.SetText(3, f"t = {self.time:.3f}")  # corner 3: upper right

    # -- interactive time controls -----------------------------------------------------------------------
    def add_time_controls(self, *, period: float = 4.0, fps: float = 30.0) -> None:
        """A time slider, a play/pause check box (and the space key) and a timer that advances while playing.

        One pass over the whole time range takes ``period`` seconds at ``fps`` timer ticks per second.
        """
        times = self.scene.times
        if len(times) < 2:
            return
        t0, t1 = float(times[0]), float(times[-1])
        self.playing = False
        self._step = (t1 - t0) / max(period * fps, 1.0)
        self._slider = self.plotter.add_slider_widget(
            self._on_slider, [t0, t1], value=self.time, title="time", pointa=(0.25, 0.93), pointb=(0.75, 0.93),
            color="black", style="modern", interaction_event="always", fmt="%.2f",
        )
        self.plotter.add_checkbox_button_widget(
            self.set_playing, value=False, position=(12, 12), size=32, color_on="#2e9d5b", color_off="#b8b8b8"
        )
        self.plotter.add_text("play / pause (space)", position=(52, 18), font_size=9, color="black")
        self.plotter.add_key_event("space", lambda: self.set_playing(not self.playing))
        self.plotter.iren.add_observer("TimerEvent", lambda *_: self.tick())
        self.plotter.iren.create_timer(max(int(1000 / fps), 1))

    def _on_slider(self, value: float) -> None:
        self.set_time(float(value))

    def set_playing(self, playing: bool) -> None:
        """Start or stop the animation (the play check box and the space key call this)."""
        self.playing = bool(playing)

    def tick(self) -> None:
        """Timer callback: while playing, advance the time by one step, looping at the end."""
        if not self.playing:
            return
        times = self.scene.times
        at_end = self.time >= float(times[-1]) - 1e-12
        self.set_time(float(times[0]) if at_end else min(self.time + self._step, float(times[-1])))
        self._slider.GetRepresentation().SetValue(self.time)
        self.plotter.render()

    def image(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 picture of the current view."""
        self.plotter.render()
        return np.asarray(self.plotter.screenshot(return_img=True))

    def save_png(self, path: Path) -> np.ndarray:
        """Write the current view to ``path`` (PNG) and return the image."""
        img = self.image()
        import imageio.v3 as iio

        iio.imwrite(path, img)
        log.info("wrote %s", path)
        return img

    def close(self) -> None:
        self.plotter.close()


# -- animations ------------------------------------------------------------------------------------------
def _import_imageio() -> Any:
    try:
        import imageio.v2 as imageio
    except ImportError as e:
        raise MissingDependencyError(
            f"writing animations needs the optional package 'imageio' ({e}); install it with `pip install geomot[viz]`"
        ) from e
    return imageio


def _write_gif(frames: list[np.ndarray], path: Path, fps: float, hold: int) -> None:
    imageio = _import_imageio()
    durations = [1000.0 / fps] * len(frames)
    durations[-1] *= 1 + hold  # GIF frames carry their own duration: hold the last one longer
    imageio.mimsave(path, frames, format="GIF", duration=durations, loop=0)


def _write_mp4(frames: list[np.ndarray], path: Path, fps: float, hold: int) -> None:
    imageio = _import_imageio()
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"writing .mp4 needs the optional package 'imageio-ffmpeg' ({e}); install it with `pip install geomot[viz]`"
        ) from e
    # H.264 in yuv420p needs even sides; the frames are cropped by at most one pixel.
    h, w = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
    with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                            pixelformat="yuv420p", macro_block_size=1) as writer:
        for f in [*frames, *[frames[-1]] * hold]:
            writer.append_data(np.ascontiguousarray(f[:h, :w]))


#: Animation writers by file suffix.
ANIMATION_WRITERS: Registry[Any] = Registry("animation format")
ANIMATION_WRITERS.add(".gif", _write_gif)
ANIMATION_WRITERS.add(".mp4", _write_mp4)


def write_animation(view: PyvistaScene, path: Path, *, n_frames: int, fps: float, hold: int = 0) -> list[np.ndarray]:
    """Render ``n_frames`` times evenly spread over the scene's time range and write them to ``path``.

    Args:
        view: the scene (offscreen).
        path: ``.gif`` or ``.mp4`` file.
        n_frames: number of rendered frames (>= 2 for a moving scene).
        fps: frames per second of the file.
        hold: the last frame stays on screen ``hold`` frame durations longer before the animation loops.

    Returns:
        the rendered ``(H, W, 3)`` frames.
    """
    writer = ANIMATION_WRITERS.get(path.suffix.lower(), arg="animation")
    times = view.scene.times
    frames = []
    for t in np.linspace(times[0], times[-1], n_frames):
        view.set_time(float(t))
        frames.append(view.image())
    writer(frames, path, fps, hold)
    log.info("wrote %s (%d frames)", path, len(frames))
    return frames
