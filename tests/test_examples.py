"""The scripts of examples/ run with --quick: each in a subprocess on one torch thread, writing into a temporary
folder; exit status 0, the files each promises, and the numbers that must hold for a run that worked (losses that
fall, marginals that match, maps with small errors, a deformation that gets closer to its target).

The two experiments that regenerate figures of the docs write into docs/ only when asked (--docs): checked on
copies of the scripts in a temporary checkout, so that nothing in the repository is touched."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import ROOT, shared_path

EXAMPLES = ROOT / "examples"
TIMEOUT = 300  # seconds; the default-run examples take 3-15 s on a loaded 2-core machine

#: every script of examples/ and the test(s) that run it
COVERED = {
    "train_with_sliced_wasserstein.py": "test_train_with_sliced_wasserstein",
    "sinkhorn_plan.py": "test_sinkhorn_plan",
    "match_a_folder.py": "test_match_a_folder",
    "deform_and_view.py": "test_deform_and_view",
    "shape_matching.py": "test_shape_matching",
    "sw_gradient_flow.py": "test_sw_gradient_flow_quick_runs_without_the_shapenet_file",
    "deform_cortex.py": "test_deform_cortex",
}


def run_example(script: Path, *args: str, cwd: Path) -> str:
    """Run ``script`` with ``args`` in ``cwd`` on one thread, off-screen; return its stdout, fail with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GEOMOT_OFF_SCREEN": "1",
           "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"{script.name} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    return proc.stdout


