"""geomot.viz: offscreen pictures and animations are not blank and move, colour transfer, camera framing, time
controls, and the errors raised on bad input. No screen is needed (rendering is offscreen, EGL or OSMesa)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

import geomot
from geomot import viz
from geomot._core.errors import FileFormatError, ShapeError, ValidationError
from geomot.viz import _backend
from geomot.viz._backend import frame_camera
from geomot.viz._data import as_trajectory, coordinate_colors, grid_offsets
from geomot.viz._pyvista import PyvistaScene
from geomot.viz._scene import correspondence_scene, scene_bounds, trajectory_scene

from .conftest import icosphere, shared_path

pytest.importorskip("pyvista")
imageio = pytest.importorskip("imageio.v3")

SMALL = (320, 240)


@pytest.fixture(autouse=True)
def _no_screen(monkeypatch):
    """Every test runs as on CI: no X or Wayland display."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def assert_not_blank(img: np.ndarray, *, min_fraction: float = 0.02) -> None:
    """A picture of something: not one colour, many colours, and a part (not all) differs from the background."""
    img = np.asarray(img)[..., :3].astype(np.int64)
    assert img.std() > 8.0, f"pixel std {img.std():.2f}: the picture is (nearly) one colour"
    n_colors = len(np.unique(img.reshape(-1, 3), axis=0))
    assert n_colors > 50, f"only {n_colors} distinct colours"
    corner = img[0, 0]
    fg = (np.abs(img - corner).sum(-1) > 30).mean()
    assert min_fraction < fg < 0.98, f"{fg:.3f} of the pixels differ from the background"


