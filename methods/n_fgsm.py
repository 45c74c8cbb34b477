"""N-FGSM: one FGSM step from strong noise, not projected back to the ε-ball.

Source: de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez & Dokania, "Make Some Noise: Reliable
and Efficient Single-Step Adversarial Training", NeurIPS 2022, §3 (Noise-FGSM:
x_adv = x + η + α·sign ∇ₓ CE(f(x + η), y), η ~ U(−kε, kε)ᵈ, k = 2, α = ε, no clipping to the
ε-ball), plus the authors' code (github.com/pdejorge/N-FGSM,
``train.py`` and ``experiments.sh``).

As the authors' code does: η is drawn per pixel, then cut so that x + η stays in [0, 1];
the gradient is taken at x + η in train mode; the step's result is cut to [0, 1] only, so
‖x_adv − x‖∞ reaches up to (k + step_ratio)·ε = 3ε. The training loss is cross-entropy on
x_adv. The method is defined for L∞; under an L2 threat model the cell fails with the
reason.

Options (default — source):
- ``noise_ratio`` 2.0 — k, the noise half-width over ε (paper and code, ``--unif 2``).
- ``step_ratio`` 1.0 — α/ε (paper; code ``--alpha`` equal to ``--epsilon``).
- ``clip_ratio`` None — no projection (the paper's point; code ``--clip -1``); a value c
  clips the perturbation to [−cε, cε] as the code's ``--clip`` does (1 gives Fast-AT's clip).
- ``lr`` 0.2, ``schedule`` cyclic — the authors' code: cyclic LR 0 → 0.2 → 0 (their peak is
  at half the run, PERBench's ``cyclic`` at 40%, as Wong et al.'s).
- ``momentum`` 0.9, ``weight_decay`` 5e-4 — the authors' code (the shared defaults).
- ``eps``, ``norm`` — the shared options (docs/methods.md#shared-options-of-the-bases).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


class NFGSMConfig(AdversarialConfig):
    noise_ratio: float = Field(2.0, ge=0, description="k: noise U(-k*eps, k*eps) (paper and code: 2)")
    step_ratio: float = Field(1.0, gt=0, description="alpha/eps (paper and code: 1)")
    clip_ratio: float | None = Field(None, gt=0, description=(
        "clip the perturbation to [-c*eps, c*eps]; None = no projection (paper and code)"))
    lr: float = Field(0.2, gt=0, description="peak of the cyclic LR (authors' code: 0.2)")
    schedule: Schedule = Field("cyclic", description="0 -> lr -> 0 (authors' code)")


def noise_fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
               noise_ratio: float, step_ratio: float, clip_ratio: float | None,
               generator: torch.Generator | None) -> torch.Tensor:
    """The N-FGSM example: an FGSM step of α = step_ratio·ε from x + η, η ~ U(−kε, kε),
    cut to [0, 1] (and to ±clip_ratio·ε when given); detached."""
    x = x.detach()
    eta = (2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1)
    eta = ((noise_ratio * eps) * eta + x).clamp(0.0, 1.0) - x
    # The gradient is taken with respect to the added noise, never a leaf fed to the model
    # (FlopCounterMode raises on that).
    eta.requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + eta), y), eta)
    with torch.no_grad():
        delta = eta + step_ratio * eps * grad.sign()
        delta = (x + delta).clamp(0.0, 1.0) - x
        if clip_ratio is not None:
            delta = delta.clamp(-clip_ratio * eps, clip_ratio * eps)
        return (x + delta).detach()


@METHODS.register()
class NFGSM(Stateless, SGDBase):
    """N-FGSM: FGSM step ε from noise U(−2ε, 2ε), no ε-ball projection; cyclic LR to 0.2."""

    name = "n_fgsm"
    Config = NFGSMConfig
    adversarial = True
    citation = "de Jorge et al. 2022"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # one gradient step on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        if self.norm(ctx) != "Linf":
            raise ValueError(f"n_fgsm is defined for the Linf threat model, not {self.norm(ctx)}")
        c = self.config
        batch.x_adv = noise_fgsm(ctx.model, batch.x, batch.y, eps=self.eps(ctx),
                                 noise_ratio=c.noise_ratio, step_ratio=c.step_ratio,
                                 clip_ratio=c.clip_ratio, generator=ctx.generator)
        batch.logits = ctx.model(batch.x_adv)
        return ctx.criterion(batch.logits, batch.y).mean()
