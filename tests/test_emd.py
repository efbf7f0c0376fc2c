"""Exact EMD through POT: closed forms (1-D, translations), scipy, batching, meshes, bad input."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scipy.stats import wasserstein_distance

from geomot._core.errors import ConvergenceWarning, GeomotDeprecationWarning, ShapeError, ValidationError
from geomot.metrics.emd import emd
from geomot.structures import Measure, Mesh, PointCloud
from tests.conftest import icosphere


def test_one_dimensional_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 1, generator=g, dtype=torch.float64), torch.rand(50, 1, generator=g, dtype=torch.float64)
    xs, ys = torch.sort(x[:, 0]).values, torch.sort(y[:, 0]).values
    for p in (1, 2, 3):
        torch.testing.assert_close(emd(x, y, p=p), ((xs - ys).abs() ** p).mean())


def test_weighted_p1_matches_scipy() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 1, generator=g, dtype=torch.float64), torch.randn(20, 1, generator=g, dtype=torch.float64)
    a, b = torch.rand(30, generator=g, dtype=torch.float64), torch.rand(20, generator=g, dtype=torch.float64)
    ref = wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy(), a.numpy(), b.numpy())
    np.testing.assert_allclose(float(emd(x, y, x_weights=a, y_weights=b, p=1)), ref, rtol=1e-10)


def test_translation_closed_form_and_pot() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(emd(x, x + t), (t * t).sum())
    y = torch.randn(25, 3, generator=g, dtype=torch.float64)
    ref = ot.emd2(np.full(40, 1 / 40), np.full(25, 1 / 25), ot.dist(x.numpy(), y.numpy()))
    np.testing.assert_allclose(float(emd(x, y)), ref, rtol=1e-12)
    assert float(emd(x, x)) == pytest.approx(0.0, abs=1e-14)


def test_batched_lengths_inputs_and_reductions() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 10, 3, generator=g)
    y = torch.randn(2, 12, 3, generator=g)
    xl, yl = torch.tensor([10, 6]), torch.tensor([12, 4])
    out = emd(x, y, x_lengths=xl, y_lengths=yl)
    assert out.shape == (2,) and out.dtype == torch.float32
    for b in range(2):
        torch.testing.assert_close(out[b], emd(x[b, : xl[b]], y[b, : yl[b]]))
    torch.testing.assert_close(emd(x, y, x_lengths=xl, y_lengths=yl, reduction="mean"), out.mean())
    torch.testing.assert_close(emd(PointCloud(x, lengths=xl), Measure(y, lengths=yl), reduction="sum"), out.sum())
    v, f = icosphere(1)
    mesh = Mesh(v, f)
    torch.testing.assert_close(emd(mesh, Mesh(v + 0.1, f)), torch.tensor([0.03], dtype=torch.float64))
    assert emd(mesh, mesh, measure="faces").shape == (1,)


def test_not_converged_warns() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(60, 2, generator=g), torch.randn(60, 2, generator=g)
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        emd(x, y, max_iter=2)
    with pytest.warns(GeomotDeprecationWarning, match="'num_iter_max' is deprecated.*use 'max_iter'"):
        old = emd(x, y, num_iter_max=10**6)
    torch.testing.assert_close(old, emd(x, y))
    with pytest.raises(ValidationError, match="max_iter: expected an integer >= 1, got 0"):
        emd(x, y, max_iter=0)


def test_bad_input() -> None:
    x = torch.rand(5, 3)
    with pytest.raises(ShapeError, match="y: expected points of dimension 3"):
        emd(x, torch.rand(5, 2))
    with pytest.raises(ShapeError, match="y: expected batch size 1"):
        emd(x, torch.rand(2, 5, 3))
    with pytest.raises(ValidationError, match="x: empty point set"):
        emd(x[:0], x)
    with pytest.raises(ValidationError, match=r"y: .*contains 1 NaN"):
        bad = x.clone()
        bad[0, 0] = float("nan")
        emd(x, bad)
    with pytest.raises(ValidationError, match=r"p: expected a value >= 1\.0"):
        emd(x, x, p=0.5)
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none'"):
        emd(x, x, reduction="max")
    with pytest.raises(ValidationError, match=r"x_weights: .*non-negative"):
        emd(x, x, x_weights=-torch.ones(5))


def test_mesh_follows_the_measure_rule() -> None:
    from geomot.structures import mesh_to_measure

    v, f = icosphere(1)
    g = torch.Generator().manual_seed(7)
    m1, m2 = Mesh(v, f), Mesh(v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype), f)
    a, b = mesh_to_measure(m1, "varifold"), mesh_to_measure(m2, "varifold")
    torch.testing.assert_close(emd(m1, m2), emd(a, b))
    a, b = mesh_to_measure(m1, "vertices"), mesh_to_measure(m2, "vertices")
    torch.testing.assert_close(emd(m1, m2, measure="vertices"), emd(a, b))
    cloud = torch.rand(20, 3, dtype=v.dtype)
    assert emd(m1, cloud, measure="faces").shape == (1,)
    torch.testing.assert_close(emd(cloud, cloud, measure="faces"), emd(cloud, cloud))  # irrelevant for tensors
    with pytest.raises(ShapeError, match=r"y: expected points of dimension 6 \(that of x, a Mesh turned into its 6-D "
                       r"varifold by default\), got 3; pass measure='vertices', 'faces' or 'samples'"):
        emd(m1, cloud)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_inputs_give_nan_without_checks(value: float) -> None:
    import geomot

    x = torch.rand(2, 6, 3, dtype=torch.float64)
    bad = x.clone()
    bad[1, 2, 0] = value
    with geomot.data_checks(False):
        out = emd(x, bad)
        w = torch.ones(2, 6, dtype=torch.float64)
        w[0, 1] = value
        out_w = emd(x, x, x_weights=w)
    assert bool(torch.isfinite(out[0])) and bool(torch.isnan(out[1]))
    assert bool(torch.isnan(out_w[0])) and abs(float(out_w[1])) < 1e-12
    big = emd((1e20 * x).float(), (1e20 * (x + 1)).float())
    assert not bool(torch.isfinite(big).any())  # W2^2 ~ 1e40 overflows float32: inf, never a finite value


def test_early_stop_warns_once_without_touching_the_warnings_filters(monkeypatch):
    import warnings

    def no_filters(*args, **kwargs):
        raise AssertionError("a library call changed the warnings filters")

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 3, generator=g), torch.randn(60, 3, generator=g)
    with pytest.warns(ConvergenceWarning, match="stopped early \\(max_iter reached\\)") as record:
        with monkeypatch.context() as m:
            m.setattr(warnings, "filterwarnings", no_filters)
            m.setattr(warnings, "simplefilter", no_filters)
            m.setattr(warnings, "catch_warnings", no_filters)
            emd(x, y, max_iter=5)
    assert all(issubclass(r.category, ConvergenceWarning) for r in record)
