"""Functional maps: spectral projection, operators on spectral coefficients and the fmap solvers.

Convention (pyFM's): ``fmap_12 (k2, k1)`` maps spectral coefficients of functions on shape 1 to shape 2,
``fmap_12 @ (Phi_1^T M_1 f) ~ Phi_2^T M_2 (f o T_21)``, where ``T_21`` sends each point of shape 2 to shape 1.

Two solvers:

* :func:`regularized_fmap`: the closed-form, differentiable and batched solver of deep functional maps,
  ``C = argmin ||C A - B||^2 + lambda sum_ij mask_ij C_ij^2``, row by row, with the resolvent mask of Ren et al.
  2019 ("Structured regularization of functional map computations") as used by DUO-FMNet and ULRSSM, or the
  Laplacian-commutativity mask ``(lambda1_j - lambda2_i)^2``.
* :func:`fmap_from_descriptors`: the axiomatic solver (Ovsjanikov et al. 2012; Nogneng & Ovsjanikov 2017;
  Ren et al. 2018): descriptor preservation, Laplacian commutativity, descriptor (multiplicative) commutativity,
  orientation preservation and, optionally, bijectivity (solving for ``fmap_12`` and ``fmap_21`` jointly).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot.ops.geometry import face_areas_normals

__all__ = [
    "AxiomaticFmap",
    "descriptor_operators",
    "fmap_energy",
    "fmap_from_descriptors",
    "laplacian_mask",
    "orientation_operators",
    "point_orientation_operators",
    "project",
    "regularized_fmap",
    "resolvent_mask",
]

logger = logging.getLogger(__name__)


def project(f: torch.Tensor, evecs: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """Spectral coefficients ``Phi^T M f``.

    Args:
        f: ``(V, d)`` or ``(B, V, d)`` functions.
        evecs: ``(V, k)`` or ``(B, V, k)``.
        mass: ``(V,)`` or ``(B, V)`` lumped mass (zero on padding).

    Returns:
        ``(k, d)`` or ``(B, k, d)``.
    """
    if f.shape[:-1] != evecs.shape[:-1] or mass.shape != evecs.shape[:-1]:
        raise ShapeError(
            f"f: expected shape (..., V, d) with (..., V) = {tuple(evecs.shape[:-1])} (those of evecs and mass), "
            f"got f {tuple(f.shape)} and mass {tuple(mass.shape)}"
        )
    return evecs.transpose(-1, -2) @ (mass.unsqueeze(-1) * f)


def resolvent_mask(evals1: torch.Tensor, evals2: torch.Tensor, *, gamma: float = 0.5) -> torch.Tensor:
    """Resolvent mask of Ren et al. 2019 (eq. 9), ``(..., k2, k1)``.

    With eigenvalues divided by their common maximum and ``a = lambda1_j^gamma``, ``b = lambda2_i^gamma``:
    ``mask_ij = (b / (b^2 + 1) - a / (a^2 + 1))^2 + (1 / (b^2 + 1) - 1 / (a^2 + 1))^2``, the squared modulus of
    the difference of the resolvents ``1 / (lambda^gamma - i)``. Zero on the diagonal of isometric spectra.

    Args:
        evals1: ``(k1,)`` or ``(B, k1)``; evals2: ``(k2,)`` or ``(B, k2)``.
        gamma: exponent of the eigenvalues.
    """
    check_positive(gamma, "gamma")
    scale = torch.maximum(evals1.max(-1, keepdim=True).values, evals2.max(-1, keepdim=True).values).clamp_min(1e-30)
    a = ((evals1 / scale).clamp_min(0) ** gamma).unsqueeze(-2)
    b = ((evals2 / scale).clamp_min(0) ** gamma).unsqueeze(-1)
    re = b / (b * b + 1) - a / (a * a + 1)
    im = 1 / (b * b + 1) - 1 / (a * a + 1)
    return re * re + im * im


def laplacian_mask(evals1: torch.Tensor, evals2: torch.Tensor) -> torch.Tensor:
    """Laplacian-commutativity mask ``(lambda1_j - lambda2_i)^2 / max(lambda)^2``, ``(..., k2, k1)``.

    ``sum_ij mask_ij C_ij^2 = ||C Lambda_1 - Lambda_2 C||^2 / max(lambda)^2`` (Ovsjanikov et al. 2012).
    """
    scale = torch.maximum(evals1.max(-1, keepdim=True).values, evals2.max(-1, keepdim=True).values).clamp_min(1e-30)
    return ((evals1 / scale).unsqueeze(-2) - (evals2 / scale).unsqueeze(-1)) ** 2


_MASKS = {"resolvent": resolvent_mask, "laplacian": lambda e1, e2, gamma: laplacian_mask(e1, e2)}


def regularized_fmap(
    feat1: torch.Tensor,
    feat2: torch.Tensor,
    evals1: torch.Tensor,
    evals2: torch.Tensor,
    *,
    lambda_: float = 100.0,
    mask: str = "resolvent",
    gamma: float = 0.5,
) -> torch.Tensor:
    """Closed-form regularised functional map ``fmap_12``, differentiable and batched.

    Row ``i`` of ``C`` solves ``min_c ||c A - b_i||^2 + lambda sum_j mask_ij c_j^2`` with ``A = feat1``,
    ``b_i = feat2[i]``: ``c = b_i A^T (A A^T + lambda diag(mask_i))^{-1}`` (Ren et al. 2019; the FMNet layer of
    DUO-FMNet, Donati et al. 2022, and ULRSSM, Cao et al. 2023).

    Args:
        feat1: ``(k1, d)`` or ``(B, k1, d)`` spectral coefficients of the features on shape 1 (:func:`project`).
        feat2: ``(k2, d)`` or ``(B, k2, d)`` the same on shape 2.
        evals1: ``(k1,)`` or ``(B, k1)``; evals2: ``(k2,)`` or ``(B, k2)``.
        lambda_: regularisation weight (``>= 0``).
        mask: ``"resolvent"`` or ``"laplacian"``.
        gamma: exponent of the resolvent mask.

    Returns:
        ``fmap_12`` ``(k2, k1)`` or ``(B, k2, k1)``, in the dtype of the inputs.
    """
    check_float_tensor(feat1, "feat1", ndim=(2, 3))
    check_float_tensor(feat2, "feat2", ndim=(2, 3))
    if feat1.dim() != feat2.dim() or feat1.shape[-1] != feat2.shape[-1] or feat1.shape[:-2] != feat2.shape[:-2]:
        raise ShapeError(
            f"feat2: expected shape (..., k2, {feat1.shape[-1]}) matching feat1 {tuple(feat1.shape)}, "
            f"got {tuple(feat2.shape)}"
        )
    if evals1.shape != feat1.shape[:-1] or evals2.shape != feat2.shape[:-1]:
        raise ShapeError(
            f"evals1/evals2: expected shapes {tuple(feat1.shape[:-1])} / {tuple(feat2.shape[:-1])}, "
            f"got {tuple(evals1.shape)} / {tuple(evals2.shape)}"
        )
    lam = check_positive(lambda_, "lambda_", strict=False)
    if mask not in _MASKS:
        raise ValidationError(f"mask: unknown mask {mask!r}; valid: {', '.join(sorted(_MASKS))}")
    D = _MASKS[mask](evals1, evals2, gamma=gamma)  # (..., k2, k1)
    AAt = feat1 @ feat1.transpose(-1, -2)  # (..., k1, k1)
    rhs = feat2 @ feat1.transpose(-1, -2)  # (..., k2, k1)
    sys = AAt.unsqueeze(-3) + lam * torch.diag_embed(D)  # (..., k2, k1, k1)
    return torch.linalg.solve(sys, rhs.unsqueeze(-1)).squeeze(-1)


def descriptor_operators(desc: torch.Tensor, evecs: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """Multiplication operators ``Phi^T M diag(f_d) Phi``, ``(d, k, k)``, for ``desc (V, d)`` (Nogneng &
    Ovsjanikov 2017)."""
    return torch.einsum("vi,vd,vj->dij", evecs, mass[:, None] * desc, evecs)


def _face_gradients(verts: torch.Tensor, faces: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Per-face gradients of piecewise-linear functions ``f (V, c)``: ``(F, 3, c)``.

    ``grad f = sum_v f_v (n x e_v) / (2 A)`` with ``e_v`` the edge opposite ``v``, oriented along the face.
    """
    areas, normals = face_areas_normals(verts, faces)
    x = verts[faces]  # (F, 3, 3)
    grad = 0
    for c in range(3):
        e = x[:, (c + 2) % 3] - x[:, (c + 1) % 3]  # edge opposite corner c
        rot = torch.linalg.cross(normals, e, dim=-1) / (2 * areas.clamp_min(1e-30))[:, None]
        grad = grad + rot.unsqueeze(-1) * f[faces[:, c]].unsqueeze(1)
    return grad


