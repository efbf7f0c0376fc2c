"""The learned matcher: training on generated shapes, exact resume, matching with a checkpoint, errors."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot.io import save
from geomot.models.matcher import DeepMatcher, prepare_shape
from geomot.ops.simplify import decimate
from geomot.structures import Mesh
from geomot.train.autoencoder import AutoencoderConfig, train_autoencoder
from geomot.train.matcher import MatcherConfig, ShapePairDataset, load_matcher, train_matcher

from .conftest import icosphere


def bumpy(seed: int, subdiv: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric blob: an icosphere with smooth radial bumps of random phases (no symmetry to confuse a map)."""
    v, f = icosphere(subdiv)
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(4, generator=g, dtype=v.dtype) * 2 * math.pi
    r = 1 + 0.25 * torch.sin(2 * v[:, 0] + a[0]) * torch.cos(3 * v[:, 1] + a[1]) + 0.15 * torch.sin(4 * v[:, 2] + a[2])
    return v * r[:, None] * torch.tensor([1.4, 1.0, 0.8], dtype=v.dtype), f


SMALL = dict(k_eig=24, k_fmap=12, n_wks=16, width=16, out_channels=16, n_blocks=2, pairs_per_epoch=4,
             n_projections=16, dropout=0.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    (root / "off").mkdir()
    for i in range(4):
        v, f = bumpy(i)
        save(Mesh(v.float(), f), root / "off" / f"blob_{i}.off")
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train_matcher([folder], out, config=MatcherConfig(**SMALL), epochs=2, progress=False)
    return out


def test_training_writes_checkpoint_log_and_operator_cache(run):
    assert (run / "checkpoint.pt").is_file() and (run / "log.json").is_file()
    assert len(list((run / "operators").glob("*.npz"))) == 4


def test_resume_gives_the_losses_of_an_uninterrupted_run(folder, run, tmp_path):
    import json

    full = json.loads((run / "log.json").read_text())
    train_matcher([folder], tmp_path, config=MatcherConfig(**SMALL), epochs=1, progress=False)
    resumed = train_matcher([folder], tmp_path, config=MatcherConfig(**SMALL), epochs=2, resume=True, progress=False)
    assert [e["epoch"] for e in resumed] == [1, 2]
    assert resumed[1]["loss"] == pytest.approx(full[1]["loss"], rel=1e-6)


def test_pairs_are_ordered_distinct_and_redrawn_each_epoch(folder):
    from geomot.train.matcher import ShapeCollection

    shapes = ShapeCollection([folder], k_eig=8, progress=False)
    ds = ShapePairDataset(shapes, pairs_per_epoch=100, seed=3)
    assert len(ds) == 12  # all 4 * 3 ordered pairs
    assert sorted(map(tuple, ds.pairs)) == [(i, j) for i in range(4) for j in range(4) if i != j]
    ds = ShapePairDataset(shapes, pairs_per_epoch=5, seed=3)
    first = list(ds.pairs)
    ds.set_epoch(1)
    assert len(ds) == 5 and ds.pairs != first and all(i != j for i, j in ds.pairs)


def test_match_with_a_checkpoint_recovers_a_permuted_copy(run):
    """DiffusionNet is equivariant to vertex order, so a shape and a permuted copy get the same features."""
    model, config = load_matcher(run)
    assert config == MatcherConfig(**SMALL) and not model.training
    v, f = bumpy(7)
    perm = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(0))
    res = model.match((v[perm], torch.argsort(perm)[f]), (v, f))
    assert res.p2p_21.shape == (v.shape[0],) and res.p2p_21.dtype == torch.int64
    assert (res.p2p_21 == perm).double().mean() > 0.95
    assert set(res.timings) >= {"basis", "init", "refine", "total"}


def test_anchor_refinement_after_zoomout(run):
    """The default refinement (ZoomOut, geodesic anchors, a refit) keeps an exact map exact on a permuted copy, and
    ``anchor_iterations=0`` is plain ZoomOut; point clouds refine on their k-nearest-neighbour graphs."""
    from geomot.correspondence import zoomout
    from geomot.correspondence.p2p import fmap_from_p2p

    model, _ = load_matcher(run)
    v, f = bumpy(8)
    perm = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(1))
    src = (v[perm], torch.argsort(perm)[f])
    with_anchors = model.match(src, (v, f))
    plain = model.match(src, (v, f), anchor_iterations=0)
    assert (with_anchors.p2p_21 == perm).double().mean() >= (plain.p2p_21 == perm).double().mean() - 0.01
    assert (with_anchors.p2p_21 == perm).double().mean() > 0.95
    assert with_anchors.fmap_12.shape == plain.fmap_12.shape == (model.k_eig, model.k_eig)
    # plain: the ZoomOut of the feature map's functional map (no sampling: fewer vertices than n_samples)
    tgt, s = prepare_shape((v, f), k_eig=model.k_eig), prepare_shape(src, k_eig=model.k_eig)
    feat = model.match(src, (v, f), refine="none")
    k = model.k_fmap
    C = fmap_from_p2p(feat.p2p_21, tgt.operators.evecs[:, :k], s.operators.evecs[:, :k], mass2=s.operators.mass)
    ref = zoomout(C, tgt.operators.evecs, s.operators.evecs, k_final=model.k_eig, step=4)
    assert torch.equal(ref.p2p_21, plain.p2p_21)
    cloud = model.match(v[perm], v)  # (V, 3) tensors: point clouds
    assert cloud.p2p_21.shape == (v.shape[0],)
    with pytest.raises(ValidationError, match="anchor_iterations"):
        model.match(src, (v, f), anchor_iterations=-1)
    with pytest.raises(ValidationError, match="n_anchors"):
        model.match(src, (v, f), n_anchors=0)


