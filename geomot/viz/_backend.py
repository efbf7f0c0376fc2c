"""Rendering backend: screen detection, offscreen OpenGL selection, lazy pyvista import, plotter and camera set-up.

Nothing here imports pyvista or vtk at module import time; :func:`import_pyvista` does it on first use, after
:func:`configure_offscreen` has chosen an offscreen OpenGL window when there is no screen.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import logging
import os
import socket
import sys
from types import ModuleType
from typing import Any

import numpy as np

from geomot._core.errors import MissingDependencyError, ValidationError
from geomot._core.registry import Registry

__all__ = [
    "VIEWS",
    "display_problem",
    "frame_camera",
    "has_display",
    "import_pyvista",
    "new_plotter",
    "offscreen_backend",
    "resolve_off_screen",
]

log = logging.getLogger(__name__)

_VTK_WINDOW_ENV = "VTK_DEFAULT_OPENGL_WINDOW"


_OFF_SCREEN_VARS = ("GEOMOT_OFF_SCREEN", "PYVISTA_OFF_SCREEN")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def has_display() -> bool:
    """True when an interactive window can be opened.

    On Linux and the BSDs this means ``DISPLAY`` (X11) or ``WAYLAND_DISPLAY`` is set; macOS and Windows always
    have a window server. ``GEOMOT_OFF_SCREEN=1`` (or pyvista's ``PYVISTA_OFF_SCREEN=true``) forces "no screen".
    """
    if any(_truthy(os.environ.get(var, "")) for var in _OFF_SCREEN_VARS):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _x_server_answers(display: str) -> bool:
    """Whether an X server accepts a connection at ``display`` (``[host]:N[.S]``): ``XOpenDisplay`` when libX11 is
    installed, else a connection to the server's socket (``/tmp/.X11-unix/XN``, or TCP port ``6000 + N``)."""
    lib = ctypes.util.find_library("X11")
    if lib is not None:
        try:
            x11 = ctypes.CDLL(lib)
        except OSError:
            x11 = None
        if x11 is not None:
            x11.XOpenDisplay.restype = ctypes.c_void_p
            x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
            x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
            handle = x11.XOpenDisplay(display.encode())
            if handle:
                x11.XCloseDisplay(handle)
            return bool(handle)
    host, _, rest = display.rpartition(":")
    try:
        number = int(rest.split(".", 1)[0])
    except ValueError:
        return False
    try:
        if host in ("", "unix") or host.startswith("/"):
            path = host if host.startswith("/") else f"/tmp/.X11-unix/X{number}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(path)
        else:
            with socket.create_connection((host, 6000 + number), timeout=2.0):
                pass
    except OSError:
        return False
    return True


def display_problem() -> str | None:
    """Why no interactive window can be opened here, or ``None`` when one can.

    Checks what :func:`has_display` checks, then that the screen is reachable: the Wayland socket exists, or the X
    server named by ``DISPLAY`` accepts a connection (a stale ``DISPLAY=:99`` with no server behind it would
    otherwise make VTK print warnings and show nothing). The message says what to do instead.
    """
    fix = ("write a file instead (--screenshot out.png, --gif out.gif or --html out.html), or set DISPLAY to a "
           "running X server (e.g. run the command under xvfb-run)")
    forced = [v for v in _OFF_SCREEN_VARS if _truthy(os.environ.get(v, ""))]
    if forced:
        return f"no screen to open a window on: off-screen mode is forced ({forced[0]} is set); {fix}"
    if not has_display():
        return f"no screen to open a window on (DISPLAY and WAYLAND_DISPLAY are unset); {fix}"
    if sys.platform in ("darwin", "win32"):
        return None
    wayland = os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        sock = wayland if os.path.isabs(wayland) else os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), wayland)
        if os.path.exists(sock):
            return None
    display = os.environ.get("DISPLAY")
    if display and _x_server_answers(display):
        return None
    where = f"DISPLAY={display!r}" if display else f"WAYLAND_DISPLAY={wayland!r}"
    return f"cannot open a window: no display server answers at {where}; {fix}"


