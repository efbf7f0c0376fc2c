"""Batched point clouds with optional normals and weights."""

from __future__ import annotations

import torch

from geomot._core.batch import list_to_padded, mask_from_lengths, padded_to_list, padded_to_packed
from geomot._core.checks import check_float_tensor, check_lengths
from geomot._core.errors import ShapeError
from geomot.structures.measure import Measure

__all__ = ["PointCloud"]


def _as_padded(
    value: torch.Tensor | list[torch.Tensor] | None, name: str, ref_lengths: torch.Tensor | None, trailing: tuple
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if value is None:
        return None, None
    if isinstance(value, (list, tuple)):
        padded, lengths = list_to_padded(list(value))
        if ref_lengths is not None and not torch.equal(lengths, ref_lengths):
            raise ShapeError(f"{name}: item sizes {lengths.tolist()} differ from the points' {ref_lengths.tolist()}")
        return padded, lengths
    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"{name}: expected a tensor or a list of tensors, got {type(value).__name__}")
    return value, None


class PointCloud:
    """A batch of point clouds (PyTorch3D ``Pointclouds`` conventions).

    Args:
        points: ``(N, 3)``, ``(B, N, 3)`` with optional ``lengths``, or a list of ``(N_b, 3)``.
        normals: same layout with last dimension 3, optional.
        weights: ``(N,)``, ``(B, N)`` or list of ``(N_b,)`` non-negative masses, optional (uniform when absent).
        lengths: ``(B,)`` item sizes for padded input.

    Views: ``points_padded()``, ``points_packed()``, ``points_list()``, likewise for normals; ``lengths``.
    """

    def __init__(
        self,
        points: torch.Tensor | list[torch.Tensor],
        normals: torch.Tensor | list[torch.Tensor] | None = None,
        weights: torch.Tensor | list[torch.Tensor] | None = None,
        *,
        lengths: torch.Tensor | None = None,
    ) -> None:
        if isinstance(points, (list, tuple)):
            if lengths is not None:
                raise ShapeError("lengths: not accepted with a list of point tensors")
            for i, p in enumerate(points):
                check_float_tensor(p, f"points[{i}]", ndim=2, last_dim=3)
            pts, lengths = list_to_padded(list(points))
        else:
            pts = check_float_tensor(points, "points", ndim=(2, 3), last_dim=3, finite=False)
            if pts.dim() == 2:
                if lengths is not None:
                    raise ShapeError("lengths: only valid with batched (B, N, 3) points")
                pts = pts.unsqueeze(0)
                if isinstance(normals, torch.Tensor):
                    normals = normals.unsqueeze(0)
                if isinstance(weights, torch.Tensor):
                    weights = weights.unsqueeze(0)
        B, N, _ = pts.shape
        if lengths is None:
            lengths = torch.full((B,), N, dtype=torch.long, device=pts.device)
        else:
            lengths = check_lengths(lengths, "lengths", batch=B, max_len=N, device=pts.device)
        mask = mask_from_lengths(lengths, N)
        check_float_tensor(pts[mask], "points")
        nrm, _ = _as_padded(normals, "normals", lengths, (3,))
        if nrm is not None:
            if tuple(nrm.shape) != (B, N, 3):
                raise ShapeError(f"normals: expected shape {(B, N, 3)}, got {tuple(nrm.shape)}")
            check_float_tensor(nrm[mask], "normals")
        w, _ = _as_padded(weights, "weights", lengths, ())
        if w is not None and tuple(w.shape) != (B, N):
            raise ShapeError(f"weights: expected shape {(B, N)}, got {tuple(w.shape)}")
        self._points, self._normals, self._weights, self._lengths = pts, nrm, w, lengths

    @property
    def lengths(self) -> torch.Tensor:
        return self._lengths

    def __len__(self) -> int:
        return self._points.shape[0]

    @property
    def device(self) -> torch.device:
        return self._points.device

    @property
    def dtype(self) -> torch.dtype:
        return self._points.dtype

    def points_padded(self) -> torch.Tensor:
        return self._points

    def points_packed(self) -> torch.Tensor:
        return padded_to_packed(self._points, self._lengths)

    def points_list(self) -> list[torch.Tensor]:
        return padded_to_list(self._points, self._lengths)

    def normals_padded(self) -> torch.Tensor | None:
        return self._normals

    def normals_list(self) -> list[torch.Tensor] | None:
        return None if self._normals is None else padded_to_list(self._normals, self._lengths)

    def weights_padded(self) -> torch.Tensor | None:
        return self._weights

    def __getitem__(self, i: int) -> PointCloud:
        n = int(self._lengths[i])
        return PointCloud(
            self._points[i, :n],
            None if self._normals is None else self._normals[i, :n],
            None if self._weights is None else self._weights[i, :n],
        )

    def to_measure(self) -> Measure:
        """The cloud as a :class:`Measure` on ``R^3`` (uniform weights unless weights were given)."""
        return Measure(self._points, self._weights, lengths=self._lengths)

    def to(self, *args, **kwargs) -> PointCloud:
        p = self._points.to(*args, **kwargs)
        n = None if self._normals is None else self._normals.to(device=p.device, dtype=p.dtype)
        w = None if self._weights is None else self._weights.to(device=p.device, dtype=p.dtype)
        return PointCloud(p, n, w, lengths=self._lengths.to(p.device))

    def __repr__(self) -> str:
        return (
            f"PointCloud(batch={len(self)}, points={self._lengths.tolist()[:8]}, "
            f"normals={self._normals is not None}, dtype={self.dtype}, device={self.device})"
        )
