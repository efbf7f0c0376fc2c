"""The training loop shared by geomot's learned parts: epochs over a point-set dataset, DDP, checkpoints, logs.

:class:`Trainer` runs ``epochs`` passes over a :class:`torch.utils.data.Dataset` with one optimiser for the model
and a ``step`` callable that maps a collated batch to a scalar loss. It

- shards the data with a :class:`~torch.utils.data.DistributedSampler` (shuffled with ``seed + epoch``, as under
  ``torchrun``; a single process is the case ``world_size = 1``) and wraps the model in
  :class:`~torch.nn.parallel.DistributedDataParallel` when a process group is initialised;
- draws every random number of the step from its own ``torch.Generator``, seeded at the start of every epoch
  from ``seed``, the epoch and the rank, so no global random state is read or changed and a resumed run draws
  the same numbers as an uninterrupted one;
- writes ``RUN_DIR/checkpoint.pt`` atomically after every epoch (model, optimiser, the step's own state such as
  an adversarial projector and its optimiser, the epoch and the log) and resumes from it to the
  same losses as an uninterrupted run;
- logs the mean loss and the seconds of every epoch to ``RUN_DIR/log.json`` (rank 0), shows a tqdm bar and
  stops before an epoch that would overrun ``max_minutes``;
- optionally anneals the learning rate on a cosine from the optimiser's rate to ``min_lr`` (``lr_schedule``),
  set at the start of every epoch from the share of the run done: ``epoch / epochs``, or the share of
  ``max_minutes`` spent if that is larger, so a run stopped by its budget ends near ``min_lr`` too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from geomot._core.checks import check_int, check_positive
from geomot._core.errors import FileFormatError, NumericalError, ValidationError
from geomot._core.files import config_differences
from geomot.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "CHECKPOINT_NAME", "LOG_NAME", "LR_SCHEDULES", "DistContext", "StepState", "Trainer", "check_lr_schedule",
    "distributed_context",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.json"
LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(name: str) -> str:
    """``name`` if it is one of :data:`LR_SCHEDULES`; otherwise a :class:`ValidationError` listing them."""
    if name not in LR_SCHEDULES:
        raise ValidationError(f"lr_schedule: unknown schedule {name!r}; valid: {', '.join(LR_SCHEDULES)}")
    return name


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context(device: str | torch.device | None = None) -> DistContext:
    """Join the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), if any.

    The backend is NCCL when CUDA is used and Gloo otherwise. Without those variables (or with ``WORLD_SIZE=1``)
    this is a single process. ``device=None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), dev)
    return DistContext(0, 1, dev)


