"""Kernel (varifold / current) distance between oriented surfaces, computed in blocks or with KeOps.

A surface is represented by the discrete (oriented) varifold ``mu_S = sum_f a_f delta_{(c_f, n_f)}``: face
centroids ``c_f``, unit normals ``n_f`` and areas ``a_f``. With the kernel
``k((x, n), (y, m)) = exp(-|x - y|^2 / sigma^2) * k_n(<n, m>)`` the squared RKHS (dual) norm is

    ``||mu_S - mu_T||^2_{W*} = <S, S> + <T, T> - 2 <S, T>``,
    ``<S, T> = sum_{f in S} sum_{g in T} a_f b_g exp(-|c_f - c_g|^2 / sigma^2) k_n(<n_f, m_g>)``,

with the normal kernels of :data:`VARIFOLD_KERNELS`:

- ``"linear"``: ``k_n(t) = t`` — currents (Vaillant & Glaunès, IPMI 2005); orientation-sensitive, cancels
  opposite normals.
- ``"binet"``: ``k_n(t) = t^2`` — Cauchy-Binet kernel of unoriented varifolds (Charon & Trouvé, "The varifold
  representation of non-oriented shapes for diffeomorphic registration", SIAM J. Imaging Sci. 2013, Sec. 3).
- ``"gaussian_oriented"``: ``k_n(t) = exp(-2 (1 - t) / sigma_n^2)`` = ``exp(-|n - m|^2 / sigma_n^2)`` for unit
  normals — oriented varifolds (Kaltenmark, Charlier & Charon, "A general framework for curve and surface
  comparison and registration with oriented varifolds", CVPR 2017, Eq. 6).

Inputs: a :class:`~geomot.structures.Mesh` (atoms = faces as above, masses = face areas, not normalised, so the
distance sees scale; this is the Mesh's varifold of ``docs/measures.md``, so ``measure=None`` or ``"varifold"``;
the kernel needs normals, so ``measure="vertices"``, ``"faces"`` or ``"samples"`` raise); a
:class:`~geomot.structures.PointCloud` that has normals (masses = its weights, else ``1/N``); a ``(B, N, 2d)``
:class:`~geomot.structures.Measure` such as
``mesh_to_measure(mesh, "varifold")`` (first ``d`` coordinates = positions, last ``d`` = normals, its weights as
masses); or a position tensor ``(N, d)`` / ``(B, N, d)`` with ``x_normals`` of the same shape and optional
``x_weights`` (default ``1/N``). ``normalize=True`` divides each item's masses by their total.

Backends: ``"torch"`` works on blocks of ``chunk_size`` rows (never an ``N x M`` matrix). Each block is
re-computed in the backward pass: by a hand-written backward for the built-in normal kernels (one backward pass;
no gradient of the gradient), through activation checkpointing for registered ones. The exponents are clamped at
half the dtype's ``exp`` floor, -42 in float32, which keeps ``exp`` and the products after it off x86's slow
subnormal path and changes each term by less than ``1e-18`` of the largest. ``"keops"`` uses ``pykeops``
LazyTensors (compiled C++/CUDA on first use, cached afterwards). ``"triton"`` runs one streaming Triton kernel
for the value and two for the gradients (:mod:`geomot.ops._triton_kernels`; CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``; memory ``O(B (N + M))``; the built-in normal kernels only). ``"auto"`` picks Triton for
CUDA tensors when :func:`geomot._core.accel.triton_usable` says it can run, else KeOps for CUDA tensors with at
least :data:`KEOPS_MIN_PAIRS` pairs when pykeops is importable, and torch otherwise — the default never compiles on
CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from geomot._core.accel import triton_usable
from geomot._core.batch import block_rows, list_to_padded, mask_from_lengths, to_batched
from geomot._core.checks import check_finite, check_float_tensor, check_positive, describe
from geomot._core.errors import MissingDependencyError, ShapeError, ValidationError
from geomot._core.reduction import check_reduction, reduce
from geomot._core.registry import Registry
from geomot.losses._shell import PAIR_INPUTS, LossModule
from geomot.ops._products import gemv, narrow_bmm
from geomot.ops._triton_kernels import varifold_sum_triton
from geomot.ops.geometry import face_areas_normals, face_centroids
from geomot.structures import Measure, Mesh, PointCloud
from geomot.structures.convert import resolve_mesh_measure
from geomot.transport._kernels import LOG2E, exp2_floor

__all__ = ["KEOPS_MIN_PAIRS", "VARIFOLD_KERNELS", "NormalKernel", "VarifoldLoss", "varifold_distance", "varifold_inner"]

#: ``backend="auto"`` uses KeOps on CUDA from this many (atom, atom) pairs per item on.
KEOPS_MIN_PAIRS = 1_000_000



class NormalKernel(NamedTuple):
    """A normal kernel of :data:`VARIFOLD_KERNELS`.

    Attributes:
        fn: ``k_n(t, sigma_n)`` of ``t = <n, m>``, written with operations that torch tensors and KeOps
            LazyTensors share, so that both backends evaluate the same expression.
        log_linear: for kernels of the form ``k_n(t) = exp(alpha t + beta)``, ``sigma_n -> (alpha, beta)``; the torch
            backend then folds the normal kernel into the exponent of the spatial one (one matmul per block).
        fused: the closed form the Triton kernel implements (a name of
            :data:`geomot.ops._triton_kernels.VARIFOLD_KINDS`: ``"linear"``, ``"binet"``, ``"exp_linear"`` with the
            ``log_linear`` coefficients), or None when only the torch and KeOps backends can evaluate it.
    """

    fn: Callable[[Any, float], Any]
    log_linear: Callable[[float], tuple[float, float]] | None = None
    fused: str | None = None


#: Normal kernels by name: ``"linear"`` (currents), ``"binet"`` (varifolds), ``"gaussian_oriented"``.
VARIFOLD_KERNELS: Registry[NormalKernel] = Registry("varifold kernel")
VARIFOLD_KERNELS.add("linear", NormalKernel(lambda t, sigma_n: t, fused="linear"))
VARIFOLD_KERNELS.add("binet", NormalKernel(lambda t, sigma_n: t * t, fused="binet"))
VARIFOLD_KERNELS.add(
    "gaussian_oriented",
    NormalKernel(
        lambda t, sigma_n: ((t - 1.0) * (2.0 / sigma_n**2)).exp(),
        lambda sigma_n: (2.0 / sigma_n**2, -2.0 / sigma_n**2),
        fused="exp_linear",
    ),
)

_Varifold = tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool, torch.Tensor]


# -- inputs ------------------------------------------------------------------------------------------------
def _as_varifold(
    x: object,
    name: str,
    normals: torch.Tensor | None,
    weights: torch.Tensor | None,
    lengths: torch.Tensor | None,
) -> _Varifold:
    """``(positions (B, N, d), normals (B, N, d), masses (B, N) zero on padding, batched, lengths (B,))``."""
    if not isinstance(x, torch.Tensor):
        given = [k for k, v in (("normals", normals), ("weights", weights), ("lengths", lengths)) if v is not None]
        if given:
            raise ValidationError(f"{name}_{given[0]}: only accepted with a tensor {name}, got {type(x).__name__}")
    if isinstance(x, Mesh):
        pos, nor, mass = [], [], []
        for v, f in zip(x.verts_list(), x.faces_list()):
            areas, nrm = face_areas_normals(v, f)
            pos.append(face_centroids(v, f))
            nor.append(nrm)
            mass.append(areas)
        pp, lengths = list_to_padded(pos)
        return pp, list_to_padded(nor)[0], list_to_padded(mass)[0], True, lengths
    if isinstance(x, PointCloud):
        if x.normals_padded() is None:
            raise ValidationError(f"{name}: a PointCloud needs normals to define a varifold")
        mask = mask_from_lengths(x.lengths, x.points_padded().shape[1])
        w = x.weights_padded()
        if w is None:
            w = mask.to(x.dtype) / x.lengths[:, None].to(x.dtype)
        return x.points_padded(), x.normals_padded(), w.masked_fill(~mask, 0.0), True, x.lengths
    if isinstance(x, Measure):
        if x.dim % 2:
            raise ShapeError(
                f"{name}: a varifold Measure needs support (B, N, 2d) = positions + normals, got D={x.dim}"
            )
        d = x.dim // 2
        return x.support[..., :d], x.support[..., d:], x.weights, True, x.lengths
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a Mesh, PointCloud, Measure or tensor, got {describe(x)}")
    check_float_tensor(x, name, ndim=(2, 3), finite=False)
    if normals is None:
        raise ValidationError(f"{name}_normals: required when {name} is a tensor of positions")
    check_float_tensor(normals, f"{name}_normals", finite=False)
    if normals.shape != x.shape:
        raise ShapeError(
            f"{name}_normals: expected shape {tuple(x.shape)} (that of {name}), got {tuple(normals.shape)}"
        )
    xb, lb, batched = to_batched(x, name, lengths)
    nb = normals if batched else normals.unsqueeze(0)
    mask = mask_from_lengths(lb, xb.shape[1])
    check_finite(xb[mask], name)
    check_finite(nb[mask], f"{name}_normals")
    if weights is None:
        w = mask.to(x.dtype) / lb[:, None].to(x.dtype)
    else:
        check_float_tensor(weights, f"{name}_weights")
        if weights.shape != x.shape[:-1]:
            raise ShapeError(f"{name}_weights: expected shape {tuple(x.shape[:-1])}, got {tuple(weights.shape)}")
        w = (weights if batched else weights.unsqueeze(0)).masked_fill(~mask, 0.0)
        if bool((w < 0).any()):
            raise ValidationError(f"{name}_weights: must be non-negative, got min {float(w.min()):.3g}")
    return xb, nb, w, batched, lb


# -- backends ----------------------------------------------------------------------------------------------
def _augment(
    x: torch.Tensor, n: torch.Tensor, y: torch.Tensor, m: torch.Tensor, inv_s2: float, kern: NormalKernel,
    sigma_n: float,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Features with ``<xa_i, ya_j> = -|x_i - y_j|^2 inv_s2 (+ alpha <n_i, m_j> + beta)``: ``(B, N, p), (B, M, p)``."""
    x2 = (x * x).sum(-1, keepdim=True) * inv_s2
    y2 = (y * y).sum(-1, keepdim=True) * inv_s2
    one_x, one_y = torch.ones_like(x2), torch.ones_like(y2)
    if kern.log_linear is None:
        return torch.cat([x * (2.0 * inv_s2), -x2, one_x], -1), torch.cat([y, one_y, -y2], -1), False
    alpha, beta = kern.log_linear(sigma_n)
    xa = torch.cat([x * (2.0 * inv_s2), n * alpha, beta - x2, one_x], -1)
    return xa, torch.cat([y, m, one_y, -y2], -1), True