def offscreen_backend() -> str | None:
    """The VTK OpenGL window class to use without a screen, or None to leave VTK's own choice.

    EGL when ``libEGL`` and at least one GLVND EGL vendor (e.g. Mesa's ``50_mesa.json``) are installed, else OSMesa
    when ``libOSMesa`` is installed. VTK falls back on its own when the chosen class fails to initialise; choosing
    first only avoids its attempt (and warning) at opening an X connection that cannot exist.
    """
    vendor_dirs = os.environ.get("__EGL_VENDOR_LIBRARY_DIRS", "/usr/share/glvnd/egl_vendor.d:/etc/glvnd/egl_vendor.d")
    has_vendor = any(glob.glob(os.path.join(d, "*.json")) for d in vendor_dirs.split(":") if d)
    if ctypes.util.find_library("EGL") and has_vendor:
        return "vtkEGLRenderWindow"
    if ctypes.util.find_library("OSMesa"):
        return "vtkOSOpenGLRenderWindow"
    return None


def configure_offscreen() -> None:
    """Without a screen, pick an offscreen VTK window class (unless the user already set ``VTK_DEFAULT_OPENGL_WINDOW``).

    VTK reads the variable each time it creates a render window, so calling this before every plotter is enough.
    """
    if has_display() or os.environ.get(_VTK_WINDOW_ENV):
        return
    backend = offscreen_backend()
    if backend is not None:
        os.environ[_VTK_WINDOW_ENV] = backend
        log.debug("no screen: rendering offscreen with %s", backend)


def load_triton_first() -> None:
    """Import ``triton``, when it is installed, before VTK opens an OpenGL context.

    VTK's Mesa/OSMesa window loads Mesa's LLVM; importing triton (which brings its own LLVM) after that crashes the
    process, and torch imports triton on its own (``torch.compile``, the first optimizer that checks for
    ``torch._dynamo``), so a script that renders and then trains would die with a segmentation fault. Imported
    first, both work. Costs about 0.5 s once, and nothing when triton is absent or already imported.
    """
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401
    except Exception as e:  # a broken triton must not stop a picture; torch will report it when it needs triton
        log.debug("triton could not be imported before VTK: %s", e)


def import_pyvista() -> ModuleType:
    """Import pyvista (after configuring offscreen rendering) or raise :class:`MissingDependencyError`."""
    configure_offscreen()
    load_triton_first()
    try:
        import pyvista
    except ImportError as e:
        raise MissingDependencyError(
            f"geomot.viz needs the optional package 'pyvista', which is not importable ({e}); "
            "install it with `pip install geomot[viz]`"
        ) from e
    return pyvista


def resolve_off_screen(off_screen: bool | None, *, outputs: bool) -> bool:
    """Offscreen when asked, when an output file is written, or when there is no screen."""
    if off_screen is not None:
        return bool(off_screen)
    return outputs or not has_display()


def new_plotter(*, off_screen: bool, window_size: tuple[int, int], background: str = "white") -> Any:
    """A pyvista ``Plotter`` with three white camera lights, anti-aliasing and a plain background."""
    pv = import_pyvista()
    size = _check_window_size(window_size)
    plotter = pv.Plotter(off_screen=off_screen, window_size=list(size), lighting="none")
    # White lights that follow the camera (a light kit without its warm/cool tints, which would shift the colour
    # map): a head light, a key light above right and a weak fill light below left.
    for position, intensity in (((0.0, 0.0, 1.0), 0.6), ((1.0, 1.0, 1.0), 0.45), ((-1.0, -0.4, 0.6), 0.25)):
        plotter.add_light(pv.Light(position=position, focal_point=(0.0, 0.0, 0.0), color="white",
                                   intensity=intensity, light_type="camera light"))
    plotter.set_background(background)
    try:
        plotter.enable_anti_aliasing("ssaa" if off_screen else "msaa")
    except Exception as e:  # pragma: no cover - depends on the OpenGL driver
        log.debug("anti-aliasing unavailable: %s", e)
    return plotter


