"""Fast adversarial training (Wong et al. 2020): FGSM from a random start."""
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


class FastATConfig(AdversarialConfig):
    step_ratio: float = Field(1.25, gt=0, description="alpha/eps (Wong et al.: 1.25, i.e. 10/255)")
    lr: float = Field(0.2, gt=0, description="peak of the cyclic LR (Wong et al.: 0.2)")
    schedule: Schedule = Field("cyclic", description="0 -> lr -> 0 (Wong et al.)")


@METHODS.register()
class FastAT(Stateless, SGDBase):
    """FGSM with random start U(-ε,ε), α=1.25ε, cyclic LR 0→0.2→0."""

    name = "fast_at"
    Config = FastATConfig
    adversarial = True
    citation = "Wong et al. 2020"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # one FGSM step on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        eps = self.eps(ctx)
        batch.x_adv = ctx.attack(ctx.model, batch.x, batch.y, kind="fgsm", norm=self.norm(ctx),
                                 eps=eps, alpha=eps * self.config.step_ratio, steps=1,
                                 random_start="uniform", generator=ctx.generator)
        batch.logits = ctx.model(batch.x_adv)
        return ctx.criterion(batch.logits, batch.y).mean()