def load_module(name: str, folder: Path = EXAMPLES):
    """Import ``folder/name.py`` as a module (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the output:\n{text}"
    return float(found.group(1))


def test_every_example_has_a_quick_smoke_test():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(COVERED), f"examples without a test here: {scripts - set(COVERED)}"
    for name, test in COVERED.items():
        assert '"--quick"' in (EXAMPLES / name).read_text(), f"{name} has no --quick option"
        assert callable(globals()[test])


def test_train_with_sliced_wasserstein(tmp_path):
    out = tmp_path / "run"
    stdout = run_example(EXAMPLES / "train_with_sliced_wasserstein.py", "--quick", "--device", "cpu", "--out",
                         str(out), cwd=tmp_path)
    log = json.loads((out / "log.json").read_text())
    losses = log["epoch_loss"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    assert "epoch   3/3" in stdout
    divergences = log["sinkhorn_divergence"]
    assert set(divergences) == {"blob", "icosphere", "torus", "bumps_0", "bumps_1"}
    assert all(math.isfinite(v) and v > -1e-6 for v in divergences.values())  # S_eps >= 0

    # the checkpoint restores the model the script builds
    example = load_module("train_with_sliced_wasserstein")
    args = example.parse_args(["--quick"])
    model = example.make_model(args, torch.device("cpu"))
    ckpt = torch.load(out / "model.pt", weights_only=True)
    model.load_state_dict(ckpt["model"])
    assert ckpt["settings"]["epochs"] == 3 and ckpt["settings"]["sizes"] == [128, 192, 256]


def test_train_with_sliced_wasserstein_batches_are_ragged():
    example = load_module("train_with_sliced_wasserstein")
    loader = example.make_loader(example.parse_args(["--quick"]))
    sizes = {int(n) for batch in loader for n in batch["lengths"]}
    assert sizes == {128, 192, 256}
    batch = next(iter(loader))
    assert batch["points"].shape[1] == int(batch["lengths"].max())
    for b, n in enumerate(batch["lengths"].tolist()):
        assert bool((batch["points"][b, n:] == 0).all())  # zero padding beyond each length


def test_sinkhorn_plan(tmp_path):
    png = tmp_path / "plan.png"
    stdout = run_example(EXAMPLES / "sinkhorn_plan.py", "--quick", "--out", str(png), cwd=tmp_path)
    assert "converged: True" in stdout
    assert number(r"\|P 1 - a\|_1\s+= (\S+)", stdout) < 1e-6
    assert number(r"\|P\^T 1 - b\|_1 = (\S+)", stdout) < 1e-6
    cost = number(r"<P, C>\s+= (\S+)", stdout)
    assert cost == pytest.approx(number(r"dense plan: (\S+)\)", stdout), rel=1e-5)
    value = number(r"regularised value\s+= (\S+)", stdout)
    assert value == pytest.approx(number(r"<b, g>: (\S+)\)", stdout), rel=1e-5)  # dual = primal at convergence
    assert value > cost > 0  # eps KL(P | a x b) > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_match_a_folder(tmp_path):
    out = tmp_path / "eval"
    stdout = run_example(EXAMPLES / "match_a_folder.py", "--quick", "--out", str(out), cwd=tmp_path)
    report = json.loads((out / "evaluation.json").read_text())
    summary = report["summary"]
    assert summary["n_pairs"] == 2 and len(report["pairs"]) == 2
    assert summary["mean"] < 5  # geodesic error x100 of near-isometric pairs (about 2 when measured)
    pck = summary["pck"]
    assert all(a <= b for a, b in pairwise(pck)) and pck[-1] > 0.95
    assert f"mean geodesic error {summary['mean']:.2f}" in stdout
    assert (out / "pck.png").read_bytes()[:4] == b"\x89PNG"


def test_match_a_folder_writes_an_exact_ground_truth(tmp_path):
    from geomot.io import ShapeDataset
    from geomot.io.synthetic import bend_twist

    example = load_module("match_a_folder")
    ds = ShapeDataset(example.make_folder(tmp_path / "bumps", 200))
    assert ds.names == ["bumps_0", "bumps_1", "bumps_2"]
    template = ds.load("bumps_0", dtype=torch.float64)
    for name, (bend, twist, _) in zip(("bumps_1", "bumps_2"), example.SHAPES[1:]):
        gt = ds.ground_truth("bumps_0", name)
        shape = ds.load(name, dtype=torch.float64)
        moved = bend_twist(template.verts[gt.src_idx], bend=bend, twist=twist)
        torch.testing.assert_close(shape.verts[gt.tgt_idx], moved, atol=1e-5, rtol=0)
        # the same connectivity through the ground truth: every template edge is an edge of the shape
        relabel = torch.empty_like(gt.tgt_idx)
        relabel[gt.src_idx] = gt.tgt_idx
        mapped = {tuple(sorted(e)) for e in relabel[template.faces][:, [0, 1]].tolist()}
        edges = {tuple(sorted(e)) for f in shape.faces.tolist() for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
        assert mapped <= edges
        assert not torch.equal(gt.tgt_idx, gt.src_idx)  # the vertices are shuffled


@pytest.mark.slow
def test_match_a_folder_with_a_learned_matcher(tmp_path):
    from geomot.train import MatcherConfig, train_matcher

    example = load_module("match_a_folder")
    data = example.make_folder(tmp_path / "bumps", 400)
    small = dict(k_eig=24, k_fmap=12, n_wks=16, width=16, out_channels=16, n_blocks=2, pairs_per_epoch=4,
                 n_projections=16, dropout=0.0)
    train_matcher([data], tmp_path / "run", config=MatcherConfig(**small), epochs=1, progress=False)
    out = tmp_path / "eval"
    stdout = run_example(EXAMPLES / "match_a_folder.py", "--quick", "--data", str(data), "--checkpoint",
                         str(tmp_path / "run"), "--out", str(out), cwd=tmp_path)
    report = json.loads((out / "evaluation.json").read_text())
    assert report["checkpoint"] == str(tmp_path / "run") and report["summary"]["n_pairs"] == 2
    assert "learned, 2 pairs" in stdout and (out / "pck.png").exists()


def test_deform_and_view(tmp_path):
    out = tmp_path / "deform"
    stdout = run_example(EXAMPLES / "deform_and_view.py", "--quick", "--out", str(out), cwd=tmp_path)
    before = number(r"ASSD (\S+), HD90 \S+ before", stdout)
    after = number(r"steps \(.*\): ASSD (\S+),", stdout)
    assert after < 0.3 * before  # 0.169 -> 0.020 when measured
    traj = np.load(out / "deform.npz")
    assert traj["verts"].shape[1:] == (642, 3) and traj["faces"].shape == (1280, 3)
    assert traj["times"][0] == 0 and traj["times"][-1] == 1 and len(traj["loss_history"]) == 20
    assert (out / "deform.gif").read_bytes()[:4] == b"GIF8"
    assert (out / "last.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "deform.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "http://" not in html and "https://" not in html


def test_shape_matching(tmp_path):
    p2p = tmp_path / "p2p.txt"
    stdout = run_example(EXAMPLES / "shape_matching.py", "--quick", "--out", str(p2p), cwd=tmp_path)
    assert np.loadtxt(p2p, dtype=int).shape == (500,)
    assert number(r"mean geodesic error (\S+) \(x100\)", stdout) < 2


@pytest.mark.slow
@pytest.mark.data
def test_sw_gradient_flow(tmp_path):
    data = shared_path("shapenet50", "reconstruct_random_50_shapenetcore55.npy")
    stdout = run_example(EXAMPLES / "sw_gradient_flow.py", "--quick", "--data", str(data), "--out", str(tmp_path),
                         cwd=tmp_path)
    payload = json.loads((tmp_path / "sw_gradient_flow.json").read_text())
    assert set(payload["w2"]) == {"SW", "LCV-SW", "UCV-SW"}
    for curve in payload["w2"].values():
        values = [curve[str(step)] for step in (0, 100, 200, 300)]
        assert all(a > b for a, b in pairwise(values)), values  # the flow moves the cloud towards the target
    assert payload["settings"]["points"] == 512 and "| start | 10 |" in stdout
    assert (tmp_path / "sw_gradient_flow.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_sw_gradient_flow_quick_runs_without_the_shapenet_file(tmp_path):
    # a fresh clone has no ../shared/data: --quick then flows between clouds sampled on the shipped meshes
    stdout = run_example(EXAMPLES / "sw_gradient_flow.py", "--quick", "--points", "64", "--data",
                         str(tmp_path / "absent.npy"), "--out", str(tmp_path), cwd=tmp_path)
    assert "absent.npy: not found; --quick runs on clouds sampled on data/blob.off and data/torus.off" in stdout
    payload = json.loads((tmp_path / "sw_gradient_flow.json").read_text())
    for curve in payload["w2"].values():
        values = [curve[str(step)] for step in (0, 100, 200, 300)]
        assert all(a > b for a, b in pairwise(values)), values
    assert (tmp_path / "sw_gradient_flow.png").read_bytes()[:4] == b"\x89PNG"


def test_sw_gradient_flow_full_run_needs_the_shapenet_file(tmp_path):
    flow = load_module("sw_gradient_flow")
    with pytest.raises(SystemExit, match=r"absent\.npy: not found \(the ShapeNet clouds"):
        flow.main(["--data", str(tmp_path / "absent.npy"), "--threads", "0", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.data
def test_deform_cortex(tmp_path):
    shared_path("fsaverage5")
    run_example(EXAMPLES / "deform_cortex.py", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    rows = json.loads((tmp_path / "deformation_cortex.json").read_text())["white->pial"]["rows"]
    assert set(rows) == {"undeformed", "sw-varifold"}
    assert (tmp_path / "deformation_cortex.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def checkout(tmp_path):
    """A temporary copy of the repository's layout for the two docs-figure experiments: examples/ and docs/ with
    the JSON results their figures are drawn from."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "docs").mkdir()
    for name in ("sw_gradient_flow.py", "deform_cortex.py"):
        shutil.copy(EXAMPLES / name, tmp_path / "examples" / name)
    for name in ("sw_gradient_flow.json", "deformation_cortex.json"):
        shutil.copy(ROOT / "docs" / name, tmp_path / "docs" / name)
    return tmp_path