def _block(
    xa: torch.Tensor, nc: torch.Tensor, ac: torch.Tensor, ya: torch.Tensor, m: torch.Tensor, b: torch.Tensor,
    kern: NormalKernel, sigma_n: float, folded: bool,
) -> torch.Tensor:
    """``sum_{i in block, j} a_i b_j exp(<xa_i, ya_j>) [k_n(<n_i, m_j>)]`` for each item: ``(B,)``."""
    # exponents are written in base 2 (log2(e) folded into the small factor xa: exp2 runs 1.3-1.6x faster than exp
    # on x86 CPUs) and clamped at half the dtype's exp2 floor (-61.5, i.e. e^-42.6, in float32): below the normal
    # range exp takes a slow path (~10x per element), and tiny terms make the products after it subnormal (slow
    # too); the clamp changes a term by < 1e-18 of the largest
    e = torch.bmm(xa * LOG2E, ya.transpose(1, 2)).clamp_min_(0.5 * exp2_floor(xa.dtype))
    if torch.is_grad_enabled():
        k = e.exp2()
        if not folded:
            k = k * kern.fn(torch.bmm(nc, m.transpose(1, 2)), sigma_n)
    else:  # no graph to keep: work in place, fewer passes over the block
        k = e.exp2_()
        if not folded:
            if kern.fused in ("linear", "binet"):
                # k_n(<n_i, m_j>) = <phi(n_i), phi(m_j)> with phi(n) = n (linear) or n n^T flattened (binet):
                # sum_j b_j E_ij k_n = <phi(n_i), (E (b phi(m)))_i>, one read of E, no T block
                pn, pm = (nc, m) if kern.fused == "linear" else (_outer(nc), _outer(m))
                return (ac * (pn * narrow_bmm(k, b[..., None] * pm)).sum(-1)).sum(-1)
            t = torch.bmm(nc, m.transpose(1, 2))
            # a registered kernel in place: one fewer block-sized temporary (fresh pages cost page faults)
            k.mul_(kern.fn(t, sigma_n))
    return (ac * gemv(k, b)).sum(-1)


