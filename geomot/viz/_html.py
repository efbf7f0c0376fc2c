"""Write a :class:`~geomot.viz._scene.Scene` as one self-contained HTML page (no network, no CDN, no trame).

The geometry of every layer and frame is inlined as base64 ``Float32Array`` / ``Uint8Array`` / ``Uint32Array``
data inside a JSON block; the viewer script of :mod:`geomot.viz._viewer_assets` draws it with WebGL (or a
Canvas 2D fallback) and, for several frames, offers a time slider and a play button.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import numpy as np

from geomot import __version__
from geomot.viz._backend import camera_pose
from geomot.viz._scene import Scene, layer_colors, scene_bounds
from geomot.viz._viewer_assets import PAGE, SCRIPT, STYLE

__all__ = ["scene_to_html", "write_html"]

log = logging.getLogger(__name__)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def scene_to_html(
    scene: Scene, *, view: str, azimuth: float, elevation: float, start_time: float | None = None, period: float = 4.0
) -> str:
    """The HTML text of a stand-alone viewer of ``scene``.

    Args:
        scene: what to draw.
        view, azimuth, elevation: initial camera (see :func:`geomot.viz._backend.camera_pose`).
        start_time: time shown first (the last frame's time by default).
        period: seconds taken by one pass of the play button over the whole time range.
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    bounds = scene_bounds(scene)
    corners = np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    position, focal, up = camera_pose(bounds, view=view, azimuth=azimuth, elevation=elevation)
    objects = []
    for layer in scene.layers:
        colors = layer_colors(layer, scene)
        objects.append(
            {
                "kind": layer.kind,
                "n": int(layer.frames.shape[1]),
                "frames": [_b64(f.astype(np.float32)) for f in layer.frames],
                "colors": [_b64(c.astype(np.uint8)) for c in colors],
                "faces": None if layer.faces is None else _b64(layer.faces.astype(np.uint32)),
                "opacity": float(layer.opacity),
                "size": float(layer.size),
            }
        )
    colorbar = None
    if scene.clim is not None:
        stops = np.round(255 * colormaps[scene.cmap](np.linspace(0, 1, 17))[:, :3]).astype(int).tolist()
        colorbar = {
            "title": scene.scalar_title,
            "lo": f"{scene.clim[0]:.3g}",
            "hi": f"{scene.clim[1]:.3g}",
            "stops": stops,
        }
    data = {
        "objects": objects,
        "times": [float(t) for t in scene.times],
        "start_time": float(scene.times[-1] if start_time is None else start_time),
        "period": float(period),
        "view": {
            "dir": (position - focal).tolist(),
            "up": up.tolist(),
            "center": focal.tolist(),
            "dist": float(np.linalg.norm(position - focal)),
            "radius": float(0.5 * np.linalg.norm(bounds[1] - bounds[0])) or 1.0,
            "corners": (corners - focal).tolist(),
            "margin": 1.08,
            "fovy": 30.0,
        },
        "colorbar": colorbar,
        "background": list(to_rgb(scene.background)),
    }
    # "</" inside the JSON block would end the <script> element early.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(scene.title or "geomot viewer")
    return (
        PAGE.replace("__STYLE__", STYLE)
        .replace("__SCRIPT__", SCRIPT)
        .replace("__VERSION__", __version__)
        .replace("__TITLE__", title)
        .replace("__DATA__", payload)
    )


def write_html(
    scene: Scene,
    path: Path,
    *,
    view: str,
    azimuth: float,
    elevation: float,
    start_time: float | None = None,
    period: float = 4.0,
) -> Path:
    """Write :func:`scene_to_html` to ``path`` (UTF-8) and return the path."""
    text = scene_to_html(scene, view=view, azimuth=azimuth, elevation=elevation, start_time=start_time, period=period)
    path.write_text(text, encoding="utf-8")
    log.info("wrote %s (%.1f MB)", path, len(text) / 1e6)
    return path
