"""TRADES (Zhang et al. 2019): clean cross-entropy plus β·KL to the adversarial output."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from bench.api import (
    METHODS,
    AdversarialConfig,
    Batch,
    SGDBase,
    Stateless,
    TrainContext,
)


class TRADESConfig(AdversarialConfig):
    beta: float = Field(6.0, ge=0, description="weight of the KL term (TRADES: 6)")
    steps: int = Field(10, ge=1, description="attack steps (TRADES: 10)")
    step_ratio: float = Field(0.007 / 0.031, gt=0, description="alpha/eps (TRADES: 0.007/0.031)")


def _kl(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_clean || p_adv), the TRADES robust term."""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1),
                    reduction="none").sum(1)


@METHODS.register()
class TRADES(Stateless, SGDBase):
    """TRADES: β=6, ε=0.031, α=0.007, 10 steps, start x+0.001·N(0,1)."""

    name = "trades"
    Config = TRADESConfig
    adversarial = True
    citation = "Zhang et al. 2019"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # a fixed number of KL-PGD steps on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        model, eps = ctx.model, self.eps(ctx)
        # TRADES' code crafts x_adv in eval mode, then trains in train mode.
        model.eval()
        with torch.no_grad():
            target = model(batch.x)
        batch.x_adv = ctx.attack(model, batch.x, batch.y, kind="pgd", norm=self.norm(ctx), eps=eps,
                                 alpha=eps * self.config.step_ratio, steps=self.config.steps,
                                 random_start="normal", generator=ctx.generator,
                                 loss_fn=lambda logits, _y: _kl(logits, target).sum())
        model.train()
        batch.logits = model(batch.x)
        # batch.logits are the clean logits; modifiers that distil on x_adv (EWS) reuse these.
        batch.extra["logits_adv"] = model(batch.x_adv)
        robust = _kl(batch.extra["logits_adv"], batch.logits)
        return (ctx.criterion(batch.logits, batch.y) + self.config.beta * robust).mean()
