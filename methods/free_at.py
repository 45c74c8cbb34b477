"""Free adversarial training (Shafahi et al. 2019): m replays share one backward pass
between the weight update and the perturbation update."""
from __future__ import annotations

import math

import torch
from pydantic import Field

from bench.api import (
    METHODS,
    AdversarialConfig,
    Batch,
    SGDBase,
    Stateless,
    TrainContext,
)


class FreeATConfig(AdversarialConfig):
    replays: int = Field(8, ge=1, description="minibatch replays m (Shafahi et al.: 8)")
    step_ratio: float = Field(1.0, gt=0, description="FGSM step / eps (Shafahi et al.: eps)")


@METHODS.register()
class FreeAT(Stateless, SGDBase):
    """Free-AT: m=8 replays, FGSM step ε, perturbation carried across replays and batches."""

    name = "free_at"
    Config = FreeATConfig
    adversarial = True
    citation = "Shafahi et al. 2019"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # one pass per replay, whatever the data

    def epochs(self, ctx: TrainContext) -> int:
        # Shafahi et al. §4: divide the epochs by m so total optimizer steps match.
        return max(1, math.ceil(ctx.budget.epochs / self.config.replays))

    def replays(self, ctx: TrainContext) -> int:
        return self.config.replays

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        delta = ctx.state.get("free_delta")
        if delta is None or delta.shape[1:] != batch.x.shape[1:]:
            delta = torch.zeros((ctx.budget.batch_size, *batch.x.shape[1:]), device=batch.x.device)
        # The last batch of an epoch may be smaller: use the leading slice of the carried δ.
        d = delta[:len(batch.x)].detach().requires_grad_(True)
        ctx.state["free_delta"], ctx.state["free_delta_view"] = delta, d
        batch.x_adv = (batch.x + d).clamp(0, 1)
        batch.logits = ctx.model(batch.x_adv)
        return ctx.criterion(batch.logits, batch.y).mean()

    def after_backward(self, ctx: TrainContext, batch: Batch) -> None:
        d, eps = ctx.state["free_delta_view"], self.eps(ctx)
        step = eps * self.config.step_ratio
        with torch.no_grad():
            if self.norm(ctx) == "Linf":
                new = (d + step * d.grad.sign()).clamp(-eps, eps)
            else:
                g = d.grad.flatten(1)
                g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
                new = (d + step * g.view_as(d)).flatten(1).renorm(2, 0, eps).view_as(d)
            ctx.state["free_delta"][:len(d)] = new
