"""One-call writers from plain arrays, for scripts and ``geomot demo``: a trajectory's GIF and HTML viewer, and
a colour-transfer picture of a match. Each returns the path it wrote and works without a screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geomot.viz.views import show_correspondence, show_deformation

__all__ = ["save_correspondence_png", "save_deformation_gif", "save_deformation_html"]


def save_deformation_gif(
    verts: Any,
    faces: Any,
    path: str | Path,
    *,
    times: Any = None,
    n_frames: int | None = None,
    fps: float = 12.0,
    window_size: tuple[int, int] = (640, 480),
    title: str | None = None,
) -> Path:
    """Write an animated GIF (or MP4, by suffix) of a trajectory coloured by displacement.

    Args:
        verts: ``(T, V, 3)`` positions (tensor or array). faces: ``(F, 3)`` triangles, or None for a cloud.
        path: ``.gif`` or ``.mp4`` file in an existing folder.
        times: ``(T,)`` frame times. n_frames, fps, window_size, title: see
            :func:`~geomot.viz.show_deformation`.
    """
    out = show_deformation(
        verts, faces, times=times, animation=path, n_frames=n_frames, fps=fps, window_size=window_size, title=title
    )
    return out.files[0]


def save_deformation_html(
    verts: Any,
    faces: Any,
    path: str | Path,
    *,
    times: Any = None,
    target: Any = None,
    title: str | None = None,
) -> Path:
    """Write a self-contained HTML viewer (time slider, play button, orbit camera) of a trajectory.

    Args:
        verts: ``(T, V, 3)``. faces: ``(F, 3)`` or None. path: ``.html`` file in an existing folder.
        times: ``(T,)``. target: optional shape shown in translucent grey.
    """
    out = show_deformation(verts, faces, times=times, target=target, html=path, title=title)
    return out.files[0]


def save_correspondence_png(
    source_verts: Any,
    source_faces: Any,
    target_verts: Any,
    target_faces: Any,
    p2p_21: Any,
    path: str | Path,
    *,
    n_lines: int = 0,
    window_size: tuple[int, int] = (1000, 550),
    title: str | None = None,
) -> Path:
    """Write the colour-transfer picture of a match (see :func:`~geomot.viz.show_correspondence`).

    Args:
        source_verts: ``(V_s, 3)``; source_faces: ``(F_s, 3)`` or None. target_verts: ``(V_t, 3)``;
        target_faces: ``(F_t, 3)`` or None. p2p_21: ``(V_s,)`` target index of each source vertex (the file
        ``geomot match`` writes). path: ``.png`` file in an existing folder.
    """
    src = source_verts if source_faces is None else (source_verts, source_faces)
    tgt = target_verts if target_faces is None else (target_verts, target_faces)
    out = show_correspondence(src, tgt, p2p_21, n_lines=n_lines, screenshot=path, window_size=window_size, title=title)
    return out.files[0]
