"""TEMPLATE: copy this file, rename the class, ``name`` and ``Config``, and submit it:

    perbench submit my_method.py --leaderboard leaderboards/quickstart --authors "Me"

It is a complete, working method (a clean/adversarial loss mix on FGSM examples with a
random start) so that you can submit it unchanged to see the whole path first. Read
docs/submitting.md for the rules; ``bench.api`` is the full contract, and the one module
of PERBench a method imports (``help(bench.api)``).
"""
from __future__ import annotations

import torch
from pydantic import Field

from bench.api import METHODS, AdversarialConfig, Batch, SGDBase, TrainContext


# 1. Options: a pydantic model. Every option has a default and a short description; the
#    leaderboard records the resolved values, and unknown keys are rejected (typos fail).
#    SGDConfig/AdversarialConfig bring lr, momentum, weight_decay, schedule (and eps, norm).
class MixConfig(AdversarialConfig):
    clean_weight: float = Field(0.5, ge=0, le=1, description="weight of the clean loss")
    step_ratio: float = Field(1.25, gt=0, description="FGSM step / eps (Wong et al.: 1.25)")


# 2. The method: a Base owns the per-batch loss. (A Modifier would instead implement hooks
#    of bench.api.Modifier — on_epoch_start, extra_loss, after_step, learning_rate, ... —
#    and be submitted on a base: --on pgd_at.) @METHODS.register() adds the class to the
#    registry under its `name`.
@METHODS.register()
class CleanAdversarialMix(SGDBase):
    """Mix of clean and FGSM (random start) cross-entropy; template for submissions."""

    name = "template_mix"  # the registry name: unique, lower_snake_case
    Config = MixConfig
    adversarial = True  # it crafts adversarial examples (modifiers that need them may join)

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        # Everything a method may use is on ctx: the model, the training and validation
        # split (never the test split), budget, threat model, seeded generator, attacks.
        eps = self.eps(ctx)
        batch.x_adv = ctx.attack(ctx.model, batch.x, batch.y, kind="fgsm", norm=self.norm(ctx),
                                 eps=eps, alpha=self.config.step_ratio * eps,
                                 random_start="uniform", generator=ctx.generator)
        clean = ctx.criterion(ctx.model(batch.x), batch.y).mean()
        batch.logits = ctx.model(batch.x_adv)  # the logits this step trained on
        adversarial = ctx.criterion(batch.logits, batch.y).mean()
        w = self.config.clean_weight
        # Return one scalar tensor with gradients. Every forward/backward above is counted
        # by the FLOP meter as this method's training cost; nothing can be declared.
        return w * clean + (1 - w) * adversarial

    # 3. Optional, for speed: what this step's FLOPs depend on besides the batch shape.
    #    Returning a key (here nothing: one FGSM step and two passes on every batch) lets
    #    the meter count one such step op by op and charge the identical ones after it;
    #    every 64th is recounted and a difference fails the run. Leave it out (None) when
    #    the work can depend on the data, e.g. an attack that stops early on some inputs.
    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()

    # 4. Optional, so an interrupted run continues from its last epoch instead of epoch 0:
    #    what the method keeps between epochs (besides the model, optimizer, ctx and the
    #    run's generator, which the loop snapshots itself). This one keeps nothing: {}.
    #    A method with state returns it here as tensors, numbers, lists and dicts (a
    #    module's or optimizer's state_dict(), a private generator's get_state()) and
    #    implements load_state_dict(state) to take it back. Leave it out (None) and the
    #    cell simply restarts from epoch 0 when interrupted.
    def state_dict(self) -> dict:
        return {}