class StepState(Protocol):
    """Optional state of a training step that must be checkpointed (an adversarial projector, its optimiser)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class Trainer:
    """Epoch loop with checkpoints, exact resume, DDP and logs (see the module docstring).

    Args:
        model: the module trained by ``optimizer``.
        optimizer: its optimiser.
        step: ``step(model, batch, generator) -> loss`` (a scalar tensor to minimise); ``batch`` is what
            ``collate_fn`` returns, already moved to the device (tensors only).
        dataset: the training items.
        collate_fn: turns a list of items into a batch.
        out: the run folder (checkpoint and log).
        kind: model kind written into the checkpoint (checked on resume).
        config: the model's constructor arguments, written into the checkpoint.
        epochs: total number of epochs (a resumed run continues up to it).
        batch_size: items per process and step.
        seed: seed of the shuffling and of the step's generator.
        max_minutes: wall-clock budget; no epoch starts that the last epoch's duration says would overrun it.
        step_state: extra state checkpointed with the model (for example the loss Module that owns a projector).
        context: the process group; None calls :func:`distributed_context` with the model's device.
        progress: show a tqdm bar (rank 0).
        drop_last: skip the last, smaller batch of each epoch (as models with batch norm need: a batch of one has
            no batch statistics); ignored when a process holds fewer items than ``batch_size``.
        lr_schedule: ``"constant"`` (the optimiser's rate throughout) or ``"cosine"``: at the start of every epoch
            ``lr = min_lr + (lr_0 - min_lr) (1 + cos(pi t)) / 2`` (Loshchilov & Hutter 2017, without restarts),
            ``lr_0`` the optimiser's initial rate and ``t`` the share of the run done, ``epoch / epochs`` or the
            share of ``max_minutes`` spent, whichever is larger, and never less than at the last checkpoint (a
            resumed run does not warm up again).
        min_lr: the rate the cosine ends at.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[nn.Module, dict[str, Any], torch.Generator], torch.Tensor]
    dataset: Dataset
    collate_fn: Callable[[list[Any]], dict[str, Any]]
    out: Path
    kind: str
    config: dict[str, Any]
    epochs: int
    batch_size: int
    seed: int = 0
    max_minutes: float | None = None
    step_state: StepState | None = None
    context: DistContext | None = None
    progress: bool = True
    drop_last: bool = False
    lr_schedule: str = "constant"
    min_lr: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.epochs = check_int(self.epochs, "epochs", at_least=1)
        self.batch_size = check_int(self.batch_size, "batch_size", at_least=1)
        self.seed = check_int(self.seed, "seed", at_least=0)
        if self.max_minutes is not None:
            self.max_minutes = check_positive(self.max_minutes, "max_minutes")
        check_lr_schedule(self.lr_schedule)
        self.min_lr = check_positive(self.min_lr, "min_lr", strict=False)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        if len(self.dataset) == 0:  # type: ignore[arg-type]
            raise ValidationError("dataset: no items to train on")
        if self.context is None:
            device = next(self.model.parameters()).device
            self.context = distributed_context(device)
        self.generator = torch.Generator(device=self.context.device)
        self.start_epoch = 0
        self.progress_done = 0.0  # share of the run done when the learning rate was last set (``lr_schedule``)

    def _seed_epoch(self, epoch: int) -> None:
        ctx = self.context
        assert ctx is not None
        self.generator.manual_seed((self.seed * 1_000_003 + epoch) * 1_009 + ctx.rank)

    def _set_lr(self, epoch: int, elapsed: float) -> None:
        if self.lr_schedule == "constant":
            return
        share = epoch / self.epochs
        if self.max_minutes is not None:
            share = max(share, elapsed / (60.0 * self.max_minutes))
        self.progress_done = min(1.0, max(self.progress_done, share))
        weight = 0.5 * (1.0 + math.cos(math.pi * self.progress_done))
        for group in self.optimizer.param_groups:
            group["lr"] = self.min_lr + (group["initial_lr"] - self.min_lr) * weight

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def _save(self, epoch: int) -> None:
        if not self.context.is_main:  # type: ignore[union-attr]
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "history": self.history,
            "seed": self.seed,
            "progress_done": self.progress_done,
        }
        if self.step_state is not None:
            state["step_state"] = self.step_state.state_dict()
        save_checkpoint(self.checkpoint_path, kind=self.kind, config=self.config, state=state)

    def resume(self) -> int:
        """Load ``RUN_DIR/checkpoint.pt``; return the number of epochs already done.

        Raises:
            FileFormatError: no checkpoint in the run folder, or an unreadable one.
            ValidationError: a checkpoint of another model kind or configuration.
        """
        if not self.checkpoint_path.is_file():
            raise FileFormatError(f"{self.out}: --resume given but there is no {CHECKPOINT_NAME} to resume from")
        data = load_checkpoint(self.checkpoint_path, kind=self.kind, map_location="cpu")
        if data["config"] != self.config:
            diff = config_differences(data["config"], self.config)
            raise ValidationError(
                f"{self.checkpoint_path}: written for another configuration (differs in {', '.join(diff)}); "
                "use a new --out folder or the same settings"
            )
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        if self.step_state is not None and "step_state" in data:
            self.step_state.load_state_dict(data["step_state"])
        self.history = list(data["history"])
        self.start_epoch = int(data["epoch"])
        self.progress_done = float(data.get("progress_done", 0.0))
        return self.start_epoch

    # -- the loop ------------------------------------------------------------------------------------------------
    def _loader(self, sampler: DistributedSampler) -> DataLoader:
        drop = self.drop_last and len(sampler) >= self.batch_size
        return DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate_fn, drop_last=drop
        )

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        dev = self.context.device  # type: ignore[union-attr]
        return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def fit(self) -> list[dict[str, float]]:
        """Train from ``start_epoch`` (0, or what :meth:`resume` restored) to ``epochs``; return the log."""
        from tqdm.auto import tqdm

        ctx = self.context
        assert ctx is not None
        net: nn.Module = self.model
        if ctx.world_size > 1:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        sampler = DistributedSampler(
            self.dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=self.seed  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        last = 0.0
        self.model.train()
        for epoch in range(self.start_epoch, self.epochs):
            elapsed = time.perf_counter() - started
            if self.max_minutes is not None and elapsed + last > 60.0 * self.max_minutes:
                log.info("stopping before epoch %d: the %.1f-minute budget would run out", epoch + 1, self.max_minutes)
                break
            self._set_lr(epoch, elapsed)
            sampler.set_epoch(epoch)
            self._seed_epoch(epoch)
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            total, count = 0.0, 0
            batches = tqdm(
                self._loader(sampler), desc=f"epoch {epoch + 1}/{self.epochs}", leave=False,
                disable=not (self.progress and ctx.is_main),
            )
            for batch in batches:
                loss = self.step(net, self._to_device(batch), self.generator)
                if not bool(torch.isfinite(loss.detach())):
                    raise NumericalError(
                        f"epoch {epoch + 1}: the loss became {float(loss)}; lower the learning rate or check the data"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach())
                count += 1
                batches.set_postfix(loss=f"{total / count:.4g}")
            mean = torch.tensor([total, float(count)], dtype=torch.float64)
            if ctx.world_size > 1:
                mean = mean.to(ctx.device)
                dist.all_reduce(mean)
            last = time.perf_counter() - t0
            entry = {"epoch": epoch + 1, "loss": float(mean[0] / mean[1]), "seconds": last,
                     "lr": float(self.optimizer.param_groups[0]["lr"])}
            self.history.append(entry)
            self._save(epoch + 1)
            if ctx.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                (self.out / LOG_NAME).write_text(json.dumps(self.history, indent=1))
                log.info("epoch %d/%d: loss %.6g, %.1f s", epoch + 1, self.epochs, entry["loss"], last)
        return self.history