def _outer(v: torch.Tensor) -> torch.Tensor:
    """``(..., D) -> (..., D^2)``: ``v v^T`` flattened, so that ``<v, w>^2 = <_outer(v), _outer(w)>``."""
    return (v[..., :, None] * v[..., None, :]).flatten(-2)


class _BlockGrad(torch.autograd.Function):
    """:func:`_block` for the built-in normal kernels with a hand-written backward pass that recomputes the block
    into three block-sized buffers (activation checkpointing through autograd needs about twice as many).

    With ``E = exp(<xa_i, ya_j>)``, ``T = <n_i, m_j>``, ``K = E k_n(T)`` and ``g`` the incoming gradient:
    ``d/da_i = g (K b)_i``, ``d/db_j = g (K^T a)_j``, ``d/dxa = W ya``, ``d/dya = W^T xa`` with
    ``W = g a_i b_j K_ij``, and ``d/dn = V m``, ``d/dm = V^T n`` with ``V = g a_i b_j E_ij k_n'(T_ij)``. The clamp of
    the exponent is ignored in the backward pass (it changes a term by less than ``1e-18`` of the largest)."""

    @staticmethod
    def forward(ctx, xa, nc, ac, ya, m, b, kern, sigma_n, folded):  # type: ignore[override]
        ctx.save_for_backward(xa, nc, ac, ya, m, b)
        ctx.kern, ctx.folded = kern, folded
        with torch.no_grad():
            return _block(xa, nc, ac, ya, m, b, kern, sigma_n, folded)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        xa, nc, ac, ya, m, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        e = torch.bmm(xa * LOG2E, ya.transpose(1, 2)).clamp_min_(0.5 * exp2_floor(xa.dtype)).exp2_()  # E
        if not ctx.folded and ctx.kern.fused == "linear":
            return _linear_block_grads(e, g, xa, nc, ac, ya, m, b, need)
        t = k = None
        if ctx.folded:
            k = e
        else:
            t = torch.bmm(nc, m.transpose(1, 2))
            k = e * t if ctx.kern.fused == "linear" else torch.mul(t, t).mul_(e)  # K = E k_n(T)
        # the weights a_i, b_j and g go into the narrow factors, and the mass gradients ride along as one more
        # column: two reads of K (rows: K [b ya, b]; columns: K^T [a xa, a]) instead of four and no W = g a K b block
        gxa = ga = gya = gb = None
        if need[0] or need[2]:
            r = narrow_bmm(k, torch.cat([b[..., None] * ya, b[..., None]], -1))
            gxa = (g[:, None] * ac)[..., None] * r[..., :-1] if need[0] else None
            ga = g[:, None] * r[..., -1] if need[2] else None
        if need[3] or need[5]:
            c = narrow_bmm(k.transpose(1, 2), torch.cat([ac[..., None] * xa, ac[..., None]], -1))
            gya = (g[:, None] * b)[..., None] * c[..., :-1] if need[3] else None
            gb = g[:, None] * c[..., -1] if need[5] else None
        gn = gm = None
        if not ctx.folded and (need[1] or need[4]):
            v = e if ctx.kern.fused == "linear" else e.mul_(t.mul_(2.0))  # E k_n'(T)
            gn = (g[:, None] * ac)[..., None] * narrow_bmm(v, b[..., None] * m) if need[1] else None
            gm = (g[:, None] * b)[..., None] * narrow_bmm(v.transpose(1, 2), ac[..., None] * nc) if need[4] else None
        return gxa, gn, ga, gya, gm, gb, None, None, None