def test_adaptation_changes_nothing_after_the_call(run):
    model, _ = load_matcher(run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    v, f = bumpy(5)
    w, g = bumpy(6)
    res = model.match((v, f), (w, g), adapt_steps=2, generator=torch.Generator().manual_seed(0))
    assert "adapt" in res.timings
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_adaptation_lowers_the_unsupervised_loss(run):
    from geomot.models.matcher import prepare_shape

    model, config = load_matcher(run)
    a = prepare_shape(bumpy(5), k_eig=config.k_eig)
    b = prepare_shape(bumpy(6), k_eig=config.k_eig)
    losses = model.adapt(a, b, steps=6, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert losses[-1] < losses[0]


def test_decimate_reaches_the_target_and_keeps_small_meshes():
    v, f = icosphere(4)  # 2562 vertices
    w, g = decimate(v, f, 500)
    assert abs(w.shape[0] - 500) <= 10 and g.max() < w.shape[0] and w.dtype == v.dtype
    assert decimate(v, f, 5000)[0] is v


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"k_fmap": 200}, "k_fmap: at most k_eig"),
        ({"input": "shot"}, "input: unknown input features 'shot'"),
        ({"max_vertices": 10}, "max_vertices: 0 .no decimation. or at least k_eig"),
        ({"tau": 0.0}, "tau"),
        ({"w_sw": -1.0}, "w_sw"),
        ({"input": "xyz", "augment": "flip"}, "augment: unknown augmentation 'flip'"),
        ({"augment": "heading"}, "augment: rotations change only input='xyz'"),
        ({"input": "xyz", "up_axis": 3}, "up_axis: expected 0, 1 or 2"),
        ({"lr_schedule": "step"}, "lr_schedule: unknown schedule"),
    ],
)
def test_bad_config_raises(settings, match):
    with pytest.raises(ValidationError, match=match):
        MatcherConfig(**settings)


def test_bad_data_and_checkpoints_raise_and_overwrite_nothing(folder, run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileFormatError, match="no shape files in"):
        train_matcher([empty], tmp_path / "r1", config=MatcherConfig(**SMALL), progress=False)
    with pytest.raises(FileFormatError, match=r"--resume given but there is no checkpoint\.pt"):
        train_matcher([folder], tmp_path / "r2", config=MatcherConfig(**SMALL), resume=True, progress=False)
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    for i in range(2):
        v, f = icosphere(1)  # 42 vertices
        save(Mesh(v.float() * (1 + i), f), coarse / f"c{i}.off")
    with pytest.raises(ValidationError, match="42 vertices, fewer than the k_eig=64"):
        train_matcher([coarse], tmp_path / "r3", config=MatcherConfig(**{**SMALL, "k_eig": 64}), progress=False)
    good = (run / "checkpoint.pt").read_bytes()
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(FileFormatError, match="not a readable checkpoint"):
        load_matcher(tmp_path / "trunc")
    assert (run / "checkpoint.pt").read_bytes() == good
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint\n")
    with pytest.raises(FileFormatError, match=r"not a readable checkpoint \(truncated or corrupted file: not a file"):
        load_matcher(tmp_path / "garbage.pt")
    ae = tmp_path / "ae"
    import numpy as np

    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(8, 16, 3)).astype(np.float32))
    train_autoencoder([tmp_path / "c.npy"], ae, config=AutoencoderConfig(n_points=16, latent_dim=4,
                      encoder_widths=(8,), decoder_widths=(8,)), epochs=1, batch_size=4, progress=False)
    with pytest.raises(ValidationError, match="a checkpoint of a 'autoencoder' model, expected 'matcher'"):
        load_matcher(ae)


