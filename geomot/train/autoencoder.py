"""Training a point-cloud autoencoder with any of geomot's losses (``geomot train autoencoder``).

The reconstruction loss is chosen by name from :data:`AUTOENCODER_LOSSES`:

========================================  ============================================================================
name                                      loss between the reconstruction and the input cloud
========================================  ============================================================================
``sw``                                    ``SW_2^2``, ``L`` random directions (:func:`geomot.sliced_wasserstein`)
``cv-sw``                                 the same with the upper control variate (Nguyen & Ho, ICLR 2024)
``max-sw``                                max-sliced ``W_2^2`` (:func:`geomot.max_sliced_wasserstein`)
``dsw``                                   distributional SW with a trained push-forward
``vmf-dsw``                               vMF distributional SW (:func:`geomot.vmf_sliced_wasserstein`)
``ebsw``                                  energy-based SW
``chamfer``                               squared Chamfer distance (PyTorch3D's convention)
``sinkhorn``                              debiased Sinkhorn divergence, ``eps = 0.05^2``
``emd``                                   exact ``W_2^2`` (network simplex of POT on the detached clouds, gradient
                                          by the envelope theorem; for small clouds)
``amortized-KIND-max`` / ``-vmf``         amortised max-SW / vMF-DSW with a projector of kind ``KIND`` (hyphens for
                                          underscores: ``amortized-efficient-attention-vmf``), trained by ascent
========================================  ============================================================================

The model is :class:`geomot.models.PointNetAutoencoder`; the data a :class:`geomot.train.PointSetDataset`; the
loop the shared :class:`geomot.train.Trainer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geomot._core.checks import check_int, check_positive
from geomot._core.errors import ValidationError
from geomot._core.registry import Registry
from geomot.losses.amortized import check_betas

__all__ = [
    "AUTOENCODER_LOSSES",
    "AutoencoderConfig",
    "build_autoencoder",
    "loss_names",
    "make_loss",
    "train_autoencoder",
]

log = logging.getLogger(__name__)

LossFactory = Callable[["AutoencoderConfig", torch.Generator], nn.Module]
AUTOENCODER_LOSSES: Registry[LossFactory] = Registry("autoencoder loss")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Everything that defines a trained autoencoder (written into its checkpoint).

    Attributes:
        loss: a name of :data:`AUTOENCODER_LOSSES` or ``amortized-KIND-max|vmf``.
        n_points: points per input cloud and per reconstruction.
        latent_dim: width of the L2-normalised code.
        encoder_widths: output widths of the per-point layers of the encoder (the paper's 64-64-64-128-1024).
        decoder_widths: hidden widths of the decoder (the paper's 1024-1024).
        n_projections: ``L`` of the sliced losses.
        kappa: vMF concentration of ``vmf-dsw`` and ``amortized-*-vmf``; None: each loss's default (10 for
            ``vmf-dsw``, 1 for the amortised losses).
        lr: Adam learning rate of the autoencoder.
        projector_lr: learning rate of the projector's Adam (``amortized-*`` losses; the paper's 1e-3).
        projector_betas: betas of the projector's Adam (the paper's ``(0, 0.9)``).
        seed: seed of the weights, the shuffling and the losses' directions.
    """

    loss: str = "sw"
    n_points: int = 2048
    latent_dim: int = 256
    encoder_widths: tuple[int, ...] = (64, 64, 64, 128, 1024)
    decoder_widths: tuple[int, ...] = (1024, 1024)
    n_projections: int = 100
    kappa: float | None = None
    lr: float = 1e-3
    projector_lr: float = 1e-3
    projector_betas: tuple[float, float] = (0.0, 0.9)
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.n_points, "n_points", at_least=1)
        check_int(self.latent_dim, "latent_dim", at_least=1)
        for name in ("encoder_widths", "decoder_widths"):
            widths = tuple(getattr(self, name))
            if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
                raise ValidationError(f"{name}: expected a non-empty sequence of integers >= 1, got {widths!r}")
            object.__setattr__(self, name, widths)
        check_int(self.n_projections, "n_projections", at_least=1)
        if self.kappa is not None:
            check_positive(self.kappa, "kappa")
        check_positive(self.lr, "lr")
        check_positive(self.projector_lr, "projector_lr")
        object.__setattr__(self, "projector_betas", check_betas(self.projector_betas, "projector_betas"))
        check_int(self.seed, "seed", at_least=0)
        make_loss_factory(self.loss)


