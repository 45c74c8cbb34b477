"""GradAlign: FGSM training plus a penalty on misaligned input gradients inside the ε-ball.

Source: Andriushchenko & Flammarion, "Understanding and Improving Fast Adversarial
Training", NeurIPS 2020, §5 (the GradAlign regulariser
Ω(x, y, θ) = E_{η ~ U([−ε, ε]ᵈ)} [1 − cos(∇ₓℓ(x, y; θ), ∇ₓℓ(x + η, y; θ))], added as
λ·Ω to FGSM training), plus the authors' code
(github.com/tml-epfl/understanding-fast-adv-training: ``train.py``, ``utils.py``
``get_input_grad``, ``sh/exps_diff_eps_cifar10.sh``).

Per batch, as the authors' code does, everything in train mode:
1. FGSM from a zero start (``--attack_init=zero``): g₁ = ∇ₓ CE(f(x), y), x_adv =
   clip₍₀,₁₎(x + clip₍−ε,ε₎(α·sign g₁)). g₁ is kept, detached, for the regulariser.
2. Cross-entropy on x_adv.
3. g₂ = ∇ₓ CE(f(x + η), y), η ~ U(−ε, ε) per pixel (not cut to [0, 1], as in the code),
   taken with ``create_graph=True`` so the penalty trains the weights through it (double
   backpropagation). Points where either gradient is zero are left out; the penalty is
   λ·(1 − mean cos(g₁, g₂)).
The step costs about three forward-backward passes where Fast-AT costs two: the double
backward is charged by the FLOP meter like any other pass. Defined for L∞; under an L2
threat model the cell fails with the reason.

Options (default — source):
- ``lam`` 0.2 — λ at ε = 8/255 on CIFAR-10 (paper §5; code
  ``exps_diff_eps_cifar10.sh``, which interpolates λ = 0.02·10^(ε·255/8) for ε = 1..16/255:
  larger radii need a larger λ, so set it with the grid's ε).
- ``step_ratio`` 1.0 — α/ε (paper: α = ε; the code's default ``--fgsm_alpha`` 1.25 gives the
  same step from a zero start, cut to the ε-ball).
- ``lr`` 0.3, ``schedule`` cyclic — code: ``--lr_max=0.30`` with the cyclic schedule
  (peak at 40%) for GradAlign runs.
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


class GradAlignConfig(AdversarialConfig):
    lam: float = Field(0.2, ge=0, description="lambda, weight of the alignment penalty (paper, eps=8/255: 0.2)")
    step_ratio: float = Field(1.0, gt=0, description="FGSM alpha/eps (paper: 1)")
    lr: float = Field(0.3, gt=0, description="peak of the cyclic LR (authors' code: 0.3)")
    schedule: Schedule = Field("cyclic", description="0 -> lr -> 0 (authors' code)")


def input_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor,
                   create_graph: bool) -> torch.Tensor:
    """∇ CE(f(x + δ), y) with respect to δ (a gradient w.r.t. an added tensor, never a leaf
    fed straight to the model: FlopCounterMode raises on that)."""
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta, create_graph=create_graph)
    return grad


def alignment_penalty(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """1 − mean cosine between per-point gradients, over the points where neither is zero
    (the authors' ``grads_nnz_idx``); 0 when there are none."""
    n1, n2 = g1.flatten(1).norm(dim=1), g2.flatten(1).norm(dim=1)
    keep = (n1 != 0) & (n2 != 0)
    if not keep.any():
        return g2.sum() * 0.0  # keeps the graph: a scalar the loop can backpropagate
    cos = ((g1[keep] / n1[keep].view(-1, *[1] * (g1.dim() - 1)))
           * (g2[keep] / n2[keep].view(-1, *[1] * (g2.dim() - 1)))).flatten(1).sum(1)
    return 1.0 - cos.mean()


@METHODS.register()
class GradAlign(Stateless, SGDBase):
    """FGSM (zero start, α=ε) + λ·(1 − cos(∇ℓ(x), ∇ℓ(x+η))), λ=0.2; cyclic LR to 0.3."""

    name = "gradalign"
    Config = GradAlignConfig
    adversarial = True
    citation = "Andriushchenko & Flammarion 2020"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # FGSM, training pass and one double-backward pass on every input

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        if self.norm(ctx) != "Linf":
            raise ValueError(f"gradalign is defined for the Linf threat model, not {self.norm(ctx)}")
        model, x, y, eps = ctx.model, batch.x.detach(), batch.y, self.eps(ctx)
        g1 = input_gradient(model, x, y, torch.zeros_like(x), create_graph=False).detach()
        with torch.no_grad():
            step = (eps * self.config.step_ratio * g1.sign()).clamp(-eps, eps)
            batch.x_adv = (x + step).clamp(0.0, 1.0)
        batch.logits = model(batch.x_adv)
        loss = ctx.criterion(batch.logits, y).mean()
        if self.config.lam == 0:
            return loss
        eta = (2 * torch.rand(x.shape, generator=ctx.generator, device=x.device, dtype=x.dtype) - 1) * eps
        g2 = input_gradient(model, x, y, eta, create_graph=True)
        penalty = alignment_penalty(g1, g2)
        self._log_mean(ctx, float(penalty.detach()))
        return loss + self.config.lam * penalty

    def _log_mean(self, ctx: TrainContext, penalty: float) -> None:
        """The epoch's mean penalty so far, in the history's ``gradalign_penalty`` (a
        rising penalty is the misalignment that precedes catastrophic overfitting)."""
        total, count, epoch = getattr(self, "_penalty", (0.0, 0, ctx.epoch))
        if epoch != ctx.epoch:
            total, count = 0.0, 0
        total, count = total + penalty, count + 1
        self._penalty = (total, count, ctx.epoch)
        ctx.log(gradalign_penalty=total / count)