def test_model_rejects_bad_settings_and_coarse_shapes():
    with pytest.raises(ValidationError, match="k_fmap: expected an integer in"):
        DeepMatcher(k_eig=16, k_fmap=32)
    model = DeepMatcher(k_eig=64, k_fmap=8, width=8, n_wks=8, out_channels=8, n_blocks=1)
    v, f = icosphere(1)
    with pytest.raises(ValidationError, match="source: 42 vertices, fewer than the k_eig=64"):
        model.match((v, f), bumpy(0))
    with pytest.raises(ValidationError, match="refine: expected 'zoomout' or 'none'"):
        model.match(bumpy(0), bumpy(1), refine="icp")


def test_cli_trains_and_matches_with_the_checkpoint(folder, tmp_path, capsys):
    import numpy as np

    from geomot.cli import main

    out = tmp_path / "cli_run"
    assert main(["train", "matcher", "--data", str(folder), "--out", str(out), "--epochs", "1", "--k-eig", "24",
                 "--k-fmap", "12", "--width", "16", "--blocks", "1", "--out-channels", "16",
                 "--pairs-per-epoch", "2", "--quiet"]) == 0
    assert '"epoch": 1' in capsys.readouterr().out
    a, b = sorted((folder / "off").glob("*.off"))[:2]
    assert main(["match", str(a), str(b), "--checkpoint", str(out), "--out", str(tmp_path / "p2p.txt"),
                 "--adapt-steps", "1", "--quiet"]) == 0
    p2p = np.loadtxt(tmp_path / "p2p.txt", dtype=np.int64)
    assert p2p.shape == (642,) and p2p.min() >= 0 and p2p.max() < 642
    assert main(["match", str(a), str(b), "--adapt-steps", "2", "--out", str(tmp_path / "x.txt"), "--quiet"]) == 2
    assert "--adapt-steps: test-time adaptation needs a learned matcher" in capsys.readouterr().err


def test_geomot_match_takes_a_model(run):
    from geomot.correspondence import match

    model, _ = load_matcher(run)
    v, f = bumpy(3)
    res = match((v, f), (v, f), model=model)
    assert (res.p2p_21 == torch.arange(v.shape[0])).double().mean() > 0.95
    with pytest.raises(ValidationError, match="model: expected a learned matcher with a match"):
        match((v, f), (v, f), model=object())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three permuted copies of one blob, with .vts ground truth (line k: the vertex of template vertex k)."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "off").mkdir()
    (root / "corres").mkdir()
    v, f = bumpy(11)
    for i in range(3):
        perm = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(i))
        inv = torch.argsort(perm)
        save(Mesh(v[perm].float(), inv[f]), root / "off" / f"s{i}.off")
        (root / "corres" / f"s{i}.vts").write_text("\n".join(str(int(j) + 1) for j in inv) + "\n")
    return root


def test_evaluate_scores_a_dataset_with_a_checkpoint_in_shards(dataset, run, tmp_path, capsys):
    import json

    from geomot.cli import main
    from geomot.train.evaluate import select_pairs

    parts = []
    for i in range(2):
        out = tmp_path / f"part{i}.json"
        assert main(["evaluate", str(run), "--data", str(dataset), "--pairs", "4", "--shard", f"{i}/2", "--out",
                     str(out), "--quiet"]) == 0
        parts.append(out)
    rows = [json.loads(p.read_text()) for p in parts]
    assert [r["summary"]["n_pairs"] for r in rows] == [2, 2]
    assert main(["evaluate", "--merge", *map(str, parts), "--out", str(tmp_path / "all.json"),
                 "--plot", str(tmp_path / "pck.png")]) == 0
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["summary"]["n_pairs"] == 4 and merged["summary"]["mean"] < 1.0  # copies of one shape
    assert merged["summary"]["pck"][-1] > 0.99 and (tmp_path / "pck.png").stat().st_size > 1000
    assert select_pairs(["a", "b", "c"], shard=(1, 2)) == [("a", "c"), ("b", "c"), ("c", "b")]


def test_evaluate_in_processes_matches_in_process(dataset, run):
    from geomot.train.evaluate import evaluate_dataset

    one = evaluate_dataset(dataset, checkpoint=run, n_pairs=2, progress=False)
    two = evaluate_dataset(dataset, checkpoint=run, n_pairs=2, jobs=2, progress=False)
    assert [(r.source, r.target, r.error) for r in one] == [(r.source, r.target, r.error) for r in two]


def test_evaluate_bad_input(tmp_path, folder):
    from geomot.cli import main
    from geomot.train.evaluate import evaluate_dataset

    with pytest.raises(ValidationError, match=r"shape\(s\) with a corres/ ground truth; need two"):
        evaluate_dataset(folder)
    assert main(["evaluate", "--data", str(folder), "--shard", "3/2", "--quiet"]) == 2


