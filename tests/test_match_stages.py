"""The stages of the training-free matching pipeline used on their own (geomot.correspondence.matching) and the
MatchConfig that holds its settings: run by hand, the stages give exactly the maps of ``match``."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch

from geomot._core.errors import ValidationError
from geomot.correspondence import MatchConfig, match
from geomot.correspondence.matching import (
    Candidate,
    CandidateSet,
    OrientationTerms,
    PreparedPair,
    RefinedMap,
    Selection,
    edge_stretch,
    extrinsic_candidates,
    laplacian_energy,
    polish,
    polish_window,
    prepare,
    rank_candidates,
    refine_map,
    select_initial,
    sign_patterns,
    spectral_candidates,
)
from geomot.correspondence.pipeline import _merge_config
from geomot.io.synthetic import bumpy_pair
from geomot.metrics import geodesic_error
from geomot.ops.geometry import total_area

TINY = dict(k=12, k_init=4, k_select=8, n_candidates=4, n_finalists=4, n_samples=60)


@pytest.fixture(scope="module")
def shapes():
    return bumpy_pair(150, seed=2)


@pytest.fixture(scope="module")
def config():
    return MatchConfig(**TINY)


@pytest.fixture(scope="module")
def prepared(shapes, config):
    return prepare(shapes.source, shapes.target, config)


@pytest.fixture(scope="module")
def staged(prepared, config):
    """Every stage run by hand, as match() runs them."""
    cands = spectral_candidates(prepared, config)
    ext = extrinsic_candidates(prepared, config, cands.orientation)
    sel = select_initial(prepared, cands, ext, config)
    refined = refine_map(prepared, sel, config)
    return cands, ext, sel, refined, polish(prepared, refined, sel.candidate.extrinsic, config)


# -- MatchConfig


def test_config_is_frozen_keyword_only_and_resolves_its_defaults():
    cfg = MatchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.k = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        MatchConfig(140)  # type: ignore[misc]
    r = cfg.resolve()
    assert (r.k_select, r.n_final, r.n_sample_rank) == (32, 6, 1000)
    assert MatchConfig(k=20, k_select=None).resolve().k_select == 20
    assert MatchConfig(anchor_iterations=0).resolve().n_final == 3
    assert MatchConfig(refine="sinkhorn").resolve().n_final == 3
    assert MatchConfig(n_final=2, n_sample_rank=300).resolve().n_final == 2
    assert r.resolve() == r  # idempotent
    assert cfg.anchors_on and not MatchConfig(refine="none").anchors_on


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(refine="icp"), "refine: expected one of"),
        (dict(k=1), "k: expected an integer >= 2"),
        (dict(k=20.0), "k: expected an integer"),
        (dict(n_samples=5), "n_samples"),
        (dict(k=20, k_select=30), "k_init <= k_select <= k"),
        (dict(k_init=10, k_select=8), "k_init <= k_select <= k"),
        (dict(n_final=0), "n_final"),
        (dict(n_sample_rank=3), "n_sample_rank"),
        (dict(refine_extrinsic=1), "refine_extrinsic: expected a bool"),
        (dict(non_isometric="yes"), "non_isometric: expected a bool"),
        (dict(laplacian_weight=-1.0), "laplacian_weight"),
        (dict(stretch_gate=math.inf), "stretch_gate: expected a finite"),
        (dict(extrinsic_margin=0.0), "extrinsic_margin: expected a positive"),
        (dict(stretch_floor=0.0), r"stretch_floor: expected a value in \(0, 1\]"),
        (dict(icp_levels=(0, 8, 4)), "icp_levels: expected a non-empty increasing tuple"),
        (dict(polish_levels=[32, 64]), "polish_levels: expected a non-empty increasing tuple"),
        (dict(profile_radii=()), "profile_radii: expected a non-empty tuple of positive radii"),
        (dict(profile_radii=(0.3, -0.1)), "profile_radii"),
        (dict(n_distortion=1), "n_distortion"),
        (dict(polish_window=-1), "polish_window"),
        (dict(n_target_samples=-1), "n_target_samples"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        MatchConfig(**fields)


def test_explicit_keyword_arguments_of_match_override_the_config():
    cfg = MatchConfig(k=50, n_samples=300, non_isometric=True)
    merged = _merge_config(cfg, {"k": 20, "n_samples": None, "non_isometric": False})
    assert (merged.k, merged.n_samples, merged.non_isometric) == (20, 300, False)
    assert merged.k_select == 20  # resolved after the override (min(32, k))
    assert _merge_config(None, {"k": None}) == MatchConfig().resolve()
    with pytest.raises(ValidationError, match="config: expected a MatchConfig"):
        _merge_config({"k": 20}, {})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="k_init <= k_select <= k"):
        _merge_config(MatchConfig(k_select=30), {"k": 20})


# -- the stages alone


def test_prepare_scales_to_unit_area_and_samples_the_source(shapes, prepared, config):
    assert isinstance(prepared, PreparedPair) and prepared.meshes
    for v, f in ((prepared.v1, prepared.f1), (prepared.v2, prepared.f2)):
        assert float(total_area(v, f)) == pytest.approx(1.0)
    assert prepared.b1.evecs.shape == (150, 12) and prepared.b2.evecs.shape == (150, 12)
    assert prepared.desc1.shape == (150, 100 // 5) and prepared.desc2.shape == prepared.desc1.shape
    assert prepared.samples2.shape == (120,) and len(set(prepared.samples2.tolist())) == 120
    assert prepared.graphs is not None and prepared.device == shapes.source.verts.device
    cloud = prepare(shapes.source.verts, shapes.target.verts, MatchConfig(**TINY, refine="none"))
    assert not cloud.meshes and cloud.graphs is None and cloud.f1 is None
    with pytest.raises(ValidationError, match="fewer eigenfunctions than vertices"):
        prepare(shapes.source, shapes.target, MatchConfig(k=150, k_select=32))


def test_target_samples_restrict_the_images_of_the_sampled_stages(shapes, config):
    """``n_target_samples``: farthest-point target samples (from vertex 0) hold the images of the sampled stages;
    at least the target's vertex count (or 0) means every vertex; the final map still reaches every vertex."""
    assert prepare(shapes.source, shapes.target, config).samples1 is None  # the default: every vertex
    big = dataclasses.replace(config, n_target_samples=150)  # at least the target's vertex count: every vertex
    assert prepare(shapes.source, shapes.target, big).samples1 is None
    assert prepare(shapes.source, shapes.target, dataclasses.replace(config, n_target_samples=0)).samples1 is None
    cfg = dataclasses.replace(config, n_target_samples=90)
    pair = prepare(shapes.source, shapes.target, cfg)
    assert pair.samples1 is not None and pair.samples1.shape == (90,) and len(set(pair.samples1.tolist())) == 90
    assert int(pair.samples1[0]) == 0
    cands = spectral_candidates(pair, cfg)
    sel = select_initial(pair, cands, extrinsic_candidates(pair, cfg, cands.orientation), cfg)
    for row in sel.final:  # the maps of the ranking samples land on the target samples
        assert bool(torch.isin(row.images, pair.samples1).all())
    res = match(shapes.source, shapes.target, config=cfg)
    assert res.p2p_21.shape == (150,) and len(set(res.p2p_21.tolist()) - set(pair.samples1.tolist())) > 0
    err = geodesic_error(res.p2p_21, shapes.target.verts, shapes.target.faces, shapes.src_idx, shapes.tgt_idx)
    assert 100 * float(err) < 15.0


