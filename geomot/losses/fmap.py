"""Unsupervised losses of deep functional maps, and the sliced-Wasserstein feature alignment of Le et al. 2024.

Inputs are the outputs of :mod:`geomot.correspondence.deep`: ``fmap_12 (B, k2, k1)``, ``fmap_21 (B, k1, k2)``,
soft point maps ``soft_map_21 (B, V2, V1)`` / ``soft_map_12 (B, V1, V2)`` (rows: distributions over the other
shape), the features, bases and masses of both shapes (padded, with ``lengths_1`` / ``lengths_2``; unbatched
``(k2, k1)`` / ``(V, .)`` tensors give unbatched values). Every term is a squared Frobenius norm per item, summed
over both directions when both maps are given, then reduced over the batch (``reduction="mean"|"sum"|"none"``):

* bijectivity ``||C12 C21 - I||^2 + ||C21 C12 - I||^2``;
* orthogonality ``||C12^T C12 - I||^2 (+ ||C21^T C21 - I||^2)`` (near-isometries have orthogonal maps);
* Laplacian commutativity ``||C12 Lambda1 - Lambda2 C12||^2 (+ the 21 side)``;
* coupling ``||C12 - Phi_2^T M_2 Pi_21 Phi_1||^2 (+ ||C21 - Phi_1^T M_1 Pi_12 Phi_2||^2)`` (ULRSSM's
  ``L_couple``: the map of the features agrees with the map their soft point map induces);
* sliced-Wasserstein alignment ``SW_2(F_2, Pi_21 F_1) (+ SW_2(F_1, Pi_12 F_2))`` (Le et al. 2024).

The first three are the SURFMNet regularisers (Roufosse, Sharma & Ovsjanikov, ICCV 2019) as ULRSSM uses them
(Cao, Roetzer & Bernard, "Unsupervised Learning of Robust Spectral Shape Matching", SIGGRAPH 2023); the last is
the biSW loss of Le, Nguyen, Sun, Ho & Xie, "Integrating Efficient Optimal Transport and Functional Maps For
Unsupervised Shape Correspondence Learning", CVPR 2024 (Sec. 4). :func:`unsupervised_fmap_loss` /
:class:`UnsupervisedFmapLoss` weight and add them.

Non-finite inputs raise :class:`~geomot._core.errors.ValidationError` while value checks are on; inside
``geomot.data_checks(False)`` they give NaN.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from geomot._core.batch import mask_from_lengths
from geomot._core.checks import (
    check_finite,
    check_float_tensor,
    check_int,
    check_lengths,
    check_positive,
    data_checks_enabled,
    describe,
)
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot.losses.sliced import make_directions, sliced_wasserstein

__all__ = [
    "FmapLossTerms",
    "UnsupervisedFmapLoss",
    "bijectivity_loss",
    "coupling_loss",
    "laplacian_commutativity_loss",
    "orthogonality_loss",
    "sw_alignment_loss",
    "unsupervised_fmap_loss",
]


# -- checks ----------------------------------------------------------------------------------------------------------


def _fmaps(
    fmap_12: object, fmap_21: object | None, *, required_21: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """``(C12 (B, k2, k1), C21 (B, k1, k2) or None, batched)``."""
    c12 = check_float_tensor(fmap_12, "fmap_12", ndim=(2, 3))
    batched = c12.dim() == 3
    c12 = c12 if batched else c12.unsqueeze(0)
    if fmap_21 is None:
        if required_21:
            raise ValidationError("fmap_21: required (this term compares the two directions), got None")
        return c12, None, batched
    c21 = check_float_tensor(fmap_21, "fmap_21", ndim=c12.dim() if batched else 2)
    c21 = c21 if batched else c21.unsqueeze(0)
    want = (c12.shape[0], c12.shape[2], c12.shape[1])
    if tuple(c21.shape) != want:
        raise ShapeError(f"fmap_21: expected shape {want if batched else want[1:]} (the transpose of fmap_12's "
                         f"(k2, k1) = {tuple(c12.shape[1:])}), got {tuple(fmap_21.shape)}")  # type: ignore[union-attr]
    if c21.dtype != c12.dtype or c21.device != c12.device:
        raise ShapeError(f"fmap_21: expected dtype {c12.dtype} on {c12.device} (that of fmap_12), got {describe(c21)}")
    return c12, c21, batched


def _identity_gap(m: torch.Tensor) -> torch.Tensor:
    """``||M - I||_F^2`` per item of ``M (B, k, k)``."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    return (m - eye).square().sum((-2, -1))