def test_adaptation_runs_on_decimated_copies(run, monkeypatch):
    model, _ = load_matcher(run)
    seen = []
    original = DeepMatcher.adapt

    def spy(self, target, source, **kw):
        seen.append((target.verts.shape[0], source.verts.shape[0]))
        return original(self, target, source, **kw)

    monkeypatch.setattr(DeepMatcher, "adapt", spy)
    fine = bumpy(1, subdiv=4)  # 2562 vertices
    res = model.match(fine, bumpy(2, subdiv=4), adapt_steps=1, adapt_vertices=600)
    assert res.p2p_21.shape == (2562,)
    assert all(abs(n - 600) <= 10 for pair in seen for n in pair)
    model.match(fine, bumpy(2, subdiv=4), adapt_steps=1, adapt_vertices=0)
    assert seen[-1] == (2562, 2562)


@pytest.mark.slow
def test_two_gloo_ranks_under_torchrun(folder, tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "geomot.cli", "train", "matcher", "--data", str(folder), "--out", str(tmp_path), "--epochs", "2",
           "--k-eig", "24", "--k-fmap", "12", "--width", "16", "--blocks", "1", "--out-channels", "16",
           "--pairs-per-epoch", "4", "--quiet", "--device", "cpu"]
    root = Path(__file__).resolve().parents[1]
    subprocess.run(cmd, check=True, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    log = json.loads((tmp_path / "log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2] and all(math.isfinite(e["loss"]) for e in log)
    model, _ = load_matcher(tmp_path)  # rank 0 wrote a checkpoint of the unwrapped model
    assert not any(k.startswith("module.") for k in model.state_dict())


def test_rotate_batch_turns_each_shape_and_keeps_padding():
    from geomot.train.matcher import rotate_batch

    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 10, 3, generator=gen)
    v[1, 7:] = 0  # padding
    batch = {"verts_1": v, "verts_2": v.clone(), "ops_1": None}
    for augment in ("heading", "so3"):
        out = rotate_batch(batch, augment, 1, torch.Generator().manual_seed(1))
        assert out["ops_1"] is None and out["verts_1"].shape == v.shape
        assert torch.allclose(out["verts_1"].norm(dim=-1), v.norm(dim=-1), atol=1e-5)  # rotations
        assert not torch.allclose(out["verts_1"], v, atol=1e-3)
        assert torch.equal(out["verts_1"][1, 7:], torch.zeros(3, 3))
        if augment == "heading":  # the up coordinate is kept
            assert torch.allclose(out["verts_1"][..., 1], v[..., 1], atol=1e-6)
    again = rotate_batch(batch, "so3", 1, torch.Generator().manual_seed(1))
    assert torch.equal(again["verts_2"], rotate_batch(batch, "so3", 1, torch.Generator().manual_seed(1))["verts_2"])


def test_heading_augmented_xyz_training_runs(folder, tmp_path):
    log = train_matcher([folder], tmp_path, config=MatcherConfig(**SMALL, input="xyz", augment="heading"), epochs=1,
                        progress=False)
    assert len(log) == 1 and math.isfinite(log[0]["loss"])


def test_heading_search_undoes_a_half_turn_of_the_source():
    """An xyz matcher sees a copy turned by 180 degrees about y as another shape; trying 2 headings finds the turn
    back, where the copy's features are the target's, so the map is the identity again."""
    from geomot.ops.alignment import axis_rotations

    model = DeepMatcher(input="xyz", k_eig=24, k_fmap=12, width=16, out_channels=16, n_blocks=2, dropout=0.0,
                        generator=torch.Generator().manual_seed(0)).eval()
    v, f = bumpy(5)
    turned = v @ axis_rotations(torch.tensor([math.pi], dtype=v.dtype), 1)[0]
    res = model.match((turned, f), (v, f), headings=2, anchor_iterations=0, n_projections=16)
    assert (res.p2p_21 == torch.arange(v.shape[0])).double().mean() > 0.95
    assert "headings" in res.timings
    with pytest.raises(ValidationError, match="headings: expected"):
        model.match((v, f), (v, f), headings=0)
    with pytest.raises(ValidationError, match="up_axis: expected 0, 1 or 2"):
        model.match((v, f), (v, f), headings=2, up_axis=3)
    wks = DeepMatcher(k_eig=24, k_fmap=12, n_wks=16, width=16, out_channels=16, n_blocks=2)
    with pytest.raises(ValidationError, match="headings: only a matcher with input='xyz'"):
        wks.match((v, f), (v, f), headings=2)


def test_cli_match_headings_needs_a_checkpoint(folder, tmp_path, capsys):
    from geomot.cli import main

    src = folder / "off" / "blob_0.off"
    assert main(["match", str(src), str(src), "--out", str(tmp_path / "p.txt"), "--headings", "2", "--quiet"]) == 2
    assert "--headings: the heading search needs a learned xyz matcher" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()
