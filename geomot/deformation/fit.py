"""Fit a diffeomorphic deformation of a source mesh onto a target surface by minimising a surface loss.

``min_theta  L(phi_theta(S), T) + sum_r w_r R_r(phi_theta(S))`` where ``phi_theta`` is the flow at ``t = 1`` of
``dx/dt = v_theta(x, t)`` (:func:`geomot.deformation.integrate`) applied to the source vertices, ``L`` a data term
of :data:`geomot.deformation.losses.DEFORM_LOSSES` (by default the exact point-to-surface distance; OT terms such
as sliced Wasserstein between varifolds, Le et al., ICLR 2024, on request) and ``R_r`` mesh regularisers (by
default the Laplacian of the displacement and its squared length, with a weight that decays to 0 over the run).
Optimiser: Adam with a warm-up and a cosine learning-rate decay.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from typing import NamedTuple

import torch
from torch import nn

from geomot._core.checks import check_int, check_positive, describe
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import GeomotDeprecationWarning, NumericalError, ShapeError, ValidationError
from geomot.deformation.checkpoint import check_config, read_checkpoint, write_checkpoint
from geomot.deformation.integrate import SOLVERS, integrate
from geomot.deformation.losses import DEFORM_REGULARIZERS, make_loss
from geomot.deformation.normalize import Normalization, choose_frames
from geomot.metrics.surface import SurfaceMetrics, surface_metrics
from geomot.models.velocity import VELOCITY_FIELDS, KernelVelocity, MLPVelocity
from geomot.ops.geometry import face_areas
from geomot.ops.sampling import farthest_point_sampling
from geomot.structures import Mesh

__all__ = ["DeformResult", "as_single_mesh", "auto_steps", "check_regularizers", "fit", "lr_factor", "make_field",
           "quick_fit", "regularizer_weight", "run_progress"]

log = logging.getLogger(__name__)


class DeformResult(NamedTuple):
    """Result of :func:`fit`; positions are in the target's frame (the input unit).

    Attributes:
        mesh: the deformed source, a :class:`Mesh` with the source's faces (``trajectory[-1]``).
        trajectory: ``(T, V, 3)`` vertex positions at ``times`` (``trajectory[0]`` is the source, moved into the
            target's frame when the target was aligned).
        times: ``(T,)`` output times in ``[0, 1]``.
        loss_history: ``(n_steps,)`` total objective at each optimisation step (normalised frame).
        metrics: :class:`geomot.metrics.SurfaceMetrics` of ``mesh`` against the target (None when not asked).
        frame_self_intersections: ``(T,)`` self-intersecting faces in each frame (empty when metrics are off).
        normalization: the frames used and whether the target was aligned.
        field: the trained velocity field (acts in the normalised frame).
        n_steps: optimisation steps done (fewer than asked when ``max_time`` stopped the fit).
        wall_time: seconds spent optimising.
    """

    mesh: Mesh
    trajectory: torch.Tensor
    times: torch.Tensor
    loss_history: torch.Tensor
    metrics: SurfaceMetrics | None
    frame_self_intersections: tuple[int, ...]
    normalization: Normalization
    field: nn.Module
    n_steps: int
    wall_time: float


def as_single_mesh(x: object, name: str) -> Mesh:
    """A single :class:`Mesh` from a Mesh or a ``(verts, faces)`` pair; rejects batches, NaN/Inf and faces that
    repeat a vertex. Zero-area faces are allowed (they carry no mass) and logged."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        v, f = x
        if not isinstance(v, torch.Tensor):
            raise ShapeError(f"{name}: expected verts as a torch.Tensor, got {describe(v)}")
        try:
            x = Mesh(v, torch.as_tensor(f, device=v.device))
        except ValidationError as e:
            raise type(e)(f"{name}: {e}") from None
    if not isinstance(x, Mesh):
        raise ShapeError(f"{name}: expected a Mesh or a (verts, faces) pair, got {describe(x)}")
    if len(x) != 1:
        raise ShapeError(f"{name}: expected a single mesh, got a batch of {len(x)}")
    f = x.faces
    rep = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    if bool(rep.any()):
        raise ValidationError(
            f"{name}: {int(rep.sum())} degenerate face(s) repeat a vertex (first: face {int(rep.nonzero()[0])}); "
            "remove them before fitting"
        )
    zero = face_areas(x.verts.detach(), f) <= 0
    if bool(zero.any()):
        log.warning("%s: %d zero-area face(s); they carry no mass in the loss", name, int(zero.sum()))
    return x


def auto_steps(n_verts: int) -> int:
    """Default number of optimisation steps: ``clip(40 log2(V / 50), 100, 300)`` — finer meshes resolve finer
    detail and need more steps, while the cost of a step grows with ``V`` (642 vertices: 147; 10,242: 300)."""
    return int(min(max(round(40 * math.log2(max(n_verts, 2) / 50)), 100), 300))


#: Default data term of :func:`fit`: the exact, noise-free point-to-surface term (see :func:`fit` and
#: ``docs/deformation.md`` for why).
DEFAULT_LOSS = "surface"
#: Default regularisers of :func:`fit` (``regularizers=None``): the squared uniform Laplacian of the displacement
#: (weight 1: a squared length like the data term, so the weight is unit-free) against folds, and the squared length
#: of the displacement with a weight going linearly from 0.1 to 0 over the run (a continuation towards the shortest
#: deformation that fits), against sliding along the surface, which no surface-to-surface term sees; and the fold
#: hinge (weight 1), 0 until a face's area projected on its source normal falls below a tenth of its source area,
#: against the faces that turn over on the flanks of a growing feature.
DEFAULT_REGULARIZERS: dict[str, float | tuple[float, float]] = {"laplacian": 1.0, "displacement": (0.1, 0.0),
                                                                "fold": 1.0}

#: Steps of the fixed-step ODE solver over ``[0, 1]`` in :func:`fit`: the flow of a Lipschitz field is a
#: diffeomorphism, but an Euler step longer than the field's smoothing scale can still fold a face where a tall
#: feature grows; 20 steps keep each step short (half of 10, at twice the field's cost per iteration).
DEFAULT_TIME_STEPS = 20

#: Fraction of the run over which the learning rate warms up linearly, and the final fraction of it after the cosine.
WARMUP, FINAL_LR = 0.05, 0.05


def run_progress(step: int, steps: int, elapsed: float = 0.0, max_time: float | None = None) -> float:
    """Progress of a run in ``[0, 1]``: ``max(step / steps, elapsed / max_time)``, so that a run cut by
    ``max_time`` still goes through its whole schedule."""
    progress = step / max(steps, 1)
    if max_time is not None:
        progress = max(progress, elapsed / max_time)
    return min(progress, 1.0)


def lr_factor(step: int, steps: int, elapsed: float = 0.0, max_time: float | None = None) -> float:
    """Learning-rate multiplier at optimisation ``step``: a linear warm-up over the first ``WARMUP`` of the run
    (Adam's first updates have the size of the learning rate for every parameter whatever its gradient, so a cold
    start moves the whole surface at once), then a cosine decay to ``FINAL_LR`` (progress: :func:`run_progress`)."""
    progress = run_progress(step, steps, elapsed, max_time)
    warm = min(1.0, max((step + 1) / max(WARMUP * steps, 1.0), progress / WARMUP))
    return warm * (FINAL_LR + (1.0 - FINAL_LR) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def optimizer_step(opt: torch.optim.Optimizer, total: torch.Tensor, history: list[float], bar, k: int) -> None:
    """One optimiser step on ``total``; its value is appended to ``history`` and shown on ``bar`` every 10 steps."""
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    history.append(float(total.detach()))
    if bar is not None and k % 10 == 0:
        bar.set_postfix(loss=f"{history[-1]:.3e}")


def make_field(
    field: str | nn.Module, x0: torch.Tensor, faces: torch.Tensor, *, seed: int, **options: object
) -> nn.Module:
    """A velocity field for the vertices ``x0 (V, 3)`` (faces ``(F, 3)``) in the normalised frame.

    An ``nn.Module`` is used as is; a name of :data:`geomot.models.VELOCITY_FIELDS` is built with ``options``.
    Kernel fields get ``n_control`` control points (default: every vertex; fewer are chosen by farthest-point
    sampling of ``x0``) read from the moving state, and, unless given, a kernel width equal to the control spacing
    ``sigma = sqrt(area / n_control)``, so that the Gaussians overlap without gaps whatever the mesh. Every vertex
    costs no more per field evaluation than a subset: the number of (vertex, control) pairs within the kernel's
    support depends on ``sigma`` / spacing only, and it lets the field resolve what the mesh resolves.
    """
    if isinstance(field, nn.Module):
        return field
    cls = VELOCITY_FIELDS.get(field, arg="field")
    g = torch.Generator().manual_seed(seed)
    if cls is KernelVelocity:
        opts = dict(options)
        n_control = opts.pop("n_control", None)
        k = x0.shape[0] if n_control is None else int(min(int(check_positive(n_control, "n_control")), x0.shape[0]))
        if k == x0.shape[0]:
            idx = torch.arange(k, device=x0.device)
        else:
            idx = farthest_point_sampling(x0.detach().cpu(), k, start=0).to(x0.device)
        factor = float(check_positive(opts.pop("sigma_factor", 1.0), "sigma_factor"))
        if opts.get("sigma") is None:
            opts["sigma"] = factor * float((face_areas(x0.detach(), faces).sum() / k).sqrt())
        if opts.get("carry", True):
            opts["control_index"] = idx
        return KernelVelocity(x0.detach()[idx], **opts)
    if cls is MLPVelocity:
        opts = {"hidden": 128, "layers": 3, "fourier_features": 64, "fourier_scale": 2.0, **options}
        return MLPVelocity(generator=g, **opts).to(device=x0.device, dtype=x0.dtype)
    return cls(generator=g, **options).to(device=x0.device, dtype=x0.dtype)


def check_regularizers(regularizers: dict) -> dict[str, float | tuple[float, float]]:
    """Validated ``{name: weight}``: a weight is a number ``>= 0`` or a pair ``(start, end)`` of them, interpolated
    linearly over the run's progress (:func:`regularizer_weight`)."""
    regs: dict[str, float | tuple[float, float]] = {}
    for name, w in dict(regularizers).items():
        if isinstance(w, (tuple, list)):
            if len(w) != 2:
                raise ValidationError(f"regularizers[{name!r}]: expected a weight or a (start, end) pair, got {w!r}")
            regs[name] = (float(check_positive(w[0], f"regularizers[{name!r}][0]", strict=False)),
                          float(check_positive(w[1], f"regularizers[{name!r}][1]", strict=False)))
        else:
            regs[name] = float(check_positive(w, f"regularizers[{name!r}]", strict=False))
        if name != "kinetic":
            DEFORM_REGULARIZERS.get(name, arg="regularizers")
    return regs


def regularizer_weight(weight: float | tuple[float, float], progress: float) -> float:
    """Weight of a regulariser at the run's progress ``p in [0, 1]``: ``w`` for a number, ``(1 - p) w_0 + p w_1``
    for a pair ``(w_0, w_1)`` (a continuation: e.g. ``(1, 0)`` starts stiff and ends free)."""
    if isinstance(weight, tuple):
        p = min(max(float(progress), 0.0), 1.0)
        return (1.0 - p) * weight[0] + p * weight[1]
    return float(weight)


def _objective(field, x0, f, tgt, loss_fn, regs, gen, solver, progress):
    traj = integrate(field, x0, times=2, **solver)
    x = traj.points[-1]
    total = loss_fn(x, f, tgt, generator=gen, progress=progress)
    for name, w in regs.items():
        w = regularizer_weight(w, progress)
        if w == 0:
            continue
        if name == "kinetic":
            total = total + w * field.kinetic_energy()
        else:
            total = total + w * DEFORM_REGULARIZERS.get(name, arg="regularizers")(x, f, x0)
    return total


@renamed_kwargs(steps="max_iter")
def fit(
    source: object,
    target: object,
    *,
    loss: str | dict[str, float] = DEFAULT_LOSS,
    field: str | nn.Module = "kernel",
    max_iter: int | None = None,
    lr: float | None = None,
    method: str = "euler",
    n_time_steps: int = DEFAULT_TIME_STEPS,
    adjoint: bool = False,
    n_frames: int = 11,
    loss_options: dict | None = None,
    field_options: dict | None = None,
    regularizers: dict[str, float] | None = None,
    normalize: str = "auto",
    seed: int = 0,
    max_time: float | None = None,
    metrics: bool = True,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    threads: int | None = None,
) -> DeformResult:
    """Deform ``source`` onto ``target`` with a neural-ODE flow trained on an OT loss.

    Both shapes are mapped to a normalised frame (``normalize``, see
    :data:`geomot.deformation.normalize.NORMALIZATIONS`): by default the source's area-weighted centre and RMS
    radius, used for both so that their relative position is kept; a target in another unit or far away is aligned
    and the decision logged and recorded in ``result.normalization``. Each iteration integrates the source vertices
    ``x_0 (V, 3)`` to ``x_1 = phi_theta(x_0)``, evaluates ``L(x_1, T) + sum_r w_r R_r(x_1)`` and takes an Adam step
    (learning rate ``lr``: linear warm-up over the first 5 % of the run, then a cosine decay to ``lr / 20``,
    :func:`lr_factor`). Deterministic for a given ``seed`` on a given machine: the field's initialisation,
    projections and samples come from ``torch.Generator`` objects seeded with it; torch's global generator and
    thread count are never touched (set ``torch.set_num_threads`` yourself: one thread is often fastest on a
    machine whose cores are busy, see ``docs/deformation.md``).

    Default objective (``DEFAULT_LOSS``, ``DEFAULT_REGULARIZERS``): ``surface + |L(x - x_0)|^2 + 0.1 (1 - p)
    |x - x_0|^2 + fold`` at the run's progress ``p``. The exact point-to-surface term (squared distances both ways)
    measures how far the surfaces are and nothing else: it is blind to vertices sliding along the surface. The
    squared uniform Laplacian of the displacement keeps the nearest-point pull from bunching vertices where an
    offset surface folds; the squared length of the displacement (mean over vertices) selects, among the
    deformations that fit equally well, the shortest one (the kinetic-energy prior of LDDMM for a straight path),
    so vertices do not slide; it uses no normal or frame, so a bump that grows and one that retracts are treated
    alike. Its weight decays linearly to 0 (a continuation, as the stiffness schedule of non-rigid ICP, Amberg et
    al., CVPR 2007): early it keeps the correspondence short, at the end it no longer pulls the surface off the
    target. The fold term (``"fold"``, ``geomot.deformation.losses``) is a hinge on the faces whose
    area projected on their source normal falls below a tenth of their source area: zero for faces that keep it,
    it pushes back the thin faces that would turn over on the flanks of a growing feature. A sliced-Wasserstein
    term between the
    varifolds (``"sw-varifold+surface"``, the previous default) transports *mass*: where the target has more area
    (a bump), it drags vertices sideways towards it, which folds the mesh; it remains available for shapes that
    are far apart (measured in ``docs/deformation.md``).

    With ``checkpoint=PATH`` the state of the run (field, Adam, generator, loss history, iteration) is written
    atomically every ``checkpoint_every`` iterations and at the end; ``resume=True`` continues from it to
    ``max_iter`` and gives the result of the uninterrupted run (runs cut by ``max_time`` resume with the time
    already spent).

    Args:
        source: a single :class:`Mesh` or ``(verts (V, 3), faces (F, 3))``.
        target: a single :class:`Mesh` or ``(verts, faces)`` (any connectivity).
        loss: a data term of :data:`~geomot.deformation.losses.DEFORM_LOSSES` (``"sw-varifold"``, ``"sw"``,
            ``"varifold"``, ``"sinkhorn"``, ``"chamfer"``, ``"surface"``), a combination ``"a+b"`` or a
            ``{name: weight}`` mapping (:func:`~geomot.deformation.losses.make_loss`).
        field: ``"kernel"`` (default: Gaussian RKHS field on control points, smooth by construction), ``"mlp"``
            or an ``nn.Module`` velocity field acting in the normalised frame.
        max_iter: optimisation iterations (default :func:`auto_steps` of the source's vertex count); the old
            name ``steps`` is deprecated.
        lr: Adam learning rate (default: a quarter of the kernel width for kernel fields, whose momenta are
            velocities, so that one step moves the surface by a fraction of the field's smoothing scale and
            cannot fold it; 1e-3 for networks).
        method: ODE solver (:data:`~geomot.deformation.integrate.SOLVERS`); fixed-step ``"euler"`` by default.
        n_time_steps: steps of a fixed-step solver over ``[0, 1]`` (default ``DEFAULT_TIME_STEPS``).
        adjoint: gradients by the adjoint method.
        n_frames: frames of the returned trajectory (``>= 2``).
        loss_options: options of the data term (defaults: :func:`default_loss_options`); for a combination,
            ``{term: {option: value}}``.
        field_options: options of a named field (see :func:`make_field`: ``n_control``, ``sigma``,
            ``sigma_factor``, ``n_time_bins`` for kernel fields).
        regularizers: weights of ``"edge"``, ``"laplacian"``, ``"displacement"``, ``"tangential"``, ``"normal"``,
            ``"fold"`` (and ``"kinetic"`` for kernel fields); a weight is a number or a pair ``(start, end)`` moved
            linearly over the run (:func:`regularizer_weight`); None = ``DEFAULT_REGULARIZERS``, ``{}`` = none.
        normalize: ``"auto"``, ``"joint"``, ``"separate"`` or ``"none"``.
        seed: seed of every random choice.
        max_time: stop after this many seconds of optimisation (for equal-time comparisons).
        metrics: compute :func:`geomot.metrics.surface_metrics` and per-frame self-intersections.
        progress: show a tqdm progress bar.
        checkpoint: file to write the run's state to (``torch.save``, atomically); None = no checkpoints.
        checkpoint_every: iterations between checkpoints.
        resume: continue from ``checkpoint`` (made by a run with the same settings and inputs).
        threads: deprecated and ignored: a library call does not change torch's process-wide thread count; call
            ``torch.set_num_threads`` before fitting.

    Returns:
        :class:`DeformResult`.

    Raises:
        ValidationError: NaN/Inf coordinates, faces repeating a vertex, unknown names, bad hyperparameters,
            ``resume`` without a checkpoint path or from a checkpoint made with other settings.
        FileFormatError: ``resume`` from a missing or unreadable checkpoint.
        NumericalError: the flow blew up (NaN/Inf) at an optimisation iteration; the message names it and
            ``err.last_good`` is the :class:`DeformResult` of the last finite state.
    """
    if threads is not None:
        warnings.warn("fit: the argument 'threads' is deprecated and ignored (a library call does not change "
                      "torch's process-wide thread count); call torch.set_num_threads before fitting",
                      GeomotDeprecationWarning, stacklevel=3)
    src = as_single_mesh(source, "source")
    tgt = as_single_mesh(target, "target")
    if tgt.dtype != src.dtype or tgt.device != src.device:
        tgt = tgt.to(device=src.device, dtype=src.dtype)
    loss_fn = make_loss(loss, int(src.faces.shape[0]), loss_options)
    SOLVERS.get(method, arg="method")
    n_frames = int(check_positive(n_frames, "n_frames", at_least=2))
    max_iter = auto_steps(src.verts.shape[0]) if max_iter is None else check_int(max_iter, "max_iter", at_least=1)
    regs = check_regularizers(DEFAULT_REGULARIZERS if regularizers is None else regularizers)
    if max_time is not None:
        check_positive(max_time, "max_time")
    every = check_int(checkpoint_every, "checkpoint_every", at_least=1)
    if resume and checkpoint is None:
        raise ValidationError("resume: needs a checkpoint path (checkpoint=...)")

    norm = choose_frames(src.verts.detach(), src.faces, tgt.verts.detach(), tgt.faces, normalize)
    x0 = norm.source.apply(src.verts.detach())
    f = src.faces
    tgt_n = Mesh(norm.target.apply(tgt.verts.detach()), tgt.faces)
    fld = make_field(field, x0, f, seed=seed, **(field_options or {}))
    if lr is None:  # kernel momenta are velocities: move at most a quarter of the kernel width per step
        lr = 0.25 * fld.sigma if isinstance(fld, KernelVelocity) else 1e-3
    lr = check_positive(lr, "lr")
    if "kinetic" in regs and not hasattr(fld, "kinetic_energy"):
        raise ValidationError("regularizers: 'kinetic' needs a kernel field (field='kernel')")
    params = [p for p in fld.parameters() if p.requires_grad]
    if not params:
        raise ValidationError("field: has no trainable parameter")
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator(device=x0.device).manual_seed(seed)
    solver = {"method": method, "n_steps": n_time_steps, "adjoint": adjoint}
    config = {"loss": repr(loss), "loss_options": repr(loss_options), "field": repr(field) if isinstance(field, str)
              else type(field).__name__, "field_options": repr(field_options), "regularizers": repr(regs),
              "max_iter": max_iter, "lr": lr, "seed": seed, "method": method, "n_time_steps": n_time_steps,
              "adjoint": adjoint, "normalize": normalize, "max_time": repr(max_time),
              "source": [int(x0.shape[0]), int(f.shape[0])], "target": [int(tgt.verts.shape[0]),
                                                                       int(tgt.faces.shape[0])]}
    history: list[float] = []
    start, spent = 0, 0.0
    if resume:
        start, history, spent = _load_fit(checkpoint, config, fld, opt, gen)
    k, elapsed = _optimise(fld, opt, gen, x0, f, tgt_n, loss_fn, regs, solver, lr, max_iter, max_time, start,
                           history, spent, progress, f"deform ({loss})",
                           lambda k, t: _save_fit(checkpoint, config, fld, opt, gen, k, history, t)
                           if checkpoint is not None and ((k % every == 0) or k == max_iter) else None,
                           lambda h, k, t: _finish(fld, x0, src, tgt, norm, solver, n_frames, h, k, t, metrics))
    log.info("deform: %d iterations of %s in %.1f s, final objective %.4g", k, loss, elapsed,
             history[-1] if history else math.nan)
    if checkpoint is not None and k % every != 0 and k != max_iter:  # stopped by max_time
        _save_fit(checkpoint, config, fld, opt, gen, k, history, elapsed)
    return _finish(fld, x0, src, tgt, norm, solver, n_frames, history, k, elapsed, metrics)


def _optimise(fld, opt, gen, x0, f, tgt_n, loss_fn, regs, solver, lr, max_iter, max_time, start, history, spent,
              progress, desc, after_step, result) -> tuple[int, float]:
    """Adam iterations ``start .. max_iter - 1`` (or until ``max_time``); returns (iterations done, seconds).
    ``after_step(k, seconds)`` runs after iteration ``k - 1``; ``result(history, k, seconds)`` builds the
    :class:`DeformResult` attached to a :class:`NumericalError`."""
    from tqdm.auto import tqdm

    good = copy.deepcopy(fld.state_dict())
    t_start = time.perf_counter() - spent
    bar = tqdm(range(start, max_iter), desc=desc, disable=not progress, leave=False, initial=start, total=max_iter)
    k = start
    for k in bar:
        now = time.perf_counter() - t_start
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor(k, max_iter, now, max_time)
        try:
            total = _objective(fld, x0, f, tgt_n, loss_fn, regs, gen, solver, run_progress(k, max_iter, now, max_time))
        except NumericalError as e:
            fld.load_state_dict(good)
            err = NumericalError(f"fit: the flow blew up at optimisation step {k}: {e}")
            err.last_good = result(history, k, time.perf_counter() - t_start)  # type: ignore[attr-defined]
            raise err from None
        if not bool(torch.isfinite(total)):
            fld.load_state_dict(good)
            err = NumericalError(f"fit: the objective is NaN/Inf at optimisation step {k}; the field was reset "
                                 "to the last finite state (in err.last_good); lower lr")
            err.last_good = result(history, k, time.perf_counter() - t_start)  # type: ignore[attr-defined]
            raise err
        good = copy.deepcopy(fld.state_dict())
        optimizer_step(opt, total, history, bar if progress else None, k)
        after_step(k + 1, time.perf_counter() - t_start)
        if max_time is not None and time.perf_counter() - t_start > max_time:
            k += 1
            break
    else:
        k = max_iter
    bar.close()
    return k, time.perf_counter() - t_start


_FIT_FORMAT = "geomot.deformation.fit/1"


def _save_fit(path, config, fld, opt, gen, k: int, history: list[float], elapsed: float) -> None:
    write_checkpoint(path, {"format": _FIT_FORMAT, "config": config, "step": k, "elapsed": elapsed,
                            "field": fld.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                            "history": torch.tensor(history, dtype=torch.float64)})


def _load_fit(path, config, fld, opt, gen) -> tuple[int, list[float], float]:
    state = read_checkpoint(path, _FIT_FORMAT)
    check_config(state, config)
    fld.load_state_dict(state["field"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["step"]), [float(h) for h in state["history"]], float(state["elapsed"])


def _finish(fld, x0, src, tgt, norm, solver, n_frames, history, k, elapsed, metrics) -> DeformResult:
    from geomot.metrics.intersections import self_intersections

    with torch.no_grad():
        traj = integrate(fld, x0, times=n_frames, **solver)
    pts = norm.target.invert(traj.points.detach())
    mesh = Mesh(pts[-1], src.faces)
    m, frames = None, ()
    if metrics:
        ref = (pts[0], src.faces)
        m = surface_metrics(mesh, tgt.detach(), reference=ref)
        frames = tuple(self_intersections((p, src.faces)) for p in pts)
    return DeformResult(
        mesh=mesh, trajectory=pts, times=traj.times, loss_history=torch.tensor(history, dtype=torch.float64),
        metrics=m, frame_self_intersections=frames, normalization=norm, field=fld, n_steps=k, wall_time=elapsed,
    )


def quick_fit(
    source: object, target: object, *, max_iter: int = 100, steps: int | None = None, seed: int = 0,
    progress: bool = True,
) -> DeformResult:
    """A fit of a few seconds on a small pair (the ``geomot demo`` sphere -> blob): :func:`fit` with a kernel field
    on at most 300 control points, SW between varifolds with 100 projections of 2,000 samples, 8 Euler steps.

    Args:
        source: a single :class:`Mesh` or ``(verts, faces)``.
        target: likewise.
        max_iter: optimisation iterations.
        steps: the same as ``max_iter`` (when given, it wins).
        seed: seed of every random choice.
        progress: tqdm progress bar.

    Returns:
        :class:`DeformResult` (with metrics).
    """
    return fit(source, target, loss="sw-varifold", field="kernel", max_iter=max_iter if steps is None else steps,
               n_time_steps=8, field_options={"n_control": 300},
               loss_options={"n_projections": 100, "n_samples": 2000}, regularizers={}, seed=seed, progress=progress)