def test_sign_patterns_enumerate_every_sign_with_a_positive_constant():
    s = sign_patterns(4)
    assert s.shape == (8, 4) and bool((s[:, 0] == 1).all())
    assert len({tuple(row.tolist()) for row in s}) == 8 and set(s.unique().tolist()) == {-1.0, 1.0}


def test_spectral_candidates_are_typed_and_ordered_by_descriptor_residual(staged, config):
    cands = staged[0]
    assert isinstance(cands, CandidateSet) and isinstance(cands.orientation, OrientationTerms)
    assert len(cands.candidates) == 4 and all(isinstance(c, Candidate) for c in cands.candidates)
    res = [c.descriptor_residual for c in cands.candidates]
    assert res == sorted(res)
    for c in cands.candidates:
        assert c.fmap_12.shape == (12, 12) and c.fmap_12.dtype == torch.float64 and not c.extrinsic
        assert c.orientation_ratio == cands.ratio(c.fmap_12)
    # the pair is near-isometric and keeps orientation: the best candidate's ratio is below 1
    assert min(c.orientation_ratio for c in cands.candidates) < 1.0


def test_orientation_ratio_is_zero_for_a_map_that_commutes_and_inverts_under_reflection():
    g = torch.Generator().manual_seed(0)
    ops = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    terms = OrientationTerms(ops, ops)
    eye = torch.eye(6, dtype=torch.float64)  # a larger map: its leading 5 x 5 block is used
    assert terms.ratio(eye) == 0.0
    assert OrientationTerms(ops, -ops).ratio(eye) > 1e20  # reversed: all "flip" energy vanishes


