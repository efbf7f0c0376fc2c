"""`geomot distance` and the CLI in general: batches of clouds, progress on stderr, the atom limit of the slow
distances, plain-text help for every sub-command."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch

from geomot._core.errors import ValidationError
from geomot.cli import build_parser, main, plain_text
from geomot.cli.distance import compute_distance, subsample
from geomot.io import save
from geomot.structures import Mesh, PointCloud

from .conftest import icosphere


@pytest.fixture
def clouds(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(3, 60, 3)))
    np.save(tmp_path / "b.npy", rng.normal(size=(3, 60, 3)) + 0.5)
    np.save(tmp_path / "one.npy", rng.normal(size=(60, 3)))
    return tmp_path


def test_batch_gives_one_value_per_pair_and_says_so(clouds, capsys, caplog):
    caplog.set_level("INFO")
    assert main(["distance", str(clouds / "a.npy"), str(clouds / "b.npy"), "--quiet"]) == 0
    values = [float(v) for v in capsys.readouterr().out.split()]
    assert len(values) == 3 and all(v > 0 for v in values)
    assert "3 values, item i of" in caplog.text
    a = torch.from_numpy(np.load(clouds / "a.npy"))
    b = torch.from_numpy(np.load(clouds / "b.npy"))
    single = compute_distance(PointCloud(a[1]), PointCloud(b[1]), loss="chamfer")
    per_item = compute_distance(PointCloud(a), PointCloud(b), loss="chamfer", reduction="none")
    assert per_item[1] == pytest.approx(single, rel=1e-12)
    assert main(["distance", str(clouds / "a.npy"), str(clouds / "b.npy"), "--quiet", "--loss", "chamfer",
                 "--reduction", "mean"]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(sum(per_item) / 3, rel=1e-9)
    assert "mean over 3 pairs" in caplog.text
    # a single cloud against a batch: each item against it
    assert main(["distance", str(clouds / "one.npy"), str(clouds / "b.npy"), "--quiet"]) == 0
    assert len(capsys.readouterr().out.split()) == 3


def test_progress_on_stderr_and_quiet(clouds, capsys):
    assert main(["distance", str(clouds / "a.npy"), str(clouds / "one.npy")]) == 0
    err = capsys.readouterr().err
    assert "distance sw" in err and "3/3 stages" in err
    assert main(["distance", str(clouds / "a.npy"), str(clouds / "one.npy"), "--quiet"]) == 0
    assert "stages" not in capsys.readouterr().err


def test_slow_distances_are_limited_and_fast(tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    v, f = icosphere(3)  # 1280 faces: a varifold of 1280 atoms
    save(Mesh(v, f), tmp_path / "a.off")
    save(Mesh(v * torch.tensor([1.3, 1.0, 0.8], dtype=v.dtype), f), tmp_path / "b.off")
    t0 = time.perf_counter()
    assert main(["distance", str(tmp_path / "a.off"), str(tmp_path / "b.off"), "--loss", "sinkhorn", "--quiet",
                 "--max-atoms", "300"]) == 0
    assert time.perf_counter() - t0 < 60
    assert float(capsys.readouterr().out) > 0
    assert re.search(r"sinkhorn: estimated on 300 atoms drawn by weight from measures of 1280 and 1280 atoms", caplog.text)


def test_subsample_keeps_small_measures_and_draws_by_weight():
    from geomot.structures import Measure

    m = Measure(torch.arange(12, dtype=torch.float64).reshape(1, 4, 3), torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    assert subsample(m, 4, None) is m
    s = subsample(m, 2, torch.Generator().manual_seed(0))
    assert torch.equal(s.support[0], torch.tensor([[3.0, 4, 5], [3, 4, 5]], dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduction": "sum"}, r"reduction: expected 'mean' or 'none', got 'sum'"),
        ({"max_atoms": -1}, r"max_atoms: expected 0 \(no limit\) or a positive count, got -1"),
        ({"loss": "sw-varifold"}, r"loss: 'sw-varifold' compares two meshes, but an input is a point cloud"),
    ],
)
def test_compute_distance_errors(kwargs, match):
    pc = PointCloud(torch.rand(10, 3, dtype=torch.float64))
    with pytest.raises(ValidationError, match=match):
        compute_distance(pc, pc, **kwargs)


def test_batch_size_mismatch():
    with pytest.raises(ValidationError, match=r"a/b: batches of 2 and 3 shapes; give equal batch sizes or one single"):
        compute_distance(PointCloud(torch.rand(2, 10, 3)), PointCloud(torch.rand(3, 10, 3)))


def test_forced_measure_error():
    m = Mesh(*icosphere(1))
    with pytest.raises(ValidationError, match=r"measure: 'sw-varifold' uses measure='varifold', got 'vertices'"):
        compute_distance(m, m, loss="sw-varifold", measure="vertices")


def _helps(parser):
    yield parser.format_help()
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for sub in action.choices.values():
                yield from _helps(sub)


def test_help_is_plain_text():
    texts = list(_helps(build_parser()))
    assert len(texts) > 5
    for text in texts:
        assert "``" not in text and ":func:" not in text and ":class:" not in text and ":mod:" not in text, text
    assert plain_text("see :func:`geomot.load`, ``x`` and **y**") == "see geomot.load, x and y"


def test_sinkhorn_distance_is_within_one_percent_of_a_converged_float64_solve():
    """The CLI's Sinkhorn (float32, value-based stop) against marginal convergence in float64 on the same atoms."""
    from geomot.cli.distance import _extent
    from geomot.losses.sinkhorn import sinkhorn_divergence
    from geomot.structures import mesh_to_measure

    v, f = icosphere(2)
    a, b = Mesh(v, f), Mesh(v * torch.tensor([1.3, 1.0, 0.8], dtype=v.dtype) + 0.1, f)
    got = compute_distance(a, b, loss="sinkhorn", max_atoms=0)
    ma, mb = mesh_to_measure(a, "varifold"), mesh_to_measure(b, "varifold")
    ref = sinkhorn_divergence(ma.to(torch.float64), mb.to(torch.float64), eps=(0.05 * _extent(mb)) ** 2, tol=1e-7,
                              max_iter=20000)
    assert isinstance(got, float)
    assert got == pytest.approx(float(ref), rel=1e-2)
