"""ZoomOut: spectral upsampling of a functional map (Melzi et al. 2019), plain, adjoint and bijective.

Starting from ``fmap_12 (k0, k0)``, each iteration converts the map to a point-to-point map in the current basis
size ``k`` and back to a functional map of size ``k + step``: ``p2p_21 = NN(Phi_1 C^T, Phi_2)``, then
``C <- Phi_2^+ Phi_1[p2p_21]`` in ``k + step`` eigenfunctions. With ``samples2`` the updates use only those
vertices of shape 2 (the "fast ZoomOut" of the paper), the final map is computed on every vertex.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_int
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.p2p import p2p_from_fmap

__all__ = ["ZoomOutResult", "bijective_zoomout", "fixed_size_iterations", "zoomout"]


class ZoomOutResult(NamedTuple):
    """Result of :func:`zoomout` / :func:`bijective_zoomout`.

    Attributes:
        fmap_12: ``(k_final, k_final)``.
        p2p_21: ``(V2,)`` for each vertex of shape 2, its match on shape 1.
        fmap_21: ``(k_final, k_final)`` (bijective ZoomOut) or None.
        p2p_12: ``(V1,)`` (bijective ZoomOut) or None.
    """

    fmap_12: torch.Tensor
    p2p_21: torch.Tensor
    fmap_21: torch.Tensor | None = None
    p2p_12: torch.Tensor | None = None


def _schedule(k0: int, k_final: int, step: int, n_max1: int, n_max2: int) -> list[int]:
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValidationError(f"step: expected a positive integer, got {step!r}")
    if isinstance(k_final, bool) or not isinstance(k_final, int) or not k0 <= k_final <= min(n_max1, n_max2):
        raise ValidationError(
            f"k_final: expected an integer in [{k0}, {min(n_max1, n_max2)}] (initial fmap size, basis sizes), "
            f"got {k_final!r}"
        )
    ks = list(range(k0 + step, k_final, step))
    return [*ks, k_final] if k_final > k0 else []


def _check(fmap: torch.Tensor, evecs1: torch.Tensor, evecs2: torch.Tensor, name: str, bases_finite: bool = True) -> int:
    check_float_tensor(fmap, name, ndim=2)
    check_float_tensor(evecs1, "evecs1", ndim=2, finite=bases_finite)
    check_float_tensor(evecs2, "evecs2", ndim=2, finite=bases_finite)
    if fmap.shape[0] != fmap.shape[1]:
        raise ShapeError(f"{name}: expected a square (k, k) map, got shape {tuple(fmap.shape)}")
    return fmap.shape[0]


def zoomout(
    fmap_12: torch.Tensor,
    evecs1: torch.Tensor,
    evecs2: torch.Tensor,
    *,
    k_final: int,
    step: int = 1,
    samples2: torch.Tensor | None = None,
    samples1: torch.Tensor | None = None,
    adjoint: bool = False,
    final_map: bool = True,
) -> ZoomOutResult:
    """ZoomOut refinement of ``fmap_12`` (Melzi et al. 2019, Alg. 1).

    Args:
        fmap_12: ``(k0, k0)`` initial map.
        evecs1: ``(V1, K1)``; evecs2: ``(V2, K2)`` bases with ``K1, K2 >= k_final``.
        k_final: final basis size.
        step: increase of ``k`` per iteration.
        samples2: ``(S,)`` vertex indices of shape 2 used for the intermediate updates (all when None).
        samples1: ``(S1,)`` vertex indices of shape 1 allowed as intermediate matches (all when None); a coarse
            search for quick previews, the final map always searches every vertex.
        adjoint: use the adjoint nearest-neighbour rule (:func:`geomot.correspondence.p2p.p2p_from_fmap`).
        final_map: compute the final ``p2p_21`` on every vertex (otherwise it is the map of the samples only).

    Returns:
        :class:`ZoomOutResult` with ``fmap_12 (k_final, k_final)`` and ``p2p_21 (V2,)`` (``(S,)`` without
        ``final_map``).
    """
    C, e2 = _zoomout_fmap(
        fmap_12, evecs1, evecs2, k_final=k_final, step=step, samples2=samples2, samples1=samples1, adjoint=adjoint
    )
    k = C.shape[0]
    full = evecs2 if final_map else e2
    return ZoomOutResult(C, p2p_from_fmap(C, evecs1[:, :k], full[:, :k], adjoint=adjoint))


def _zoomout_fmap(
    fmap_12: torch.Tensor,
    evecs1: torch.Tensor,
    evecs2: torch.Tensor,
    *,
    k_final: int,
    step: int = 1,
    samples2: torch.Tensor | None = None,
    samples1: torch.Tensor | None = None,
    adjoint: bool = False,
    check_bases: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The functional map of :func:`zoomout` (same arguments) without its last nearest-neighbour search, and the
    rows of ``evecs2`` it was fitted on (``evecs2[samples2]``, or ``evecs2``). ``check_bases=False`` skips the
    NaN / Inf scan of the bases (for callers that pass the same checked bases many times)."""
    k = _check(fmap_12, evecs1, evecs2, "fmap_12", bases_finite=check_bases)
    ks = _schedule(k, k_final, step, evecs1.shape[1], evecs2.shape[1])
    e2 = evecs2
    if samples2 is not None:
        check_index_tensor(samples2, "samples2", size=evecs2.shape[0])
        e2 = evecs2[samples2.long()]
    C = fmap_12
    # least squares on nested column sets: one QR of the largest basis, then triangular solves
    Q, R = torch.linalg.qr(e2[:, :k_final]) if ks else (None, None)
    s1 = None
    if samples1 is not None:
        s1 = check_index_tensor(samples1, "samples1", size=evecs1.shape[0]).long()
    e1 = evecs1 if s1 is None else evecs1[s1]
    for k_new in ks:
        p2p = p2p_from_fmap(C, e1[:, :k], e2[:, :k], adjoint=adjoint)
        if s1 is not None:
            p2p = s1[p2p]
        rhs = Q[:, :k_new].T @ evecs1[p2p, :k_new]
        C = torch.linalg.solve_triangular(R[:k_new, :k_new], rhs, upper=True)
        k = k_new
    return C, e2


