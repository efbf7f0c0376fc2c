"""DiffusionNet operators of one shape: lumped mass, Laplacian, eigenbasis, tangent frames and spatial gradients.

For a mesh ``(verts (V, 3), faces (F, 3))`` or a point cloud (``faces=None``), :func:`diffusion_operators`
computes, in float64 and without gradient, what :class:`geomot.models.DiffusionNet` needs (Sharp, Attaiki, Crane &
Ovsjanikov, "DiffusionNet: Discretization Agnostic Learning on Surfaces", ACM TOG 2022, Sec. 3-4):

* the Laplacian ``L`` and lumped mass ``M = diag(mass)`` of :func:`geomot.ops.spectral.laplacian_and_mass`
  (``"auto"``: cotangent on manifold meshes, the robust Laplacian of Sharp & Crane 2020 on meshes with
  non-manifold edges -- logged as a warning -- and the point-cloud Laplacian without faces);
* the first ``k`` eigenpairs ``L phi = lambda M phi`` (:func:`geomot.ops.spectral.spectral_basis`);
* per-vertex tangent frames ``(X_i, Y_i, n_i)``: area-weighted vertex normals of a mesh, or the normal of the
  least-squares plane of the ``n_neighbors`` nearest points of a cloud (oriented away from the centroid);
  ``X_i`` is the coordinate axis least aligned with ``n_i`` projected to the tangent plane, ``Y_i = n_i x X_i``;
* the spatial gradient operators ``grad_x``, ``grad_y`` (sparse ``(V, V)``): for a scalar function ``u`` on the
  vertices, ``(grad_x u)_i, (grad_y u)_i`` are the coordinates in ``(X_i, Y_i)`` of the least-squares fit
  ``g_i = argmin_g sum_{j in N(i)} (<e_ij, g> - (u_j - u_i))^2`` where ``e_ij`` is the edge ``p_j - p_i`` projected
  to the tangent plane of ``i`` and ``N(i)`` the 1-ring (mesh) or the ``n_neighbors`` nearest points (cloud)
  (paper Sec. 3.3). With ``E_i`` the ``(|N(i)|, 2)`` matrix of the projected edges,
  ``g_i = (E_i^T E_i + eps tr(E_i^T E_i) I)^{-1} E_i^T (u_N - u_i)`` with ``eps = 1e-6``, so the operator is
  exact for linear functions on a plane and has ``O(h)`` error on a curved surface with mesh size ``h``.

Cost (one ~5k-vertex mesh, ``k = 128``): a few seconds, dominated by the shift-invert eigensolver; the gradients
and frames take tens of milliseconds. Results can be cached on disk (opt-in ``cache_dir``), keyed by a SHA-256 of
the geometry, the settings and a format version; files are written atomically (temporary file + ``os.replace``) and
an unreadable file is recomputed with a logged warning.

:func:`batch_operators` stacks the operators of several shapes into a padded :class:`DiffusionBatch`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_int
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.files import atomic_savez, geometry_key
from geomot.ops.geometry import edges, vertex_normals
from geomot.ops.knn import knn_points
from geomot.ops.spectral import _check_inputs, laplacian_and_mass, non_manifold_edges, spectral_basis
from geomot.ops.spectral import _resolve_method as _spectral_method

__all__ = [
    "DiffusionBatch",
    "DiffusionOperators",
    "batch_operators",
    "diffusion_operators",
    "spatial_gradient",
    "tangent_frames",
]

logger = logging.getLogger(__name__)

_CACHE_VERSION = "geomot-diffusion-operators-v1"
_GRAD_EPS = 1e-6  # relative Tikhonov weight of the 2 x 2 least-squares systems


class DiffusionOperators(NamedTuple):
    """Precomputed operators of one shape (float64, no gradient, on the device of the vertices).

    Attributes:
        mass: ``(V,)`` lumped mass (the diagonal of ``M``).
        evals: ``(k,)`` ascending eigenvalues of ``L phi = lambda M phi``.
        evecs: ``(V, k)`` ``M``-orthonormal eigenvectors.
        grad_x: ``(V, V)`` sparse COO, the ``X`` coordinate of the tangent gradient.
        grad_y: ``(V, V)`` sparse COO, the ``Y`` coordinate of the tangent gradient.
        frames: ``(V, 3, 3)``; ``frames[i]`` has rows ``X_i, Y_i, n_i``.
        laplacian: ``(V, V)`` sparse COO positive semi-definite Laplacian ``L`` (``L = D - W``).
    """

    mass: torch.Tensor
    evals: torch.Tensor
    evecs: torch.Tensor
    grad_x: torch.Tensor
    grad_y: torch.Tensor
    frames: torch.Tensor
    laplacian: torch.Tensor


class DiffusionBatch(NamedTuple):
    """Operators of ``B`` shapes stacked for one forward pass, padded to ``Vmax = max(lengths)`` vertices.

    The gradients of all the items are one block-diagonal sparse matrix (the padding rows and columns are empty),
    with the ``X`` rows of every item above the ``Y`` rows, so that the gradients of padded features
    ``u (B, Vmax, C)`` are one sparse product: ``(gradient @ u.reshape(B Vmax, C)).view(2, B, Vmax, C)``. Its
    transpose is stored too, for the backward pass (transposing a sparse matrix in every backward pass costs a
    sort). One sparse product per block over the whole batch is one library call on CPU and CUDA; gathering
    padded neighbour lists instead is ~8x slower on CPU. The matrices are coalesced COO: CSR makes this product
    ~1.5x faster on CPU, but that is ~3 % of the network's time and torch warns that CSR is a beta feature.

    Attributes:
        mass: ``(B, Vmax)``, zero on padding.
        evals: ``(B, k)``.
        evecs: ``(B, Vmax, k)``, zero rows on padding.
        gradient: ``(2 B Vmax, B Vmax)`` sparse COO; row ``b Vmax + i`` is ``grad_x`` of vertex ``i`` of item
            ``b``, row ``(B + b) Vmax + i`` its ``grad_y``.
        gradient_t: ``(B Vmax, 2 B Vmax)`` sparse COO, the transpose of ``gradient``.
        lengths: ``(B,)`` int64 vertex counts.
    """

    mass: torch.Tensor
    evals: torch.Tensor
    evecs: torch.Tensor
    gradient: torch.Tensor
    gradient_t: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> DiffusionBatch:
        """The batch on ``device`` with floating tensors in ``dtype`` (None keeps each)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return DiffusionBatch(*(move(t) for t in self))