def orientation_operators(
    verts: torch.Tensor, faces: torch.Tensor, evecs: torch.Tensor, desc: torch.Tensor
) -> torch.Tensor:
    """Orientation operators of Ren et al. 2018, ``(d, k, k)``: ``O_f = Phi^T M_v (n . (grad f x grad Phi))``.

    ``O_f`` represents ``g -> <n, grad f x grad g>`` on a triangle mesh (values per face, lumped to the vertices
    with a third of each face's area). It changes sign under orientation-reversing maps, so
    ``||C O^1_f - O^2_{Cf} C||^2`` penalises left-right flips while staying invariant to rigid motions.

    Args:
        verts: ``(V, 3)``; faces: ``(F, 3)`` consistently oriented; evecs: ``(V, k)``; desc: ``(V, d)``.
    """
    areas, normals = face_areas_normals(verts, faces)
    gf = _face_gradients(verts, faces, desc)  # (F, 3, d)
    gphi = _face_gradients(verts, faces, evecs)  # (F, 3, k)
    n_x_gf = torch.linalg.cross(normals.unsqueeze(-1).expand_as(gf), gf, dim=1)
    vals = torch.einsum("fcd,fck->fdk", n_x_gf, gphi) * (areas / 3.0)[:, None, None]  # (F, d, k)
    onv = vals.new_zeros((verts.shape[0], *vals.shape[1:]))
    for c in range(3):
        onv = onv.index_add(0, faces[:, c], vals)
    return torch.einsum("vi,vdk->dik", evecs, onv)


