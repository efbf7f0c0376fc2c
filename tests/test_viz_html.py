"""The HTML viewers of geomot.viz are self-contained: no URL in the page, the geometry inlined, and the page renders
a non-blank view in headless Chromium with the network cut off (WebGL through SwiftShader, and the Canvas 2D
fallback)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from geomot import viz

from .conftest import ROOT, icosphere
from .test_viz import assert_not_blank, sphere_trajectory

imageio = pytest.importorskip("imageio.v3")

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _find_browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a headless Chromium; installed with scripts/install_chromium.sh (apt-get, as root) when missing."""
    exe = _find_browser()
    if exe is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", str(ROOT / "scripts" / "install_chromium.sh")], capture_output=True, timeout=900)
        exe = _find_browser()
    if exe is None:
        pytest.skip("headless Chromium is not installed and could not be installed here "
                    "(run `sudo apt-get install -y chromium` or scripts/install_chromium.sh)")
    return exe


def render_page(exe: str, page: Path, workdir: Path, fragment: str = "") -> tuple[np.ndarray, dict[str, str]]:
    """Load ``page`` offline in headless Chromium; return the screenshot and the ``data-*`` attributes of <body>."""
    workdir.mkdir(parents=True, exist_ok=True)
    shot = workdir / "shot.png"
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network at all
        f"--user-data-dir={workdir / 'profile'}", f"--screenshot={shot}", "--window-size=800,600", "--dump-dom",
        page.resolve().as_uri() + fragment,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    body = re.search(r"<body([^>]*)>", out.stdout)
    assert body is not None, f"no <body> in the dumped DOM; stderr: {out.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    assert shot.exists(), f"no screenshot; stderr: {out.stderr[-2000:]}"
    return imageio.imread(shot)[..., :3], attrs


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="geomot-data">(.*?)</script>', text, re.S)
    assert block is not None
    return json.loads(block.group(1))


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pages")
    verts, faces, times = sphere_trajectory(5)
    v, f = icosphere(2)
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=v.dtype)
    p2p = torch.cdist(v @ R.T, v).argmin(1)
    pts = torch.randn(1500, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return {
        "trajectory": viz.save_deformation_html(verts, faces, d / "traj.html", times=times, title="</script> & <b>"),
        "match": viz.show_correspondence((v, f), (v * 1.3, f), p2p, n_lines=12, html=d / "match.html").files[0],
        "cloud": viz.show(pts * torch.tensor([1.0, 0.5, 0.3], dtype=pts.dtype), scalars=pts[:, 0],
                          html=d / "cloud.html").files[0],
    }


def test_pages_reference_nothing_online(pages):
    for name, page in pages.items():
        text = page.read_text(encoding="utf-8")
        for needle in ("http://", "https://", "//cdn", "<link", " src=", "@import", "url(", "fetch(", "XMLHttp"):
            assert needle not in text, f"{name}: the page contains {needle!r}"
        assert text.count("<script") == 2  # the inline data block and the inline viewer, nothing else


def test_page_inlines_the_geometry_exactly(pages):
    verts, faces, times = sphere_trajectory(5)
    data = _page_data(pages["trajectory"])
    (obj,) = data["objects"]
    assert obj["kind"] == "mesh" and obj["n"] == verts.shape[1]
    got = np.stack([np.frombuffer(base64.b64decode(s), dtype=np.float32).reshape(-1, 3) for s in obj["frames"]])
    np.testing.assert_array_equal(got, verts.float().numpy())
    got_f = np.frombuffer(base64.b64decode(obj["faces"]), dtype=np.uint32).reshape(-1, 3)
    np.testing.assert_array_equal(got_f, faces.numpy())
    np.testing.assert_allclose(data["times"], times.numpy())
    assert data["colorbar"]["title"] == "displacement"
    text = pages["trajectory"].read_text(encoding="utf-8")
    assert "<title>&lt;/script&gt; &amp; &lt;b&gt;</title>" in text  # the title is escaped


def test_trajectory_page_renders_offline_and_moves(chromium, pages, tmp_path):
    last, attrs = render_page(chromium, pages["trajectory"], tmp_path / "last")
    assert attrs.get("status") == "ok", attrs
    assert attrs.get("renderer") in ("webgl2", "webgl", "canvas2d")
    assert_not_blank(last)
    first, attrs0 = render_page(chromium, pages["trajectory"], tmp_path / "first", "#time=0")
    assert attrs0.get("status") == "ok"
    diff = np.abs(first.astype(float) - last.astype(float)).mean()
    assert diff > 2.0, f"the first and last frames differ by {diff:.2f} on average"


def test_match_and_cloud_pages_render_offline(chromium, pages, tmp_path):
    img, attrs = render_page(chromium, pages["match"], tmp_path / "match")
    assert attrs.get("status") == "ok", attrs
    assert_not_blank(img)
    img, attrs = render_page(chromium, pages["cloud"], tmp_path / "cloud")
    assert attrs.get("status") == "ok", attrs
    assert_not_blank(img)


@pytest.mark.parametrize("renderer", ["canvas2d", "webgl"])
def test_fallback_renderers(chromium, pages, tmp_path, renderer):
    """The Canvas 2D fallback, and WebGL 1 (16-bit or extension indices) when WebGL 2 is missing."""
    img, attrs = render_page(chromium, pages["match"], tmp_path / renderer, f"#renderer={renderer}")
    assert attrs.get("status") == "ok", attrs
    if renderer == "canvas2d" or attrs.get("renderer") != "canvas2d":  # no WebGL 1 here: the 2D fallback
        assert attrs.get("renderer") == renderer
    assert_not_blank(img)
