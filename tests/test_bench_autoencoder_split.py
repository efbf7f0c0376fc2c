"""The development split and the settings grid of benchmarks/bench_autoencoder.py (no training)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_autoencoder.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_autoencoder_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def fake_tree(tmp_path, bench, monkeypatch):
    """Empty files named like the datasets' shapes, and a ShapeNet-like array, under a fake DATA root."""
    data = tmp_path / "data"
    names = {
        "FAUST_r": [f"tr_reg_{i:03d}" for i in range(70)],
        "TOSCA_r": [f"{c}{i}" for c, n in (("cat", 11), ("david", 7), ("dog", 9), ("horse", 8), ("michael", 20),
                                            ("victoria", 12)) for i in range(n)],
        "SMAL_r": ["cougar", "cow_alph", "cow_alph4", "fox-05", "fox-06", "lion3", "lion6", "hippo5", "dog2",
                   *[f"muybridge_{i:03d}_01" for i in range(8)], "grazing", "timthumb", "wolf_alph2"],
        "deform_sph": [f"deform_sph_{i}" for i in range(1, 52)],
    }
    files = []
    for folder, stems in names.items():
        (data / folder / "off").mkdir(parents=True)
        for stem in stems:
            f = data / folder / "off" / f"{stem}.off"
            f.touch()
            files.append(f)
    (data / "common3d").mkdir()
    for stem in ("cow", "homer", "spot", "bunny"):
        (data / "common3d" / f"{stem}.obj").touch()
        files.append(data / "common3d" / f"{stem}.obj")
    rows = np.arange(40 * 4 * 3, dtype=np.float32).reshape(40, 4, 3)
    np.save(tmp_path / "shapenet_train.npy", rows)
    monkeypatch.setattr(bench, "DATA", data)
    return [tmp_path / "shapenet_train.npy", *files]


def _count(sources):
    return sum(len(np.load(p)) if p.suffix == ".npy" else 1 for p in sources)


def test_dev_split_partitions_whole_groups(bench, fake_tree, tmp_path):
    out = tmp_path / "split"
    out.mkdir()
    fit, dev = bench.dev_split(fake_tree, out)
    files_fit = {p for p in fit if p.suffix != ".npy"}
    files_dev = {p for p in dev if p.suffix != ".npy"}
    assert not files_fit & files_dev
    assert files_fit | files_dev == {p for p in fake_tree if p.suffix != ".npy"}
    # the ShapeNet rows are split, none lost or repeated
    rows_fit = np.load(next(p for p in fit if p.suffix == ".npy"))
    rows_dev = np.load(next(p for p in dev if p.suffix == ".npy"))
    assert len(rows_dev) == 6 and len(rows_fit) == 34
    both = np.concatenate([rows_fit, rows_dev]).reshape(40, -1)[:, 0]
    assert sorted(both.tolist()) == np.load(fake_tree[0]).reshape(40, -1)[:, 0].tolist()
    # whole groups: no FAUST subject or TOSCA class on both sides
    for folder, group_of in bench.GROUPS.items():
        g_fit = {group_of(p.stem) for p in files_fit if p.parent.parent.name == folder or p.parent.name == folder}
        g_dev = {group_of(p.stem) for p in files_dev if p.parent.parent.name == folder or p.parent.name == folder}
        assert not g_fit & g_dev, folder
    faust_dev = sorted(int(re.findall(r"\d+", p.stem)[-1]) for p in files_dev if "FAUST_r" in str(p))
    assert len(faust_dev) == 10 and faust_dev[0] % 10 == 0 and faust_dev[-1] == faust_dev[0] + 9
    share = _count(dev) / _count(fake_tree)
    assert 0.10 <= share <= 0.20


def test_dev_split_is_fixed_and_seeded(bench, fake_tree, tmp_path):
    parts = []
    for name, seed in (("a", bench.DEV_SEED), ("b", bench.DEV_SEED), ("c", bench.DEV_SEED + 1)):
        (tmp_path / name).mkdir()
        _, dev = bench.dev_split(fake_tree, tmp_path / name, seed=seed)
        parts.append(({p for p in dev if p.suffix != ".npy"}, np.load(dev[0]).tolist()))
    assert parts[0] == parts[1]
    assert parts[0] != parts[2]


def test_held_out_groups_respects_the_cap(bench):
    sizes = {"big": 30, **{f"g{i}": 2 for i in range(35)}}  # 100 clouds; "big" alone would be 30%
    for seed in range(5):
        held = bench.held_out_groups(sizes, 0.15, np.random.default_rng(seed))
        count = sum(sizes[g] for g in held)
        assert "big" not in held
        assert 15 <= count <= 20


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "data" / "shapenet50").is_dir(),
                    reason="../shared/data is absent")
def test_dev_split_of_the_real_data_never_touches_the_test_split(bench, tmp_path):
    train, test = bench.split(tmp_path)
    fit, dev = bench.dev_split(train, tmp_path)
    assert not (set(fit) | set(dev)) & set(test)
    assert 0.10 <= _count(dev) / _count(train) <= 0.20


def _args(**kw):
    base = dict(kappa=[1.0, 3.0], n_projections=[100], projector_lr=[1e-3, 1e-2], projector_betas=[[0.0, 0.9]],
                ascent_steps=[1])
    return argparse.Namespace(**{**base, **kw})


def test_settings_grid_sweeps_only_the_settings_a_loss_uses(bench):
    assert len(bench.settings_grid("sw", _args())) == 1
    assert len(bench.settings_grid("chamfer", _args(n_projections=[50, 100]))) == 1
    assert len(bench.settings_grid("sw", _args(n_projections=[50, 100]))) == 2
    assert len(bench.settings_grid("vmf-dsw", _args())) == 2
    grid = bench.settings_grid("amortized-attention-vmf", _args())
    assert len(grid) == 4
    assert {(g["kappa"], g["projector_lr"]) for g in grid} == {(1.0, 1e-3), (1.0, 1e-2), (3.0, 1e-3), (3.0, 1e-2)}
    assert len(bench.settings_grid("amortized-attention-max", _args())) == 2  # kappa unused, projector lr swept
    labels = {bench.run_label("amortized-attention-vmf", g) for g in grid}
    assert "amortized-attention-vmf kappa=1 plr=0.01" in labels
    assert bench.run_label("sw", bench.settings_grid("sw", _args())[0]) == "sw"