def point_orientation_operators(
    gradients: tuple[torch.Tensor, torch.Tensor], mass: torch.Tensor, evecs: torch.Tensor, desc: torch.Tensor
) -> torch.Tensor:
    """Orientation operators of a point cloud, ``(d, k, k)``: :func:`orientation_operators` with the tangent
    gradients of the points instead of the faces'.

    ``O_f = Phi^T M (grad_X f * grad_Y Phi - grad_Y f * grad_X Phi)``: in a right-handed tangent frame
    ``(X, Y, n)``, ``<n, grad f x grad g> = f_X g_Y - f_Y g_X``. With outward normals it has the sign of the mesh
    operator on a surface sampled by the points.

    Args:
        gradients: sparse ``(V, V)`` ``(grad_X, grad_Y)`` (:func:`geomot.ops.orientation.point_gradients` of the
            points and their :func:`~geomot.ops.orientation.oriented_normals`).
        mass: ``(V,)`` areas per point (the Laplacian's mass); evecs: ``(V, k)``; desc: ``(V, d)``.
    """
    gx, gy = gradients
    fx, fy = gx @ desc, gy @ desc  # (V, d)
    px, py = gx @ evecs, gy @ evecs  # (V, k)
    vals = fx.T[:, :, None] * py[None] - fy.T[:, :, None] * px[None]  # (d, V, k)
    return torch.einsum("vi,dvk->dik", evecs * mass[:, None], vals)


class AxiomaticFmap(NamedTuple):
    """Result of :func:`fmap_from_descriptors`.

    Attributes:
        fmap_12: ``(k2, k1)``.
        fmap_21: ``(k1, k2)`` the solution of the same problem from shape 2 to shape 1 (coupled to ``fmap_12``
            when ``w_bij > 0``).
        energy: the minimum of the energy.
    """

    fmap_12: torch.Tensor
    fmap_21: torch.Tensor
    energy: float


def _normalise_ops(X: torch.Tensor) -> torch.Tensor:
    return X / X.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]


