"""Every setting and constant of the training-free matching pipeline (:func:`geomot.correspondence.match`) in one
frozen dataclass, :class:`MatchConfig`, validated on construction."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from geomot._core.checks import check_int, check_positive
from geomot._core.errors import ValidationError

__all__ = ["REFINERS", "MatchConfig"]

REFINERS = ("zoomout", "sinkhorn", "none")


@dataclass(frozen=True, kw_only=True)
class MatchConfig:
    """Settings of :func:`geomot.correspondence.match` and of its stages (keyword-only, immutable).

    The first group are the arguments of :func:`~geomot.correspondence.match` (an explicit argument of ``match``
    overrides the field of the same name); the rest are the constants of the ranking and of the polish. Sizes of
    samples are capped at the number of vertices. Distances and radii are for shapes scaled to unit area.
    ``None`` fields take the documented default that depends on other fields (:meth:`resolve`).

    Raises:
        ValidationError: a field out of range (the message names the field).
    """

    # -- arguments of match (see its docstring)
    k: int = 140  # final number of eigenfunctions (ZoomOut's last size)
    k_init: int = 8  # size of the sign search (2^(k_init - 1) diagonal sign patterns)
    k_select: int | None = None  # size of the solved candidate maps (None: min(32, k))
    n_candidates: int = 16  # sign patterns (best descriptor residual) whose maps are solved at size k_select
    n_finalists: int = 16  # solved maps (best descriptor residual first) upsampled by ZoomOut
    n_samples: int = 500  # farthest-point source samples of the candidates' ZoomOut
    n_descriptors: int = 100  # WKS energies
    refine: str = "zoomout"  # final refinement: "zoomout" (+ anchors), "sinkhorn" or "none"
    step: int = 4  # increase of the basis size per ZoomOut iteration
    final_iterations: int = 1  # ZoomOut refits at size k on every vertex ("zoomout" only)
    n_final: int | None = None  # candidates compared after refinement (None: 6 with anchors, else 3)
    anchor_iterations: int = 2  # geodesic-anchor refinement steps ("zoomout" only; 0 to skip)
    n_extrinsic: int = 2  # extrinsic candidates (principal axes + non-rigid ICP; with the anchor refinement only)
    refine_extrinsic: bool = True  # extrinsic polish of extrinsic winners and of stretched spectral maps
    non_isometric: bool = False  # always polish spectral winners locally (shapes known to differ beyond pose)

    # -- candidates
    descriptor_stride: int = 5  # every n-th WKS energy enters the sign search and the candidate solve
    laplacian_weight: float = 1e-2  # Laplacian commutativity in the candidate solve, relative to the descriptors'
    # energy ||A||^2 (the descriptor term has weight 1)
    prior_weight: float = 1.0  # pull of the low-frequency block towards diag(signs), relative to ||A||^2
    orientation_weight: float = 1.0  # orientation commutativity, relative to ||A||^2 per descriptor
    cloud_neighbours: int = 10  # neighbours of a point cloud's normals and tangent gradients (orientation terms)
    upsample_factor: int = 2  # the finalists are upsampled by ZoomOut to min(k, upsample_factor * k_select)
    n_sample_rank: int | None = None  # farthest-point source samples of the ranking, the anchor refinement on
    # samples and the final sampled ZoomOut (None: 2 n_samples)
    n_target_samples: int = 0  # farthest-point target samples among which the candidates' ZoomOut, the ranking's
    # sample maps and the anchor refinement on samples look for images (0: every vertex); 2000 makes a 5k-vertex
    # pair about 1.2 s faster but moves close calls between spectral and extrinsic candidates (SMAL_r)
    n_source_icp: int = 500  # source samples (a prefix of the ranking's) fitted by the non-rigid ICP
    n_target_icp: int = 1000  # farthest-point target samples the non-rigid ICP fits onto
    icp_levels: tuple[int, ...] = (0, 4, 8, 16, 32)  # basis sizes of the non-rigid ICP, coarse to fine

    # -- selection
    n_scored: int = 6  # upsampled candidates (best cheap key first) scored on their full point maps
    n_distortion: int = 64  # farthest-point source samples of the metric-distortion key
    n_anchors: int = 128  # geodesic anchors of the anchor refinement (on samples and on every vertex)
    deformation_k: int = 20  # source eigenfunctions of the smooth displacement in the deformation residual
    deformation_iterations: int = 3  # alternations rigid fit / displacement fit of the deformation residual
    extrinsic_margin: float = 0.9  # an extrinsic candidate wins only with a residual below this times the best's
    profile_radii: tuple[float, ...] = tuple(0.35 + 0.01 * i for i in range(11))  # geodesic-ball radii of the
    # extrinsic candidates' ball-area key (about a third of a quadruped's length)
    profile_samples: int = 200  # farthest-point samples the geodesic-ball searches start from
    profile_gate: float = 0.1  # spread of the ball areas between extrinsic candidates above which they count

    # -- polish
    polish_levels: tuple[int, ...] = (32, 64)  # basis sizes of the extrinsic polish (cut at k)
    polish_normal_weight: float = 0.02  # weight of the normals in the polish's closest-point snap
    polish_window: int = 2  # edge rings a spectral map's snaps are restricted to (local polish)
    stretch_gate: float = 0.7  # mean |log edge-length ratio| of a spectral map above which it is polished
    stretch_floor: float = 0.05  # image edges shorter than this fraction of their length count at it

    def __post_init__(self) -> None:
        if self.refine not in REFINERS:
            raise ValidationError(f"refine: expected one of {REFINERS}, got {self.refine!r}")
        ints = (
            ("k", 2),
            ("k_init", 2),
            ("n_candidates", 1),
            ("n_finalists", 1),
            ("n_samples", 10),
            ("n_descriptors", 5),
            ("step", 1),
            ("final_iterations", 0),
            ("anchor_iterations", 0),
            ("n_extrinsic", 0),
            ("descriptor_stride", 1),
            ("cloud_neighbours", 3),
            ("upsample_factor", 1),
            ("n_source_icp", 1),
            ("n_target_icp", 1),
            ("n_scored", 1),
            ("n_distortion", 2),
            ("n_anchors", 1),
            ("deformation_k", 1),
            ("deformation_iterations", 1),
            ("profile_samples", 1),
            ("polish_window", 0),
            ("n_target_samples", 0),
        )
        for name, lo in ints:
            check_int(getattr(self, name), name, at_least=lo)
        for name, lo in (("k_select", 2), ("n_final", 1), ("n_sample_rank", 10)):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, at_least=lo)
        for name in ("refine_extrinsic", "non_isometric"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        for name in (
            "laplacian_weight",
            "prior_weight",
            "orientation_weight",
            "polish_normal_weight",
            "stretch_gate",
            "profile_gate",
        ):
            check_positive(getattr(self, name), name, strict=False)
        check_positive(self.extrinsic_margin, "extrinsic_margin")
        if not 0 < self.stretch_floor <= 1:
            raise ValidationError(f"stretch_floor: expected a value in (0, 1], got {self.stretch_floor!r}")
        for name in ("icp_levels", "polish_levels"):
            _check_levels(getattr(self, name), name)
        radii = self.profile_radii
        if (
            not isinstance(radii, tuple)
            or not radii
            or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in radii)
        ):
            raise ValidationError(f"profile_radii: expected a non-empty tuple of positive radii, got {radii!r}")
        k_select = self.resolved_k_select
        if not self.k_init <= k_select <= self.k:
            raise ValidationError(
                f"k_init/k_select/k: expected k_init <= k_select <= k, got {self.k_init}, {k_select}, {self.k}"
            )

    @property
    def resolved_k_select(self) -> int:
        """``k_select``, or ``min(32, k)`` when None."""
        return min(32, self.k) if self.k_select is None else self.k_select

    def resolve(self) -> MatchConfig:
        """The same settings with every ``None`` field replaced by its default: ``k_select = min(32, k)``,
        ``n_final = 6`` with the anchor refinement (``refine="zoomout"``, ``anchor_iterations > 0``) and 3
        otherwise, ``n_sample_rank = 2 n_samples``."""
        n_final = self.n_final
        if n_final is None:
            n_final = 6 if self.refine == "zoomout" and self.anchor_iterations else 3
        n_rank = 2 * self.n_samples if self.n_sample_rank is None else self.n_sample_rank
        return dataclasses.replace(self, k_select=self.resolved_k_select, n_final=n_final, n_sample_rank=n_rank)

    @property
    def anchors_on(self) -> bool:
        """Whether the geodesic-anchor refinement runs (``refine="zoomout"`` and ``anchor_iterations > 0``)."""
        return self.refine == "zoomout" and self.anchor_iterations > 0


def _check_levels(levels: object, name: str) -> None:
    ok = (
        isinstance(levels, tuple)
        and len(levels) > 0
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in levels)
    )
    if not ok or any(a >= b for a, b in itertools.pairwise(levels)):  # type: ignore[arg-type]
        raise ValidationError(f"{name}: expected a non-empty increasing tuple of basis sizes, got {levels!r}")