# ---------------------------------------------------------------------------------------------------------------
# frames and gradients


def _pca_normals(verts: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Normals of the least-squares planes of the neighbourhoods ``idx (V, K)``, oriented away from the centroid."""
    nb = verts[idx]  # (V, K, 3)
    centred = nb - nb.mean(1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred
    normals = torch.linalg.eigh(cov).eigenvectors[..., 0]  # smallest eigenvalue
    outward = ((verts - verts.mean(0)) * normals).sum(-1)
    return torch.where(outward[:, None] < 0, -normals, normals)


def tangent_frames(normals: torch.Tensor) -> torch.Tensor:
    """Orthonormal frames ``(V, 3, 3)`` with rows ``X_i, Y_i, n_i`` around unit normals ``(V, 3)``.

    ``X_i`` is the coordinate axis with the smallest ``|<e_d, n_i>|`` projected to the tangent plane and
    normalised; ``Y_i = n_i x X_i``. The frame depends on the vertex only (not on the vertex order); the gradient
    features of :class:`geomot.models.DiffusionNet` do not depend on this choice of ``X_i``.
    """
    check_float_tensor(normals, "normals", ndim=2, last_dim=3)
    err = float((normals.norm(dim=-1) - 1).abs().max())
    if err > 1e-6:
        raise ValidationError(f"normals: expected unit vectors, got norms that differ from 1 by up to {err:.3g}")
    axis = torch.nn.functional.one_hot(normals.abs().argmin(-1), 3).to(normals.dtype)
    x = axis - (axis * normals).sum(-1, keepdim=True) * normals
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(normals, x, dim=-1)
    return torch.stack([x, y, normals], dim=1)


def spatial_gradient(
    verts: torch.Tensor, frames: torch.Tensor, neighbors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares tangent gradient operators from directed neighbour pairs (see the module docstring).

    ``(grad_x u)_i = sum_j c^x_ij (u_j - u_i)`` with ``(c^x_ij, c^y_ij) = (S_i + eps tr(S_i) I)^{-1} e_ij``,
    ``S_i = sum_j e_ij e_ij^T``, ``e_ij = (<p_j - p_i, X_i>, <p_j - p_i, Y_i>)``, ``eps = 1e-6``.

    Args:
        verts: ``(V, 3)`` float positions.
        frames: ``(V, 3, 3)`` rows ``X_i, Y_i, n_i`` (:func:`tangent_frames`).
        neighbors: ``(2, P)`` int64 pairs ``(i, j)``: ``j`` is a neighbour of ``i``.

    Returns:
        ``(grad_x, grad_y)``, each a coalesced sparse COO ``(V, V)`` in the dtype of ``verts``. Rows sum to zero
        (constants have zero gradient). Cost ``O(P)``.

    Raises:
        ShapeError: shapes or dtypes other than the ones above.
        ValidationError: NaN/Inf positions or frames, neighbour indices out of range.
    """
    check_float_tensor(verts, "verts", ndim=2, last_dim=3)
    V = verts.shape[0]
    check_float_tensor(frames, "frames", ndim=3)
    if tuple(frames.shape) != (V, 3, 3) or frames.dtype != verts.dtype:
        raise ShapeError(
            f"frames: expected shape {(V, 3, 3)} and dtype {verts.dtype} (those of verts), got "
            f"{tuple(frames.shape)} and {frames.dtype}"
        )
    check_index_tensor(neighbors, "neighbors", size=V)
    if neighbors.dim() != 2 or neighbors.shape[0] != 2:
        raise ShapeError(f"neighbors: expected a (2, P) integer tensor, got shape {tuple(neighbors.shape)}")
    i, j = neighbors.long()
    e = verts[j] - verts[i]
    ex = (e * frames[i, 0]).sum(-1)
    ey = (e * frames[i, 1]).sum(-1)
    s = verts.new_zeros(V, 3).index_add_(0, i, torch.stack([ex * ex, ex * ey, ey * ey], 1))
    reg = _GRAD_EPS * (s[:, 0] + s[:, 2]) + torch.finfo(verts.dtype).tiny
    a, b, d = s[:, 0] + reg, s[:, 1], s[:, 2] + reg
    det = a * d - b * b
    # (c^x, c^y) = S^{-1} e with S^{-1} = [[d, -b], [-b, a]] / det
    cx = (d[i] * ex - b[i] * ey) / det[i]
    cy = (a[i] * ey - b[i] * ex) / det[i]
    ar = torch.arange(V, device=verts.device)
    rows = torch.cat([i, ar])
    cols = torch.cat([j, ar])

    def assemble(c: torch.Tensor) -> torch.Tensor:
        diag = verts.new_zeros(V).index_add_(0, i, c)
        vals = torch.cat([c, -diag])
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (V, V), check_invariants=False).coalesce()

    return assemble(cx), assemble(cy)


