"""Batched triangle meshes (PyTorch3D ``Meshes`` conventions: list / padded / packed views)."""

from __future__ import annotations

import torch

from geomot._core.batch import list_to_padded, mask_from_lengths
from geomot._core.checks import check_float_tensor, check_index_tensor, describe
from geomot._core.errors import ShapeError, ValidationError
from geomot.ops import geometry as geo

__all__ = ["Mesh"]


class Mesh:
    """A batch of ``B`` triangle meshes, each with its own vertex and face counts.

    Args:
        verts: ``(V, 3)``, ``(B, V, 3)`` (same V for all) or a list of ``(V_b, 3)`` float tensors. Positions stay
            attached to the autograd graph: losses on the mesh differentiate w.r.t. them.
        faces: ``(F, 3)``, ``(B, F, 3)`` or a list of ``(F_b, 3)`` integer tensors (cast to int64) with indices in
            ``[0, V_b)``. Polygons are rejected here; the file readers triangulate them.

    Raises:
        ShapeError: wrong ranks, non-triangular faces, mismatched batch sizes / devices.
        ValidationError: empty meshes, NaN/Inf positions, negative or out-of-range face indices.

    Views follow PyTorch3D: ``verts_list()``, ``verts_padded()`` ``(B, Vmax, 3)``, ``verts_packed()``
    ``(sum V, 3)``, ``faces_padded()`` (padding = -1), ``faces_packed()`` (offset into the packed verts),
    ``num_verts_per_mesh()``, ``num_faces_per_mesh()``. For a single mesh ``mesh.verts`` / ``mesh.faces`` give
    the ``(V, 3)`` / ``(F, 3)`` tensors. Meshes are immutable; derived quantities (areas, normals) are cached when
    the positions do not require grad.
    """

    def __init__(
        self, verts: torch.Tensor | list[torch.Tensor], faces: torch.Tensor | list[torch.Tensor]
    ) -> None:
        vl = self._split(verts, "verts")
        fl = self._split(faces, "faces")
        if len(vl) != len(fl):
            raise ShapeError(f"faces: expected {len(vl)} face tensors (one per mesh), got {len(fl)}")
        if len(vl) == 0:
            raise ShapeError("verts: expected at least one mesh, got an empty list")
        dev = vl[0].device
        out_v, out_f = [], []
        for i, (v, f) in enumerate(zip(vl, fl)):
            tag = "" if len(vl) == 1 else f"[{i}]"
            check_float_tensor(v, f"verts{tag}", ndim=2, last_dim=3, allow_empty=True)
            if v.shape[0] == 0:
                raise ValidationError(f"verts{tag}: the mesh has no vertices")
            if not isinstance(f, torch.Tensor):
                raise ShapeError(f"faces{tag}: expected a tensor, got {describe(f)}")
            if f.dim() != 2:
                raise ShapeError(f"faces{tag}: expected a (F, 3) tensor, got shape {tuple(f.shape)}")
            if f.shape[1] != 3:
                raise ShapeError(
                    f"faces{tag}: expected triangles (F, 3), got polygons with {f.shape[1]} corners; "
                    "triangulate first (geomot.load triangulates polygon files)"
                )
            if f.shape[0] == 0:
                raise ValidationError(f"faces{tag}: the mesh has no faces")
            check_index_tensor(f, f"faces{tag}", size=v.shape[0], ncols=3)
            if v.device != dev or f.device != dev:
                raise ShapeError(f"verts{tag}/faces{tag}: expected device {dev}, got {v.device} / {f.device}")
            if v.dtype != vl[0].dtype:
                raise ShapeError(f"verts{tag}: expected dtype {vl[0].dtype} (that of verts[0]), got {v.dtype}")
            out_v.append(v)
            out_f.append(f.long())
        self._verts_list = out_v
        self._faces_list = out_f
        self._cache: dict[str, object] = {}

    @staticmethod
    def _split(x: torch.Tensor | list[torch.Tensor], name: str) -> list[torch.Tensor]:
        if isinstance(x, (list, tuple)):
            return list(x)
        if not isinstance(x, torch.Tensor):
            raise ShapeError(f"{name}: expected a tensor or a list of tensors, got {describe(x)}")
        if x.dim() == 2:
            return [x]
        if x.dim() == 3:
            return list(x.unbind(0))
        raise ShapeError(f"{name}: expected a 2-D or 3-D tensor, got shape {tuple(x.shape)}")

    # -- basic views -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._verts_list)

    def __getitem__(self, i: int) -> Mesh:
        return Mesh(self._verts_list[i], self._faces_list[i])

    @property
    def device(self) -> torch.device:
        return self._verts_list[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self._verts_list[0].dtype

    def _single(self, what: str) -> int:
        if len(self) != 1:
            raise ShapeError(
                f"Mesh.{what}: only defined for a single mesh; this batch has {len(self)}, use {what}_list()"
            )
        return 0

    @property
    def verts(self) -> torch.Tensor:
        """``(V, 3)`` positions of a single mesh."""
        return self._verts_list[self._single("verts")]

    @property
    def faces(self) -> torch.Tensor:
        """``(F, 3)`` int64 faces of a single mesh."""
        return self._faces_list[self._single("faces")]

    def verts_list(self) -> list[torch.Tensor]:
        return list(self._verts_list)

    def faces_list(self) -> list[torch.Tensor]:
        return list(self._faces_list)

    def num_verts_per_mesh(self) -> torch.Tensor:
        return torch.tensor([v.shape[0] for v in self._verts_list], dtype=torch.long, device=self.device)

    def num_faces_per_mesh(self) -> torch.Tensor:
        return torch.tensor([f.shape[0] for f in self._faces_list], dtype=torch.long, device=self.device)

    def verts_padded(self) -> torch.Tensor:
        """``(B, Vmax, 3)``, zero padding."""
        return list_to_padded(self._verts_list)[0]

    def faces_padded(self) -> torch.Tensor:
        """``(B, Fmax, 3)`` int64, padding rows are -1."""
        return list_to_padded(self._faces_list, pad_value=-1)[0]

    def verts_packed(self) -> torch.Tensor:
        return torch.cat(self._verts_list, 0)

    def faces_packed(self) -> torch.Tensor:
        """``(sum F, 3)`` indices into :meth:`verts_packed`."""
        offs = torch.cumsum(self.num_verts_per_mesh(), 0) - self.num_verts_per_mesh()
        return torch.cat([f + o for f, o in zip(self._faces_list, offs)], 0)

    def verts_mask(self) -> torch.Tensor:
        """``(B, Vmax)`` True on real vertices."""
        return mask_from_lengths(self.num_verts_per_mesh(), max(v.shape[0] for v in self._verts_list))

    # -- derived quantities ------------------------------------------------------------------------------
    def _cached(self, key: str, fn):
        if any(v.requires_grad for v in self._verts_list):
            return fn()
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def face_areas_list(self) -> list[torch.Tensor]:
        """Per mesh ``(F_b,)`` face areas."""
        return self._cached("fa", lambda: [geo.face_areas(v, f) for v, f in zip(self._verts_list, self._faces_list)])

    def face_normals_list(self) -> list[torch.Tensor]:
        """Per mesh ``(F_b, 3)`` unit face normals (zero for degenerate faces)."""
        return self._cached("fn", lambda: [geo.face_normals(v, f) for v, f in zip(self._verts_list, self._faces_list)])

    def face_centroids_list(self) -> list[torch.Tensor]:
        return self._cached(
            "fc", lambda: [geo.face_centroids(v, f) for v, f in zip(self._verts_list, self._faces_list)]
        )

    def vertex_normals_list(self) -> list[torch.Tensor]:
        """Per mesh ``(V_b, 3)`` area-weighted vertex normals."""
        return self._cached(
            "vn", lambda: [geo.vertex_normals(v, f) for v, f in zip(self._verts_list, self._faces_list)]
        )

    def vertex_areas_list(self) -> list[torch.Tensor]:
        """Per mesh ``(V_b,)`` lumped (barycentric) vertex areas."""
        return self._cached(
            "va", lambda: [geo.vertex_areas(v, f) for v, f in zip(self._verts_list, self._faces_list)]
        )

    def total_area(self) -> torch.Tensor:
        """``(B,)`` surface areas."""
        return torch.stack([a.sum() for a in self.face_areas_list()])

    def edges_list(self) -> list[torch.Tensor]:
        """Per mesh ``(E_b, 2)`` unique undirected edges."""
        return self._cached("e", lambda: [geo.edges(f) for f in self._faces_list])

    # -- transforms --------------------------------------------------------------------------------------
    def update_verts(self, verts: torch.Tensor | list[torch.Tensor]) -> Mesh:
        """A new mesh with the same faces and new positions (same layout as the constructor takes)."""
        return Mesh(verts, self._faces_list if len(self) > 1 else self._faces_list[0])

    def to(self, *args, **kwargs) -> Mesh:
        vl = [v.to(*args, **kwargs) for v in self._verts_list]
        return Mesh(vl, [f.to(vl[0].device) for f in self._faces_list])

    def detach(self) -> Mesh:
        return Mesh([v.detach() for v in self._verts_list], self._faces_list)

    def __repr__(self) -> str:
        nv = [v.shape[0] for v in self._verts_list][:8]
        nf = [f.shape[0] for f in self._faces_list][:8]
        return f"Mesh(batch={len(self)}, verts={nv}, faces={nf}, dtype={self.dtype}, device={self.device})"