def _linear_block_grads(e, g, xa, nc, ac, ya, m, b, need):
    """The gradients of :class:`_BlockGrad` for the linear kernel from two reads of ``E``: with ``K = E * (n m^T)``,
    ``(K Z)_i = sum_d n_id (E (m_d Z))_i`` and ``(K^T Z)_j = sum_d m_jd (E^T (n_d Z))_j``, so the row products
    ``K [b ya, b]`` and ``V (b m)`` (``V = E`` for ``k_n(t) = t``) are one product of ``E`` with ``D (w + 1)``
    columns, and the column products one product of ``E^T``: no ``T`` or ``K`` block."""
    gxa = gn = ga = gya = gm = gb = None
    if need[0] or need[1] or need[2]:
        r, v = _linear_side(e, nc, ya, m, b)
        scale = (g[:, None] * ac)[..., None]
        gxa = scale * r[..., :-1] if need[0] else None
        ga = g[:, None] * r[..., -1] if need[2] else None
        gn = scale * v if need[1] else None
    if need[3] or need[4] or need[5]:
        c, v = _linear_side(e.transpose(1, 2), m, xa, nc, ac)
        scale = (g[:, None] * b)[..., None]
        gya = scale * c[..., :-1] if need[3] else None
        gb = g[:, None] * c[..., -1] if need[5] else None
        gm = scale * v if need[4] else None
    return gxa, gn, ga, gya, gm, gb, None, None, None


