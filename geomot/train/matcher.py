"""Training the learned matcher without correspondences (``geomot train matcher``).

The model is :class:`geomot.models.DeepMatcher` (DiffusionNet features and deep functional maps); every step
draws ordered pairs of training shapes and minimises the unsupervised loss of
:func:`geomot.losses.unsupervised_fmap_loss`:

    L = w_bij ||C_12 C_21 - I||^2 + w_orth (||C_12^T C_12 - I||^2 + ||C_21^T C_21 - I||^2)
        + w_couple (||C_12 - Phi_2^T M_2 Pi_21 Phi_1||^2 + ...)
        + w_sw (SW_2^2(F_2, Pi_21 F_1) + SW_2^2(F_1, Pi_12 F_2)),

the ULRSSM losses (Cao, Roetzer & Bernard, SIGGRAPH 2023) with the sliced-Wasserstein feature alignment of Le et
al. (CVPR 2024). No ground-truth correspondence is read: a dataset folder's ``corres/`` is for evaluation only
(``geomot evaluate``).

Data: folders of meshes (``DIR/off/*.off`` or any mesh files directly in ``DIR``). Every shape is scaled to unit
area, decimated to at most ``max_vertices`` vertices for training (:func:`geomot.ops.simplify.decimate`; the
learned features transfer to the full meshes at inference), and its DiffusionNet operators are computed once,
cached on disk (``cache_dir``, by default ``RUN_DIR/operators``). An epoch is ``pairs_per_epoch`` ordered pairs
drawn without repetition from all ``n (n - 1)`` pairs, a new draw every epoch (seeded), so that the checkpoint
cadence does not depend on the size of the collection.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from geomot._core.checks import check_int, check_positive
from geomot._core.errors import FileFormatError, ValidationError
from geomot.io.files import load
from geomot.models.matcher import MATCHER_INPUTS, DeepMatcher, PreparedShape, prepare_shape
from geomot.ops.alignment import random_rotations
from geomot.ops.operators import batch_operators
from geomot.ops.simplify import decimate
from geomot.structures import Mesh, PointCloud
from geomot.train.checkpoint import load_checkpoint
from geomot.train.data import _mesh_files
from geomot.train.loop import CHECKPOINT_NAME, Trainer, check_lr_schedule, distributed_context

__all__ = [
    "MATCHER_AUGMENTATIONS", "MatcherConfig", "ShapeCollection", "ShapePairDataset", "load_matcher", "rotate_batch",
    "train_matcher",
]

log = logging.getLogger(__name__)

MATCHER_KIND = "matcher"
MATCHER_AUGMENTATIONS = ("none", "heading", "so3")


@dataclass(frozen=True)
class MatcherConfig:
    """Everything that defines a trained matcher (written into its checkpoint).

    The defaults are the CPU recipe: DiffusionNet as published (width 128, 4 blocks, ``k_eig`` 128, WKS input with
    128 energies, 256 output channels) trained on shapes decimated to 1500 vertices, so that one step (a pair) takes
    about a second on two CPU cores; on a GPU raise ``max_vertices`` (or set it to 0: no decimation) and
    ``batch_size``.
    """

    input: str = "wks"  #: input features, "wks" (rigid-motion invariant) or "xyz"
    n_wks: int = 128  #: WKS energies (ULRSSM)
    out_channels: int = 256  #: feature channels (ULRSSM)
    width: int = 128  #: DiffusionNet width (Sharp et al. 2022)
    n_blocks: int = 4  #: DiffusionNet blocks (Sharp et al. 2022)
    k_eig: int = 128  #: eigenpairs of the spectral diffusion (Sharp et al. 2022)
    dropout: float = 0.5  #: dropout in the blocks' MLPs (Sharp et al. 2022)
    k_fmap: int = 50  #: eigenfunctions of the functional maps (a common choice in deep functional maps)
    lambda_: float = 100.0  #: weight of the resolvent regularisation (ULRSSM)
    gamma: float = 0.5  #: resolvent exponent (ULRSSM)
    tau: float = 0.07  #: temperature of the soft point maps (ULRSSM)
    w_bij: float = 1.0  #: bijectivity weight (ULRSSM)
    w_orth: float = 1.0  #: orthogonality weight (ULRSSM)
    w_lap: float = 0.0  #: Laplacian-commutativity weight (ULRSSM: 0)
    w_couple: float = 1.0  #: functional-map / soft-map coupling weight (ULRSSM)
    w_sw: float = 100.0  #: sliced-Wasserstein feature alignment weight (Le et al. 2024)
    n_projections: int = 200  #: directions of the SW term (Le et al. 2024)
    lr: float = 1e-3  #: Adam learning rate (ULRSSM)
    lr_schedule: str = "constant"  #: "constant", or "cosine" from ``lr`` to ``min_lr`` over the run (ULRSSM: cosine)
    min_lr: float = 1e-4  #: the learning rate the cosine ends at (ULRSSM)
    max_vertices: int = 1500  #: training shapes are decimated to this many vertices (0: never)
    augment: str = "none"  #: input="xyz": each shape of a step turned by a random rotation, "heading" or "so3"
    up_axis: int = 1  #: the axis "heading" turns about (0, 1, 2: x, y, z; y is up in FAUST, SMAL, ShapeNet)
    pairs_per_epoch: int = 100  #: ordered pairs per epoch (fewer when the collection has fewer)
    seed: int = 0  #: weights, pair draws and the SW directions

    def __post_init__(self) -> None:
        if self.input not in MATCHER_INPUTS:
            raise ValidationError(f"input: unknown input features {self.input!r}; valid: {', '.join(MATCHER_INPUTS)}")
        for name in ("n_wks", "out_channels", "width", "k_eig", "k_fmap", "n_projections", "pairs_per_epoch"):
            check_int(getattr(self, name), name, at_least=1)
        check_int(self.n_blocks, "n_blocks", at_least=0)
        check_int(self.seed, "seed", at_least=0)
        if self.k_fmap > self.k_eig:
            raise ValidationError(f"k_fmap: at most k_eig={self.k_eig}, got {self.k_fmap}")
        if self.max_vertices != 0 and check_int(self.max_vertices, "max_vertices", at_least=0) < self.k_eig:
            raise ValidationError(f"max_vertices: 0 (no decimation) or at least k_eig={self.k_eig}, got "
                                  f"{self.max_vertices}")
        for name in ("lambda_", "gamma", "tau", "lr"):
            check_positive(getattr(self, name), name)
        check_lr_schedule(self.lr_schedule)
        if self.augment not in MATCHER_AUGMENTATIONS:
            raise ValidationError(f"augment: unknown augmentation {self.augment!r}; valid: "
                                  f"{', '.join(MATCHER_AUGMENTATIONS)}")
        if self.augment != "none" and self.input != "xyz":
            raise ValidationError(f"augment: rotations change only input='xyz' (got input={self.input!r})")
        if self.up_axis not in (0, 1, 2):
            raise ValidationError(f"up_axis: expected 0, 1 or 2, got {self.up_axis!r}")
        check_positive(self.min_lr, "min_lr", strict=False)
        for name in ("w_bij", "w_orth", "w_lap", "w_couple", "w_sw", "dropout"):
            check_positive(getattr(self, name), name, strict=False)

    def model_settings(self) -> dict[str, Any]:
        """The keyword arguments of :class:`geomot.models.DeepMatcher`."""
        names = ("input", "n_wks", "out_channels", "width", "n_blocks", "k_eig", "dropout", "k_fmap", "lambda_",
                 "gamma", "tau")
        return {n: getattr(self, n) for n in names}

    def loss_settings(self) -> dict[str, Any]:
        """The weights and settings of :func:`geomot.losses.unsupervised_fmap_loss`."""
        return {n: getattr(self, n) for n in ("w_bij", "w_orth", "w_lap", "w_couple", "w_sw", "n_projections")}


def _shape_files(folders: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for d in folders:
        path = Path(d)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(_mesh_files(path))
        else:
            raise FileFormatError(f"data: {path} is neither a folder of shapes nor a shape file")
    if not files:
        raise FileFormatError(f"data: no shape files in {', '.join(map(str, folders))} (looked in each folder and "
                              "its off/ subfolder)")
    return files


class ShapeCollection:
    """The training shapes, scaled, decimated and with their operators (see the module docstring).

    Args:
        data: folders of meshes (``DIR/off/`` or ``DIR``) and/or mesh files.
        k_eig: eigenpairs of the operators.
        max_vertices: decimate meshes above this many vertices (0: never).
        cache_dir: on-disk cache of the operators (None: none).
        progress: a tqdm bar over the shapes.
    """

    def __init__(self, data: Sequence[str | os.PathLike], *, k_eig: int, max_vertices: int = 0,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True) -> None:
        from tqdm.auto import tqdm

        self.files = _shape_files(data)
        self.shapes: list[PreparedShape] = []
        for path in tqdm(self.files, desc="operators", disable=not progress, leave=False):
            shape = load(path, dtype=torch.float64)
            if isinstance(shape, Mesh):
                if len(shape) != 1:
                    raise FileFormatError(f"{path}: a batch of {len(shape)} meshes; give one mesh per file")
                v, f = shape.verts, shape.faces
                if max_vertices and v.shape[0] > max_vertices:
                    v, f = decimate(v, f, max_vertices)
                item: Any = (v, f)
            elif isinstance(shape, PointCloud):
                item = shape.points_list()[0]
            else:  # pragma: no cover - load returns a Mesh or a PointCloud
                raise FileFormatError(f"{path}: not a shape")
            try:
                self.shapes.append(prepare_shape(item, k_eig=k_eig, cache_dir=cache_dir, name=str(path)))
            except ValidationError as e:
                raise ValidationError(f"{path}: {e}") from e
        if len(self.shapes) < 2:
            raise ValidationError(f"data: {len(self.shapes)} shape(s); training needs at least two")

    def __len__(self) -> int:
        return len(self.shapes)


class ShapePairDataset(Dataset):
    """``pairs_per_epoch`` ordered pairs ``(i, j)``, ``i != j``, of a :class:`ShapeCollection`, a new draw every
    epoch (:meth:`set_epoch`, called by :class:`geomot.train.Trainer`); items are ``(PreparedShape, PreparedShape)``.
    """

    def __init__(self, shapes: ShapeCollection, *, pairs_per_epoch: int, seed: int = 0) -> None:
        self.shapes = shapes
        n = len(shapes)
        self.n_pairs = min(check_int(pairs_per_epoch, "pairs_per_epoch", at_least=1), n * (n - 1))
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        n = len(self.shapes)
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        flat = torch.randperm(n * (n - 1), generator=gen)[: self.n_pairs]
        i = flat // (n - 1)
        j = flat % (n - 1)
        self.pairs = torch.stack([i, j + (j >= i).long()], 1).tolist()  # skip the diagonal

    def __len__(self) -> int:
        return self.n_pairs

    def __getitem__(self, index: int) -> tuple[PreparedShape, PreparedShape]:
        i, j = self.pairs[index]
        return self.shapes.shapes[i], self.shapes.shapes[j]


def collate_shape_pairs(items: list[tuple[PreparedShape, PreparedShape]]) -> dict[str, Any]:
    """``{"ops_1", "ops_2"}`` padded float32 :class:`~geomot.ops.operators.DiffusionBatch` es and ``{"verts_1",
    "verts_2"}`` padded ``(B, V, 3)`` float32 positions of the first and second shapes of the pairs."""
    out: dict[str, Any] = {}
    for side in (0, 1):
        shapes = [pair[side] for pair in items]
        ops = batch_operators([s.operators for s in shapes], dtype=torch.float32)
        verts = torch.zeros(len(shapes), ops.evecs.shape[1], 3)
        for b, s in enumerate(shapes):
            verts[b, : s.verts.shape[0]] = s.verts.float()
        out[f"ops_{side + 1}"], out[f"verts_{side + 1}"] = ops, verts
    return out


def matcher_loss(model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator,
                 settings: dict[str, Any]) -> torch.Tensor:
    """The unsupervised loss of a batch of pairs (mean over the pairs)."""
    param = next(model.parameters())
    ops_1, ops_2 = batch["ops_1"].to(param.device), batch["ops_2"].to(param.device)
    net = model.module if hasattr(model, "module") else model  # DDP
    out = model(ops_1, ops_2, batch["verts_1"], batch["verts_2"])
    return net.unsupervised_loss(out, ops_1, ops_2, generator=generator, **settings)


def rotate_batch(batch: dict[str, Any], augment: str, up_axis: int, generator: torch.Generator) -> dict[str, Any]:
    """``batch`` with the positions of every shape (``verts_1``, ``verts_2``) turned by its own random rotation
    (``x R``): about ``up_axis`` by a uniform angle (``"heading"``) or Haar-uniform on SO(3) (``"so3"``); the
    operators are unchanged (they do not depend on the orientation)."""
    out = dict(batch)
    for key in ("verts_1", "verts_2"):
        v = batch[key]
        R = random_rotations(v.shape[0], axis=up_axis if augment == "heading" else None, generator=generator,
                             dtype=v.dtype)
        out[key] = torch.bmm(v, R.to(v.device))
    return out


def _step(settings: dict[str, Any], augment: str = "none", up_axis: int = 1):
    def step(model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        if augment != "none":
            batch = rotate_batch(batch, augment, up_axis, generator)
        return matcher_loss(model, batch, generator, settings)

    return step


def train_matcher(
    data: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    config: MatcherConfig | None = None,
    epochs: int = 20,
    batch_size: int = 1,
    resume: bool = False,
    max_minutes: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train a :class:`geomot.models.DeepMatcher` on the shapes of ``data`` (see the module docstring).

    Args:
        data: folders of meshes and/or mesh files (at least two shapes).
        out: the run folder: ``checkpoint.pt`` after every epoch, ``log.json``.
        config: model, loss and data settings (default :class:`MatcherConfig`).
        epochs: total epochs (a resumed run continues up to it).
        batch_size: pairs per step and process.
        resume: continue from ``out/checkpoint.pt`` (it must exist and match ``config``).
        max_minutes: wall-clock budget (no epoch starts that would overrun it).
        cache_dir: operator cache (default ``out/operators``).
        device: None picks CUDA (``cuda:LOCAL_RANK`` under torchrun) when available, else the CPU.
        progress: tqdm bars on stderr.

    Returns:
        the log: one ``{"epoch", "loss", "seconds"}`` per epoch done.
    """
    config = config or MatcherConfig()
    out = Path(out)
    if resume and not (out / CHECKPOINT_NAME).is_file():
        raise FileFormatError(f"{out}: --resume given but there is no {CHECKPOINT_NAME} to resume from")
    ctx = distributed_context(device)
    shapes = ShapeCollection(data, k_eig=config.k_eig, max_vertices=config.max_vertices,
                             cache_dir=out / "operators" if cache_dir is None else cache_dir,
                             progress=progress and ctx.is_main)
    log.info("%d training shapes (%s vertices)", len(shapes),
             "-".join(str(f(s.verts.shape[0] for s in shapes.shapes)) for f in (min, max)))
    dataset = ShapePairDataset(shapes, pairs_per_epoch=config.pairs_per_epoch, seed=config.seed)
    model = DeepMatcher(**config.model_settings(), generator=torch.Generator().manual_seed(config.seed)).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    trainer = Trainer(
        model=model, optimizer=optimizer, step=_step(config.loss_settings(), config.augment, config.up_axis),
        dataset=dataset,
        collate_fn=collate_shape_pairs, out=out, kind=MATCHER_KIND, config=asdict(config), epochs=epochs,
        batch_size=batch_size, seed=config.seed, max_minutes=max_minutes, context=ctx, progress=progress,
        lr_schedule=config.lr_schedule, min_lr=config.min_lr,
    )
    if resume:
        done = trainer.resume()
        log.info("resuming %s after epoch %d", out, done)
    return trainer.fit()


def load_matcher(run: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[DeepMatcher, MatcherConfig]:
    """The trained matcher of a run folder (or a checkpoint file), in evaluation mode, and its configuration.

    Raises:
        FileFormatError: no checkpoint, or an unreadable / truncated one.
        ValidationError: a checkpoint of another model kind.
    """
    path = Path(run)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    data = load_checkpoint(path, kind=MATCHER_KIND, map_location=device)
    known = {f.name for f in fields(MatcherConfig)}
    config = MatcherConfig(**{k: v for k, v in data["config"].items() if k in known})
    model = DeepMatcher(**config.model_settings()).to(device)
    model.load_state_dict(data["model"])
    return model.eval(), config