def test_docs_figures_go_to_docs_only_when_asked(checkout):
    # in this process (the figures need no computation): the copies' ROOT is the temporary checkout
    flow = load_module("sw_gradient_flow", checkout / "examples")
    cortex = load_module("deform_cortex", checkout / "examples")
    flow.main(["--replot", str(checkout / "docs" / "sw_gradient_flow.json")])
    assert (checkout / "out" / "sw_gradient_flow" / "sw_gradient_flow.png").exists()
    (checkout / "out" / "deform_cortex").mkdir(parents=True)
    shutil.copy(checkout / "docs" / "deformation_cortex.json", checkout / "out" / "deform_cortex")
    cortex.main(["--part", "figure"])
    assert (checkout / "out" / "deform_cortex" / "deformation_cortex.png").exists()
    assert sorted(p.name for p in (checkout / "docs").iterdir()) == ["deformation_cortex.json", "sw_gradient_flow.json"]

    flow.main(["--replot", str(checkout / "docs" / "sw_gradient_flow.json"), "--docs"])
    cortex.main(["--part", "figure", "--docs"])
    assert (checkout / "docs" / "sw_gradient_flow.png").read_bytes()[:4] == b"\x89PNG"
    assert (checkout / "docs" / "deformation_cortex.png").read_bytes()[:4] == b"\x89PNG"


def test_deform_cortex_needs_a_part_or_quick(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_module("deform_cortex").main([])
    assert exit_.value.code == 2 and "--part is required (or --quick)" in capsys.readouterr().err