def _linear_side(e, n_rows, pts, n_cols, w):
    """``(K [w pts, w], E (w n_cols))`` for ``K = E * (n_rows n_cols^T)``, from one product of ``e`` (rows x
    columns) with the ``D (w + 1)`` columns ``[n_cols_d w pts, n_cols_d w]_d`` and ``w n_cols``."""
    dim = n_rows.shape[-1]
    z = torch.cat([w[..., None] * pts, w[..., None]], -1)
    width = z.shape[-1]
    out = narrow_bmm(e, torch.cat([*(n_cols[..., d : d + 1] * z for d in range(dim)), w[..., None] * n_cols], -1))
    k_z = sum(n_rows[..., d : d + 1] * out[..., d * width : (d + 1) * width] for d in range(dim))
    return k_z, out[..., dim * width :]


def _inner_torch(
    x: torch.Tensor, n: torch.Tensor, a: torch.Tensor, y: torch.Tensor, m: torch.Tensor, b: torch.Tensor,
    inv_s2: float, kern: NormalKernel, sigma_n: float, chunk_size: int, symmetric: bool = False,
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``<x, y>`` by row blocks (padding has zero mass; ``lengths`` is not needed). ``symmetric=True`` (``y`` is
    ``x``): each block only meets the columns from its own on, the later ones counted twice (``K`` is symmetric),
    which halves the work of a self term."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, n, a, y, m, b))
    xa, ya, folded = _augment(x, n, y, m, inv_s2, kern, sigma_n)
    out = x.new_zeros(x.shape[0])
    for s in range(0, x.shape[1], chunk_size):
        e = min(s + chunk_size, x.shape[1])
        if symmetric:
            twice = torch.ones(y.shape[1] - s, dtype=b.dtype, device=b.device)
            twice[e - s :] = 2.0
            cols = (ya[:, s:], m[:, s:], b[:, s:] * twice)
        else:
            cols = (ya, m, b)
        args = (xa[:, s:e], n[:, s:e], a[:, s:e], *cols)
        if grad and kern.fused is not None:
            out = out + _BlockGrad.apply(*args, kern, sigma_n, folded)
        elif grad:
            out = out + checkpoint(_block, *args, kern, sigma_n, folded, use_reentrant=False)
        else:
            with torch.no_grad():
                out = out + _block(*args, kern, sigma_n, folded)
    return out


def _inner_keops(
    x: torch.Tensor, n: torch.Tensor, a: torch.Tensor, y: torch.Tensor, m: torch.Tensor, b: torch.Tensor,
    inv_s2: float, kern: NormalKernel, sigma_n: float, chunk_size: int, symmetric: bool = False,
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    try:
        from pykeops.torch import LazyTensor
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise MissingDependencyError("backend='keops' needs pykeops (pip install geomot[keops])") from e
    xi, ni = LazyTensor(x[:, :, None, :].contiguous()), LazyTensor(n[:, :, None, :].contiguous())
    yj, mj = LazyTensor(y[:, None, :, :].contiguous()), LazyTensor(m[:, None, :, :].contiguous())
    bj = LazyTensor(b[:, None, :, None].contiguous())
    k = (-((xi - yj).sqnorm2() * inv_s2)).exp() * kern.fn(ni | mj, sigma_n)
    return (a * (k * bj).sum(dim=2)[..., 0]).sum(-1)


def _inner_triton(
    x: torch.Tensor, n: torch.Tensor, a: torch.Tensor, y: torch.Tensor, m: torch.Tensor, b: torch.Tensor,
    inv_s2: float, kern: NormalKernel, sigma_n: float, chunk_size: int, symmetric: bool = False,
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``<x, y>`` by the streaming Triton kernel (forward and backward; padding skipped through ``lengths``)."""
    if kern.fused is None:
        raise ValidationError("backend: 'triton' evaluates the built-in normal kernels only; use 'torch' or 'keops'")
    if not triton_usable(x):
        raise ValidationError(
            f"backend: 'triton' needs CUDA tensors and triton (or TRITON_INTERPRET=1 for CPU), got {x.device}"
        )
    alpha, beta = kern.log_linear(sigma_n) if kern.log_linear is not None else (0.0, 0.0)
    if lengths is None:
        full_x = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=x.device)
        lengths = (full_x, torch.full_like(full_x, y.shape[1]))
    return varifold_sum_triton(x, n, a, y, m, b, lengths[0], lengths[1], inv_s2=inv_s2, kind=kern.fused,
                               alpha=alpha, beta=beta, symmetric=symmetric)


_BACKENDS: Registry[Callable[..., torch.Tensor]] = Registry("varifold backend")
_BACKENDS.add("torch", _inner_torch)
_BACKENDS.add("keops", _inner_keops)
_BACKENDS.add("triton", _inner_triton)


def _keops_available() -> bool:
    try:
        import pykeops  # noqa: F401
    except ImportError:
        return False
    return True


def _pick_backend(backend: str, x: torch.Tensor, y: torch.Tensor, kern: NormalKernel) -> str:
    if backend != "auto":
        _BACKENDS.get(backend, arg="backend")
        return backend
    if x.is_cuda and kern.fused is not None and triton_usable(x):
        return "triton"
    if x.is_cuda and x.shape[1] * y.shape[1] >= KEOPS_MIN_PAIRS and _keops_available():
        return "keops"
    return "torch"


# -- public API --------------------------------------------------------------------------------------------
def _check_measure(measure: str | None, x: object, y: object) -> None:
    """A Mesh enters the varifold kernel as its varifold; any other ``measure`` for a Mesh input raises."""
    kind = resolve_mesh_measure(measure)
    if kind != "varifold" and (isinstance(x, Mesh) or isinstance(y, Mesh)):
        raise ValidationError(
            f"measure: the varifold kernel needs normals, so a Mesh enters as its varifold (measure=None or "
            f"'varifold'), got {measure!r}; compare {kind} with chamfer_distance, sliced_wasserstein or "
            "sinkhorn_divergence instead"
        )


def _centre(p: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """``(D,)`` mean of the atoms with non-zero mass (padding excluded; NaN/Inf positions skipped here, they reach
    the kernel and give NaN there)."""
    sel = (mass.detach() != 0).to(p.dtype)[..., None]
    pts = torch.nan_to_num(p.detach(), nan=0.0, posinf=0.0, neginf=0.0)
    return (pts * sel).sum(dim=(0, 1)) / sel.sum().clamp_min(1.0)


def _prepare(
    x: object, y: object, kernel: str, sigma: float, sigma_normal: float, chunk_size: int | None,
    x_normals, y_normals, x_weights, y_weights, x_lengths, y_lengths, normalize: bool, measure: str | None = None,
) -> tuple[_Varifold, _Varifold, NormalKernel, float, int]:
    k_n = VARIFOLD_KERNELS.get(kernel, arg="kernel")
    sigma = check_positive(sigma, "sigma")
    check_positive(sigma_normal, "sigma_normal")
    _check_measure(measure, x, y)
    vx = _as_varifold(x, "x", x_normals, x_weights, x_lengths)
    vy = _as_varifold(y, "y", y_normals, y_weights, y_lengths)
    px, py = vx[0], vy[0]
    if px.shape[-1] != py.shape[-1]:
        raise ShapeError(f"y: expected positions of dimension {px.shape[-1]} (that of x), got {py.shape[-1]}")
    if px.shape[0] != py.shape[0]:
        raise ShapeError(f"y: expected batch size {px.shape[0]} (that of x), got {py.shape[0]}")
    if px.dtype != py.dtype or px.device != py.device:
        raise ShapeError(f"y: expected dtype {px.dtype} on {px.device} (that of x), got {py.dtype} on {py.device}")
    if normalize:
        vx = (vx[0], vx[1], vx[2] / vx[2].sum(-1, keepdim=True), vx[3], vx[4])
        vy = (vy[0], vy[1], vy[2] / vy[2].sum(-1, keepdim=True), vy[3], vy[4])
    if chunk_size is None:
        chunk_size = block_rows(px.shape[0] * max(px.shape[1], py.shape[1]), px.device)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    return vx, vy, k_n, sigma, chunk_size


def varifold_inner(
    x: object,
    y: object,
    *,
    sigma: float = 0.1,
    kernel: str = "binet",
    sigma_normal: float = 0.5,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    normalize: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
    measure: str | None = None,
) -> torch.Tensor:
    """Kernel inner product ``<S, T> = sum_{i, j} a_i b_j exp(-|x_i - y_j|^2 / sigma^2) k_n(<n_i, m_j>)``.

    Same arguments as :func:`varifold_distance`.

    Returns:
        ``(B,)`` one value per item, or ``()`` for unbatched tensor inputs.
    """
    vx, vy, k_n, sigma, chunk_size = _prepare(
        x, y, kernel, sigma, sigma_normal, chunk_size,
        x_normals, y_normals, x_weights, y_weights, x_lengths, y_lengths, normalize, measure,
    )
    fn = _BACKENDS.get(_pick_backend(backend, vx[0], vy[0], k_n))
    centre = _centre(vy[0], vy[2])  # translation invariance; reduces cancellation in |x|^2 - 2<x,y>
    val = fn(vx[0] - centre, vx[1], vx[2], vy[0] - centre, vy[1], vy[2], 1.0 / sigma**2, k_n, sigma_normal, chunk_size,
             lengths=(vx[4], vy[4]))
    return val if (vx[3] or vy[3]) else val[0]


def varifold_distance(
    x: object,
    y: object,
    *,
    sigma: float = 0.1,
    kernel: str = "binet",
    sigma_normal: float = 0.5,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    normalize: bool = False,
    reduction: str = "mean",
    backend: str = "auto",
    chunk_size: int | None = None,
    measure: str | None = None,
) -> torch.Tensor:
    """Squared kernel-varifold distance ``||mu_x - mu_y||^2_{W*} = <x, x> + <y, y> - 2 <x, y>``.

    ``<x, y> = sum_{i, j} a_i b_j exp(-|x_i - y_j|^2 / sigma^2) k_n(<n_i, m_j>)`` (see the module docstring for
    the kernels and the papers). The value is a squared norm, so it is ``>= 0`` up to rounding and quadratic in
    the masses; it is invariant under a rigid motion applied to both shapes. Differentiable with respect to
    positions, normals and masses (hence to mesh vertices).

    Args:
        x: a :class:`Mesh`, a :class:`PointCloud` with normals, a ``(B, N, 2d)`` :class:`Measure`, or positions
            ``(N, d)`` / ``(B, N, d)``.
        y: same kinds as ``x`` (``d`` and the batch size must match).
        sigma: width of the spatial Gaussian ``exp(-|x - y|^2 / sigma^2)``, in the units of the shapes.
        kernel: normal kernel, a name of :data:`VARIFOLD_KERNELS` (``"linear"``, ``"binet"``,
            ``"gaussian_oriented"``).
        sigma_normal: width of the ``"gaussian_oriented"`` normal kernel (ignored by the others).
        x_normals: ``(N, d)`` / ``(B, N, d)`` normals for a tensor ``x`` (unit vectors give the usual varifold).
        y_normals: same for ``y``.
        x_weights: ``(N,)`` / ``(B, N)`` non-negative masses for a tensor ``x`` (default ``1/N``).
        y_weights: same for ``y``.
        x_lengths: ``(B,)`` sizes of a padded tensor ``x``.
        y_lengths: same for ``y``.
        normalize: divide each item's masses by their total (compares shapes regardless of area).
        reduction: ``"mean"`` / ``"sum"`` over the batch, or ``"none"``: ``(B,)`` (``()`` for ``(N, d)`` tensors).
        backend: ``"auto"``, ``"torch"`` (blocked), ``"keops"`` or ``"triton"`` (module docstring).
        chunk_size: rows per block of the torch backend (the default keeps a block under ``2^22`` entries on the CPU
            and ``2^26`` on CUDA).
        measure: how a Mesh input becomes a measure: ``None`` or ``"varifold"`` (its faces' varifold, the only
            choice the kernel accepts); irrelevant for other inputs.

    Returns:
        the reduced distance (``()``), or ``(B,)`` / ``()`` with ``reduction="none"``.

    Raises:
        ShapeError: mismatched dimensions, batch sizes, dtypes or devices; normals of the wrong shape.
        ValidationError: NaN/Inf inputs (with value checks on; inside ``geomot.data_checks(False)`` they give
            NaN), ``sigma <= 0``, unknown kernel/backend/reduction, a tensor without normals, negative weights, a
            Mesh with a ``measure`` other than the varifold.
    """
    vx, vy, k_n, sigma, chunk_size = _prepare(
        x, y, kernel, sigma, sigma_normal, chunk_size,
        x_normals, y_normals, x_weights, y_weights, x_lengths, y_lengths, normalize, measure,
    )
    check_reduction(reduction)
    fn = _BACKENDS.get(_pick_backend(backend, vx[0], vy[0], k_n))
    centre = _centre(vy[0], vy[2])
    px, py = vx[0] - centre, vy[0] - centre
    args = (1.0 / sigma**2, k_n, sigma_normal, chunk_size)
    xx = fn(px, vx[1], vx[2], px, vx[1], vx[2], *args, symmetric=True, lengths=(vx[4], vx[4]))
    yy = fn(py, vy[1], vy[2], py, vy[1], vy[2], *args, symmetric=True, lengths=(vy[4], vy[4]))
    xy = fn(px, vx[1], vx[2], py, vy[1], vy[2], *args, lengths=(vx[4], vy[4]))
    return reduce(xx + yy - 2.0 * xy, reduction, batched=vx[3] or vy[3])


class VarifoldLoss(LossModule):
    """Module shell of :func:`varifold_distance`: ``VarifoldLoss(**settings)(x, y, **inputs)``.

    Settings (keyword-only, checked at construction): ``sigma``, ``kernel``, ``sigma_normal``, ``normalize``,
    ``reduction``, ``backend``, ``chunk_size``, ``measure``. Per-call inputs: ``x_normals``, ``y_normals``,
    ``x_weights``, ``y_weights``, ``x_lengths``, ``y_lengths``.
    """

    function = staticmethod(varifold_distance)
    inputs = (PAIR_INPUTS - {"generator"}) | {"x_normals", "y_normals"}

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        VARIFOLD_KERNELS.get(settings.get("kernel", "binet"), arg="kernel")
        check_positive(settings.get("sigma", 0.1), "sigma")
        check_positive(settings.get("sigma_normal", 0.5), "sigma_normal")
        check_reduction(settings.get("reduction", "mean"))
        if settings.get("backend", "auto") != "auto":
            _BACKENDS.get(settings["backend"], arg="backend")
        cs = settings.get("chunk_size")
        if cs is not None and (isinstance(cs, bool) or not isinstance(cs, int) or cs < 1):
            raise ValidationError(f"chunk_size: expected a positive integer, got {cs!r}")
        if settings.get("measure") is not None and resolve_mesh_measure(settings["measure"]) != "varifold":
            raise ValidationError(
                f"measure: the varifold kernel needs normals, so a Mesh enters as its varifold (measure=None or "
                f"'varifold'), got {settings['measure']!r}"
            )
        return settings