def _normal_equations(
    A: torch.Tensor, B: torch.Tensor, mask: torch.Tensor, ops1: list[torch.Tensor], ops2: list[torch.Tensor],
    weights: list[float], w_desc: float, w_lap: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hessian ``H (k2 k1, k2 k1)``, right-hand side ``r`` and constant of ``E(c) = c^T H c - 2 r^T c + const``
    for the row-major ``c = vec(C)``.

    ``vec(C X) = (I kron X^T) c`` and ``vec(Y C) = (Y kron I) c``, so ``||C X - Y C||^2`` has the Hessian
    ``I kron X X^T - Y kron X - Y^T kron X^T + Y^T Y kron I``.
    """
    k2, k1 = mask.shape
    I1 = torch.eye(k1, dtype=A.dtype, device=A.device)
    I2 = torch.eye(k2, dtype=A.dtype, device=A.device)
    H = w_desc * torch.kron(I2, A @ A.T) + w_lap * torch.diag(mask.reshape(-1))
    for X, Y, w in zip(ops1, ops2, weights):
        if not w:
            continue
        XXt = (X @ X.transpose(1, 2)).sum(0)
        YtY = (Y.transpose(1, 2) @ Y).sum(0)
        cross = torch.einsum("dab,dij->aibj", Y, X).reshape(k2 * k1, k2 * k1)
        H = H + w * (torch.kron(I2, XXt) + torch.kron(YtY, I1) - cross - cross.T)
    r = w_desc * (B @ A.T).reshape(-1)
    return H, r, w_desc * (B * B).sum()


def fmap_energy(
    C: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    mask: torch.Tensor,
    ops1: list[torch.Tensor],
    ops2: list[torch.Tensor],
    weights: list[float],
    *,
    w_desc: float,
    w_lap: float,
) -> torch.Tensor:
    """``w_desc ||C A - B||^2 + w_lap sum mask * C^2 + sum_t w_t sum_d ||C X^1_{t,d} - X^2_{t,d} C||^2``.

    Args:
        C: ``(k2, k1)``; A: ``(k1, d)``; B: ``(k2, d)``; mask: ``(k2, k1)``;
        ops1 / ops2: per term, ``(d_t, k1, k1)`` / ``(d_t, k2, k2)`` operators; weights: per term.
    """
    e = w_desc * ((C @ A - B) ** 2).sum() + w_lap * (mask * C * C).sum()
    for X1, X2, w in zip(ops1, ops2, weights):
        if w:
            e = e + w * ((C.unsqueeze(0) @ X1 - X2 @ C.unsqueeze(0)) ** 2).sum()
    return e


def fmap_from_descriptors(
    desc1: torch.Tensor,
    desc2: torch.Tensor,
    evals1: torch.Tensor,
    evecs1: torch.Tensor,
    mass1: torch.Tensor,
    evals2: torch.Tensor,
    evecs2: torch.Tensor,
    mass2: torch.Tensor,
    *,
    verts1: torch.Tensor | None = None,
    faces1: torch.Tensor | None = None,
    verts2: torch.Tensor | None = None,
    faces2: torch.Tensor | None = None,
    w_desc: float = 1.0,
    w_lap: float = 1e-2,
    w_dcomm: float = 1e-1,
    w_orient: float = 0.0,
    w_bij: float = 0.0,
    mask: str = "laplacian",
) -> AxiomaticFmap:
    """Axiomatic functional map from descriptors (Ovsjanikov et al. 2012; Nogneng & Ovsjanikov 2017; Ren et al.
    2018), the exact minimiser of the quadratic energy

    ``E(C) = w_desc ||C A - B||^2 + w_lap sum_ij mask_ij C_ij^2 + w_dcomm sum_d ||C D^1_d - D^2_d C||^2
    + w_orient sum_d ||C O^1_d - O^2_d C||^2``

    with ``A = Phi_1^T M_1 desc1`` and ``B = Phi_2^T M_2 desc2`` (descriptor columns normalised to unit
    ``M``-norm), ``D`` the multiplication operators (:func:`descriptor_operators`) and ``O`` the orientation
    operators (:func:`orientation_operators`, which need the meshes); each operator is scaled to unit Frobenius
    norm. With ``w_bij > 0`` both directions are solved jointly with the coupling
    ``w_bij ||C_12 - C_21^T||^2`` (near-isometries have orthogonal maps, ``C_21 = C_12^{-1} = C_12^T``), which
    keeps the problem quadratic. The normal equations of ``vec(C)`` (size ``k1 k2``, or twice that) are solved by
    Cholesky, so keep ``k`` modest (30-50).

    Args:
        desc1: ``(V1, d)``; desc2: ``(V2, d)`` corresponding descriptors.
        evals1, evecs1, mass1: basis of shape 1, ``(k1,)``, ``(V1, k1)``, ``(V1,)``; the same for shape 2.
        verts1, faces1, verts2, faces2: meshes, needed when ``w_orient > 0``.
        w_desc, w_lap, w_dcomm, w_orient, w_bij: weights of the terms.
        mask: ``"laplacian"`` or ``"resolvent"`` (the commutativity mask, see :func:`regularized_fmap`).

    Returns:
        :class:`AxiomaticFmap` (float64, on the device of ``evecs1``).
    """
    for name, w in (("w_desc", w_desc), ("w_lap", w_lap), ("w_dcomm", w_dcomm), ("w_orient", w_orient),
                    ("w_bij", w_bij)):
        check_positive(w, name, strict=False)
    if desc1.dim() != 2 or desc2.dim() != 2 or desc1.shape[1] != desc2.shape[1]:
        raise ShapeError(
            f"desc1/desc2: expected (V1, d) and (V2, d) with the same d, got {tuple(desc1.shape)} / "
            f"{tuple(desc2.shape)}"
        )
    if w_orient > 0 and any(t is None for t in (verts1, faces1, verts2, faces2)):
        raise ValidationError("w_orient: the orientation term needs verts1, faces1, verts2 and faces2 (meshes)")
    if mask not in _MASKS:
        raise ValidationError(f"mask: unknown mask {mask!r}; valid: {', '.join(sorted(_MASKS))}")
    if w_desc == 0 and w_lap == 0:
        raise ValidationError("w_desc/w_lap: at least one of them must be positive")
    dt = torch.float64
    e1, P1, m1 = evals1.to(dt), evecs1.to(dt), mass1.to(dt)
    e2, P2, m2 = evals2.to(dt), evecs2.to(dt), mass2.to(dt)
    d1, d2 = desc1.detach().to(dt), desc2.detach().to(dt)
    norm = ((m1[:, None] * d1 * d1).sum(0).sqrt() + (m2[:, None] * d2 * d2).sum(0).sqrt()).clamp_min(1e-30) / 2
    d1, d2 = d1 / norm, d2 / norm
    A, B = project(d1, P1, m1), project(d2, P2, m2)
    D12 = _MASKS[mask](e1, e2, gamma=0.5)
    ops1, ops2, ws = [], [], []
    if w_dcomm > 0:
        ops1.append(_normalise_ops(descriptor_operators(d1, P1, m1)))
        ops2.append(_normalise_ops(descriptor_operators(d2, P2, m2)))
        ws.append(w_dcomm)
    if w_orient > 0:
        ops1.append(_normalise_ops(orientation_operators(verts1.to(dt), faces1, P1, d1)))
        ops2.append(_normalise_ops(orientation_operators(verts2.to(dt), faces2, P2, d2)))
        ws.append(w_orient)
    k1, k2 = P1.shape[1], P2.shape[1]
    H12, r12, c12 = _normal_equations(A, B, D12, ops1, ops2, ws, w_desc, w_lap)
    H21, r21, c21 = _normal_equations(B, A, D12.T, ops2, ops1, ws, w_desc, w_lap)
    n12 = k1 * k2
    if w_bij > 0:
        # ||C12 - C21^T||^2: vec(C21^T) = T vec(C21) with the commutation permutation T
        perm = torch.arange(n12, device=A.device).view(k1, k2).T.reshape(-1)
        T = torch.eye(n12, dtype=dt, device=A.device)[perm]
        H = torch.block_diag(H12, H21) + w_bij * torch.cat(
            [torch.cat([torch.eye(n12, dtype=dt, device=A.device), -T], 1), torch.cat([-T.T, T.T @ T], 1)], 0
        )
        x = _spd_solve(H, torch.cat([r12, r21]))
        C12, C21 = x[:n12].view(k2, k1), x[n12:].view(k1, k2)
        energy = float(x @ H @ x - 2 * x @ torch.cat([r12, r21]) + c12 + c21)
    else:
        x12, x21 = _spd_solve(H12, r12), _spd_solve(H21, r21)
        C12, C21 = x12.view(k2, k1), x21.view(k1, k2)
        energy = float(x12 @ H12 @ x12 - 2 * x12 @ r12 + c12)
    dev = evecs1.device
    return AxiomaticFmap(C12.to(dev), C21.to(dev), energy)


def _spd_solve(H: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Solve the symmetric positive (semi-)definite system ``H x = r``; a tiny ridge is added when Cholesky fails."""
    H = 0.5 * (H + H.T)
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) != 0:
        ridge = 1e-10 * float(H.diagonal().abs().max().clamp_min(1e-30))
        L = torch.linalg.cholesky(H + ridge * torch.eye(H.shape[0], dtype=H.dtype, device=H.device))
    return torch.cholesky_solve(r[:, None], L).squeeze(1)
