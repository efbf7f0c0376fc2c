"""Deep functional maps (geomot.correspondence.deep) and their unsupervised losses (geomot.losses.fmap): the layer
against a dense least-squares reference, an isometric pair with exact ground truth, padding invariance, closed forms
and zeros of the losses, gradcheck in float64, NaN propagation and the error messages."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import geomot
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence import (
    DeepFunctionalMap,
    fmap_from_soft_map,
    fmap_layer,
    soft_map_sinkhorn,
    soft_map_softmax,
    wks,
)
from geomot.correspondence.deep import _SOFT_DEFAULTS
from geomot.io.synthetic import bumpy_sphere
from geomot.losses import (
    UnsupervisedFmapLoss,
    bijectivity_loss,
    coupling_loss,
    laplacian_commutativity_loss,
    orthogonality_loss,
    sliced_wasserstein,
    sw_alignment_loss,
    unsupervised_fmap_loss,
)
from geomot.ops.spectral import spectral_basis
from geomot.transport import sinkhorn_from_cost

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DT = torch.float64


def _rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=DT)


def _shape(n: int, k: int, *, perm: torch.Tensor | None = None):
    """A bumpy sphere (optionally with its vertices permuted and rigidly moved), its basis and intrinsic features:
    the WKS and the spectral embedding ``Phi[:, 1:]`` (each block scaled to a unit mean row norm)."""
    m = bumpy_sphere(n)
    v, f = m.verts, m.faces
    if perm is not None:  # new vertex j is old vertex perm[j]
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(n)
        v, f = v[perm] @ _rotation(0.7).T + torch.tensor([0.3, -1.0, 2.0], dtype=DT), inv[f]
    b = spectral_basis(v, f, k=k)
    w, e = wks(b.evals, b.evecs, n_scales=16), b.evecs[:, 1:]
    feat = torch.cat([w / w.norm(dim=1).mean(), e / e.norm(dim=1).mean()], 1)
    return {"evals": b.evals, "evecs": b.evecs, "mass": b.mass, "feat": feat}


@pytest.fixture(scope="module")
def iso():
    """Shape 1 and an isometric copy (vertices permuted, rotated, translated): ``p2p_21 = perm``."""
    n, k = 200, 12
    perm = torch.as_tensor(np.random.default_rng(3).permutation(n))
    return _shape(n, k), _shape(n, k, perm=perm), perm


@pytest.fixture(scope="module")
def small():
    """A second, smaller shape for ragged batches."""
    return _shape(120, 12)


def _layer_args(s1, s2):
    return (s1["feat"], s2["feat"], s1["evecs"], s2["evecs"], s1["mass"], s2["mass"], s1["evals"], s2["evals"])


def _perm_matrix(p2p_21: torch.Tensor, n1: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(p2p_21, n1).to(DT)


# -- the functional-map layer ---------------------------------------------------------------------------------------


def _reference_fmap(a: np.ndarray, b: np.ndarray, e_src: np.ndarray, e_dst: np.ndarray, lam: float, mask: str):
    """Row i of C (k_dst, k_src): argmin ||c A - b_i||^2 + lam sum_j D_ij c_j^2 by numpy lstsq on the stacked
    system [A^T; sqrt(lam D_i)] c = [b_i; 0], with the mask written from its formula."""
    scale = max(e_src.max(), e_dst.max())
    x, y = e_src / scale, e_dst / scale
    if mask == "resolvent":
        g1, g2 = np.sqrt(x)[None, :], np.sqrt(y)[:, None]
        d = (g2 / (g2**2 + 1) - g1 / (g1**2 + 1)) ** 2 + (1 / (g2**2 + 1) - 1 / (g1**2 + 1)) ** 2
    else:
        d = (x[None, :] - y[:, None]) ** 2
    rows = []
    for i in range(b.shape[0]):
        lhs = np.concatenate([a.T, np.diag(np.sqrt(lam * d[i]))], 0)
        rhs = np.concatenate([b[i], np.zeros(a.shape[0])])
        rows.append(np.linalg.lstsq(lhs, rhs, rcond=None)[0])
    return np.stack(rows)


@pytest.mark.parametrize("mask", ["resolvent", "laplacian"])
def test_fmap_layer_matches_dense_least_squares(iso, small, mask):
    s1, s2 = iso[0], small
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(200, 7, generator=g, dtype=DT)
    f2 = torch.randn(120, 7, generator=g, dtype=DT)
    out = fmap_layer(f1, f2, s1["evecs"], s2["evecs"][:, :9], s1["mass"], s2["mass"], s1["evals"],
                     s2["evals"][:9], lambda_=30.0, mask=mask)
    assert out.fmap_12.shape == (9, 12) and out.fmap_21.shape == (12, 9)
    a = (s1["evecs"].T @ (s1["mass"][:, None] * f1)).numpy()
    b = (s2["evecs"][:, :9].T @ (s2["mass"][:, None] * f2)).numpy()
    e1, e2 = s1["evals"].numpy(), s2["evals"][:9].numpy()
    np.testing.assert_allclose(out.fmap_12.numpy(), _reference_fmap(a, b, e1, e2, 30.0, mask), atol=1e-10, rtol=1e-8)
    np.testing.assert_allclose(out.fmap_21.numpy(), _reference_fmap(b, a, e2, e1, 30.0, mask), atol=1e-10, rtol=1e-8)


def test_isometric_pair_gives_identity_fmaps_and_soft_maps_recover_the_permutation(iso):
    s1, s2, perm = iso
    out = fmap_layer(*_layer_args(s1, s2))
    eye = torch.eye(12, dtype=DT)
    # the bases agree up to the permutation (the sign rule of spectral_basis is permutation-invariant)
    torch.testing.assert_close(out.fmap_12, eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.fmap_21, eye, atol=1e-6, rtol=0)
    for pi in (soft_map_softmax(s1["feat"], s2["feat"], tau=1e-3),
               soft_map_sinkhorn(s1["feat"], s2["feat"], eps=1e-3, max_iter=300)):
        assert pi.shape == (200, 200)
        assert torch.equal(pi.argmax(-1), perm)
        assert float(pi.max(-1).values.min()) > 0.9
    # soft map of the ULRSSM temperature: not sharp, still row-stochastic and peaked at the match
    pi = soft_map_softmax(s1["feat"], s2["feat"])
    torch.testing.assert_close(pi.sum(-1), torch.ones(200, dtype=DT))
    assert float((pi.argmax(-1) == perm).double().mean()) > 0.5
    # the exact permutation induces the identity functional map (Phi_2 = Phi_1[perm], M-orthonormal)
    torch.testing.assert_close(fmap_from_soft_map(_perm_matrix(perm, 200), s1["evecs"], s2["evecs"], s2["mass"]),
                               eye, atol=1e-6, rtol=0)


def test_soft_map_softmax_closed_form():
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(9, 4, generator=g, dtype=DT), torch.randn(6, 4, generator=g, dtype=DT)
    cos = (f2 / f2.norm(dim=1, keepdim=True)) @ (f1 / f1.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(soft_map_softmax(f1, f2, tau=0.3), torch.softmax(cos / 0.3, dim=1))
    torch.testing.assert_close(soft_map_softmax(f1, f2, tau=0.3, normalize=False), torch.softmax(f2 @ f1.T / 0.3, 1))


@pytest.mark.parametrize("cost", ["cosine", "sqeuclidean"])
def test_soft_map_sinkhorn_is_the_row_normalised_plan_with_the_given_marginals(cost):
    g = torch.Generator().manual_seed(2)
    f1, f2 = torch.randn(11, 3, generator=g, dtype=DT), torch.randn(8, 3, generator=g, dtype=DT)
    w1, w2 = torch.rand(11, generator=g, dtype=DT) + 0.1, torch.rand(8, generator=g, dtype=DT) + 0.1
    pi = soft_map_sinkhorn(f1, f2, eps=0.1, cost=cost, weights_1=w1, weights_2=w2, tol=1e-10, max_iter=5000)
    a, b = w2 / w2.sum(), w1 / w1.sum()
    torch.testing.assert_close(pi.sum(1), torch.ones(8, dtype=DT))
    torch.testing.assert_close(pi.T @ a, b, atol=1e-9, rtol=0)  # P = diag(a) Pi has column marginal b
    if cost == "cosine":
        c = 1 - (f2 / f2.norm(dim=1, keepdim=True)) @ (f1 / f1.norm(dim=1, keepdim=True)).T
    else:
        c = torch.cdist(f2, f1) ** 2
        c = c / c.mean()
    plan = sinkhorn_from_cost(c, eps=0.1, x_weights=w2, y_weights=w1, tol=1e-10, max_iter=5000).plan.dense()
    torch.testing.assert_close(pi, plan / plan.sum(1, keepdim=True), atol=1e-8, rtol=0)
    # a very large eps forgets the cost: every row is the column marginal
    torch.testing.assert_close(soft_map_sinkhorn(f1, f2, eps=1e6, weights_1=w1), b.expand(8, 11), atol=1e-5,
                               rtol=0)


def test_padding_invariance(iso, small):
    s1, s2 = iso[0], small
    r1, r2 = iso[1], iso[0]
    singles = [fmap_layer(*_layer_args(s1, s2)), fmap_layer(*_layer_args(r1, r2))]

    def pad(a, b, fill=float("nan")):  # garbage in the padding must not matter
        out = torch.full((2, max(a.shape[0], b.shape[0]), *a.shape[1:]), fill, dtype=DT)
        out[0, : a.shape[0]], out[1, : b.shape[0]] = a, b
        return out

    args = [pad(x, y) if i < 6 else torch.stack([x, y]) for i, (x, y) in
            enumerate(zip(_layer_args(s1, s2), _layer_args(r1, r2)))]
    l1, l2 = torch.tensor([200, 200]), torch.tensor([120, 200])
    out = fmap_layer(*args, lengths_1=l1, lengths_2=l2)
    for b in range(2):
        torch.testing.assert_close(out.fmap_12[b], singles[b].fmap_12)
        torch.testing.assert_close(out.fmap_21[b], singles[b].fmap_21)
    sm = soft_map_softmax(args[0], args[1], lengths_1=l1, lengths_2=l2)
    torch.testing.assert_close(sm[0, :120], soft_map_softmax(s1["feat"], s2["feat"]))
    assert torch.count_nonzero(sm[0, 120:]) == 0
    sk = soft_map_sinkhorn(args[1], args[0], lengths_1=l2, lengths_2=l1, tol=1e-8, max_iter=2000)  # shape 2 -> 1
    torch.testing.assert_close(sk[0, :, :120], soft_map_sinkhorn(s2["feat"], s1["feat"], tol=1e-8, max_iter=2000))
    assert torch.count_nonzero(sk[0, :, 120:]) == 0
    # the coupling and SW losses of the padded batch are those of the items
    deep = DeepFunctionalMap()(*args, lengths_1=l1, lengths_2=l2)
    kw = {"evecs_1": args[2], "evecs_2": args[3], "mass_1": args[4], "mass_2": args[5], "lengths_1": l1,
          "lengths_2": l2}
    couple = coupling_loss(deep.fmap_12, deep.soft_map_21, kw["evecs_1"], kw["evecs_2"], kw["mass_2"],
                           fmap_21=deep.fmap_21, soft_map_12=deep.soft_map_12, mass_1=kw["mass_1"], lengths_1=l1,
                           lengths_2=l2, reduction="none")
    sw = sw_alignment_loss(args[0], args[1], deep.soft_map_21, soft_map_12=deep.soft_map_12, lengths_1=l1,
                           lengths_2=l2, generator=torch.Generator().manual_seed(5), reduction="none")
    for b, (a1, a2) in enumerate(((s1, s2), (r1, r2))):
        one = DeepFunctionalMap()(*_layer_args(a1, a2))
        n2 = a2["evecs"].shape[0]
        c1 = coupling_loss(one.fmap_12, one.soft_map_21, a1["evecs"], a2["evecs"], a2["mass"], fmap_21=one.fmap_21,
                           soft_map_12=one.soft_map_12, mass_1=a1["mass"])
        s_1 = sw_alignment_loss(a1["feat"], a2["feat"], one.soft_map_21, soft_map_12=one.soft_map_12,
                                generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(couple[b], c1)
        torch.testing.assert_close(sw[b], s_1)
        torch.testing.assert_close(deep.soft_map_21[b, :n2], one.soft_map_21)


# -- losses ------------------------------------------------------------------------------------------------------------


def test_losses_are_zero_on_the_identity_and_on_the_exact_isometric_map(iso):
    s1, s2, perm = iso
    k, n = 12, 200
    eye_k, eye_n = torch.eye(k, dtype=DT), torch.eye(n, dtype=DT)
    ev, phi, m, f = s1["evals"], s1["evecs"], s1["mass"], s1["feat"]
    g = torch.Generator().manual_seed(0)
    # same shape, identity maps, identical features
    out = unsupervised_fmap_loss(eye_k, eye_k, soft_map_21=eye_n, soft_map_12=eye_n, feat_1=f, feat_2=f,
                                 evecs_1=phi, evecs_2=phi, mass_1=m, mass_2=m, evals_1=ev, evals_2=ev, w_lap=1.0,
                                 generator=g)
    assert set(out.terms) == {"bij", "orth", "lap", "couple", "sw"}
    for name, v in out.terms.items():
        assert abs(float(v)) < 1e-20, name
    # the isometric pair with its exact permutation and the fmaps it induces
    p21 = _perm_matrix(perm, n)
    c12 = fmap_from_soft_map(p21, s1["evecs"], s2["evecs"], s2["mass"])
    c21 = fmap_from_soft_map(p21.T, s2["evecs"], s1["evecs"], s1["mass"])
    out = unsupervised_fmap_loss(c12, c21, soft_map_21=p21, soft_map_12=p21.T, feat_1=s1["feat"],
                                 feat_2=s2["feat"], evecs_1=s1["evecs"], evecs_2=s2["evecs"], mass_1=s1["mass"],
                                 mass_2=s2["mass"], evals_1=s1["evals"], evals_2=s2["evals"], w_lap=1.0, generator=g)
    for name, v in out.terms.items():
        assert float(v) < 1e-10, name


def test_regulariser_closed_forms():
    k = 5
    c = torch.eye(k, dtype=DT)
    a, b = 1.5, 0.5
    torch.testing.assert_close(bijectivity_loss(a * c, b * c), torch.tensor(2 * k * (a * b - 1) ** 2, dtype=DT))
    torch.testing.assert_close(orthogonality_loss(a * c), torch.tensor(k * (a * a - 1) ** 2, dtype=DT))
    torch.testing.assert_close(orthogonality_loss(a * c, b * c), torch.tensor(k * ((a * a - 1) ** 2 + (b * b - 1) ** 2),
                                                                              dtype=DT))
    e1 = torch.tensor([0.0, 1.0, 2.0], dtype=DT)
    e2 = torch.tensor([0.0, 2.0, 4.0], dtype=DT)
    ones = torch.ones(3, 3, dtype=DT)
    raw = float(((e1[None, :] - e2[:, None]) ** 2).sum())
    torch.testing.assert_close(laplacian_commutativity_loss(ones, e1, e2, normalize=False), torch.tensor(raw, dtype=DT))
    torch.testing.assert_close(laplacian_commutativity_loss(ones, e1, e2), torch.tensor(raw / 16, dtype=DT))
    torch.testing.assert_close(laplacian_commutativity_loss(ones, e1, e2, fmap_21=ones),
                               torch.tensor(2 * raw / 16, dtype=DT))
    # batched: reduction over items
    cb = torch.stack([a * c, c])
    torch.testing.assert_close(orthogonality_loss(cb, reduction="none"),
                               torch.tensor([k * (a * a - 1) ** 2, 0.0], dtype=DT))
    torch.testing.assert_close(orthogonality_loss(cb, reduction="sum"), torch.tensor(k * (a * a - 1) ** 2, dtype=DT))


def test_coupling_loss_closed_form():
    g = torch.Generator().manual_seed(3)
    phi1, phi2 = torch.randn(7, 3, generator=g, dtype=DT), torch.randn(5, 4, generator=g, dtype=DT)
    m2 = torch.rand(5, generator=g, dtype=DT)
    pi = torch.softmax(torch.randn(5, 7, generator=g, dtype=DT), 1)
    c = torch.randn(4, 3, generator=g, dtype=DT)
    want = ((c - phi2.T @ torch.diag(m2) @ pi @ phi1) ** 2).sum()
    torch.testing.assert_close(coupling_loss(c, pi, phi1, phi2, m2), want)
    torch.testing.assert_close(fmap_from_soft_map(pi, phi1, phi2, m2), phi2.T @ torch.diag(m2) @ pi @ phi1)


def test_sw_alignment_is_sliced_wasserstein_and_exact_in_one_dimension():
    g = torch.Generator().manual_seed(4)
    f1, f2 = torch.randn(9, 1, generator=g, dtype=DT), torch.randn(6, 1, generator=g, dtype=DT)
    pi21 = torch.softmax(torch.randn(6, 9, generator=g, dtype=DT), 1)
    pi12 = torch.softmax(torch.randn(9, 6, generator=g, dtype=DT), 1)
    # d = 1: every direction is +-1, SW_2 = W_2 = the rms of the sorted differences (equal sizes, uniform weights)
    w21 = ((f2[:, 0].sort().values - (pi21 @ f1)[:, 0].sort().values) ** 2).mean().sqrt()
    w12 = ((f1[:, 0].sort().values - (pi12 @ f2)[:, 0].sort().values) ** 2).mean().sqrt()
    torch.testing.assert_close(sw_alignment_loss(f1, f2, pi21, n_projections=3), w21)
    torch.testing.assert_close(sw_alignment_loss(f1, f2, pi21, soft_map_12=pi12, n_projections=3), w21 + w12)
    # d > 1: the same estimator and directions as geomot.sliced_wasserstein with the same generator
    f1, f2 = torch.randn(9, 5, generator=g, dtype=DT), torch.randn(6, 5, generator=g, dtype=DT)
    got = sw_alignment_loss(f1, f2, pi21, n_projections=50, generator=torch.Generator().manual_seed(7))
    ref = sliced_wasserstein(f2, pi21 @ f1, n_projections=50, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, ref)


def test_combined_loss_is_the_weighted_sum_and_the_module_calls_the_function(iso):
    s1, s2, _ = iso
    deep = DeepFunctionalMap()(*_layer_args(s1, s2))
    inputs = {"soft_map_21": deep.soft_map_21, "soft_map_12": deep.soft_map_12, "feat_1": s1["feat"],
              "feat_2": s2["feat"], "evecs_1": s1["evecs"], "evecs_2": s2["evecs"], "mass_1": s1["mass"],
              "mass_2": s2["mass"], "evals_1": s1["evals"], "evals_2": s2["evals"]}
    w = {"w_bij": 2.0, "w_orth": 0.5, "w_lap": 3.0, "w_couple": 1.5, "w_sw": 10.0}
    out = UnsupervisedFmapLoss(**w, n_projections=20)(deep.fmap_12, deep.fmap_21, generator=torch.Generator()
                                                      .manual_seed(0), **inputs)
    ref = {
        "bij": bijectivity_loss(deep.fmap_12, deep.fmap_21),
        "orth": orthogonality_loss(deep.fmap_12, deep.fmap_21),
        "lap": laplacian_commutativity_loss(deep.fmap_12, s1["evals"], s2["evals"], fmap_21=deep.fmap_21),
        "couple": coupling_loss(deep.fmap_12, deep.soft_map_21, s1["evecs"], s2["evecs"], s2["mass"],
                                fmap_21=deep.fmap_21, soft_map_12=deep.soft_map_12, mass_1=s1["mass"]),
        "sw": sw_alignment_loss(s1["feat"], s2["feat"], deep.soft_map_21, soft_map_12=deep.soft_map_12,
                                n_projections=20, generator=torch.Generator().manual_seed(0)),
    }
    assert set(out.terms) == set(ref)
    for name, v in ref.items():
        torch.testing.assert_close(out.terms[name], v)
        assert float(v) > 0, name
    torch.testing.assert_close(out.total, sum(w["w_" + n] * v for n, v in ref.items()))
    # defaults (ULRSSM + Le et al.): no Laplacian term; zero weights need no inputs
    assert set(UnsupervisedFmapLoss()(deep.fmap_12, deep.fmap_21, **inputs).terms) == {"bij", "orth", "couple", "sw"}
    only = unsupervised_fmap_loss(deep.fmap_12, w_bij=0, w_couple=0, w_sw=0)
    torch.testing.assert_close(only.total, orthogonality_loss(deep.fmap_12))


def test_deep_functional_map_module_matches_the_functions(iso):
    s1, s2, _ = iso
    out = DeepFunctionalMap(lambda_=10.0)(*_layer_args(s1, s2))
    ref = fmap_layer(*_layer_args(s1, s2), lambda_=10.0)
    torch.testing.assert_close(out.fmap_12, ref.fmap_12)
    torch.testing.assert_close(out.fmap_21, ref.fmap_21)
    torch.testing.assert_close(out.soft_map_21, soft_map_softmax(s1["feat"], s2["feat"]))
    torch.testing.assert_close(out.soft_map_12, soft_map_softmax(s2["feat"], s1["feat"]))
    opts = {"eps": 0.05, "tol": 1e-9, "max_iter": 3000}
    out = DeepFunctionalMap(soft_map="sinkhorn", soft_map_options=opts, mass_marginals=True)(*_layer_args(s1, s2))
    torch.testing.assert_close(out.soft_map_21, soft_map_sinkhorn(s1["feat"], s2["feat"], weights_1=s1["mass"],
                                                                  weights_2=s2["mass"], **opts), atol=1e-7, rtol=0)
    # soft_map_12 comes from the same plan: it is the transposed problem's map
    torch.testing.assert_close(out.soft_map_12, soft_map_sinkhorn(s2["feat"], s1["feat"], weights_1=s2["mass"],
                                                                  weights_2=s1["mass"], **opts), atol=1e-6, rtol=0)
    one_way = DeepFunctionalMap(bidirectional=False)(*_layer_args(s1, s2))
    assert one_way.fmap_21 is None and one_way.soft_map_12 is None
    assert "lambda_=10.0" in repr(DeepFunctionalMap(lambda_=10.0))
    # the shell's soft-map defaults are the functions' own
    for kind, fn in (("softmax", soft_map_softmax), ("sinkhorn", soft_map_sinkhorn)):
        params = inspect.signature(fn).parameters
        assert {k: params[k].default for k in _SOFT_DEFAULTS[kind]} == _SOFT_DEFAULTS[kind]


# -- gradients ---------------------------------------------------------------------------------------------------------


def _tiny(seed=0, v1=7, v2=6, k=3, d=4):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=DT)  # noqa: E731
    ev = lambda: torch.sort(torch.rand(k, generator=g, dtype=DT) * 4, 0).values + 0.1  # noqa: E731
    return {"f1": r(v1, d), "f2": r(v2, d), "phi1": r(v1, k), "phi2": r(v2, k),
            "m1": torch.rand(v1, generator=g, dtype=DT) + 0.5, "m2": torch.rand(v2, generator=g, dtype=DT) + 0.5,
            "e1": ev(), "e2": ev()}


def _req(*ts):
    return tuple(t.detach().clone().requires_grad_(True) for t in ts)


def test_gradcheck_fmap_layer():
    t = _tiny(v1=5, v2=4, d=3)
    f1, f2, phi1, phi2 = _req(t["f1"], t["f2"], t["phi1"], t["phi2"])

    def layer(f1, f2, phi1, phi2):
        out = fmap_layer(f1, f2, phi1, phi2, t["m1"], t["m2"], t["e1"], t["e2"], lambda_=3.0)
        return out.fmap_12, out.fmap_21

    assert torch.autograd.gradcheck(layer, (f1, f2, phi1, phi2))


def test_gradcheck_soft_maps():
    t = _tiny()
    f1, f2, phi1, phi2 = _req(t["f1"], t["f2"], t["phi1"], t["phi2"])
    assert torch.autograd.gradcheck(lambda a, b: soft_map_softmax(a, b, tau=0.5), (f1, f2))
    pi = torch.softmax(torch.randn(6, 7, dtype=DT), 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, a, b: fmap_from_soft_map(p, a, b, t["m2"]), (pi, phi1, phi2))


def test_gradcheck_sinkhorn_soft_map_unrolled():
    t = _tiny(v1=5, v2=4, d=3)
    f1, f2 = _req(t["f1"], t["f2"])
    assert torch.autograd.gradcheck(
        lambda a, b: soft_map_sinkhorn(a, b, eps=0.5, grad="unroll", tol=1e-12, max_iter=20, warn=False), (f1, f2))


def test_sinkhorn_envelope_gradient_is_the_fixed_potential_softmax_gradient():
    t = _tiny(1)
    f1, f2 = _req(t["f1"], t["f2"])
    w = torch.randn(6, 7, dtype=DT)
    (soft_map_sinkhorn(f1, f2, eps=0.5, tol=1e-12, max_iter=2000) * w).sum().backward()
    with torch.no_grad():
        g = sinkhorn_from_cost(1 - torch.nn.functional.normalize(t["f2"], dim=1)
                               @ torch.nn.functional.normalize(t["f1"], dim=1).T, eps=0.5, tol=1e-12,
                               max_iter=2000).g
    a, b = _req(t["f1"], t["f2"])
    cost = 1 - torch.nn.functional.normalize(b, dim=1) @ torch.nn.functional.normalize(a, dim=1).T
    (torch.softmax((g[None, :] - cost) / 0.5, 1) * w).sum().backward()
    torch.testing.assert_close(f1.grad, a.grad)
    torch.testing.assert_close(f2.grad, b.grad)


def test_gradcheck_losses():
    t = _tiny(2, k=3)
    g = torch.Generator().manual_seed(0)
    c12, c21 = _req(torch.randn(3, 3, generator=g, dtype=DT), torch.randn(3, 3, generator=g, dtype=DT))
    p21 = torch.softmax(torch.randn(6, 7, generator=g, dtype=DT), 1).requires_grad_(True)
    p12 = torch.softmax(torch.randn(7, 6, generator=g, dtype=DT), 1).requires_grad_(True)
    f1, f2, phi1, phi2 = _req(t["f1"], t["f2"], t["phi1"], t["phi2"])
    assert torch.autograd.gradcheck(bijectivity_loss, (c12, c21))
    assert torch.autograd.gradcheck(lambda a, b: orthogonality_loss(a, b), (c12, c21))
    assert torch.autograd.gradcheck(lambda a, b: laplacian_commutativity_loss(a, t["e1"], t["e2"], fmap_21=b),
                                    (c12, c21))
    assert torch.autograd.gradcheck(
        lambda a, b, p, q, x, y: coupling_loss(a, p, x, y, t["m2"], fmap_21=b, soft_map_12=q, mass_1=t["m1"]),
        (c12, c21, p21, p12, phi1, phi2))
    assert torch.autograd.gradcheck(
        lambda x, y, p, q: sw_alignment_loss(x, y, p, soft_map_12=q, n_projections=8,
                                             generator=torch.Generator().manual_seed(3)), (f1, f2, p21, p12))


# -- NaN and errors ------------------------------------------------------------------------------------------------


def test_nan_raises_with_checks_and_propagates_without():
    t = _tiny(3)
    f1 = t["f1"].clone()
    f1[2, 1] = float("nan")
    args = (f1, t["f2"], t["phi1"], t["phi2"], t["m1"], t["m2"], t["e1"], t["e2"])
    with pytest.raises(ValidationError, match="feat_1: contains 1 NaN"):
        fmap_layer(*args)
    with pytest.raises(ValidationError, match="feat_1: contains 1 NaN"):
        soft_map_softmax(f1, t["f2"])
    with pytest.raises(ValidationError, match="feat_1: contains 1 NaN"):
        sw_alignment_loss(f1, t["f2"], torch.full((6, 7), 1 / 7, dtype=DT))
    c = torch.eye(3, dtype=DT)
    c_nan = c.clone()
    c_nan[0, 0] = float("nan")
    with pytest.raises(ValidationError, match="fmap_12: contains 1 NaN"):
        orthogonality_loss(c_nan)
    pi_nan = torch.full((6, 7), 1 / 7, dtype=DT)
    pi_nan[3, 4] = float("nan")
    with pytest.raises(ValidationError, match="soft_map_21: contains 1 NaN"):
        coupling_loss(c, pi_nan, t["phi1"], t["phi2"], t["m2"])
    with pytest.raises(ValidationError, match="soft_map_21: contains 1 NaN"):
        sw_alignment_loss(t["f1"], t["f2"], pi_nan)
    with geomot.data_checks(False):
        out = fmap_layer(*args)
        assert torch.isnan(out.fmap_12).all() and torch.isnan(out.fmap_21).all()
        pi = soft_map_softmax(f1, t["f2"])
        assert torch.isnan(pi[:, 2]).all()
        assert torch.isnan(sw_alignment_loss(f1, t["f2"], pi))
        for value in (bijectivity_loss(c_nan, c), orthogonality_loss(c_nan),
                      laplacian_commutativity_loss(c_nan, t["e1"], t["e2"]),
                      coupling_loss(c_nan, pi, t["phi1"], t["phi2"], t["m2"])):
            assert torch.isnan(value)
    # padding may hold NaN: it is ignored
    f1b = torch.cat([t["f1"], torch.full((2, 4), float("nan"), dtype=DT)])[None]
    pi = soft_map_softmax(f1b, t["f2"][None], lengths_1=torch.tensor([7]))
    torch.testing.assert_close(pi[0, :, :7], soft_map_softmax(t["f1"], t["f2"]))


def test_errors():
    t = _tiny(4)
    args = [t["f1"], t["f2"], t["phi1"], t["phi2"], t["m1"], t["m2"], t["e1"], t["e2"]]
    with pytest.raises(ShapeError, match="feat_2: expected 4 feature channels"):
        fmap_layer(args[0], args[1][:, :3], *args[2:])
    b1 = [a[None] for a in args]
    b2 = [a[None].expand(2, *a.shape) for a in args]
    with pytest.raises(ShapeError, match="feat_2: expected a batch of 1 items"):
        fmap_layer(b1[0], b2[1], b1[2], b2[3], b1[4], b2[5], b1[6], b2[7])
    with pytest.raises(ShapeError, match="evecs_1: expected"):
        fmap_layer(args[0], args[1], args[2][:5], *args[3:])
    with pytest.raises(ShapeError, match="mass_2: expected"):
        fmap_layer(*args[:5], args[5][:, None], *args[6:])
    with pytest.raises(ShapeError, match=r"evals_2: expected shape \(3,\)"):
        fmap_layer(*args[:7], args[7][:2])
    with pytest.raises(ShapeError, match="lengths_1: only valid with batched"):
        fmap_layer(*args, lengths_1=torch.tensor([7]))
    with pytest.raises(ValidationError, match=r"lengths_2: values must lie in \[1, 6\]"):
        fmap_layer(*[a[None] for a in args], lengths_2=torch.tensor([9]))
    with pytest.raises(ValidationError, match="mask: unknown mask 'nope'"):
        fmap_layer(*args, mask="nope")
    with pytest.raises(ValidationError, match="lambda_: expected a non-negative value"):
        fmap_layer(*args, lambda_=-1.0)
    with pytest.raises(ValidationError, match="gamma: expected a positive value"):
        fmap_layer(*args, gamma=0.0)
    with pytest.raises(ShapeError, match=r"feat_1: expected a \(V, d\) or \(B, V, d\) tensor"):
        soft_map_softmax(t["f1"][0], t["f2"])
    for tau in (0.0, -1.0):
        with pytest.raises(ValidationError, match="tau: expected a positive value"):
            soft_map_softmax(t["f1"], t["f2"], tau=tau)
    with pytest.raises(ValidationError, match="eps: expected a positive value"):
        soft_map_sinkhorn(t["f1"], t["f2"], eps=0.0)
    with pytest.raises(ValidationError, match="cost: unknown soft map cost 'l1'"):
        soft_map_sinkhorn(t["f1"], t["f2"], cost="l1")
    with pytest.raises(ValidationError, match="grad: expected one of envelope, unroll"):
        soft_map_sinkhorn(t["f1"], t["f2"], grad="none")
    with pytest.raises(ValidationError, match="max_iter: expected an integer >= 1"):
        soft_map_sinkhorn(t["f1"], t["f2"], max_iter=0)
    with pytest.raises(ShapeError, match="weights_1: expected"):
        soft_map_sinkhorn(t["f1"], t["f2"], weights_1=t["m2"])
    with pytest.raises(ValidationError, match="weights_2: weights must be non-negative"):
        soft_map_sinkhorn(t["f1"], t["f2"], weights_2=-t["m2"])
    with pytest.raises(ShapeError, match="soft_map_21: expected"):
        fmap_from_soft_map(torch.ones(6, 5, dtype=DT), t["phi1"], t["phi2"], t["m2"])
    with pytest.raises(ShapeError, match=r"feat_2: expected dtype torch\.float64"):
        soft_map_softmax(t["f1"], t["f2"].float())
    # the Module shell checks its settings at construction
    with pytest.raises(ValidationError, match="soft_map: unknown soft map 'hard'"):
        DeepFunctionalMap(soft_map="hard")
    with pytest.raises(ValidationError, match=r"soft_map_options: unknown setting.*'eps'"):
        DeepFunctionalMap(soft_map_options={"eps": 0.1})
    with pytest.raises(ValidationError, match="tau: expected a positive value"):
        DeepFunctionalMap(soft_map_options={"tau": 0})
    with pytest.raises(ValidationError, match="eps: expected a positive value"):
        DeepFunctionalMap(soft_map="sinkhorn", soft_map_options={"eps": -1})
    with pytest.raises(ValidationError, match="mass_marginals: only used with soft_map='sinkhorn'"):
        DeepFunctionalMap(mass_marginals=True)
    with pytest.raises(ValidationError, match="mask: unknown mask"):
        DeepFunctionalMap(mask="x")


def test_loss_errors():
    t = _tiny(5)
    c = torch.eye(3, dtype=DT)
    pi = torch.full((6, 7), 1 / 7, dtype=DT)
    with pytest.raises(ShapeError, match=r"fmap_21: expected shape \(4, 3\)"):
        bijectivity_loss(torch.ones(3, 4, dtype=DT), torch.ones(3, 4, dtype=DT))
    with pytest.raises(ShapeError, match="fmap_12: expected a 2-D or 3-D tensor"):
        orthogonality_loss(torch.ones(3, dtype=DT))
    with pytest.raises(ShapeError, match="fmap_21: expected a 3-D tensor"):
        orthogonality_loss(c[None], c)
    with pytest.raises(ShapeError, match=r"fmap_21: expected shape \(2, 3, 3\)"):
        orthogonality_loss(torch.stack([c, c]), c[None])
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none'"):
        orthogonality_loss(c, reduction="max")
    with pytest.raises(ShapeError, match=r"evals_1: expected shape \(3,\)"):
        laplacian_commutativity_loss(c, t["e1"][:2], t["e2"])
    with pytest.raises(ShapeError, match=r"soft_map_21: expected shape \(6, 7\)"):
        coupling_loss(c, pi.T, t["phi1"], t["phi2"], t["m2"])
    with pytest.raises(ShapeError, match=r"evecs_2: expected shape \(V, 3\)"):
        coupling_loss(c, pi, t["phi1"], t["phi2"][:, :2], t["m2"])
    with pytest.raises(ValidationError, match="soft_map_12, mass_1: required with fmap_21"):
        coupling_loss(c, pi, t["phi1"], t["phi2"], t["m2"], fmap_21=c)
    with pytest.raises(ValidationError, match="fmap_21: required with soft_map_12"):
        coupling_loss(c, pi, t["phi1"], t["phi2"], t["m2"], soft_map_12=pi.T)
    with pytest.raises(ShapeError, match=r"feat_2: expected shape \(V, 4\)"):
        sw_alignment_loss(t["f1"], t["f2"][:, :2], pi)
    with pytest.raises(ValidationError, match="n_projections: expected an integer >= 1"):
        sw_alignment_loss(t["f1"], t["f2"], pi, n_projections=0)
    with pytest.raises(ValidationError, match=r"p: expected a value >= 1\.0"):
        sw_alignment_loss(t["f1"], t["f2"], pi, p=0.5)
    with pytest.raises(ShapeError, match="lengths_1: only valid with batched"):
        sw_alignment_loss(t["f1"], t["f2"], pi, lengths_1=torch.tensor([7]))
    with pytest.raises(ValidationError, match="fmap_21: required by the bijectivity term"):
        unsupervised_fmap_loss(c)
    with pytest.raises(ValidationError, match="soft_map_21, evecs_1, evecs_2, mass_2: required by the coupling"):
        unsupervised_fmap_loss(c, c, w_sw=0)
    with pytest.raises(ValidationError, match="soft_map_12: required by the bidirectional sliced-Wasserstein"):
        unsupervised_fmap_loss(c, c, w_bij=0, w_orth=0, w_couple=0, feat_1=t["f1"], feat_2=t["f2"], soft_map_21=pi)
    with pytest.raises(ValidationError, match="w_bij, w_orth, w_lap, w_couple, w_sw: at least one weight"):
        unsupervised_fmap_loss(c, c, w_bij=0, w_orth=0, w_couple=0, w_sw=0)
    with pytest.raises(ValidationError, match="w_sw: expected a non-negative value"):
        UnsupervisedFmapLoss(w_sw=-1)
    with pytest.raises(ValidationError, match="at least one weight must be positive"):
        UnsupervisedFmapLoss(w_bij=0, w_orth=0, w_couple=0, w_sw=0)
    with pytest.raises(ValidationError, match="'w_lap': set it at construction"):
        UnsupervisedFmapLoss()(c, c, w_lap=1.0)
