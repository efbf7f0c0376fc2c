"""`geomot view`: trajectories, matches, meshes and clouds to PNG / GIF / HTML without a screen; clear errors
(exit status 2) for no screen and no output, bad files, bad maps and missing output folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from geomot.cli import main
from geomot.io import save
from geomot.structures import Mesh

from .conftest import ROOT, icosphere
from .test_viz import assert_not_blank, sphere_trajectory

imageio = pytest.importorskip("imageio.v3")
pytest.importorskip("pyvista")


@pytest.fixture(autouse=True)
def _no_screen(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture
def files(tmp_path):
    verts, faces, times = sphere_trajectory(4, subdiv=1)
    np.savez(tmp_path / "result.npz", verts=verts.float().numpy(), faces=faces.numpy(), times=times.numpy())
    v, f = icosphere(2)
    save(Mesh(v, f), tmp_path / "a.off")
    save(Mesh(v * torch.tensor([1.4, 1.0, 1.0], dtype=v.dtype), f), tmp_path / "b.off")
    np.savetxt(tmp_path / "p2p.txt", np.arange(len(v)), fmt="%d")  # a -> b, vertex i to vertex i
    np.save(tmp_path / "clouds.npy", np.random.default_rng(0).normal(size=(3, 300, 3)))
    return tmp_path


def test_trajectory_to_png_gif_html(files, capsys):
    d = files
    rc = main(["view", str(d / "result.npz"), "--screenshot", str(d / "t.png"), "--gif", str(d / "t.gif"),
               "--html", str(d / "t.html"), "--frames", "4", "--size", "320x240"])
    assert rc == 0, capsys.readouterr().err
    img = imageio.imread(d / "t.png")
    assert img.shape[:2] == (240, 320)
    assert_not_blank(img)
    frames = imageio.imread(d / "t.gif", index=None)
    assert frames.shape[0] == 4
    assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 2.0
    assert "geomot-data" in (d / "t.html").read_text(encoding="utf-8")


def test_match_to_png(files, capsys):
    d = files
    rc = main(["view", str(d / "a.off"), "--target", str(d / "b.off"), "--p2p", str(d / "p2p.txt"), "--lines", "8",
               "--screenshot", str(d / "m.png"), "--size", "400x220"])
    assert rc == 0, capsys.readouterr().err
    assert_not_blank(imageio.imread(d / "m.png"))


def test_mesh_and_cloud_batch(files, capsys):
    d = files
    assert main(["view", str(d / "a.off"), "--screenshot", str(d / "a.png"), "--size", "320x240"]) == 0
    assert_not_blank(imageio.imread(d / "a.png"))
    assert main(["view", str(d / "clouds.npy"), "--html", str(d / "c.html")]) == 0
    assert (d / "c.html").stat().st_size > 1000


def test_no_screen_and_no_output_exits_2(files, capsys):
    rc = main(["view", str(files / "a.off")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no screen" in err and "--screenshot" in err


def test_without_display_in_a_fresh_process(files):
    """The real thing: a new process with DISPLAY unset writes a PNG (offscreen OpenGL chosen automatically)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "VTK_DEFAULT_OPENGL_WINDOW")}
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from geomot.cli import main; sys.exit(main(sys.argv[1:]))", "view",
         str(files / "result.npz"), "--screenshot", str(files / "p.png"), "--size", "320x240"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert_not_blank(imageio.imread(files / "p.png"))
    assert "bad X server connection" not in out.stderr  # no attempt at opening an X display


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{d}/nope.xyzw", "--screenshot", "{d}/x.png"], r"unsupported file type"),
        (["{d}/a.off", "--screenshot", "{d}/missing/x.png"], r"screenshot: the output folder .*missing.* does not exist"),
        (["{d}/result.npz", "--gif", "{d}/none/x.gif"], r"animation: the output folder .* does not exist"),
        (["{d}/a.off", "--gif", "{d}/x.gif"], r"a single shape; animations need a trajectory"),
        (["{d}/a.off", "--p2p", "{d}/p2p.txt", "--screenshot", "{d}/x.png"], r"--p2p: needs --target"),
        (["{d}/b.off", "--target", "{d}/a.off", "--p2p", "{d}/short.txt", "--screenshot", "{d}/x.png"],
         r"p2p_21: expected 162 entries \(one per source vertex\), got 5"),
        (["{d}/a.off", "--target", "{d}/b.off", "--p2p", "{d}/big.txt", "--screenshot", "{d}/x.png"],
         r"p2p_21: index 500 out of range for a target with 162 vertices"),
        (["{d}/bad.npz", "--screenshot", "{d}/x.png"], r"cannot read it as an .npz file"),
        (["{d}/ragged.npz", "--screenshot", "{d}/x.png"], r"faces: index 99 out of range for 42 vertices"),
        (["{d}/result.npz", "--screenshot", "{d}/x.jpeg2"], r"screenshot: expected a file ending in \.png"),
    ],
)
def test_errors_exit_2_with_a_message(files, capsys, args, message):
    d = files
    np.savetxt(d / "short.txt", np.arange(5), fmt="%d")
    np.savetxt(d / "big.txt", np.full(162, 500), fmt="%d")
    (d / "bad.npz").write_bytes(b"garbage")
    v, f = icosphere(1)
    bad_f = f.numpy().copy()
    bad_f[0, 0] = 99
    np.savez(d / "ragged.npz", verts=np.stack([v.numpy()] * 2).astype(np.float32), faces=bad_f)
    rc = main(["view", *[a.format(d=d) for a in args]])
    assert rc == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (d / "x.png").exists()


def test_unusable_display_exits_non_zero_with_one_line(files):
    """DISPLAY names an X server that does not exist: exit status 2 and one line saying what to do, before VTK
    gets to print warnings and show nothing."""
    from geomot.viz._backend import _x_server_answers

    if _x_server_answers(":99"):
        pytest.skip("an X server answers at :99 on this machine")
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "GEOMOT_OFF_SCREEN", "PYVISTA_OFF_SCREEN")}
    env["DISPLAY"] = ":99"
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from geomot.cli import main; sys.exit(main(sys.argv[1:]))", "view",
         str(files / "a.off")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.search(r"geomot view: error: cannot open a window: no display server answers at DISPLAY=':99'; write a "
                     r"file instead \(--screenshot out\.png, --gif out\.gif or --html out\.html\), or set DISPLAY to "
                     r"a running X server \(e\.g\. run the command under xvfb-run\)", lines[0])


def test_display_problem_checks(monkeypatch, tmp_path):
    from geomot.viz import _backend, display_problem

    monkeypatch.setenv("PYVISTA_OFF_SCREEN", "true")
    assert "off-screen mode is forced (PYVISTA_OFF_SCREEN is set)" in display_problem()
    for var in ("GEOMOT_OFF_SCREEN", "PYVISTA_OFF_SCREEN", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    assert "DISPLAY and WAYLAND_DISPLAY are unset" in display_problem()
    monkeypatch.setattr(_backend.ctypes.util, "find_library", lambda name: None)  # the socket path
    monkeypatch.setenv("DISPLAY", "unix:98")
    assert not _backend._x_server_answers("unix:98")
    assert not _backend._x_server_answers("nonsense")
    assert "DISPLAY='unix:98'" in display_problem()
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("WAYLAND_DISPLAY", str(tmp_path / "wayland-0"))
    assert "no display server answers at WAYLAND_DISPLAY=" in display_problem()
    (tmp_path / "wayland-0").write_text("")
    assert display_problem() is None
