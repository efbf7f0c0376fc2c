"""``geomot match``: output file format and direction, ground-truth error, screenshot, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from geomot.cli import main
from geomot.io.synthetic import bumpy_pair

ARGS = ["--k", "30"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("match")
    pair = bumpy_pair(300, seed=3)
    src, tgt = d / "src.off", d / "tgt.off"
    trimesh.Trimesh(pair.source.verts.numpy(), pair.source.faces.numpy(), process=False).export(src)
    trimesh.Trimesh(pair.target.verts.numpy(), pair.target.faces.numpy(), process=False).export(tgt)
    np.savetxt(d / "src.vts", pair.src_idx.numpy() + 1, fmt="%d")
    np.savetxt(d / "tgt.vts", pair.tgt_idx.numpy() + 1, fmt="%d")
    return d, pair


def test_match_writes_one_target_index_per_source_vertex(files, capsys):
    d, pair = files
    out = d / "p2p.txt"
    rc = main(["match", str(d / "src.off"), str(d / "tgt.off"), "--out", str(out), *ARGS,
               "--gt-source", str(d / "src.vts"), "--gt-target", str(d / "tgt.vts")])
    assert rc == 0
    p2p = np.loadtxt(out, dtype=np.int64)
    assert p2p.shape == (pair.source.verts.shape[0],)
    assert p2p.min() >= 0 and p2p.max() < pair.target.verts.shape[0]
    text = capsys.readouterr().out
    assert "mean geodesic error" in text
    err = float(text.split("mean geodesic error:")[1].split()[0])
    assert err < 10.0  # with the ground truth read source -> target, so the direction is checked too


def test_match_bad_arguments(files, capsys):
    d, _ = files
    rc = main(["match", str(d / "missing.off"), str(d / "tgt.off"), "--out", str(d / "x.txt")])
    assert rc == 2 and "error" in capsys.readouterr().err
    rc = main(["match", str(d / "src.off"), str(d / "tgt.off"), "--out", str(d / "x.txt"), *ARGS,
               "--gt-source", str(d / "src.vts")])
    assert rc == 2 and "give both ground-truth files" in capsys.readouterr().err
    rc = main(["match", str(d / "src.off"), str(d / "tgt.off"), "--out", str(d / "x.txt"), *ARGS, "--extrinsic", "-1"])
    assert rc == 2 and "n_extrinsic" in capsys.readouterr().err


def test_match_without_extrinsic_candidates(files, capsys):
    d, pair = files
    out = d / "p2p0.txt"
    rc = main(["match", str(d / "src.off"), str(d / "tgt.off"), "--out", str(out), *ARGS, "--extrinsic", "0"])
    assert rc == 0 and np.loadtxt(out, dtype=np.int64).shape == (pair.source.verts.shape[0],)


def test_match_non_isometric_flag(files, capsys):
    d, pair = files
    out = d / "p2p_ni.txt"
    rc = main(["match", str(d / "src.off"), str(d / "tgt.off"), "--out", str(out), *ARGS, "--non-isometric",
               "--gt-source", str(d / "src.vts"), "--gt-target", str(d / "tgt.vts")])
    assert rc == 0 and np.loadtxt(out, dtype=np.int64).shape == (pair.source.verts.shape[0],)
    err = float(capsys.readouterr().out.split("mean geodesic error:")[1].split()[0])
    assert err < 10.0


@pytest.mark.slow
def test_match_screenshot(files):
    pytest.importorskip("pyvista")
    d, _ = files
    png = d / "shot.png"
    rc = main(["match", str(d / "src.off"), str(d / "tgt.off"), "--out", str(d / "p.txt"), *ARGS,
               "--screenshot", str(png)])
    assert rc == 0 and png.stat().st_size > 1000


def test_match_reports_its_stages():
    import torch as _torch

    from geomot.correspondence.pipeline import match as _match
    from geomot.structures import Mesh as _Mesh
    from tests.conftest import icosphere as _ico

    v, f = _ico(2)
    stages: list[str] = []
    _match(_Mesh(v, f), _Mesh(v * _torch.tensor([1.2, 1.0, 0.9], dtype=v.dtype), f), k=20, k_init=4, k_select=8,
           n_candidates=2, n_finalists=2, n_samples=50, n_extrinsic=0, progress=stages.append)
    assert stages == ["eigenbases", "candidates", "refinement"]
