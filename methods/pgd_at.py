"""Madry et al. PGD adversarial training (Rice et al. 2020 settings)."""
from __future__ import annotations

import torch
from pydantic import Field

from bench.api import (
    METHODS,
    AdversarialConfig,
    Batch,
    Schedule,
    SGDBase,
    Stateless,
    TrainContext,
)


class PGDATConfig(AdversarialConfig):
    steps: int = Field(10, ge=1, description="PGD steps (Madry: 10 on CIFAR-10)")
    step_ratio: float = Field(0.25, gt=0, description="alpha/eps; 2/255 for 8/255 (Rice et al.)")
    schedule: Schedule = Field("piecewise", description="LR decays at 50%/75% (Rice et al.)")


@METHODS.register()
class PGDAT(Stateless, SGDBase):
    """PGD adversarial training: L∞ ε=8/255, 10 steps, α=2/255, random start."""

    name = "pgd_at"
    Config = PGDATConfig
    adversarial = True
    citation = "Madry et al. 2018; Rice et al. 2020"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # a fixed number of PGD steps on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        eps = self.eps(ctx)
        # Rice et al. craft x_adv with the model in train mode, as the loop leaves it.
        batch.x_adv = ctx.attack(ctx.model, batch.x, batch.y, kind="pgd", norm=self.norm(ctx),
                                 eps=eps, alpha=eps * self.config.step_ratio,
                                 steps=self.config.steps, random_start="uniform",
                                 generator=ctx.generator)
        batch.logits = ctx.model(batch.x_adv)
        return ctx.criterion(batch.logits, batch.y).mean()
