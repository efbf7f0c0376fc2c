"""`geomot demo` (what `make demo` runs) and the command's registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomot.cli import COMMANDS, build_parser, main
from geomot.cli.demo import run_demo


def test_every_registered_command_parses():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0


def test_demo_shapes_and_distances(tmp_path, capsys):
    summary = run_demo(tmp_path, steps=["shapes", "distances"])
    out = capsys.readouterr().out
    assert "icosphere" in out and "sw-varifold" in out
    assert (tmp_path / "shapes.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["steps"]["shapes"]["shapes"]["icosphere"]["verts"] == 642
    dist = summary["steps"]["distances"]["distances"]
    # every distance is positive, and the sphere is closer to the blob than the torus is (a different topology)
    for loss in ("sw (samples)", "sw-varifold", "sinkhorn (samples)", "varifold kernel", "chamfer (samples)"):
        assert 0 < dist["icosphere-blob"][loss] < dist["torus-blob"][loss], loss


def test_demo_unknown_step(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "nope"]) == 2
    assert "unknown step 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_full_demo(tmp_path):
    summary = run_demo(tmp_path)
    steps = summary["steps"]
    assert steps["match"]["geodesic_error_x100"] < 5.0
    after, before = steps["deform"]["after"], steps["deform"]["before"]
    assert after["assd"] < 0.5 * before["assd"] and max(steps["deform"]["frame_self_intersections"]) == 0
    for name in ("match.png", "match_p2p.txt", "deform.npz", "deform.gif", "deform.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    traj = np.load(tmp_path / "deform.npz")
    assert traj["verts"].dtype == np.float32 and traj["verts"].ndim == 3 and traj["faces"].dtype == np.int64
