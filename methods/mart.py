"""MART: misclassification-aware adversarial training.

Source: Wang, Zou, Yi, Bailey, Ma & Gu, "Improving Adversarial Robustness Requires
Revisiting Misclassified Examples", ICLR 2020, §3 (the MART objective, averaged over the
batch: BCE(p(x'), y) + λ·KL(p(x) ‖ p(x'))·(1 − p_y(x))), §4 (settings), plus the authors' code
(github.com/YisenWang/MART: ``mart.py``, ``train_wideresnet.py``, ``train_resnet.py``).

Per batch, as ``mart.py`` does: x' is crafted by PGD on cross-entropy in eval mode, from
x + 0.001·N(0, 1); then in train mode, with p = softmax(f(x)) and p' = softmax(f(x')):

    loss = CE(p', y) − log(1.0001 − max_{k≠y} p'_k)                         (boosted CE)
           + λ·(1/B)·Σᵢ KL(pᵢ ‖ p'ᵢ)·(1.0000001 − pᵢ,y)                     (weighted KL)

with log(p' + 1e-12) in the KL, the constants of the authors' code. The CE term is
``ctx.criterion`` (a criterion owner's label smoothing applies to it). As TRADES, the
clean logits are left in ``batch.logits`` and the adversarial ones in
``batch.extra["logits_adv"]``.

Options (default — source):
- ``beta`` 6.0 — λ, weight of the KL term (paper §4 for CIFAR-10; ``train_wideresnet.py``;
  ``train_resnet.py`` uses 5.0 for ResNet-18).
- ``steps`` 10, ``step_ratio`` 0.007/0.031 — PGD steps and α/ε (paper: 10 steps, α = 0.007
  at ε = 0.031; the code's defaults).
- ``lr``, ``momentum``, ``weight_decay``, ``schedule`` — the shared SGD recipe
  (docs/methods.md#shared-options-of-the-bases); the authors' scripts differ by model
  (WRN: lr 0.1, wd 2e-4; ResNet-18: lr 0.01, wd 3.5e-3; LR ÷10 at epochs 75, 90, 100).
- ``eps``, ``norm`` — the shared options.
"""
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


class MARTConfig(AdversarialConfig):
    beta: float = Field(6.0, ge=0, description="lambda, weight of the weighted KL term (MART: 6)")
    steps: int = Field(10, ge=1, description="PGD steps (MART: 10)")
    step_ratio: float = Field(0.007 / 0.031, gt=0, description="alpha/eps (MART: 0.007/0.031)")


def mart_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float,
              ce=None) -> torch.Tensor:
    """The MART objective on a batch (``mart.py``'s arithmetic); ``ce(logits, y)`` is the
    per-example cross-entropy (default: plain)."""
    ce = ce or (lambda z, t: F.cross_entropy(z, t, reduction="none"))
    adv_probs = F.softmax(logits_adv, dim=1)
    top2 = adv_probs.topk(2, dim=1).indices
    # The most likely wrong class: the top class, or the runner-up where the top one is y.
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
    boosted = ce(logits_adv, y).mean() - torch.log(
        1.0001 - adv_probs.gather(1, wrong[:, None]).squeeze(1) + 1e-12).mean()
    nat_probs = F.softmax(logits, dim=1)
    true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)
    kl = F.kl_div(torch.log(adv_probs + 1e-12), nat_probs, reduction="none").sum(1)
    return boosted + beta * (kl * (1.0000001 - true_probs)).mean()


@METHODS.register()
class MART(Stateless, SGDBase):
    """MART: boosted CE on PGD examples + λ·KL(clean‖adv)·(1 − p_y(clean)), λ=6."""

    name = "mart"
    Config = MARTConfig
    adversarial = True
    citation = "Wang et al. 2020"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # a fixed number of PGD steps on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        model, eps = ctx.model, self.eps(ctx)
        # MART's code crafts x' in eval mode, then trains in train mode.
        model.eval()
        batch.x_adv = ctx.attack(model, batch.x, batch.y, kind="pgd", norm=self.norm(ctx), eps=eps,
                                 alpha=eps * self.config.step_ratio, steps=self.config.steps,
                                 random_start="normal", generator=ctx.generator)
        model.train()
        batch.logits = model(batch.x)
        batch.extra["logits_adv"] = model(batch.x_adv)
        return mart_loss(batch.logits, batch.extra["logits_adv"], batch.y, self.config.beta,
                         ce=ctx.criterion)
