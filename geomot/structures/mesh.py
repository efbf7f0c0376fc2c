"""Batched triangle meshes (PyTorch3D ``Meshes`` conventions: list / padded / packed views)."""

from __future__ import annotations

import torch

from geomot._core.batch import list_to_padded, mask_from_lengths
from geomot._core.checks import check_float_tensor, check_index_tensor, describe
from geomot._core.errors import ShapeError, ValidationError
from geomot.ops import geometry as geo

__all__ = ["Mesh", "MeshTopology"]


class MeshTopology:
    """Index structures of a batch of triangle meshes in the packed layout; they depend on the faces only.

    Built from the packed faces (indices into the packed vertices) and the per-mesh counts; each structure is
    computed on first use and kept, so that losses evaluated at every step of a fit (the mesh regularisers) do no
    ``unique`` and no host synchronisation after the first call. :meth:`Mesh.topology` returns the one of a mesh,
    shared by the meshes :meth:`Mesh.update_verts` derives from it.

    Args:
        faces_packed: ``(sum F_b, 3)`` int64.
        num_verts: ``(B,)`` int64 vertex counts.
        num_faces: ``(B,)`` int64 face counts.

    Attributes:
        faces_packed: ``(F, 3)``.
        num_verts, num_faces: ``(B,)``.
        vert_to_mesh: ``(V,)`` the item of each packed vertex; ``face_to_mesh`` ``(F,)`` likewise.
    """

    def __init__(self, faces_packed: torch.Tensor, num_verts: torch.Tensor, num_faces: torch.Tensor) -> None:
        dev = faces_packed.device
        self.faces_packed = faces_packed
        self.num_verts = num_verts
        self.num_faces = num_faces
        b = torch.arange(num_verts.shape[0], device=dev)
        self.vert_to_mesh = b.repeat_interleave(num_verts)
        self.face_to_mesh = b.repeat_interleave(num_faces)
        self.n_verts = int(self.vert_to_mesh.shape[0])
        self._cache: dict[object, object] = {}

    @classmethod
    def shared(cls, faces: torch.Tensor, n_verts: int, batch: int) -> MeshTopology:
        """The topology of ``batch`` meshes of ``n_verts`` vertices that all use ``faces (F, 3)``."""
        offs = torch.arange(batch, device=faces.device)[:, None, None] * n_verts
        packed = (faces[None] + offs).reshape(-1, 3)
        nv = torch.full((batch,), n_verts, dtype=torch.long, device=faces.device)
        nf = torch.full((batch,), faces.shape[0], dtype=torch.long, device=faces.device)
        return cls(packed, nv, nf)

    def __len__(self) -> int:
        return int(self.num_verts.shape[0])

    def cached(self, key: object, fn):
        """``fn()`` computed once per topology and key (for index structures that depend on the faces only)."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def edges_packed(self) -> torch.Tensor:
        """``(E, 2)`` unique undirected edges (sorted pairs) in packed vertex indices."""
        return self.cached("edges", lambda: geo.edges(self.faces_packed))

    def edge_to_mesh(self) -> torch.Tensor:
        """``(E,)`` the item of each edge."""
        return self.cached("edge_to_mesh", lambda: self.vert_to_mesh[self.edges_packed()[:, 0]])

    def face_pairs_packed(self) -> torch.Tensor:
        """``(P, 2)`` pairs of packed faces that share an edge (:func:`geomot.ops.geometry.face_adjacency`)."""
        return self.cached("face_pairs", lambda: geo.face_adjacency(self.faces_packed))

    def face_pair_to_mesh(self) -> torch.Tensor:
        """``(P,)`` the item of each pair of adjacent faces."""
        return self.cached("face_pair_to_mesh", lambda: self.face_to_mesh[self.face_pairs_packed()[:, 0]])

    def boundary_verts_packed(self) -> torch.Tensor:
        """``(V,)`` bool, True on boundary vertices."""
        return self.cached("boundary", lambda: geo.boundary_vertices(self.faces_packed, self.n_verts))

    def count_per_mesh(self, item: torch.Tensor, key: object) -> torch.Tensor:
        """``(B,)`` int64 number of entries of each item in the ``item`` index (cached under ``key``)."""
        return self.cached(("count", key), lambda: torch.bincount(item, minlength=len(self)))

    def to(self, device: torch.device) -> MeshTopology:
        return MeshTopology(self.faces_packed.to(device), self.num_verts.to(device), self.num_faces.to(device))


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
        self._topology: MeshTopology | None = None

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
        """``(B,)`` int64 vertex counts."""
        return self.topology().num_verts

    def num_faces_per_mesh(self) -> torch.Tensor:
        """``(B,)`` int64 face counts."""
        return self.topology().num_faces

    def topology(self) -> MeshTopology:
        """The :class:`MeshTopology` (packed faces, edges, face adjacency...) of this batch, built once.

        It depends on the faces only, so it is kept whether or not the positions require grad and is shared with
        the meshes :meth:`update_verts` returns.
        """
        if self._topology is None:
            nv = torch.tensor([v.shape[0] for v in self._verts_list], dtype=torch.long)
            nf = torch.tensor([f.shape[0] for f in self._faces_list], dtype=torch.long)
            offs = torch.cumsum(nv, 0) - nv
            packed = torch.cat([f + int(o) for f, o in zip(self._faces_list, offs)], 0)
            self._topology = MeshTopology(packed, nv.to(self.device), nf.to(self.device))
        return self._topology

    def verts_padded(self) -> torch.Tensor:
        """``(B, Vmax, 3)``, zero padding."""
        return list_to_padded(self._verts_list)[0]

    def faces_padded(self) -> torch.Tensor:
        """``(B, Fmax, 3)`` int64, padding rows are -1."""
        return list_to_padded(self._faces_list, pad_value=-1)[0]

    def verts_packed(self) -> torch.Tensor:
        """``(sum V, 3)`` positions of all items, one after the other."""
        return self._verts_list[0] if len(self._verts_list) == 1 else torch.cat(self._verts_list, 0)

    def faces_packed(self) -> torch.Tensor:
        """``(sum F, 3)`` indices into :meth:`verts_packed` (cached with the topology)."""
        return self.topology().faces_packed

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
        """Per mesh ``(E_b, 2)`` unique undirected edges (cached with the topology)."""
        return self.topology().cached("edges_list", lambda: [geo.edges(f) for f in self._faces_list])

    def edges_packed(self) -> torch.Tensor:
        """``(E, 2)`` unique undirected edges of the whole batch in packed vertex indices (cached)."""
        return self.topology().edges_packed()

    # -- transforms --------------------------------------------------------------------------------------
    def update_verts(self, verts: torch.Tensor | list[torch.Tensor]) -> Mesh:
        """A new mesh with the same faces and new positions (same layout as the constructor takes).

        The new mesh shares this one's :meth:`topology` (edges, face adjacency, Laplacian index structure) when its
        vertex counts are the same, so a fit that calls ``update_verts`` at every step builds them once.
        """
        out = Mesh(verts, self._faces_list if len(self) > 1 else self._faces_list[0])
        same = [v.shape[0] for v in out._verts_list] == [v.shape[0] for v in self._verts_list]
        if same and self._topology is not None and out.device == self.device:
            out._topology = self._topology
        return out

    def to(self, *args, **kwargs) -> Mesh:
        vl = [v.to(*args, **kwargs) for v in self._verts_list]
        return Mesh(vl, [f.to(vl[0].device) for f in self._faces_list])

    def detach(self) -> Mesh:
        return Mesh([v.detach() for v in self._verts_list], self._faces_list)

    def __repr__(self) -> str:
        nv = [v.shape[0] for v in self._verts_list][:8]
        nf = [f.shape[0] for f in self._faces_list][:8]
        return f"Mesh(batch={len(self)}, verts={nv}, faces={nf}, dtype={self.dtype}, device={self.device})"
