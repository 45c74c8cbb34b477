"""The SGD base the built-in bases share, and their common options
(docs/methods.md#shared-options-of-the-bases): published through :mod:`bench.api`, so a submitted base trains the way they do."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from bench._method import Base, MethodConfig, TrainContext
from bench.schedules import schedule_lr, schedule_momentum

# Names of bench.schedules.SCHEDULES (a Literal so a typo fails at spec validation).
Schedule = Literal["constant", "cosine", "piecewise", "step", "cyclic", "one_cycle", "cyclical",
                   "warm_restarts"]


class SGDConfig(MethodConfig):
    lr: float = Field(0.1, gt=0, description="peak learning rate (Rice et al. 2020: SGD 0.1)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay")
    schedule: Schedule = Field("cosine", description="LR schedule over the grid's epochs")


class AdversarialConfig(SGDConfig):
    eps: float | None = Field(None, ge=0, le=1, description="training radius; None = grid's train_threat.eps")
    norm: Literal["Linf", "L2"] | None = Field(None, description="None = grid's train_threat.norm")


class Stateless:
    """Mixin for a method that keeps nothing between epochs (what it carries lives in
    ``ctx``): its runs resume from per-epoch snapshots. Deliberately not on ``SGDBase``,
    so a plugin built on it that keeps state must say so itself."""

    def state_dict(self) -> dict:
        return {}


class SGDBase(Base):
    """Base with SGD, a named schedule and the grid's threat model."""

    Config = SGDConfig

    def optimizer(self, ctx: TrainContext) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(ctx.model.parameters(), lr=c.lr, momentum=c.momentum,
                               weight_decay=c.weight_decay)

    def learning_rate(self, ctx: TrainContext, progress: float) -> float:
        return schedule_lr(self.config.schedule, self.config.lr, progress)

    def momentum(self, ctx: TrainContext, progress: float) -> float | None:
        return schedule_momentum(self.config.schedule, progress)

    def eps(self, ctx: TrainContext) -> float:
        return ctx.threat.eps if self.config.eps is None else self.config.eps

    def norm(self, ctx: TrainContext) -> str:
        return self.config.norm or ctx.threat.norm