@renamed_kwargs(n_iter="max_iter")
def fixed_size_iterations(
    fmap_12: torch.Tensor,
    evecs1: torch.Tensor,
    evecs2: torch.Tensor,
    mass2: torch.Tensor,
    *,
    max_iter: int = 2,
) -> ZoomOutResult:
    """ZoomOut iterations at a fixed basis size on every vertex (the last step of ZoomOut, repeated).

    ``p2p_21 = NN(Phi_1 C^T, Phi_2)`` over all vertices, then ``C <- Phi_2^T M_2 Phi_1[p2p_21]`` (the
    ``M_2``-orthogonal projection of the pulled-back basis, exact for an ``M_2``-orthonormal ``Phi_2``), ``max_iter``
    times, then a last nearest-neighbour map. ZoomOut run on samples of shape 2 (its fast variant) ends with a map
    fitted to those samples only; these iterations refit it to the whole surface at a cost of one dense
    nearest-neighbour search each (Melzi et al. 2019, Alg. 1 at constant ``k``).

    Args:
        fmap_12: ``(k, k)``.
        evecs1: ``(V1, K1)``; evecs2: ``(V2, K2)`` with ``K1, K2 >= k``; evecs2 must hold every vertex of shape 2.
        mass2: ``(V2,)`` lumped mass of shape 2.
        max_iter: number of refits (``0``: the nearest-neighbour map of ``fmap_12`` only; ``n_iter`` is a
            deprecated alias).

    Returns:
        :class:`ZoomOutResult` with ``fmap_12 (k, k)`` (the last refit) and ``p2p_21 (V2,)``.
    """
    k = _check(fmap_12, evecs1, evecs2, "fmap_12")
    max_iter = check_int(max_iter, "max_iter", at_least=0)
    if k > min(evecs1.shape[1], evecs2.shape[1]):
        raise ShapeError(f"fmap_12: size {k} exceeds the bases ({evecs1.shape[1]}, {evecs2.shape[1]} columns)")
    check_float_tensor(mass2, "mass2", ndim=1)
    if mass2.shape[0] != evecs2.shape[0]:
        raise ShapeError(f"mass2: expected shape ({evecs2.shape[0]},) (rows of evecs2), got {tuple(mass2.shape)}")
    e1, e2 = evecs1[:, :k], evecs2[:, :k]
    me2 = (mass2.to(e2.dtype)[:, None] * e2).T  # (k, V2)
    C = fmap_12
    p2p = p2p_from_fmap(C, e1, e2)
    for _ in range(max_iter):
        C = me2 @ e1[p2p]
        p2p = p2p_from_fmap(C, e1, e2)
    return ZoomOutResult(C, p2p)


