"""Empirical risk minimisation: plain cross-entropy training."""
from __future__ import annotations

import torch

from bench.api import METHODS, Batch, SGDBase, Stateless, TrainContext


@METHODS.register()
class ERM(Stateless, SGDBase):
    """Standard training with cross-entropy (SGD 0.1, momentum 0.9, wd 5e-4, cosine)."""

    name = "erm"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # no attack: the batch shape fixes the cost

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        batch.logits = ctx.model(batch.x)
        return ctx.criterion(batch.logits, batch.y).mean()
