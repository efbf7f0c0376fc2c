"""The shared training loop's learning-rate schedule: the cosine formula, budgets, exact resume, bad values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geomot.errors import ValidationError
from geomot.train.loop import Trainer
from geomot.train.matcher import MatcherConfig


class _Points(torch.utils.data.Dataset):
    def __init__(self, n: int = 8) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=gen, dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def _collate(items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack(items)}


def _step(model: nn.Module, batch: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(batch["x"].shape, generator=gen, dtype=batch["x"].dtype)
    return ((model(batch["x"] + 0.1 * noise) - batch["x"]) ** 2).mean()


def _trainer(out, *, epochs: int, schedule: str = "cosine", min_lr: float = 1e-4, **kw) -> Trainer:
    model = nn.Linear(3, 3).double()
    with torch.no_grad():
        model.weight.copy_(torch.eye(3) * 0.5)
        model.bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(model=model, optimizer=opt, step=_step, dataset=_Points(), collate_fn=_collate, out=out,
                   kind="toy", config={"toy": 1}, epochs=epochs, batch_size=4, progress=False,
                   lr_schedule=schedule, min_lr=min_lr, **kw)


def _cosine(t: float, lr0: float = 1e-2, lr1: float = 1e-4) -> float:
    return lr1 + (lr0 - lr1) * 0.5 * (1 + math.cos(math.pi * t))


def test_cosine_schedule_follows_the_formula_by_epoch(tmp_path):
    log = _trainer(tmp_path, epochs=5).fit()
    assert [e["lr"] for e in log] == pytest.approx([_cosine(e / 5) for e in range(5)], rel=1e-12)
    assert log[0]["lr"] == pytest.approx(1e-2) and log[-1]["lr"] < 0.11 * 1e-2


def test_constant_schedule_keeps_the_rate(tmp_path):
    log = _trainer(tmp_path, epochs=3, schedule="constant").fit()
    assert [e["lr"] for e in log] == [1e-2] * 3


def test_budget_share_drives_the_cosine_when_it_is_ahead(tmp_path):
    tr = _trainer(tmp_path, epochs=1000, max_minutes=1.0)
    tr._set_lr(2, elapsed=45.0)  # 2 / 1000 of the epochs, 75 % of the budget
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(_cosine(0.75), rel=1e-12)
    tr._set_lr(3, elapsed=1.0)  # never goes back up
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(_cosine(0.75), rel=1e-12)
    tr._set_lr(4, elapsed=600.0)  # past the budget: the floor
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-12)


class _Killed(Exception):
    pass


def test_kill_and_resume_continues_the_schedule_to_the_same_losses(tmp_path):
    full = _trainer(tmp_path / "full", epochs=4).fit()
    killed = _trainer(tmp_path / "cut", epochs=4)
    calls = []

    def dies_in_epoch_3(model, batch, gen):
        calls.append(1)
        if len(calls) > 4:  # two steps an epoch
            raise _Killed
        return _step(model, batch, gen)

    killed.step = dies_in_epoch_3
    with pytest.raises(_Killed):
        killed.fit()
    resumed = _trainer(tmp_path / "cut", epochs=4)
    assert resumed.resume() == 2
    log = resumed.fit()
    assert [e["lr"] for e in log] == pytest.approx([e["lr"] for e in full], rel=1e-12)
    assert [e["loss"] for e in log] == pytest.approx([e["loss"] for e in full], rel=1e-10)


def test_a_resumed_run_does_not_warm_up_again(tmp_path):
    _trainer(tmp_path, epochs=2).fit()  # annealed over 2 epochs
    longer = _trainer(tmp_path, epochs=8)
    longer.resume()
    log = longer.fit()
    assert log[2]["lr"] == pytest.approx(_cosine(0.5))  # max(progress saved 0.5, 2 / 8)
    assert [e["lr"] for e in log[2:]] == sorted((e["lr"] for e in log[2:]), reverse=True)


def test_bad_schedules_raise(tmp_path):
    with pytest.raises(ValidationError, match=r"lr_schedule.*cosine"):
        _trainer(tmp_path, epochs=2, schedule="step")
    with pytest.raises(ValidationError, match="min_lr"):
        _trainer(tmp_path, epochs=2, min_lr=-1.0)
    with pytest.raises(ValidationError, match="lr_schedule"):
        MatcherConfig(lr_schedule="linear")
    with pytest.raises(ValidationError, match="min_lr"):
        MatcherConfig(min_lr=-1e-3)