class _FunctionLoss(nn.Module):
    """``loss(pred, target, lengths, generator)`` calling a functional loss with fixed settings."""

    def __init__(self, fn: Callable[..., torch.Tensor], **settings: Any) -> None:
        super().__init__()
        self.fn, self.settings = fn, settings

    def forward(self, pred, target, lengths, generator):
        return self.fn(pred, target, y_lengths=lengths, generator=generator, **self.settings)


class _ShellLoss(nn.Module):
    """A loss Module whose parameters (a push-forward, a projector) are trained inside its own calls."""

    def __init__(self, shell: nn.Module) -> None:
        super().__init__()
        self.shell = shell

    def forward(self, pred, target, lengths, generator):
        return self.shell(pred, target, y_lengths=lengths, generator=generator)


def _sliced(cfg, gen, **extra):
    import geomot

    return _FunctionLoss(geomot.sliced_wasserstein, n_projections=cfg.n_projections, root=False, **extra)


AUTOENCODER_LOSSES.add("sw", lambda cfg, gen: _sliced(cfg, gen))
AUTOENCODER_LOSSES.add("cv-sw", lambda cfg, gen: _sliced(cfg, gen, control_variate="upper"))


@AUTOENCODER_LOSSES.register("max-sw")
def _max_sw(cfg, gen):
    import geomot

    return _FunctionLoss(geomot.max_sliced_wasserstein, root=False)


@AUTOENCODER_LOSSES.register("vmf-dsw")
def _vmf(cfg, gen):
    import geomot

    kappa = {} if cfg.kappa is None else {"kappa": cfg.kappa}
    return _FunctionLoss(geomot.vmf_sliced_wasserstein, n_projections=cfg.n_projections, root=False, **kappa)


@AUTOENCODER_LOSSES.register("dsw")
def _dsw(cfg, gen):
    import geomot

    return _ShellLoss(geomot.DistributionalSlicedWasserstein(dim=3, n_projections=cfg.n_projections, root=False))


@AUTOENCODER_LOSSES.register("ebsw")
def _ebsw(cfg, gen):
    import geomot

    return _FunctionLoss(geomot.energy_based_sliced_wasserstein, n_projections=cfg.n_projections, root=False)


@AUTOENCODER_LOSSES.register("chamfer")
def _chamfer(cfg, gen):
    import geomot

    class _Chamfer(nn.Module):
        def forward(self, pred, target, lengths, generator):
            return geomot.chamfer_distance(pred, target, y_lengths=lengths)

    return _Chamfer()


@AUTOENCODER_LOSSES.register("sinkhorn")
def _sinkhorn(cfg, gen):
    import geomot

    class _Sinkhorn(nn.Module):
        def forward(self, pred, target, lengths, generator):
            return geomot.sinkhorn_divergence(pred, target, y_lengths=lengths, eps=0.05**2)

    return _Sinkhorn()