def _fit_two_sided(
    p2p_21: torch.Tensor, p2p_12: torch.Tensor, evecs1: torch.Tensor, evecs2: torch.Tensor,
    rows1: torch.Tensor, rows2: torch.Tensor,
) -> torch.Tensor:
    """Least squares ``C (k2, k1)`` with ``Phi_2[rows2] C ~ Phi_1[p2p_21]`` and ``Phi_2[p2p_12] C ~ Phi_1[rows1]``."""
    lhs = torch.cat([evecs2[rows2], evecs2[p2p_12]], 0)
    rhs = torch.cat([evecs1[p2p_21], evecs1[rows1]], 0)
    return torch.linalg.lstsq(lhs, rhs).solution


def bijective_zoomout(
    fmap_12: torch.Tensor,
    fmap_21: torch.Tensor,
    evecs1: torch.Tensor,
    evecs2: torch.Tensor,
    *,
    k_final: int,
    step: int = 1,
    samples1: torch.Tensor | None = None,
    samples2: torch.Tensor | None = None,
) -> ZoomOutResult:
    """Bijective ZoomOut: both directions are upsampled together, each fmap fitted to both point maps.

    At size ``k``: ``p2p_21 = NN(Phi_1 C_12^T, Phi_2)``, ``p2p_12 = NN(Phi_2 C_21^T, Phi_1)``; at ``k + step``
    ``C_12 = argmin ||Phi_2 C - Phi_1[p2p_21]||^2 + ||Phi_2[p2p_12] C - Phi_1||^2`` and symmetrically ``C_21``, so
    that each fmap is consistent with a map and with the inverse of the other (the bijectivity of Ren et al.
    2018 and of the ZoomOut paper's Sec. 5).

    Args:
        fmap_12: ``(k0, k0)``; fmap_21: ``(k0, k0)``.
        evecs1: ``(V1, K1)``; evecs2: ``(V2, K2)``.
        k_final, step: schedule as in :func:`zoomout`.
        samples1, samples2: vertex subsets used for the intermediate updates (all when None).

    Returns:
        :class:`ZoomOutResult` with all four fields.
    """
    k = _check(fmap_12, evecs1, evecs2, "fmap_12")
    if _check(fmap_21, evecs2, evecs1, "fmap_21") != k:
        raise ShapeError(f"fmap_21: expected shape ({k}, {k}) like fmap_12, got {tuple(fmap_21.shape)}")
    ks = _schedule(k, k_final, step, evecs1.shape[1], evecs2.shape[1])
    dev = evecs1.device
    s1 = torch.arange(evecs1.shape[0], device=dev) if samples1 is None else samples1.long()
    s2 = torch.arange(evecs2.shape[0], device=dev) if samples2 is None else samples2.long()
    check_index_tensor(s1, "samples1", size=evecs1.shape[0])
    check_index_tensor(s2, "samples2", size=evecs2.shape[0])
    C12, C21 = fmap_12, fmap_21
    for k_new in ks:
        p21 = p2p_from_fmap(C12, evecs1[:, :k], evecs2[s2, :k])  # (S2,) into shape 1
        p12 = p2p_from_fmap(C21, evecs2[:, :k], evecs1[s1, :k])  # (S1,) into shape 2
        C12 = _fit_two_sided(p21, p12, evecs1[:, :k_new], evecs2[:, :k_new], s1, s2)
        C21 = _fit_two_sided(p12, p21, evecs2[:, :k_new], evecs1[:, :k_new], s2, s1)
        k = k_new
    p21 = p2p_from_fmap(C12, evecs1[:, :k], evecs2[:, :k])
    p12 = p2p_from_fmap(C21, evecs2[:, :k], evecs1[:, :k])
    return ZoomOutResult(C12, p21, C21, p12)