# ---------------------------------------------------------------------------------------------------------------
# one shape


def _resolve_method(method: str, faces: torch.Tensor | None) -> str:
    """:func:`geomot.ops.spectral`'s choice of Laplacian, saying so when ``"auto"`` falls back to the robust one."""
    name = _spectral_method(method, faces)
    if method == "auto" and name == "robust":
        logger.warning(
            "diffusion_operators: the mesh has %d non-manifold edge(s) (shared by more than two faces); using the "
            "robust Laplacian (Sharp & Crane 2020) instead of the cotangent one",
            non_manifold_edges(faces),
        )
    return name


def _neighbor_pairs(v: torch.Tensor, f: torch.Tensor | None, n_neighbors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed neighbour pairs ``(2, P)`` and unit normals ``(V, 3)``."""
    V = v.shape[0]
    if f is not None:
        e = edges(f).t()
        pairs = torch.cat([e, e.flip(0)], 1)
        normals = vertex_normals(v, f)
        bad = normals.norm(dim=-1) < 0.5
        if bool(bad.any()):  # faces cancelling exactly: fall back to the plane of the neighbours
            k = min(n_neighbors, V)
            idx = knn_points(v, v, k=k, backend="kdtree" if v.device.type == "cpu" else "torch").idx
            normals = torch.where(bad[:, None], _pca_normals(v, idx), normals)
        return pairs, normals
    k = min(n_neighbors + 1, V)
    idx = knn_points(v, v, k=k, backend="kdtree" if v.device.type == "cpu" else "torch").idx  # (V, k), self first
    normals = _pca_normals(v, idx)
    i = torch.arange(V, device=v.device)[:, None].expand(V, k)
    keep = idx != i
    return torch.stack([i[keep], idx[keep]]), normals


def _coo(index: np.ndarray, values: np.ndarray, n: int, device: torch.device) -> torch.Tensor:
    return torch.sparse_coo_tensor(
        torch.as_tensor(index, dtype=torch.long, device=device),
        torch.as_tensor(values, dtype=torch.float64, device=device),
        (n, n),
        check_invariants=False,
    ).coalesce()


def _cache_key(v: np.ndarray, f: np.ndarray | None, method: str, n_neighbors: int) -> str:
    return geometry_key(_CACHE_VERSION, f"{method}|{n_neighbors}|{v.shape}|{None if f is None else f.shape}", v, f)


_FIELDS = ("mass", "evals", "evecs", "frames", "gx_index", "gx_values", "gy_index", "gy_values", "L_index", "L_values")


def _cache_load(path: Path, k: int, n: int, device: torch.device) -> DiffusionOperators | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {name: z[name] for name in _FIELDS}
        ok = (
            a["mass"].shape == (n,)
            and a["evecs"].shape == (n, a["evals"].shape[0])
            and a["frames"].shape == (n, 3, 3)
            and all(a[f"{p}_index"].shape == (2, a[f"{p}_values"].shape[0]) for p in ("gx", "gy", "L"))
            and all(0 <= a[f"{p}_index"].min() and a[f"{p}_index"].max() < n for p in ("gx", "gy", "L"))
        )
        if not ok:
            raise ValueError("arrays of unexpected shapes or indices")
    except Exception as e:  # a corrupted, truncated or foreign file is recomputed
        logger.warning("diffusion_operators: ignoring unreadable cache file %s (%s); recomputing", path, e)
        return None
    if a["evals"].shape[0] < k:
        return None

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float64, device=device)

    return DiffusionOperators(
        mass=t(a["mass"]),
        evals=t(a["evals"][:k]),
        evecs=t(a["evecs"][:, :k]),
        grad_x=_coo(a["gx_index"], a["gx_values"], n, device),
        grad_y=_coo(a["gy_index"], a["gy_values"], n, device),
        frames=t(a["frames"]),
        laplacian=_coo(a["L_index"], a["L_values"], n, device),
    )


def _cache_save(path: Path, ops: DiffusionOperators) -> None:
    arrays = {
        "mass": ops.mass,
        "evals": ops.evals,
        "evecs": ops.evecs,
        "frames": ops.frames,
        "gx_index": ops.grad_x.indices(),
        "gx_values": ops.grad_x.values(),
        "gy_index": ops.grad_y.indices(),
        "gy_values": ops.grad_y.values(),
        "L_index": ops.laplacian.indices(),
        "L_values": ops.laplacian.values(),
    }
    atomic_savez(path, {name: x.detach().cpu().numpy() for name, x in arrays.items()}, what="diffusion_operators")


def diffusion_operators(
    verts: torch.Tensor,
    faces: torch.Tensor | None = None,
    *,
    k_eig: int = 128,
    method: str = "auto",
    n_neighbors: int = 30,
    cache_dir: str | os.PathLike | None = None,
) -> DiffusionOperators:
    """Mass, Laplacian, eigenbasis, tangent frames and gradient operators of one mesh or point cloud.

    See the module docstring for the formulas. Computed in float64 under ``torch.no_grad()``.

    Args:
        verts: ``(V, 3)`` float positions (any float dtype; read in float64).
        faces: ``(F, 3)`` integer triangles, or None for a point cloud.
        k_eig: number of eigenpairs, ``1 <= k_eig <= V``.
        method: Laplacian, ``"auto"`` or a name of :data:`geomot.ops.spectral.LAPLACIANS` (``"cotan"``,
            ``"robust"``, ``"pointcloud"``). ``"auto"`` logs a warning when it falls back to ``"robust"`` because
            of non-manifold edges.
        n_neighbors: neighbourhood size of a point cloud (Laplacian, normals and gradients).
        cache_dir: opt-in folder for an on-disk cache; the key is a SHA-256 of the vertices, the faces, the
            resolved method, ``n_neighbors`` and a format version. A cached entry with at least ``k_eig``
            eigenpairs is sliced, not recomputed. Unreadable files are recomputed (logged warning) and replaced.

    Returns:
        :class:`DiffusionOperators`, float64, on the device of ``verts``.

    Raises:
        ShapeError: ``verts`` not a ``(V, 3)`` float tensor, ``faces`` not a non-empty ``(F, 3)`` integer tensor.
        ValidationError: NaN/Inf coordinates, face indices out of range, ``k_eig`` out of range (fewer vertices
            than ``k_eig``), an unknown method, isolated or zero-area vertices.
        NumericalError: the eigensolver failed (see :func:`geomot.ops.spectral.spectral_basis`).
    """
    v, f = _check_inputs(verts, faces)
    k_eig = check_int(k_eig, "k_eig", at_least=1)
    n_neighbors = check_int(n_neighbors, "n_neighbors", at_least=2)
    V = v.shape[0]
    if V < k_eig:
        raise ValidationError(
            f"k_eig: the shape has {V} vertices, fewer than the {k_eig} eigenpairs requested (k_eig={k_eig}); "
            f"pass k_eig <= {V} or use a finer shape"
        )
    name = _resolve_method(method, f)
    with torch.no_grad():
        v64 = v.detach().to(torch.float64)
        vn = v64.cpu().numpy()
        fn = None if f is None else f.detach().cpu().numpy().astype(np.int64)
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{_cache_key(vn, fn, name, n_neighbors)}.npz"
            hit = _cache_load(path, k_eig, V, v.device)
            if hit is not None:
                logger.debug("diffusion_operators: cache hit %s", path)
                return hit
        L, _ = laplacian_and_mass(v64, f, method=name, n_neighbors=n_neighbors)
        basis = spectral_basis(v64, f, k=k_eig, method=name, n_neighbors=n_neighbors)
        pairs, normals = _neighbor_pairs(v64, f, n_neighbors)
        frames = tangent_frames(normals)
        grad_x, grad_y = spatial_gradient(v64, frames, pairs)
        Lc = L.tocoo()
        ops = DiffusionOperators(
            mass=basis.mass.to(v.device),
            evals=basis.evals.to(v.device),
            evecs=basis.evecs.to(v.device),
            grad_x=grad_x,
            grad_y=grad_y,
            frames=frames,
            laplacian=_coo(np.stack([Lc.row, Lc.col]), Lc.data, V, v.device),
        )
        if path is not None:
            _cache_save(path, ops)
    return ops


# ---------------------------------------------------------------------------------------------------------------
# batches


def _check_item(op: object, b: int, k: int) -> DiffusionOperators:
    if not isinstance(op, DiffusionOperators):
        raise ShapeError(f"operators[{b}]: expected a DiffusionOperators (see diffusion_operators), got {type(op)}")
    if op.evecs.shape[-1] != k:
        raise ShapeError(
            f"operators[{b}]: expected {k} eigenpairs (those of operators[0]), got {op.evecs.shape[-1]}; compute "
            "every shape with the same k_eig"
        )
    return op


def _block_gradient(items: Sequence[DiffusionOperators], n_max: int, device: torch.device, dtype: torch.dtype):
    B = len(items)
    rows, cols, vals = [], [], []
    for b, op in enumerate(items):
        for part, g in enumerate((op.grad_x, op.grad_y)):
            g = g.coalesce()
            r, c = g.indices().to(device)
            rows.append(r + (part * B + b) * n_max)
            cols.append(c + b * n_max)
            vals.append(g.values().to(device=device, dtype=dtype))
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    values = torch.cat(vals)
    shape = (2 * B * n_max, B * n_max)
    g = torch.sparse_coo_tensor(index, values, shape, check_invariants=False).coalesce()
    gt = torch.sparse_coo_tensor(index.flip(0), values, shape[::-1], check_invariants=False).coalesce()
    return g, gt


def batch_operators(
    operators: Sequence[DiffusionOperators],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> DiffusionBatch:
    """Stack the operators of ``B`` shapes into a padded :class:`DiffusionBatch`.

    Cost: ``O(B Vmax k)`` memory for the eigenvectors, one sort of the gradient entries (a few ms for 8 shapes
    of 5k vertices). Build the batch once per training step (or once per shape set at inference) and reuse it for
    every block of the network.

    Args:
        operators: ``B >= 1`` results of :func:`diffusion_operators`, all with the same number of eigenpairs.
        dtype: floating dtype of the batch (default: that of the operators, float64). The network's input
            features must have this dtype.
        device: device of the batch (default: that of ``operators[0]``).

    Returns:
        :class:`DiffusionBatch` with ``Vmax = max V_b``; the evecs and mass are zero on padding rows.

    Raises:
        ShapeError: an empty sequence, an item that is not a :class:`DiffusionOperators`, items with different
            numbers of eigenpairs, a non-floating ``dtype``.
    """
    items = list(operators) if not isinstance(operators, DiffusionOperators) else [operators]
    if not items:
        raise ShapeError("operators: expected at least one DiffusionOperators, got an empty sequence")
    if not isinstance(items[0], DiffusionOperators):
        raise ShapeError(f"operators[0]: expected a DiffusionOperators (see diffusion_operators), got {type(items[0])}")
    k = items[0].evecs.shape[-1]
    items = [_check_item(op, b, k) for b, op in enumerate(items)]
    dev = torch.device(device) if device is not None else items[0].evecs.device
    dt = dtype if dtype is not None else items[0].evecs.dtype
    if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
        raise ShapeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    lengths = torch.tensor([op.evecs.shape[0] for op in items], dtype=torch.long, device=dev)
    n_max = int(lengths.max())
    B = len(items)
    mass = torch.zeros(B, n_max, dtype=dt, device=dev)
    evecs = torch.zeros(B, n_max, k, dtype=dt, device=dev)
    for b, op in enumerate(items):
        n = op.evecs.shape[0]
        mass[b, :n] = op.mass.to(device=dev, dtype=dt)
        evecs[b, :n] = op.evecs.to(device=dev, dtype=dt)
    evals = torch.stack([op.evals.to(device=dev, dtype=dt) for op in items])
    gradient, gradient_t = _block_gradient(items, n_max, dev, dt)
    return DiffusionBatch(mass, evals, evecs, gradient, gradient_t, lengths)
