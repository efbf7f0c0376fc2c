"""L6: visualisation of meshes, point clouds, correspondences and deformations (pyvista, GIF/MP4, HTML).

Importing this package imports neither pyvista nor vtk: they are loaded by the first function that renders.
Without a screen (``DISPLAY`` and ``WAYLAND_DISPLAY`` unset) rendering is offscreen (EGL or OSMesa) and needs
no X server; the HTML viewer needs neither pyvista nor a network.
"""

from geomot.viz._backend import VIEWS, display_problem, has_display
from geomot.viz._data import Trajectory, coordinate_colors, load_p2p, load_trajectory
from geomot.viz.export import save_correspondence_png, save_deformation_gif, save_deformation_html
from geomot.viz.views import Rendered, show, show_correspondence, show_deformation

__all__ = [
    "VIEWS",
    "Rendered",
    "Trajectory",
    "coordinate_colors",
    "display_problem",
    "has_display",
    "load_p2p",
    "load_trajectory",
    "save_correspondence_png",
    "save_deformation_gif",
    "save_deformation_html",
    "show",
    "show_correspondence",
    "show_deformation",
]
