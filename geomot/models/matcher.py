"""The learned matcher: DiffusionNet features -> deep functional maps -> soft point maps.

``DeepMatcher`` is the network of unsupervised deep functional maps as in ULRSSM (Cao, Roetzer & Bernard,
"Unsupervised Learning of Robust Spectral Shape Matching", SIGGRAPH 2023) and in Le et al. ("Integrating Efficient
Optimal Transport and Functional Maps For Unsupervised Shape Correspondence Learning", CVPR 2024): a shared
:class:`~geomot.models.DiffusionNet` maps the input features of each shape (WKS or centred XYZ) to per-vertex
features ``F_1, F_2``; :class:`~geomot.correspondence.DeepFunctionalMap` turns them into the regularised functional
maps ``C_12, C_21`` on the first ``k_fmap`` eigenfunctions and the soft point maps ``Pi_21, Pi_12`` (row softmax of
the cosine similarity at temperature ``tau``). The unsupervised loss of :func:`geomot.losses.unsupervised_fmap_loss`
is computed from these outputs by the trainer (:mod:`geomot.train.matcher`).
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, NamedTuple

import torch
from torch import nn

from geomot._core.checks import check_int, check_positive
from geomot._core.errors import ValidationError
from geomot.correspondence.anchors import anchor_refine
from geomot.correspondence.deep import DeepFmapOutput, DeepFunctionalMap
from geomot.correspondence.p2p import fmap_from_p2p, knn_indices
from geomot.correspondence.pipeline import MatchResult, _as_shape, _unit_area
from geomot.correspondence.zoomout import _zoomout_fmap, fixed_size_iterations, zoomout
from geomot.losses.fmap import unsupervised_fmap_loss
from geomot.models.diffusionnet import DiffusionNet, wks_input, xyz_input
from geomot.ops.alignment import axis_rotations
from geomot.ops.operators import DiffusionBatch, DiffusionOperators, batch_operators, diffusion_operators
from geomot.ops.sampling import farthest_point_sampling
from geomot.ops.simplify import decimate

__all__ = ["MATCHER_INPUTS", "DeepMatcher", "MatcherOutput", "PreparedShape", "prepare_shape"]

#: input features of the matcher: name -> number of channels given the settings
MATCHER_INPUTS = ("wks", "xyz")


class PreparedShape(NamedTuple):
    """A shape as the matcher reads it.

    Attributes:
        verts: ``(V, 3)`` float64, scaled to unit total area (meshes) or unit mean squared radius about the centroid
            (point clouds), so that learned diffusion times mean the same on every shape.
        faces: ``(F, 3)`` int64 or None.
        operators: its :class:`~geomot.ops.operators.DiffusionOperators` (float64, CPU).
        device: the device the shape's vertices came on (results are returned there).
    """

    verts: torch.Tensor
    faces: torch.Tensor | None
    operators: DiffusionOperators
    device: torch.device


def prepare_shape(shape: Any, *, k_eig: int, cache_dir: str | os.PathLike | None = None,
                  name: str = "shape") -> PreparedShape:
    """Normalise the scale of ``shape`` and compute its DiffusionNet operators (cached in ``cache_dir``).

    Args:
        shape: ``Mesh``, ``PointCloud``, ``(verts, faces)`` or ``(V, 3)`` tensor.
        k_eig: eigenpairs to compute (at least the model's ``k_eig``).
        cache_dir: opt-in on-disk cache of the operators (:func:`geomot.ops.operators.diffusion_operators`).
        name: the argument's name in error messages.
    """
    v, f, device = _as_shape(shape, name)
    if v.shape[0] < k_eig:
        raise ValidationError(f"{name}: {v.shape[0]} vertices, fewer than the k_eig={k_eig} eigenpairs the matcher "
                              "uses; give a finer shape or a model with a smaller k_eig")
    v = _unit_area(v, f)
    return PreparedShape(v, f, diffusion_operators(v, f, k_eig=k_eig, cache_dir=cache_dir), device)


def _anchor_refinement(
    tgt: PreparedShape, src: PreparedShape, fmap_12: torch.Tensor, k_final: int, step: int,
    samples: torch.Tensor | None, iterations: int, n_anchors: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ZoomOut of ``fmap_12`` to ``k_final`` (on ``samples`` of the source), geodesic-anchor refinement and one
    refit on every vertex, as stage 4 of the training-free pipeline (float32 nearest neighbours):
    ``(p2p_21 (V2,), fmap_12 (k_final, k_final) float64)``."""
    e1, e2 = tgt.operators.evecs[:, :k_final], src.operators.evecs[:, :k_final]
    C, _ = _zoomout_fmap(fmap_12, e1, e2, k_final=k_final, step=step, samples2=samples)
    e1f, e2f, m2 = e1.float(), e2.float(), src.operators.mass.float()
    ref = anchor_refine(C.float(), e1f, e2f, tgt.operators.mass.float(), m2, tgt.verts, tgt.faces, src.verts,
                        src.faces, n_anchors=min(n_anchors, src.verts.shape[0]), max_iter=iterations)
    res = fixed_size_iterations(ref.fmap_12, e1f, e2f, m2, max_iter=1)
    return res.p2p_21, res.fmap_12.double()


def _coarse(shape: PreparedShape, n_vertices: int, k_eig: int, cache_dir: str | os.PathLike | None) -> PreparedShape:
    """``shape`` decimated to about ``n_vertices`` vertices (meshes above that size; 0: unchanged)."""
    if not n_vertices or shape.faces is None or shape.verts.shape[0] <= max(n_vertices, k_eig):
        return shape
    v, f = decimate(shape.verts, shape.faces, max(n_vertices, k_eig))
    return prepare_shape((v, f), k_eig=k_eig, cache_dir=cache_dir)


class MatcherOutput(NamedTuple):
    """Result of :meth:`DeepMatcher.forward`.

    Attributes:
        feat_1, feat_2: ``(B, V1, C)`` / ``(B, V2, C)`` per-vertex features (zero on padding).
        fmaps: the :class:`~geomot.correspondence.deep.DeepFmapOutput` (``fmap_12 (B, k, k)``, ``fmap_21``,
            ``soft_map_21 (B, V2, V1)``, ``soft_map_12 (B, V1, V2)``).
    """

    feat_1: torch.Tensor
    feat_2: torch.Tensor
    fmaps: DeepFmapOutput


class DeepMatcher(nn.Module):
    """DiffusionNet features and the deep functional-map block (see the module docstring).

    Args:
        input: ``"wks"`` (wave kernel signatures, invariant to rigid motions: the default) or ``"xyz"``.
        n_wks: WKS energies (input channels with ``input="wks"``; ULRSSM: 128).
        out_channels: feature channels (ULRSSM: 256).
        width, n_blocks, k_eig, dropout: DiffusionNet's settings (Sharp et al. 2022: 128, 4, 128).
        k_fmap: eigenfunctions of the functional maps (``<= k_eig`` of the operators).
        lambda_, gamma: the regularised solve's weight and resolvent exponent (ULRSSM: 100, 0.5).
        tau: temperature of the soft point maps (ULRSSM: 0.07).
        generator: source of the initial weights.

    Shapes:
        ``forward(ops_1: DiffusionBatch, ops_2: DiffusionBatch, verts_1=None, verts_2=None) -> MatcherOutput``;
        ``verts_*`` ``(B, V, 3)`` are needed with ``input="xyz"`` only.
    """

    def __init__(
        self,
        *,
        input: str = "wks",
        n_wks: int = 128,
        out_channels: int = 256,
        width: int = 128,
        n_blocks: int = 4,
        k_eig: int = 128,
        dropout: float = 0.5,
        k_fmap: int = 50,
        lambda_: float = 100.0,
        gamma: float = 0.5,
        tau: float = 0.07,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if input not in MATCHER_INPUTS:
            raise ValidationError(f"input: unknown input features {input!r}; valid: {', '.join(MATCHER_INPUTS)}")
        if not isinstance(k_fmap, int) or isinstance(k_fmap, bool) or not 1 <= k_fmap <= k_eig:
            raise ValidationError(f"k_fmap: expected an integer in [1, k_eig={k_eig}], got {k_fmap!r}")
        self.input, self.n_wks, self.k_fmap = input, int(n_wks), int(k_fmap)
        self._settings = {"input": input, "n_wks": self.n_wks, "out_channels": out_channels, "width": width,
                          "n_blocks": n_blocks, "k_eig": k_eig, "dropout": dropout, "k_fmap": self.k_fmap,
                          "lambda_": float(lambda_), "gamma": float(gamma), "tau": float(tau)}
        in_channels = self.n_wks if input == "wks" else 3
        self.features = DiffusionNet(in_channels, out_channels, width=width, n_blocks=n_blocks, k_eig=k_eig,
                                     dropout=dropout, generator=generator)
        self.fmap = DeepFunctionalMap(lambda_=lambda_, gamma=gamma, soft_map="softmax",
                                      soft_map_options={"tau": tau})

    @property
    def k_eig(self) -> int:
        return self.features.k_eig

    def input_features(self, ops: DiffusionBatch, verts: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, V, C_in)`` input of the feature network: WKS of the operators, or centred ``verts``."""
        if self.input == "wks":
            return wks_input(ops, n_scales=self.n_wks)
        if verts is None:
            raise ValidationError("verts: required by a matcher with input='xyz'")
        return xyz_input(verts, ops)

    def extract(self, ops: DiffusionBatch, verts: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, V, C)`` per-vertex features of a batch of shapes."""
        return self.features(self.input_features(ops, verts), ops)

    def forward(self, ops_1: DiffusionBatch, ops_2: DiffusionBatch, verts_1: torch.Tensor | None = None,
                verts_2: torch.Tensor | None = None, *, fmap: DeepFunctionalMap | None = None) -> MatcherOutput:
        """Features of both batches and their functional / soft maps (by ``fmap``, default the model's block)."""
        f1, f2 = self.extract(ops_1, verts_1), self.extract(ops_2, verts_2)
        return self.pair_output(f1, f2, ops_1, ops_2, fmap=fmap)

    def pair_output(self, f1: torch.Tensor, f2: torch.Tensor, ops_1: DiffusionBatch, ops_2: DiffusionBatch, *,
                    fmap: DeepFunctionalMap | None = None) -> MatcherOutput:
        """The functional / soft maps (by ``fmap``, default the model's block) of features already extracted."""
        k = self.k_fmap
        out = (fmap or self.fmap)(f1, f2, ops_1.evecs[..., :k], ops_2.evecs[..., :k], ops_1.mass, ops_2.mass,
                        ops_1.evals[..., :k], ops_2.evals[..., :k], lengths_1=ops_1.lengths, lengths_2=ops_2.lengths)
        return MatcherOutput(f1, f2, out)

    def unsupervised_loss(self, out: MatcherOutput, ops_1: DiffusionBatch, ops_2: DiffusionBatch, *,
                          generator: torch.Generator | None = None, **weights: Any) -> torch.Tensor:
        """The total of :func:`geomot.losses.unsupervised_fmap_loss` on the output of :meth:`forward` (both
        directions; ``weights``: its ``w_*`` weights and ``n_projections``), mean over the pairs."""
        k = self.k_fmap
        fm = out.fmaps
        return unsupervised_fmap_loss(
            fm.fmap_12, fm.fmap_21, soft_map_21=fm.soft_map_21, soft_map_12=fm.soft_map_12, feat_1=out.feat_1,
            feat_2=out.feat_2, evecs_1=ops_1.evecs[..., :k], evecs_2=ops_2.evecs[..., :k], mass_1=ops_1.mass,
            mass_2=ops_2.mass, evals_1=ops_1.evals[..., :k], evals_2=ops_2.evals[..., :k], lengths_1=ops_1.lengths,
            lengths_2=ops_2.lengths, generator=generator, **weights,
        ).total

    def settings(self) -> dict[str, Any]:
        """The constructor arguments (without ``generator``), as written into checkpoints."""
        return dict(self._settings)

    # -- inference -----------------------------------------------------------------------------------------------
    def adapt(self, target: PreparedShape, source: PreparedShape, *, steps: int, lr: float = 1e-3,
              generator: torch.Generator | None = None, **loss_weights: float) -> list[float]:
        """Test-time adaptation: ``steps`` Adam steps of the unsupervised loss on the pair, with the soft maps of
        log-domain Sinkhorn (``eps = tau``, cosine cost: the balanced version of the training soft map).

        The weights are changed in place (:meth:`match` restores them afterwards). Returns the loss of each step.
        """
        param = next(self.parameters())
        ops_1 = batch_operators([target.operators], dtype=param.dtype, device=param.device)
        ops_2 = batch_operators([source.operators], dtype=param.dtype, device=param.device)
        v1 = target.verts.to(param.device, param.dtype)[None]
        v2 = source.verts.to(param.device, param.dtype)[None]
        fm = DeepFunctionalMap(lambda_=self._settings["lambda_"], gamma=self._settings["gamma"], soft_map="sinkhorn",
                               soft_map_options={"eps": self._settings["tau"], "warn": False})
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        losses = []
        was_training = self.training
        self.eval()  # no dropout: adapt the features the map is read from
        try:
            for _ in range(steps):
                with torch.enable_grad():
                    out = self(ops_1, ops_2, v1, v2, fmap=fm)
                    loss = self.unsupervised_loss(out, ops_1, ops_2, generator=generator, **loss_weights)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                losses.append(float(loss.detach()))
        finally:
            self.train(was_training)
        return losses

    def _best_heading(self, tgt: PreparedShape, src: PreparedShape, headings: int, up_axis: int,
                      loss_weights: dict[str, float]) -> torch.Tensor:
        """The rotation ``(3, 3)`` (``x R``) of the source heading of lowest unsupervised loss (see :meth:`match`),
        on the shapes as given (decimate them first: the loss's soft maps cost ``O(V1 V2)``)."""
        param = next(self.parameters())
        ops_1 = batch_operators([tgt.operators], dtype=param.dtype, device=param.device)
        ops_2 = batch_operators([src.operators], dtype=param.dtype, device=param.device)
        f1 = self.extract(ops_1, tgt.verts.to(param.device, param.dtype)[None])
        v2 = src.verts.to(param.device, param.dtype)[None]
        angles = torch.arange(headings, dtype=torch.float64) * (2 * torch.pi / headings)
        rotations = axis_rotations(angles, up_axis).to(param.device, param.dtype)
        losses = []
        for R in rotations:
            out = self.pair_output(f1, self.extract(ops_2, v2 @ R), ops_1, ops_2)
            gen = torch.Generator(device=param.device).manual_seed(0)
            losses.append(float(self.unsupervised_loss(out, ops_1, ops_2, generator=gen, **loss_weights)))
        return rotations[min(range(headings), key=losses.__getitem__)]

    @torch.no_grad()
    def match(
        self,
        source: Any,
        target: Any,
        *,
        refine: str = "zoomout",
        k_final: int | None = None,
        step: int = 4,
        n_samples: int = 1000,
        anchor_iterations: int = 1,
        n_anchors: int = 128,
        adapt_steps: int = 0,
        adapt_lr: float = 1e-3,
        adapt_vertices: int = 1500,
        headings: int = 1,
        up_axis: int = 1,
        cache_dir: str | os.PathLike | None = None,
        generator: torch.Generator | None = None,
        **loss_weights: float,
    ) -> MatchResult:
        """Dense correspondence with the learned features: ``p2p_21`` for every source vertex.

        ``p2p_21[j] = argmax_i cos(F_2[j], F_1[i])`` (shape 1 is the target, shape 2 the source), its functional
        map ``fmap_12 = Phi_2^T M_2 Phi_1[p2p_21]`` on ``k_fmap`` eigenfunctions, then ZoomOut (Melzi et al. 2019)
        up to ``k_final`` eigenfunctions, then ``anchor_iterations`` steps of geodesic-anchor refinement
        (:func:`geomot.correspondence.anchor_refine`, as in the training-free pipeline) and one ZoomOut refit at
        ``k_final`` on every vertex (``refine="zoomout"``; ``"none"`` keeps the feature map). The anchor steps
        cost two shortest-path searches from ``n_anchors`` vertices and two nearest-neighbour searches on every
        vertex (about 0.4 s for two 5k-vertex meshes at two threads). With ``adapt_steps > 0`` the network is
        first adapted to the pair (:meth:`adapt`) and its weights are restored afterwards.

        With ``input="xyz"`` the features depend on how the shapes are turned. ``headings=K > 1`` tries the source
        turned about ``up_axis`` by ``2 pi j / K``, ``j = 0..K-1`` (the target as given), and keeps the heading
        whose features give the lowest unsupervised loss of the pair (:meth:`unsupervised_loss` with
        ``loss_weights``, the energy the network was trained to minimise; its sliced term with directions from a
        fixed seed, the same for every heading), compared on copies decimated to ``adapt_vertices`` vertices: for
        collections whose shapes share an up axis but face different ways. Each heading costs one feature pass and
        the loss on the decimated pair (4 headings: about 0.8 s a SMAL_r pair on two CPU cores, decimation included).

        Args:
            source, target: ``Mesh``, ``PointCloud``, ``(verts, faces)`` or ``(V, 3)`` tensor, each with at least
                ``k_eig`` vertices.
            refine: ``"zoomout"`` or ``"none"``.
            k_final: ZoomOut's final size (default: the model's ``k_eig``).
            step: ZoomOut's increase of the basis size per iteration.
            n_samples: farthest-point samples of the source used by the intermediate ZoomOut steps (the last map
                is computed on every vertex).
            anchor_iterations: geodesic-anchor refinement steps after ZoomOut (0: ZoomOut only).
            n_anchors: anchors of that refinement (farthest-point samples of the source, at most its vertices).
            adapt_steps, adapt_lr: test-time adaptation steps and learning rate (0: none).
            adapt_vertices: meshes are adapted, and their headings searched, on copies decimated to this many
                vertices (as in training: the loss's soft maps cost ``O(V^2)``; 0: on the full meshes).
            headings: source headings tried (``input="xyz"`` only; 1: the source as given).
            up_axis: the axis the headings turn about (0, 1, 2: x, y, z).
            cache_dir: opt-in cache of the operators.
            generator: random directions of the adaptation's sliced-Wasserstein term.
            loss_weights: weights of the adaptation loss (:func:`geomot.losses.unsupervised_fmap_loss`).

        Returns:
            :class:`geomot.correspondence.MatchResult` (``orientation_ratio`` is NaN: not computed here).
        """
        if refine not in ("zoomout", "none"):
            raise ValidationError(f"refine: expected 'zoomout' or 'none', got {refine!r}")
        check_int(adapt_steps, "adapt_steps", at_least=0)
        check_int(anchor_iterations, "anchor_iterations", at_least=0)
        check_int(n_anchors, "n_anchors", at_least=1)
        check_int(adapt_vertices, "adapt_vertices", at_least=0)
        check_positive(adapt_lr, "adapt_lr")
        check_int(headings, "headings", at_least=1)
        if headings > 1 and self.input != "xyz":
            raise ValidationError(f"headings: only a matcher with input='xyz' depends on the heading "
                                  f"(input={self.input!r})")
        if up_axis not in (0, 1, 2):
            raise ValidationError(f"up_axis: expected 0, 1 or 2, got {up_axis!r}")
        k_final = self.k_eig if k_final is None else check_int(k_final, "k_final", at_least=self.k_fmap)
        if k_final > self.k_eig:
            raise ValidationError(f"k_final: at most the model's k_eig={self.k_eig}, got {k_final}")
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        tgt = prepare_shape(target, k_eig=self.k_eig, cache_dir=cache_dir, name="target")
        src = prepare_shape(source, k_eig=self.k_eig, cache_dir=cache_dir, name="source")
        times["basis"] = time.perf_counter() - t0
        saved = copy.deepcopy(self.state_dict()) if adapt_steps else None
        try:
            if adapt_steps:
                t1 = time.perf_counter()
                pair = [_coarse(s, adapt_vertices, self.k_eig, cache_dir) for s in (tgt, src)]
                self.adapt(*pair, steps=adapt_steps, lr=adapt_lr, generator=generator, **loss_weights)
                times["adapt"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            was_training = self.training
            self.eval()
            param = next(self.parameters())
            ops_1 = batch_operators([tgt.operators], dtype=param.dtype, device=param.device)
            ops_2 = batch_operators([src.operators], dtype=param.dtype, device=param.device)
            f1 = self.extract(ops_1, tgt.verts.to(param.device, param.dtype)[None])[0]
            v2 = src.verts.to(param.device, param.dtype)[None]
            if headings > 1:
                t2 = time.perf_counter()
                coarse = [_coarse(s, adapt_vertices, self.k_eig, cache_dir) for s in (tgt, src)]
                v2 = v2 @ self._best_heading(*coarse, headings, up_axis, loss_weights)
                times["headings"] = time.perf_counter() - t2
            f2 = self.extract(ops_2, v2)[0]
            self.train(was_training)
        finally:
            if saved is not None:
                self.load_state_dict(saved)
        f1 = nn.functional.normalize(f1.double().cpu(), dim=-1)
        f2 = nn.functional.normalize(f2.double().cpu(), dim=-1)
        p2p_21 = knn_indices(f2, f1)
        e1, e2 = tgt.operators.evecs, src.operators.evecs
        k = self.k_fmap
        fmap_12 = fmap_from_p2p(p2p_21, e1[:, :k], e2[:, :k], mass2=src.operators.mass)
        times["init"] = time.perf_counter() - t1
        if refine == "zoomout" and k_final > k:
            t1 = time.perf_counter()
            samples = None
            if n_samples and e2.shape[0] > n_samples:
                samples = farthest_point_sampling(src.verts, n_samples, start=0)
            if anchor_iterations:
                p2p_21, fmap_12 = _anchor_refinement(tgt, src, fmap_12, k_final, step, samples,
                                                     anchor_iterations, n_anchors)
            else:
                res = zoomout(fmap_12, e1[:, :k_final], e2[:, :k_final], k_final=k_final, step=step, samples2=samples)
                p2p_21, fmap_12 = res.p2p_21, res.fmap_12
            times["refine"] = time.perf_counter() - t1
        times["total"] = time.perf_counter() - t0
        return MatchResult(p2p_21.to(src.device), fmap_12.to(src.device), float("nan"), times)