def sphere_trajectory(n_frames: int = 6, subdiv: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An icosphere stretched along x and moved along y over time: verts (T, V, 3), faces, times (T,)."""
    v, f = icosphere(subdiv)
    times = torch.linspace(0.0, 2.0, n_frames, dtype=v.dtype)
    frames = [v * torch.tensor([1 + 0.4 * t, 1.0, 1 - 0.2 * t], dtype=v.dtype) + torch.tensor([0, 0.3 * t, 0])
              for t in times]
    return torch.stack(frames), f, times


# -- import and backend ---------------------------------------------------------------------------------
def test_import_viz_does_not_import_pyvista_or_vtk():
    code = ("import json, sys, geomot, geomot.viz, geomot.cli.view; "
            "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('pyvista', 'vtk', 'vtkmodules')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_has_display_follows_environment(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "GEOMOT_OFF_SCREEN", "PYVISTA_OFF_SCREEN"):  # CI sets some of these
        monkeypatch.delenv(var, raising=False)
    assert not viz.has_display()
    monkeypatch.setenv("DISPLAY", ":0")
    assert viz.has_display()
    monkeypatch.setenv("GEOMOT_OFF_SCREEN", "1")
    assert not viz.has_display()
    monkeypatch.delenv("GEOMOT_OFF_SCREEN")
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert viz.has_display()


def test_offscreen_backend_prefers_egl_then_osmesa(monkeypatch, tmp_path):
    libs = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so.8"}
    monkeypatch.setattr(_backend.ctypes.util, "find_library", lambda name: libs.get(name))
    (tmp_path / "50_mesa.json").write_text("{}")
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_DIRS", str(tmp_path))
    assert _backend.offscreen_backend() == "vtkEGLRenderWindow"
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_DIRS", str(tmp_path / "none"))  # libEGL without a vendor: no EGL
    assert _backend.offscreen_backend() == "vtkOSOpenGLRenderWindow"
    libs.clear()
    assert _backend.offscreen_backend() is None


def test_configure_offscreen_respects_user_choice(monkeypatch):
    monkeypatch.setenv("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
    _backend.configure_offscreen()
    assert _backend.os.environ["VTK_DEFAULT_OPENGL_WINDOW"] == "vtkOSOpenGLRenderWindow"


@pytest.mark.parametrize("view", ["xy", "xz", "iso"])
@pytest.mark.parametrize("aspect", [0.5, 4 / 3, 2.5])
def test_camera_pose_frames_every_corner(view, aspect):
    bounds = np.array([[-1.0, -0.5, 0.0], [3.0, 0.5, 0.2]])
    pos, focal, up = _backend.camera_pose(bounds, view=view, azimuth=25, elevation=20, aspect=aspect, margin=1.0)
    np.testing.assert_allclose(focal, bounds.mean(0))
    d = (pos - focal) / np.linalg.norm(pos - focal)
    assert abs(d @ up) < 1e-9
    side = np.cross(up, d)
    corners = np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    rel = corners - pos
    depth = -(rel @ d)
    assert (depth > 0).all()
    tan_y = np.tan(np.deg2rad(15))
    ndc = np.maximum(np.abs(rel @ side) / (depth * tan_y * aspect), np.abs(rel @ up) / (depth * tan_y))
    assert ndc.max() == pytest.approx(1.0, abs=1e-9)  # tight: one corner touches the frustum, none is outside


def test_grid_offsets_centre_shapes_in_cells():
    a = np.random.default_rng(0).normal(size=(50, 3))
    b = a * 0.5 + 10.0
    off = grid_offsets([a, b], columns=2, gap=0.5)
    np.testing.assert_allclose(off[0], 0.0)
    ca, cb = (a.max(0) + a.min(0)) / 2, ((b + off[1]).max(0) + (b + off[1]).min(0)) / 2
    size = a.max(0) - a.min(0)
    np.testing.assert_allclose(cb - ca, [1.5 * size[0], 0.0, 0.0], atol=1e-12)


# -- colours --------------------------------------------------------------------------------------------
def test_coordinate_colors_are_normalised_positions():
    v = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 4.0], [1.0, 0.5, 2.0]])
    c = coordinate_colors(v)
    np.testing.assert_array_equal(c[0], [26, 26, 26])
    np.testing.assert_array_equal(c[1], [242, 242, 242])
    np.testing.assert_array_equal(c[2], [134, 134, 134])


def test_correspondence_scene_pulls_target_colours_back():
    v, f = icosphere(1)
    src = viz._data.as_shapes((v, f))[0]
    tgt = viz._data.as_shapes((v.flip(0) * 2.0, f.flip(1)))[0]  # the same sphere, vertices in reverse order
    p2p = np.arange(len(v))[::-1].copy()  # the true map
    scene = correspondence_scene(src, tgt, p2p, n_lines=7, title=None, point_size=None)
    c_src, c_tgt = scene.layers[0].rgb, scene.layers[1].rgb
    np.testing.assert_array_equal(c_src, c_tgt[p2p])
    np.testing.assert_array_equal(c_src, coordinate_colors(v.numpy()))  # true map: the source sees its own xyz
    lines = scene.layers[2]
    assert lines.kind == "lines" and lines.frames.shape == (1, 14, 3)
    ends = lines.frames[0]
    # every segment joins a source vertex to the target vertex it is matched to (up to the layout offsets)
    d_src = np.abs(ends[0::2, None] - scene.layers[0].frames[0][None]).sum(-1)  # (7, 42)
    d_tgt = np.abs(ends[1::2, None] - scene.layers[1].frames[0][None]).sum(-1)
    assert d_src.min(1).max() < 1e-12 and d_tgt.min(1).max() < 1e-12  # segments end on vertices
    np.testing.assert_array_equal(d_tgt.argmin(1), p2p[d_src.argmin(1)])
    assert len(set(d_src.argmin(1).tolist())) == 7  # farthest-point samples are distinct


# -- rendering ------------------------------------------------------------------------------------------
def test_show_mesh_writes_a_png_that_is_not_blank(tmp_path):
    v, f = icosphere(2)
    out = viz.show(geomot.Mesh(v, f), scalars=v[:, 2], scalar_title="z", screenshot=tmp_path / "m.png",
                   window_size=SMALL)
    assert out.files == (tmp_path / "m.png",)
    img = imageio.imread(tmp_path / "m.png")
    assert img.shape[:2] == (SMALL[1], SMALL[0])
    assert_not_blank(img)
    np.testing.assert_array_equal(img[..., :3], out.image)


def test_show_without_screen_or_file_returns_the_picture(caplog):
    v, f = icosphere(1)
    out = viz.show((v.numpy(), f.numpy()), window_size=SMALL)
    assert out.files == ()
    assert_not_blank(out.image)
    assert "no screen" in caplog.text


def test_show_batch_of_clouds_and_meshes(tmp_path):
    pts = torch.randn(2, 400, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = viz.show(geomot.PointCloud(pts), scalars=pts[..., 0], screenshot=tmp_path / "c.png", window_size=SMALL)
    assert_not_blank(out.image)
    v, f = icosphere(1)
    out2 = viz.show([geomot.Mesh(v, f), (v * 0.5, f), v.float()], eye_dome_lighting=True, window_size=SMALL,
                    off_screen=True)
    assert_not_blank(out2.image)


def test_deformation_first_and_last_frames_differ(tmp_path):
    verts, faces, times = sphere_trajectory()
    first = viz.show_deformation(verts, faces, times=times, time=0.0, screenshot=tmp_path / "a.png",
                                 window_size=SMALL)
    last = viz.show_deformation(verts, faces, times=times, screenshot=tmp_path / "b.png", window_size=SMALL)
    assert_not_blank(first.image)
    assert_not_blank(last.image)
    diff = np.abs(first.image.astype(float) - last.image.astype(float)).mean()
    assert diff > 3.0, f"first and last frames differ by {diff:.2f} on average"


def test_gif_frames_move_and_loop(tmp_path):
    verts, faces, times = sphere_trajectory()
    path = viz.save_deformation_gif(verts.float(), faces, tmp_path / "d.gif", times=times, n_frames=5, fps=10,
                                    window_size=SMALL)
    frames = imageio.imread(path, index=None)
    assert frames.shape[0] == 5
    assert_not_blank(frames[0])
    assert np.abs(frames[0].astype(float) - frames[4].astype(float)).mean() > 3.0
    assert imageio.immeta(path, index=0)["duration"] == pytest.approx(100.0)
    assert imageio.immeta(path, index=4)["duration"] == pytest.approx(600.0)  # the last frame is held 0.5 s more
    assert imageio.immeta(path, index=0).get("loop") == 0


def test_mp4_animation(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio2

    verts, faces, times = sphere_trajectory(4, subdiv=1)
    out = viz.show_deformation(verts, faces, times=times, animation=tmp_path / "d.mp4", n_frames=4, fps=8,
                               window_size=(161, 121))
    with imageio2.get_reader(out.files[0], format="FFMPEG") as reader:
        frames = [np.asarray(f) for f in reader]
    assert len(frames) == 4 + 4  # 4 rendered + the last one held for half a second
    assert frames[0].shape == (120, 160, 3)  # cropped to even sides for H.264 (yuv420p)
    assert_not_blank(frames[0])
    assert np.abs(frames[0].astype(float) - frames[3].astype(float)).mean() > 3.0


def test_set_time_updates_positions_and_shading():
    """Moving a scene to the last time draws what a scene holding only the last frame draws (the normals of the
    smooth shading follow the points)."""
    verts, faces, times = sphere_trajectory(3)
    traj = as_trajectory(verts, faces=faces, times=times)
    kw = dict(off_screen=True, window_size=SMALL, view="xy", azimuth=30, elevation=15, time_label=False)
    scene = trajectory_scene(traj, None, cmap="viridis", clim=None, color=None, target=None, title=None,
                             point_size=None)
    moving = PyvistaScene(scene, **kw)
    img0 = moving.image()
    moving.set_time(float(times[-1]))
    img1 = moving.image()
    moving.close()
    # a scene holding only the last frame, seen by the same camera (which frames all the frames)
    still = PyvistaScene(
        scene._replace(layers=[scene.layers[0]._replace(frames=traj.verts[-1:])], times=traj.times[-1:]), **kw
    )
    frame_camera(still.plotter, scene_bounds(scene), view="xy", azimuth=30, elevation=15)
    ref = still.image()
    still.close()
    assert np.abs(img1.astype(float) - ref.astype(float)).mean() < 0.5
    assert np.abs(img0.astype(float) - img1.astype(float)).mean() > 3.0


def test_time_controls_play_and_loop():
    verts, faces, times = sphere_trajectory(4, subdiv=1)
    traj = as_trajectory(verts, faces=faces, times=times)
    scene = trajectory_scene(traj, "displacement", cmap="viridis", clim=None, color=None, target=None, title=None,
                             point_size=None)
    view = PyvistaScene(scene, off_screen=True, window_size=SMALL, view="xy", azimuth=0, elevation=0)
    try:
        view.add_time_controls(period=1.0, fps=4.0)  # 4 ticks per pass over [0, 2]
        img0 = view.image()
        view.tick()
        assert view.time == 0.0  # paused
        view.set_playing(True)
        view.tick()
        assert view.time == pytest.approx(0.5)
        assert view._slider.GetRepresentation().GetValue() == pytest.approx(0.5)
        for _ in range(3):
            view.tick()
        assert view.time == pytest.approx(2.0)
        assert np.abs(view.image().astype(float) - img0.astype(float)).mean() > 3.0
        view.tick()
        assert view.time == pytest.approx(0.0)  # loops
        view._on_slider(1.25)
        assert view.time == pytest.approx(1.25)
    finally:
        view.close()


def test_correspondence_png_with_lines(tmp_path):
    v, f = icosphere(2)
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=v.dtype)
    p2p = torch.cdist(v @ R.T, v).argmin(1)
    path = viz.save_correspondence_png(v, f, v * 1.3, f, p2p, tmp_path / "c.png", n_lines=15, window_size=(400, 220))
    assert_not_blank(imageio.imread(path))


def test_deformation_of_a_cloud_with_a_target(tmp_path):
    verts, _, times = sphere_trajectory(3, subdiv=1)
    out = viz.show_deformation(verts, None, times=times, target=verts[-1] + 0.1, scalars=None,
                               screenshot=tmp_path / "p.png", window_size=SMALL)
    assert_not_blank(out.image)


# -- real data ------------------------------------------------------------------------------------------
@pytest.mark.data
def test_faust_ground_truth_correspondence_picture(tmp_path):
    from geomot.io import load, read_vts
    from geomot.ops import edges
    from geomot.viz._data import as_shapes

    root = shared_path("FAUST_r")
    a, b = load(root / "off" / "tr_reg_000.off"), load(root / "off" / "tr_reg_001.off")
    va, vb = read_vts(root / "corres" / "tr_reg_000.vts"), read_vts(root / "corres" / "tr_reg_001.vts")
    # ground-truth map a -> b through the template: the template point nearest to each vertex of a
    p2p = vb[torch.cdist(a.verts, a.verts[va]).argmin(1)]
    out = viz.show_correspondence(a, b, p2p, n_lines=20, screenshot=tmp_path / "faust.png", window_size=(500, 300))
    assert_not_blank(out.image)
    # the pulled-back colours are smooth on the source for the true map, noisy for a shuffled one
    src, tgt = as_shapes(a)[0], as_shapes(b)[0]
    e = edges(a.faces).numpy()

    def roughness(m: np.ndarray) -> float:
        c = correspondence_scene(src, tgt, m, n_lines=0, title=None, point_size=None).layers[0].rgb.astype(float)
        return float(np.abs(c[e[:, 0]] - c[e[:, 1]]).mean())

    shuffled = p2p[torch.randperm(len(p2p), generator=torch.Generator().manual_seed(0))]
    assert roughness(p2p.numpy()) < 0.25 * roughness(shuffled.numpy())


@pytest.mark.data
def test_deform_sph_interpolation_gif(tmp_path):
    from geomot.io import load

    root = shared_path("deform_sph", "off")
    files = sorted(root.glob("*.off"))[:2]
    a, b = load(files[0]), load(files[1])
    w = torch.linspace(0, 1, 5)[:, None, None]
    verts = (1 - w) * a.verts + w * b.verts
    path = viz.save_deformation_gif(verts, a.faces, tmp_path / "s.gif", n_frames=4, window_size=SMALL)
    frames = imageio.imread(path, index=None)
    assert_not_blank(frames[0])
    assert np.abs(frames[0].astype(float) - frames[3].astype(float)).mean() > 1.0


# -- bad input ------------------------------------------------------------------------------------------
def test_trajectory_frames_with_different_vertex_counts():
    v, _ = icosphere(1)
    with pytest.raises(ShapeError, match=r"frame 1 has 41 vertices but frame 0 has 42"):
        viz.show_deformation([v, v[:-1]], screenshot=None, off_screen=True)


def test_faces_out_of_range(tmp_path):
    v, f = icosphere(1)
    bad = f.clone()
    bad[3, 1] = len(v)
    with pytest.raises(ValidationError, match=r"faces: index 42 out of range for 42 vertices"):
        viz.show((v, bad), screenshot=tmp_path / "x.png")
    with pytest.raises(ValidationError, match=r"faces: index 42 out of range"):
        viz.show_deformation(torch.stack([v, v]), bad, html=tmp_path / "x.html")
    with pytest.raises(ValidationError, match=r"faces: negative index -1"):
        viz.show(v, -torch.ones_like(f), screenshot=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_output_folder_that_does_not_exist(tmp_path):
    v, f = icosphere(1)
    missing = tmp_path / "no" / "such"
    with pytest.raises(ValidationError, match=r"screenshot: the output folder .* does not exist"):
        viz.show((v, f), screenshot=missing / "a.png")
    with pytest.raises(ValidationError, match=r"html: the output folder .* does not exist"):
        viz.show((v, f), html=missing / "a.html")
    with pytest.raises(ValidationError, match=r"animation: the output folder .* does not exist"):
        viz.show_deformation(torch.stack([v, v]), f, animation=missing / "a.gif")


def test_wrong_output_suffixes(tmp_path):
    v, f = icosphere(1)
    with pytest.raises(ValidationError, match=r"screenshot: expected a file ending in \.png"):
        viz.show((v, f), screenshot=tmp_path / "a.gif")
    with pytest.raises(ValidationError, match=r"animation: expected a file ending in \.gif or \.mp4"):
        viz.show_deformation(torch.stack([v, v]), f, animation=tmp_path / "a.avi")
    with pytest.raises(ValidationError, match=r"html: expected a file ending in \.html"):
        viz.show((v, f), html=tmp_path / "a.txt")


def test_trajectory_file_errors(tmp_path):
    with pytest.raises(FileFormatError, match=r"trajectory: no such file"):
        viz.load_trajectory(tmp_path / "missing.npz")
    np.savez(tmp_path / "nov.npz", points=np.zeros((3, 3)))
    with pytest.raises(FileFormatError, match=r"has no 'verts' array \(found: points\)"):
        viz.load_trajectory(tmp_path / "nov.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(FileFormatError, match=r"cannot read .* as an .npz file"):
        viz.load_trajectory(tmp_path / "bad.npz")
    np.savez(tmp_path / "flat.npz", verts=np.zeros((4, 3), np.float32))
    with pytest.raises(FileFormatError, match=r"must have shape \(T, V, 3\)"):
        viz.load_trajectory(tmp_path / "flat.npz")


def test_trajectory_times_checked():
    verts, faces, _ = sphere_trajectory(3, subdiv=1)
    with pytest.raises(ShapeError, match=r"times: expected shape \(3,\)"):
        as_trajectory(verts, faces=faces, times=[0.0, 1.0])
    with pytest.raises(ValidationError, match=r"times: expected finite, non-decreasing"):
        as_trajectory(verts, faces=faces, times=[0.0, 2.0, 1.0])


def test_trajectory_roundtrip_from_npz(tmp_path):
    verts, faces, times = sphere_trajectory(3, subdiv=1)
    np.savez(tmp_path / "r.npz", verts=verts.float().numpy(), faces=faces.numpy(), times=times.numpy())
    traj = viz.load_trajectory(tmp_path / "r.npz")
    np.testing.assert_allclose(traj.verts, verts.float().numpy())
    np.testing.assert_array_equal(traj.faces, faces.numpy())
    np.testing.assert_allclose(traj.times, times.numpy())


def test_p2p_errors():
    v, f = icosphere(1)
    small = v[:12]  # a 12-point cloud
    with pytest.raises(ShapeError, match=r"p2p_21: expected 42 entries \(one per source vertex\), got 12 "
                                         r"\(it looks like the inverse map p2p_12"):
        viz.show_correspondence((v, f), small, torch.zeros(12, dtype=torch.long))
    with pytest.raises(ValidationError, match=r"p2p_21: index 12 out of range for a target with 12 vertices"):
        viz.show_correspondence((v, f), small, torch.full((42,), 12))
    with pytest.raises(ShapeError, match=r"p2p_21: expected integer vertex indices"):
        viz.show_correspondence((v, f), small, torch.zeros(42))
    with pytest.raises(ShapeError, match=r"source: expected a single shape, got a batch of 2"):
        viz.show_correspondence(geomot.Mesh(torch.stack([v, v]), torch.stack([f, f])), small, torch.zeros(42))


def test_bad_options(tmp_path):
    v, f = icosphere(1)
    with pytest.raises(ValidationError, match=r"view: unknown view 'top'; valid: iso, xy"):
        viz.show((v, f), view="top", screenshot=tmp_path / "a.png")
    with pytest.raises(ValidationError, match=r"cmap: unknown matplotlib colour map 'nope'"):
        viz.show((v, f), scalars=v[:, 0], cmap="nope")
    with pytest.raises(ShapeError, match=r"scalars: expected one value per vertex, shape \(42,\), got \(41,\)"):
        viz.show((v, f), scalars=v[:-1, 0])
    with pytest.raises(ValidationError, match=r"clim: expected finite low < high"):
        viz.show((v, f), scalars=v[:, 0], clim=(1.0, 0.0))
    with pytest.raises(ValidationError, match=r"n_frames: expected an integer >= 2"):
        viz.show_deformation(torch.stack([v, v]), f, animation=tmp_path / "a.gif", n_frames=1)
    with pytest.raises(ValidationError, match=r"off_screen: False needs a screen"):
        viz.show((v, f), off_screen=False)
    with pytest.raises(ValidationError, match=r"window_size: each side must lie in \[16, 8192\]"):
        viz.show((v, f), window_size=(0, 10), screenshot=tmp_path / "a.png")
    with pytest.raises(ValidationError, match=r"scalars: expected 'displacement', None or an array"):
        viz.show_deformation(torch.stack([v, v]), f, scalars="speed")
    with pytest.raises(ShapeError, match=r"shape: expected a Mesh, a PointCloud"):
        viz.show("mesh.off")
    with pytest.raises(ShapeError, match=r"shape: expected a floating-point array"):
        viz.show(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(ValidationError, match=r"n_lines: expected a non-negative"):
        viz.show_correspondence(v, v, torch.arange(42), n_lines=-1)


def test_p2p_file(tmp_path):
    (tmp_path / "ok.txt").write_text("3\n0\n2\n")
    np.testing.assert_array_equal(viz.load_p2p(tmp_path / "ok.txt"), [3, 0, 2])
    (tmp_path / "bad.txt").write_text("1.5\n2\n")
    with pytest.raises(FileFormatError, match=r"must hold one integer vertex index per line"):
        viz.load_p2p(tmp_path / "bad.txt")
    (tmp_path / "words.txt").write_text("a b\n")
    with pytest.raises(FileFormatError, match=r"is not a list of integer vertex indices"):
        viz.load_p2p(tmp_path / "words.txt")
    with pytest.raises(FileFormatError, match=r"p2p: no such file"):
        viz.load_p2p(Path(tmp_path / "none.txt"))


def test_interactive_window_gets_time_controls(monkeypatch, tmp_path):
    """With a screen and no output file, a window opens (``Plotter.show``, stubbed here) with a time slider and
    a play button, at the first time."""
    import pyvista as pv

    import geomot.viz.views as views

    monkeypatch.setattr(views, "has_display", lambda: True)
    monkeypatch.setattr(_backend, "has_display", lambda: True)
    seen: dict[str, object] = {}

    def fake_show(self, *args, **kwargs):
        seen.update(title=kwargs.get("title"), off_screen=self.off_screen,
                    sliders=len(self.widgets.slider_widgets), buttons=len(self.widgets.button_widgets))

    monkeypatch.setattr(pv.Plotter, "show", fake_show)
    verts, faces, times = sphere_trajectory(4, subdiv=1)
    out = viz.show_deformation(verts, faces, times=times, title="fit")
    assert out == viz.Rendered(None, ())
    assert seen["title"] == "fit" and seen["off_screen"] is False
    assert seen["sliders"] == 1 and seen["buttons"] == 1
    # with a file: written offscreen, and no window unless off_screen=False asks for one
    seen.clear()
    out = viz.show(verts[0], faces, screenshot=tmp_path / "a.png", window_size=SMALL)
    assert out.files == (tmp_path / "a.png",) and seen == {}
    out = viz.show(verts[0], faces, screenshot=tmp_path / "b.png", off_screen=False, window_size=SMALL, title="w")
    assert out.files == (tmp_path / "b.png",) and seen["title"] == "w"
    assert_not_blank(out.image)


def test_trajectory_from_mapping_and_frames():
    verts, faces, times = sphere_trajectory(3, subdiv=1)
    a = as_trajectory({"verts": verts, "faces": faces, "times": times})
    b = as_trajectory(viz.Trajectory(verts.numpy(), faces.numpy(), times.numpy()))
    c = as_trajectory([geomot.Mesh(x, faces) for x in verts], times=times)
    for t in (b, c):
        np.testing.assert_allclose(t.verts, a.verts)
        np.testing.assert_array_equal(t.faces, a.faces)
        np.testing.assert_allclose(t.times, a.times)
    class FitResult(NamedTuple):  # the fields of geomot.deformation.DeformResult that the viewers read
        mesh: geomot.Mesh
        trajectory: torch.Tensor
        times: torch.Tensor

    results = [FitResult(geomot.Mesh(verts[-1], faces), verts, times)]
    try:
        from geomot.deformation.fit import DeformResult
    except ImportError:  # pragma: no cover - the deformation stack is optional here
        DeformResult = None
    if DeformResult is not None:  # the real result type, other fields left empty
        fields = dict.fromkeys(DeformResult._fields) | results[0]._asdict()
        results.append(DeformResult(**fields))
    for r in results:
        d = as_trajectory(r)
        np.testing.assert_allclose(d.verts, a.verts)
        np.testing.assert_array_equal(d.faces, a.faces)
        np.testing.assert_allclose(d.times, a.times)
    with pytest.raises(ValidationError, match=r"trajectory: the mapping has no 'verts' \(keys: points\)"):
        as_trajectory({"points": verts})


def test_rendering_then_training_does_not_crash_when_triton_is_installed(tmp_path):
    """VTK's Mesa window loads Mesa's LLVM; triton imported after it (torch imports it for its first optimizer)
    crashed the process. geomot.viz imports triton first when it is installed (a fresh process: the crash is
    about import order)."""
    pytest.importorskip("pyvista")
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    script = (
        "import torch, geomot\n"
        "from geomot.viz import show\n"
        "from tests.conftest import icosphere\n"
        f"show(geomot.Mesh(*icosphere(1)), screenshot=r'{tmp_path / 'a.png'}', off_screen=True)\n"
        "torch.optim.Adam([torch.zeros(2, requires_grad=True)])\n"
        "import triton\n"
        "print('done')\n"
    )
    env = {**os.environ, "PYVISTA_OFF_SCREEN": "true"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], env=env)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]