def _batched(x: object, name: str, *, batched: bool, rank: int, like: torch.Tensor) -> torch.Tensor:
    """``x`` as a ``rank``-D batched tensor (unbatched inputs have one dimension less), same dtype/device as
    ``like``; no value check yet (padding may hold anything)."""
    r = rank if batched else rank - 1
    t = check_float_tensor(x, name, ndim=r, finite=False)
    if t.dtype != like.dtype or t.device != like.device:
        raise ShapeError(f"{name}: expected dtype {like.dtype} on {like.device}, got {describe(t)}")
    return t if batched else t.unsqueeze(0)


def _expect(t: torch.Tensor, name: str, want: tuple[int | None, ...], given: object, batched: bool) -> None:
    """Raise unless ``t.shape`` matches ``want`` (None: any number of vertices, shown as ``V``)."""
    if len(want) != t.dim() or any(w is not None and w != n for w, n in zip(want, t.shape)):
        shown = ", ".join("V" if w is None else str(w) for w in (want if batched else want[1:]))
        raise ShapeError(f"{name}: expected shape ({shown}), got {tuple(given.shape)}")  # type: ignore[attr-defined]


def _masked(t: torch.Tensor, name: str, *lengths: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Zero the entries beyond ``lengths[0]`` along dim 1 (and ``lengths[1]`` along dim 2), then check the values
    (``check=False``: the caller checks them, see :func:`_apply_map`)."""
    keep = None
    for axis, ln in enumerate(lengths, start=1):
        if not bool((ln != t.shape[axis]).any()):
            continue
        m = mask_from_lengths(ln, t.shape[axis])
        m = m.view(t.shape[0], *([1] * (axis - 1)), t.shape[axis], *([1] * (t.dim() - axis - 1)))
        keep = m if keep is None else keep & m
    if keep is not None:
        t = torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))
    return check_finite(t, name) if check else t


def _apply_map(pi: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """``pi @ x`` for a soft map ``pi (B, R, C)`` and finite ``x (B, C, c)``. The value check of ``pi`` is done on
    the product, ``c / R`` times smaller: a NaN/Inf entry of ``pi`` makes its row of the product non-finite (IEEE:
    ``NaN * 0 = inf * 0 = NaN``), and only then is ``pi`` itself scanned, to name it."""
    out = pi @ x
    if data_checks_enabled() and not bool(torch.isfinite(out).all()):
        check_finite(pi, name)
        raise ValidationError(f"{name}: applying it to finite values overflowed (shape {tuple(pi.shape)})")
    return out


def _lengths(lengths: torch.Tensor | None, name: str, *, batch: int, size: int, batched: bool, device) -> torch.Tensor:
    if lengths is None:
        return torch.full((batch,), size, dtype=torch.long, device=device)
    if not batched:
        raise ShapeError(f"{name}: only valid with batched (B, ...) inputs")
    return check_lengths(lengths, name, batch=batch, max_len=size, device=device)


# -- the regularisers of the functional maps -------------------------------------------------------------------------


def bijectivity_loss(fmap_12: torch.Tensor, fmap_21: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Bijectivity ``||C12 C21 - I_k2||_F^2 + ||C21 C12 - I_k1||_F^2`` per item (SURFMNet; ULRSSM, both orders).

    Args:
        fmap_12: ``(k2, k1)`` / ``(B, k2, k1)``; fmap_21: ``(k1, k2)`` / ``(B, k1, k2)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``, or ``()`` unbatched) over the batch.
    """
    check_reduction(reduction)
    c12, c21, batched = _fmaps(fmap_12, fmap_21, required_21=True)
    value = _identity_gap(c12 @ c21) + _identity_gap(c21 @ c12)
    return reduce(value, reduction, batched=batched)


def orthogonality_loss(
    fmap_12: torch.Tensor, fmap_21: torch.Tensor | None = None, *, reduction: str = "mean"
) -> torch.Tensor:
    """Orthogonality ``||C12^T C12 - I_k1||_F^2`` (``+ ||C21^T C21 - I_k2||_F^2`` when ``fmap_21`` is given) per
    item: area-preserving maps have orthogonal functional maps (Ovsjanikov et al. 2012; SURFMNet; ULRSSM).

    Args:
        fmap_12: ``(k2, k1)`` / ``(B, k2, k1)``; fmap_21: ``(k1, k2)`` / ``(B, k1, k2)`` or None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """
    check_reduction(reduction)
    c12, c21, batched = _fmaps(fmap_12, fmap_21)
    value = _identity_gap(c12.transpose(-1, -2) @ c12)
    if c21 is not None:
        value = value + _identity_gap(c21.transpose(-1, -2) @ c21)
    return reduce(value, reduction, batched=batched)


def _commutator(c: torch.Tensor, ev_src: torch.Tensor, ev_dst: torch.Tensor) -> torch.Tensor:
    """``||C Lambda_src - Lambda_dst C||^2 = sum_ij C_ij^2 (lambda_src_j - lambda_dst_i)^2`` per item."""
    return (c * (ev_src[:, None, :] - ev_dst[:, :, None])).square().sum((-2, -1))


def laplacian_commutativity_loss(
    fmap_12: torch.Tensor,
    evals_1: torch.Tensor,
    evals_2: torch.Tensor,
    *,
    fmap_21: torch.Tensor | None = None,
    normalize: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Laplacian commutativity ``||C12 Lambda1 - Lambda2 C12||_F^2`` (``+ ||C21 Lambda2 - Lambda1 C21||_F^2``)
    per item; isometries commute with the Laplace-Beltrami operator (Ovsjanikov et al. 2012).

    With ``normalize=True`` both spectra are divided by their common maximum ``max(lambda1_max, lambda2_max)``
    per item, as the resolvent mask of the functional-map layer does (Ren et al. 2019; ULRSSM's ``get_mask``), so
    the term does not depend on the shapes' scale and lies on the same ``O(k)`` scale as the others. ULRSSM's
    SURFMNet loss applies raw eigenvalues, with this term's weight set to 0 in its published configurations;
    ``normalize=False`` gives that raw form.

    Args:
        fmap_12: ``(k2, k1)`` / ``(B, k2, k1)``.
        evals_1: ``(k1,)`` / ``(B, k1)``; evals_2: ``(k2,)`` / ``(B, k2)``.
        fmap_21: ``(k1, k2)`` / ``(B, k1, k2)`` or None.
        normalize: divide the eigenvalues by their common maximum.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """
    check_reduction(reduction)
    c12, c21, batched = _fmaps(fmap_12, fmap_21)
    e = []
    for name, ev, k in (("evals_1", evals_1, c12.shape[2]), ("evals_2", evals_2, c12.shape[1])):
        t = check_float_tensor(ev, name)
        want = (c12.shape[0], k) if batched else (k,)
        if tuple(t.shape) != want:
            raise ShapeError(f"{name}: expected shape {want} (k from fmap_12), got {tuple(t.shape)}")
        if t.dtype != c12.dtype or t.device != c12.device:
            raise ShapeError(f"{name}: expected dtype {c12.dtype} on {c12.device}, got {describe(t)}")
        e.append(t if batched else t.unsqueeze(0))
    e1, e2 = e
    if normalize:
        scale = torch.maximum(e1.amax(-1), e2.amax(-1)).clamp_min(torch.finfo(e1.dtype).tiny)[:, None]
        e1, e2 = e1 / scale, e2 / scale
    value = _commutator(c12, e1, e2)
    if c21 is not None:
        value = value + _commutator(c21, e2, e1)
    return reduce(value, reduction, batched=batched)


# -- coupling of functional and soft point maps ----------------------------------------------------------------------


def _induced(
    pi: torch.Tensor, phi_src: torch.Tensor, phi_dst: torch.Tensor, mass_dst: torch.Tensor, name: str
) -> torch.Tensor:
    """``Phi_dst^T M_dst Pi Phi_src`` ``(B, k_dst, k_src)``."""
    return phi_dst.transpose(-1, -2) @ (mass_dst[..., None] * _apply_map(pi, phi_src, name))


def coupling_loss(
    fmap_12: torch.Tensor,
    soft_map_21: torch.Tensor,
    evecs_1: torch.Tensor,
    evecs_2: torch.Tensor,
    mass_2: torch.Tensor,
    *,
    fmap_21: torch.Tensor | None = None,
    soft_map_12: torch.Tensor | None = None,
    mass_1: torch.Tensor | None = None,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Coupling of functional and soft point maps (ULRSSM's ``L_couple``, Cao et al. 2023):
    ``||C12 - Phi_2^T M_2 Pi_21 Phi_1||_F^2`` (``+ ||C21 - Phi_1^T M_1 Pi_12 Phi_2||_F^2`` with ``fmap_21``,
    ``soft_map_12`` and ``mass_1``) per item. Time ``O(B V1 V2 k)``.

    Args:
        fmap_12: ``(k2, k1)`` / ``(B, k2, k1)``.
        soft_map_21: ``(V2, V1)`` / ``(B, V2, V1)`` (rows on shape 2).
        evecs_1: ``(V1, k1)`` / ``(B, V1, k1)``; evecs_2: ``(V2, k2)`` / ``(B, V2, k2)``.
        mass_2: ``(V2,)`` / ``(B, V2)``.
        fmap_21: ``(k1, k2)`` / ``(B, k1, k2)`` or None; soft_map_12: ``(V1, V2)`` / ``(B, V1, V2)``;
            mass_1: ``(V1,)`` / ``(B, V1)``: the other direction, all three or none.
        lengths_1: ``(B,)`` real vertex counts of padded shape-1 tensors; lengths_2 likewise.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """
    check_reduction(reduction)
    c12, c21, batched = _fmaps(fmap_12, fmap_21)
    other = {"soft_map_12": soft_map_12, "mass_1": mass_1}
    if c21 is not None and any(v is None for v in other.values()):
        missing = [k for k, v in other.items() if v is None]
        raise ValidationError(f"{', '.join(missing)}: required with fmap_21 (the 21 coupling term)")
    if c21 is None and any(v is not None for v in other.values()):
        raise ValidationError("fmap_21: required with soft_map_12 / mass_1 (the 21 coupling term)")
    bsz, k2, k1 = c12.shape
    phi1 = _batched(evecs_1, "evecs_1", batched=batched, rank=3, like=c12)
    phi2 = _batched(evecs_2, "evecs_2", batched=batched, rank=3, like=c12)
    _expect(phi1, "evecs_1", (bsz, None, k1), evecs_1, batched)
    _expect(phi2, "evecs_2", (bsz, None, k2), evecs_2, batched)
    v1, v2 = phi1.shape[1], phi2.shape[1]
    l1 = _lengths(lengths_1, "lengths_1", batch=bsz, size=v1, batched=batched, device=c12.device)
    l2 = _lengths(lengths_2, "lengths_2", batch=bsz, size=v2, batched=batched, device=c12.device)
    m2 = _batched(mass_2, "mass_2", batched=batched, rank=2, like=c12)
    _expect(m2, "mass_2", (bsz, v2), mass_2, batched)
    p21 = _batched(soft_map_21, "soft_map_21", batched=batched, rank=3, like=c12)
    _expect(p21, "soft_map_21", (bsz, v2, v1), soft_map_21, batched)
    phi1, phi2 = _masked(phi1, "evecs_1", l1), _masked(phi2, "evecs_2", l2)
    m2, p21 = _masked(m2, "mass_2", l2), _masked(p21, "soft_map_21", l2, l1, check=False)
    value = (c12 - _induced(p21, phi1, phi2, m2, "soft_map_21")).square().sum((-2, -1))
    if c21 is not None:
        m1 = _batched(mass_1, "mass_1", batched=batched, rank=2, like=c12)
        _expect(m1, "mass_1", (bsz, v1), mass_1, batched)
        p12 = _batched(soft_map_12, "soft_map_12", batched=batched, rank=3, like=c12)
        _expect(p12, "soft_map_12", (bsz, v1, v2), soft_map_12, batched)
        m1, p12 = _masked(m1, "mass_1", l1), _masked(p12, "soft_map_12", l1, l2, check=False)
        value = value + (c21 - _induced(p12, phi2, phi1, m1, "soft_map_12")).square().sum((-2, -1))
    return reduce(value, reduction, batched=batched)


# -- sliced-Wasserstein feature alignment (Le et al. 2024) ----------------------------------------------------------


def sw_alignment_loss(
    feat_1: torch.Tensor,
    feat_2: torch.Tensor,
    soft_map_21: torch.Tensor,
    *,
    soft_map_12: torch.Tensor | None = None,
    n_projections: int = 200,
    p: float = 2.0,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sliced-Wasserstein alignment of one shape's features with the other's soft-mapped features (Le et al.,
    CVPR 2024, Sec. 4: the SW loss, and biSW with both directions).

    ``SW_p(mu_2, nu_21) (+ SW_p(mu_1, nu_12))`` per item, where ``mu_2 = (1/V2) sum_j delta_{F_2[j]}`` is the
    uniform measure on the features of shape 2 and ``nu_21 = (1/V2) sum_j delta_{(Pi_21 F_1)[j]}`` the uniform
    measure on the features of shape 1 pulled back to shape 2 by the soft map (likewise with 1 and 2 swapped).
    It vanishes when the soft map carries the features of shape 1 onto those of shape 2 up to a reordering, and it
    compares the feature clouds as measures, unlike a per-vertex ``||F_2 - Pi_21 F_1||^2``. Estimated by
    :func:`geomot.sliced_wasserstein` with ``L = n_projections`` random directions (Le et al.: ``L = 200``,
    ``p = 2``), one set shared by both directions and by the batch, drawn from ``generator``; the features are
    used as given (not normalised), as in the authors' code. Time ``O(B V1 V2 d + B L V log V)``.

    Args:
        feat_1: ``(V1, d)`` / ``(B, V1, d)``; feat_2: ``(V2, d)`` / ``(B, V2, d)``.
        soft_map_21: ``(V2, V1)`` / ``(B, V2, V1)``.
        soft_map_12: ``(V1, V2)`` / ``(B, V1, V2)`` or None (one direction only).
        n_projections: ``L``.
        p: order ``>= 1`` of ``SW_p`` (the root ``1/p`` is taken).
        lengths_1: ``(B,)`` real vertex counts of padded shape-1 tensors; lengths_2 likewise.
        generator: random generator of the directions.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
    """
    check_reduction(reduction)
    check_int(n_projections, "n_projections", at_least=1)
    check_positive(p, "p", at_least=1.0)
    f1 = check_float_tensor(feat_1, "feat_1", ndim=(2, 3), finite=False)
    batched = f1.dim() == 3
    f1 = f1 if batched else f1.unsqueeze(0)
    bsz, v1, d = f1.shape
    f2 = _batched(feat_2, "feat_2", batched=batched, rank=3, like=f1)
    _expect(f2, "feat_2", (bsz, None, d), feat_2, batched)
    v2 = f2.shape[1]
    p21 = _batched(soft_map_21, "soft_map_21", batched=batched, rank=3, like=f1)
    _expect(p21, "soft_map_21", (bsz, v2, v1), soft_map_21, batched)
    p12 = None
    if soft_map_12 is not None:
        p12 = _batched(soft_map_12, "soft_map_12", batched=batched, rank=3, like=f1)
        _expect(p12, "soft_map_12", (bsz, v1, v2), soft_map_12, batched)
    l1 = _lengths(lengths_1, "lengths_1", batch=bsz, size=v1, batched=batched, device=f1.device)
    l2 = _lengths(lengths_2, "lengths_2", batch=bsz, size=v2, batched=batched, device=f1.device)
    f1, f2 = _masked(f1, "feat_1", l1), _masked(f2, "feat_2", l2)
    p21 = _masked(p21, "soft_map_21", l2, l1, check=False)
    theta = make_directions(None, n_projections, d, batch=bsz, generator=generator, dtype=f1.dtype,
                            device=f1.device).T  # (d, L)
    lens = {} if lengths_1 is None and lengths_2 is None else {"x_lengths": l2, "y_lengths": l2}
    value = sliced_wasserstein(f2, _apply_map(p21, f1, "soft_map_21"), p=p, projections=theta, reduction="none",
                               **lens)
    if p12 is not None:
        p12 = _masked(p12, "soft_map_12", l1, l2, check=False)
        lens = {} if not lens else {"x_lengths": l1, "y_lengths": l1}
        value = value + sliced_wasserstein(f1, _apply_map(p12, f2, "soft_map_12"), p=p, projections=theta,
                                           reduction="none", **lens)
    return reduce(value, reduction, batched=batched)


# -- the combined loss -----------------------------------------------------------------------------------------------


class FmapLossTerms(NamedTuple):
    """Result of :func:`unsupervised_fmap_loss`.

    Attributes:
        total: ``sum_t w_t * terms[t]`` (reduced like ``reduction`` says).
        terms: the unweighted terms whose weight is positive, by name (``"bij"``, ``"orth"``, ``"lap"``,
            ``"couple"``, ``"sw"``).
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


_WEIGHTS = ("w_bij", "w_orth", "w_lap", "w_couple", "w_sw")


def _require(term: str, **tensors: object) -> None:
    missing = [k for k, v in tensors.items() if v is None]
    if missing:
        raise ValidationError(f"{', '.join(missing)}: required by the {term} term (its weight is positive)")


def unsupervised_fmap_loss(
    fmap_12: torch.Tensor,
    fmap_21: torch.Tensor | None = None,
    *,
    soft_map_21: torch.Tensor | None = None,
    soft_map_12: torch.Tensor | None = None,
    feat_1: torch.Tensor | None = None,
    feat_2: torch.Tensor | None = None,
    evecs_1: torch.Tensor | None = None,
    evecs_2: torch.Tensor | None = None,
    mass_1: torch.Tensor | None = None,
    mass_2: torch.Tensor | None = None,
    evals_1: torch.Tensor | None = None,
    evals_2: torch.Tensor | None = None,
    w_bij: float = 1.0,
    w_orth: float = 1.0,
    w_lap: float = 0.0,
    w_couple: float = 1.0,
    w_sw: float = 100.0,
    n_projections: int = 200,
    sw_bidirectional: bool = True,
    normalize_evals: bool = True,
    lengths_1: torch.Tensor | None = None,
    lengths_2: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> FmapLossTerms:
    """The unsupervised deep-functional-map loss ``w_bij L_bij + w_orth L_orth + w_lap L_lap + w_couple L_couple
    + w_sw L_sw`` (:func:`bijectivity_loss`, :func:`orthogonality_loss`, :func:`laplacian_commutativity_loss`,
    :func:`coupling_loss`, :func:`sw_alignment_loss`).

    Terms with weight 0 are not computed and need none of their inputs; with ``fmap_21`` given the regularisers
    and the coupling cover both directions (the coupling then needs ``soft_map_12`` and ``mass_1``), and
    ``sw_bidirectional`` adds ``SW(F_1, Pi_12 F_2)``. Default weights: ``w_bij = w_orth = 1``, ``w_lap = 0``,
    ``w_couple = 1`` are ULRSSM's (Cao et al. 2023, FAUST configuration: SURFMNet loss 1 / 1 / 0 and coupling 1);
    ``w_sw = 100`` with ``L = 200`` directions is Le et al. 2024's FAUST configuration (which uses one
    direction; the default here adds the reverse one, biSW).

    Args:
        fmap_12: ``(k2, k1)`` / ``(B, k2, k1)``; fmap_21: ``(k1, k2)`` / ``(B, k1, k2)`` or None.
        soft_map_21, soft_map_12, feat_1, feat_2, evecs_1, evecs_2, mass_1, mass_2, evals_1, evals_2: as in the
            term functions (keyword-only; needed by the terms that use them).
        w_bij, w_orth, w_lap, w_couple, w_sw: non-negative weights.
        n_projections: directions of the SW term.
        sw_bidirectional: both directions in the SW term (needs ``soft_map_12``).
        normalize_evals: eigenvalue normalisation of the Laplacian term.
        lengths_1, lengths_2: ``(B,)`` real vertex counts of padded inputs.
        generator: random generator of the SW directions.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch, applied to every term.

    Returns:
        :class:`FmapLossTerms` ``(total, terms)``.
    """
    weights = {k: check_positive(v, k, strict=False) for k, v in zip(_WEIGHTS, (w_bij, w_orth, w_lap, w_couple, w_sw))}
    check_reduction(reduction)
    terms: dict[str, torch.Tensor] = {}
    if weights["w_bij"] > 0:
        _require("bijectivity", fmap_21=fmap_21)
        terms["bij"] = bijectivity_loss(fmap_12, fmap_21, reduction=reduction)  # type: ignore[arg-type]
    if weights["w_orth"] > 0:
        terms["orth"] = orthogonality_loss(fmap_12, fmap_21, reduction=reduction)
    if weights["w_lap"] > 0:
        _require("Laplacian commutativity", evals_1=evals_1, evals_2=evals_2)
        terms["lap"] = laplacian_commutativity_loss(fmap_12, evals_1, evals_2, fmap_21=fmap_21,  # type: ignore[arg-type]
                                                    normalize=normalize_evals, reduction=reduction)
    if weights["w_couple"] > 0:
        _require("coupling", soft_map_21=soft_map_21, evecs_1=evecs_1, evecs_2=evecs_2, mass_2=mass_2)
        terms["couple"] = coupling_loss(
            fmap_12, soft_map_21, evecs_1, evecs_2, mass_2, fmap_21=fmap_21,  # type: ignore[arg-type]
            soft_map_12=soft_map_12 if fmap_21 is not None else None, mass_1=mass_1 if fmap_21 is not None else None,
            lengths_1=lengths_1, lengths_2=lengths_2, reduction=reduction,
        )
    if weights["w_sw"] > 0:
        _require("sliced-Wasserstein", feat_1=feat_1, feat_2=feat_2, soft_map_21=soft_map_21)
        if sw_bidirectional:
            _require("bidirectional sliced-Wasserstein", soft_map_12=soft_map_12)
        terms["sw"] = sw_alignment_loss(
            feat_1, feat_2, soft_map_21, soft_map_12=soft_map_12 if sw_bidirectional else None,  # type: ignore[arg-type]
            n_projections=n_projections, lengths_1=lengths_1, lengths_2=lengths_2, generator=generator,
            reduction=reduction,
        )
    if not terms:
        raise ValidationError(f"{', '.join(_WEIGHTS)}: at least one weight must be positive")
    names = {"bij": "w_bij", "orth": "w_orth", "lap": "w_lap", "couple": "w_couple", "sw": "w_sw"}
    total = sum(weights[names[k]] * v for k, v in terms.items())
    return FmapLossTerms(total, terms)  # type: ignore[arg-type]


class UnsupervisedFmapLoss(nn.Module):
    """Module shell of :func:`unsupervised_fmap_loss`: settings at construction, tensors per call.

    ``UnsupervisedFmapLoss(w_bij=1, w_orth=1, w_lap=0, w_couple=1, w_sw=100, n_projections=200)(fmap_12, fmap_21,
    soft_map_21=..., soft_map_12=..., feat_1=..., ..., generator=...)`` returns :class:`FmapLossTerms`. The
    defaults and their sources are those of :func:`unsupervised_fmap_loss`.
    """

    _settings = ("w_bij", "w_orth", "w_lap", "w_couple", "w_sw", "n_projections", "sw_bidirectional",
                 "normalize_evals", "reduction")

    def __init__(
        self,
        *,
        w_bij: float = 1.0,
        w_orth: float = 1.0,
        w_lap: float = 0.0,
        w_couple: float = 1.0,
        w_sw: float = 100.0,
        n_projections: int = 200,
        sw_bidirectional: bool = True,
        normalize_evals: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        ws = (w_bij, w_orth, w_lap, w_couple, w_sw)
        weights = {k: check_positive(v, k, strict=False) for k, v in zip(_WEIGHTS, ws)}
        if not any(weights.values()):
            raise ValidationError(f"{', '.join(_WEIGHTS)}: at least one weight must be positive")
        check_int(n_projections, "n_projections", at_least=1)
        check_reduction(reduction)
        self.settings: dict[str, Any] = {**weights, "n_projections": n_projections,
                                         "sw_bidirectional": bool(sw_bidirectional),
                                         "normalize_evals": bool(normalize_evals), "reduction": reduction}

    def forward(self, fmap_12: torch.Tensor, fmap_21: torch.Tensor | None = None, **inputs: Any) -> FmapLossTerms:
        bad = sorted(set(inputs) & set(self.settings))
        if bad:
            raise ValidationError(f"UnsupervisedFmapLoss.forward: {', '.join(map(repr, bad))}: set it at construction")
        return unsupervised_fmap_loss(fmap_12, fmap_21, **self.settings, **inputs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