def exact_w2_squared(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the exact ``W_2^2`` between uniform clouds, differentiable in both.

    The optimal plan ``P_b`` is found by POT's network simplex on detached float64 copies; the value
    ``sum_ij P_ij |x_i - y_j|^2`` is then formed in torch, so its gradient is the envelope-theorem gradient.
    Costs ``O(N^3)``-ish per item: meant for clouds of a few thousand points at most.
    """
    import ot

    values = []
    for b in range(pred.shape[0]):
        x, y = pred[b], target[b, : int(lengths[b])]
        cost = torch.cdist(x, y).square()
        c = cost.detach().double().cpu().numpy()
        plan = ot.emd(np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y)), c, numItermax=1_000_000)
        values.append((torch.as_tensor(plan, dtype=cost.dtype, device=cost.device) * cost).sum())
    return torch.stack(values).mean()


@AUTOENCODER_LOSSES.register("emd")
def _emd(cfg, gen):
    class _Emd(nn.Module):
        def forward(self, pred, target, lengths, generator):
            return exact_w2_squared(pred, target, lengths)

    return _Emd()


def _amortized_factory(kind: str, distribution: str) -> LossFactory:
    def build(cfg: AutoencoderConfig, gen: torch.Generator) -> nn.Module:
        from geomot.losses.amortized import AmortizedSlicedWasserstein
        from geomot.models.amortized import AmortizedProjection

        projector = AmortizedProjection(kind, dim=3, n_points=cfg.n_points, generator=gen)
        return _ShellLoss(
            AmortizedSlicedWasserstein(
                projector=projector, lr=cfg.projector_lr, betas=cfg.projector_betas, distribution=distribution,
                n_projections=cfg.n_projections, root=False, **({} if cfg.kappa is None else {"kappa": cfg.kappa}),
            )
        )

    return build


def make_loss_factory(name: str) -> LossFactory:
    """The factory of a loss name (see :data:`AUTOENCODER_LOSSES`; ``amortized-KIND-max|vmf`` are built here)."""
    if isinstance(name, str) and name.startswith("amortized-"):
        from geomot.models.amortized import AMORTIZED_PROJECTIONS

        body, _, distribution = name[len("amortized-"):].rpartition("-")
        kind = body.replace("-", "_")
        if distribution in ("max", "vmf") and kind in AMORTIZED_PROJECTIONS:
            return _amortized_factory(kind, distribution)
        raise ValidationError(
            f"loss: unknown amortised loss {name!r}; expected amortized-KIND-max or amortized-KIND-vmf with KIND "
            f"one of {', '.join(k.replace('_', '-') for k in AMORTIZED_PROJECTIONS.names())}"
        )
    if not isinstance(name, str) or name not in AUTOENCODER_LOSSES:
        raise ValidationError(f"loss: unknown loss {name!r}; valid: {', '.join(loss_names())}")
    return AUTOENCODER_LOSSES.get(name)


def loss_names() -> list[str]:
    """Every accepted loss name, the amortised ones included."""
    from geomot.models.amortized import AMORTIZED_PROJECTIONS

    amortized = [
        f"amortized-{k.replace('_', '-')}-{d}" for k in AMORTIZED_PROJECTIONS.names() for d in ("max", "vmf")
    ]
    return AUTOENCODER_LOSSES.names() + amortized


def make_loss(cfg: AutoencoderConfig, generator: torch.Generator) -> nn.Module:
    """The loss Module of ``cfg.loss``: ``loss(pred, target, lengths, generator) -> scalar``."""
    return make_loss_factory(cfg.loss)(cfg, generator)


def build_autoencoder(cfg: AutoencoderConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The :class:`geomot.models.PointNetAutoencoder` of ``cfg``, its weights drawn from a generator seeded by
    ``cfg.seed`` (the global random state is not used)."""
    from geomot.models.autoencoder import PointNetAutoencoder

    gen = torch.Generator().manual_seed(cfg.seed)
    return PointNetAutoencoder(
        n_out=cfg.n_points, latent_dim=cfg.latent_dim, encoder_widths=cfg.encoder_widths,
        decoder_widths=cfg.decoder_widths, generator=gen,
    ).to(device)


def _step(loss: nn.Module) -> Callable[[nn.Module, dict[str, Any], torch.Generator], torch.Tensor]:
    def step(model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        x, lengths = batch["points"], batch["lengths"]
        return loss(model(x, lengths=lengths), x, lengths, generator)

    return step


def train_autoencoder(
    data: Sequence[str | Path],
    out: str | Path,
    *,
    config: AutoencoderConfig,
    epochs: int = 100,
    batch_size: int = 32,
    resume: bool = False,
    max_minutes: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train :func:`build_autoencoder` on the clouds of ``data`` with the loss ``config.loss``.

    Args:
        data: ``.npy`` files ``(B, N, 3)`` and/or folders of meshes (see :class:`geomot.train.PointSetDataset`).
        out: the run folder: ``checkpoint.pt`` after every epoch, ``log.json``.
        config: model and loss settings.
        epochs: total epochs (a resumed run continues up to it).
        batch_size: clouds per step and process (the last, smaller batch of an epoch is skipped: batch norm).
        resume: continue from ``out/checkpoint.pt`` (it must exist and match ``config``).
        max_minutes: wall-clock budget (no epoch starts that would overrun it).
        device: None picks CUDA (``cuda:LOCAL_RANK`` under torchrun) when available, else the CPU.
        progress: tqdm bars on stderr.

    Returns:
        the log: one ``{"epoch", "loss", "seconds"}`` per epoch done.
    """
    from geomot.train.data import PointSetDataset, collate_point_sets
    from geomot.train.loop import Trainer, distributed_context

    ctx = distributed_context(device)
    dataset = PointSetDataset(list(data), n_points=config.n_points, seed=config.seed)
    model = build_autoencoder(config, ctx.device)
    loss = make_loss(config, torch.Generator().manual_seed(config.seed + 1)).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    trainer = Trainer(
        model=model, optimizer=optimizer, step=_step(loss), dataset=dataset, collate_fn=collate_point_sets,
        out=Path(out), kind="autoencoder", config=asdict(config), epochs=epochs, batch_size=batch_size,
        seed=config.seed, max_minutes=max_minutes, step_state=loss, context=ctx, progress=progress,
        drop_last=True,
    )
    if resume:
        done = trainer.resume()
        log.info("resuming %s after epoch %d", out, done)
    return trainer.fit()