def test_extrinsic_candidates_are_functional_maps_of_the_same_size(staged, prepared, config):
    ext = staged[1]
    assert len(ext) == config.n_extrinsic and all(c.extrinsic for c in ext)
    assert all(c.fmap_12.shape == (12, 12) and math.isnan(c.descriptor_residual) for c in ext)
    assert extrinsic_candidates(prepared, dataclasses.replace(config, n_extrinsic=0)) == []


def test_laplacian_energy_is_zero_for_the_identity_and_the_weighted_mismatch_otherwise(prepared):
    b = prepared.b2
    eye = torch.eye(6, dtype=torch.float64)
    assert laplacian_energy(eye, b, b) == pytest.approx(0.0, abs=1e-12)
    swap = eye[[0, 2, 1, 3, 4, 5]]  # exchanges eigenfunctions 1 and 2
    lam = b.evals
    assert laplacian_energy(swap, b, b) == pytest.approx(2 * float((lam[2] - lam[1]) / lam[5]) ** 2 / 6)


def test_ranking_and_selection(staged, prepared, config):
    cands, ext, sel = staged[:3]
    ranked = rank_candidates(prepared, cands.candidates, config)
    assert len(ranked) == min(config.n_scored, len(cands.candidates))
    assert [r.key for r in ranked] == sorted(r.key for r in ranked)
    assert isinstance(sel, Selection) and sel.fmap_12.shape == (12, 12) and sel.fmap_12.dtype == torch.float64
    resolved = config.resolve()
    assert len(sel.final) == min(resolved.n_final, len(ranked)) + len(ext)
    assert all(r.images is not None and r.images.shape == prepared.samples2.shape for r in sel.final)
    assert any(sel.candidate is r.candidate for r in sel.final)
    with pytest.raises(ValidationError, match="candidates: expected at least one"):
        select_initial(prepared, CandidateSet([], None), [], config)


def test_refinement_and_polish(shapes, staged, prepared, config):
    refined = staged[3]
    assert isinstance(refined, RefinedMap) and refined.p2p_21.shape == (150,) and refined.p2p_21.dtype == torch.long
    assert refined.fmap_12.shape == (12, 12) and int(refined.p2p_21.max()) < 150
    err = geodesic_error(refined.p2p_21, shapes.target.verts, shapes.target.faces, shapes.src_idx, shapes.tgt_idx)
    assert 100 * float(err) < 15.0
    # the polish window: anywhere for an extrinsic winner, 2 rings when asked or stretched, else none
    assert polish_window(prepared, refined, True, config) == 0
    assert polish_window(prepared, refined, False, dataclasses.replace(config, non_isometric=True)) == 2
    assert polish_window(prepared, refined, True, dataclasses.replace(config, refine_extrinsic=False)) is None
    stretch = edge_stretch(prepared.v2, prepared.f2, prepared.v1, refined.p2p_21)
    gate_below = dataclasses.replace(config, stretch_gate=stretch * 0.99)
    gate_above = dataclasses.replace(config, stretch_gate=stretch * 1.01)
    assert polish_window(prepared, refined, False, gate_below) == 2
    assert polish_window(prepared, refined, False, gate_above) is None
    assert polish(prepared, refined, False, gate_above) is refined
    moved = polish(prepared, refined, False, gate_below)
    assert moved.p2p_21.shape == (150,) and moved.fmap_12.shape == (12, 12)


def test_the_stages_by_hand_give_the_maps_of_match(shapes, staged, config):
    polished = staged[4]
    res = match(shapes.source, shapes.target, config=config)
    assert torch.equal(res.p2p_21, polished.p2p_21) and torch.equal(res.fmap_12, polished.fmap_12)
    assert res.orientation_ratio == staged[2].candidate.orientation_ratio


@pytest.mark.slow
def test_settings_split_between_config_and_keywords_give_the_same_maps(shapes, staged):
    # keyword arguments win over the config's fields
    rest = {key: val for key, val in TINY.items() if key != "k"}
    mixed = match(shapes.source, shapes.target, config=MatchConfig(k=30, k_select=8, k_init=4), k=12, **rest)
    assert torch.equal(mixed.p2p_21, staged[4].p2p_21)


def test_progress_takes_a_callback_or_a_bool(shapes, config, caplog):
    stages = []
    match(shapes.source, shapes.target, config=config, progress=stages.append)
    assert stages == ["eigenbases", "candidates", "refinement"]
    with caplog.at_level(logging.INFO, logger="geomot.correspondence.pipeline"):
        match(shapes.source, shapes.target, config=config, progress=True)
    assert "match: refinement" in caplog.text
    match(shapes.source, shapes.target, config=config, progress=False)
    with pytest.raises(ValidationError, match="progress: expected a callable, a bool or None, got int"):
        match(shapes.source, shapes.target, config=config, progress=3)
