"""FGSM adversarial training from a zero start: the fast baseline that overfits catastrophically.

Sources: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015, §5 (the fast gradient sign method, and training on the objective
J̃ = c·J(x) + (1 − c)·J(x + ε·sign ∇ₓJ) with c = 0.5); Wong, Rice & Kolter, "Fast Is Better
than Free: Revisiting Adversarial Training", ICLR 2020, §3–4 and §5 (FGSM training from a
zero initialisation, step α = ε, as the baseline that random initialisation improves on,
and "catastrophic overfitting": PGD robustness collapsing within a few epochs), with
their code (github.com/locuslab/fast_adversarial: ``--delta-init zero``, training on the
adversarial examples alone with the cyclic LR of Fast-AT).

One step per batch: x_adv = clip₍₀,₁₎(x + α·sign ∇ₓ CE(f(x), y)), α = ε, crafted in
train mode as Wong et al. do, then cross-entropy on x_adv. Nothing random: two calls on
the same model and batch give the same x_adv.

Options (default — source):
- ``step_ratio`` 1.0 — α/ε (Wong et al.'s zero-init baseline: α = ε; under L∞ any α ≥ ε
  from a zero start lands on the same corner of the ε-ball).
- ``clean_weight`` 0.0 — c in Goodfellow et al.'s objective; 0 trains on x_adv only (Wong
  et al.'s baseline), 0.5 is Goodfellow et al.'s §5 value. A clean pass is run when > 0.
- ``lr`` 0.2, ``schedule`` cyclic — Wong et al.'s recipe for their FGSM runs (as ``fast_at``).
- ``momentum``, ``weight_decay``, ``eps``, ``norm`` — the shared options
  (docs/methods.md#shared-options-of-the-bases).
"""
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


class FGSMConfig(AdversarialConfig):
    step_ratio: float = Field(1.0, gt=0, description="alpha/eps (Wong et al.'s zero-init baseline: 1)")
    clean_weight: float = Field(0.0, ge=0, le=1, description=(
        "weight c of the clean loss (Goodfellow et al. 2015: 0.5; Wong et al.'s baseline: 0)"))
    lr: float = Field(0.2, gt=0, description="peak of the cyclic LR (Wong et al.: 0.2)")
    schedule: Schedule = Field("cyclic", description="0 -> lr -> 0 (Wong et al.)")


@METHODS.register()
class FGSM(Stateless, SGDBase):
    """FGSM-AT from a zero start, α=ε, cyclic LR 0→0.2→0 (catastrophic-overfitting baseline)."""

    name = "fgsm"
    Config = FGSMConfig
    adversarial = True
    citation = "Goodfellow et al. 2015; Wong et al. 2020"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # one FGSM step (and a clean pass when weighted) on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        eps = self.eps(ctx)
        batch.x_adv = ctx.attack(ctx.model, batch.x, batch.y, kind="fgsm", norm=self.norm(ctx),
                                 eps=eps, alpha=eps * self.config.step_ratio, steps=1,
                                 random_start=None, generator=ctx.generator)
        batch.logits = ctx.model(batch.x_adv)
        loss = ctx.criterion(batch.logits, batch.y).mean()
        c = self.config.clean_weight
        if c > 0:
            loss = c * ctx.criterion(ctx.model(batch.x), batch.y).mean() + (1 - c) * loss
        return loss