def _check_window_size(window_size: object) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in window_size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValidationError(f"window_size: expected (width, height) in pixels, got {window_size!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ValidationError(f"window_size: each side must lie in [16, 8192] pixels, got {(w, h)}")
    return w, h


# -- camera ----------------------------------------------------------------------------------------------
#: Named viewing directions: (direction from the focal point to the camera, view-up vector).
VIEWS: Registry[tuple[tuple[float, float, float], tuple[float, float, float]]] = Registry("view")
VIEWS.add("xy", ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)))
VIEWS.add("yx", ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)))
VIEWS.add("xz", ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)))
VIEWS.add("zx", ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0)))
VIEWS.add("yz", ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)))
VIEWS.add("zy", ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
VIEWS.add("iso", ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)))


def camera_pose(
    bounds: np.ndarray,
    *,
    view: str,
    azimuth: float,
    elevation: float,
    aspect: float = 4 / 3,
    view_angle: float = 30.0,
    margin: float = 1.08,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera ``(position (3,), focal point (3,), view-up (3,))`` that frames a bounding box.

    The camera looks at the box centre from the named ``view`` direction, turned by ``azimuth`` degrees about
    the view-up axis and then by ``elevation`` degrees towards it. Its distance is the smallest at which every
    box corner lies inside the perspective frustum: with a corner at lateral offsets ``(x_c, y_c)`` and depth
    ``z_c`` (towards the camera) from the centre, ``d = max_c margin * max(|x_c| / tan h_x, |y_c| / tan h_y) + z_c``
    where ``tan h_y = tan(view_angle / 2)`` and ``tan h_x = aspect * tan h_y``.

    Args:
        bounds: ``(2, 3)`` array ``[min_xyz, max_xyz]``.
        aspect: width / height of the picture.
    """
    direction, up = (np.asarray(x, dtype=np.float64) for x in VIEWS.get(view, arg="view"))
    direction = direction / np.linalg.norm(direction)
    up = up - (up @ direction) * direction
    up = up / np.linalg.norm(up)
    direction = _rotate(direction, up, np.deg2rad(azimuth))
    side = np.cross(up, direction)
    direction = _rotate(direction, side, -np.deg2rad(elevation))
    up = _rotate(up, side, -np.deg2rad(elevation))
    center = bounds.mean(0)
    corners = np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    rel = corners - center
    side = np.cross(up, direction)
    tan_y = np.tan(np.deg2rad(view_angle) / 2)
    lateral = np.maximum(np.abs(rel @ side) / (aspect * tan_y), np.abs(rel @ up) / tan_y)
    dist = float(np.max(margin * lateral + rel @ direction))
    dist = max(dist, 1.05 * float(np.max(rel @ direction)) + 1e-9)  # never inside the box
    return center + dist * direction, center, up


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation of ``v`` about the unit ``axis`` by ``angle`` radians."""
    axis = axis / np.linalg.norm(axis)
    return v * np.cos(angle) + np.cross(axis, v) * np.sin(angle) + axis * (axis @ v) * (1 - np.cos(angle))


def frame_camera(plotter: Any, bounds: np.ndarray, *, view: str, azimuth: float, elevation: float) -> None:
    """Point ``plotter``'s camera at the box ``bounds (2, 3)`` (see :func:`camera_pose`)."""
    w, h = plotter.window_size
    position, focal, up = camera_pose(bounds, view=view, azimuth=azimuth, elevation=elevation, aspect=w / h)
    plotter.camera_position = [tuple(position), tuple(focal), tuple(up)]
    plotter.camera.view_angle = 30.0
    plotter.reset_camera_clipping_range()
