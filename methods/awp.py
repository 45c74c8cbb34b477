"""AWP: adversarial weight perturbation on top of an adversarial base.

Source: Wu, Xia & Wang, "Adversarial Weight Perturbation Helps Robust Generalization",
NeurIPS 2020, §4 (the double perturbation: x' maximises the loss in the input ball, then
the weights are perturbed by v, ‖v_l‖ ≤ γ‖w_l‖ per layer, to maximise the loss on x';
one ascent step, as the paper's experiments use; the model is updated with the gradient
at w + v and v is removed afterwards), Appendix D (AT-AWP, TRADES-AWP, MART-AWP), plus
the authors' code (github.com/csdongxian/AWP: ``utils_awp.py``, ``train_cifar10.py``,
``trades_AWP/train_trades_cifar.py``).

Per step, as the code does:
1. The base crafts x' at the current weights w (the loop calls ``after_attack`` here).
2. The weight gradient g of the base's own objective on that x' (CE on x' for ``pgd_at``,
   CE + β·KL for ``trades``, MART's loss for ``mart``: what each of the code's
   ``calc_awp`` ascends), in train mode, BatchNorm running statistics left as they were
   (the code runs this pass on a proxy copy of the model).
3. Per layer l (weights of more than one dimension: convolutions and linear layers, never
   biases or BatchNorm): v_l = γ·‖w_l‖·g_l/‖g_l‖ (the code's proxy SGD step, rescaled;
   its step size cancels). w ← w + v.
4. The base trains on x' at w + v: loss, backward, optimizer step (weight decay and
   momentum applied at w + v, as in the code).
5. w ← w − v (``after_step``): the update is kept, the perturbation removed.
The ascent costs one extra forward and backward pass per step, charged to the method.

AWP acts where the base's adversarial examples come from ``ctx.attack`` (``pgd_at``,
``trades``, ``mart``, ``fast_at``, ``fgsm``); atop a base that crafts its own
(``free_at``, ``n_fgsm``, ``gradalign``, ``atas``) the run fails at its first step with
the reason. Weights exactly zero are not perturbed (so ``admm_prune``'s pruned weights
stay pruned whatever the order of the two modifiers); nothing else is zero in practice.

Options (default — source):
- ``gamma`` 5e-3 — γ, the relative size of the perturbation per layer (the authors'
  ``train_trades_cifar.py``, WRN-34-10; copies of their AT script default to 1e-2 for
  PreAct ResNet-18).
- ``warmup`` 0 — epochs before AWP starts: a fraction of the epochs if < 1, else a count
  (AT code: 0; TRADES code: 10 of 200, i.e. 0.05).
"""
from __future__ import annotations

import torch
from pydantic import Field

from bench.api import METHODS, Batch, MethodConfig, Modifier, Stateless, TrainContext

EPS = 1e-20  # the code's guard against a zero gradient norm


class AWPConfig(MethodConfig):
    gamma: float = Field(5e-3, ge=0, description="relative weight perturbation per layer (AWP: 5e-3)")
    warmup: float = Field(0.0, ge=0, description="epochs before AWP: fraction if < 1, else count (AT code: 0)")


def perturbed_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights AWP perturbs: the code's ``'weight' in name`` with more than one
    dimension (convolution and linear weights)."""
    return [p for name, p in model.named_parameters()
            if p.requires_grad and p.dim() > 1 and name.rpartition(".")[2] == "weight"]


def weight_perturbation(weights: list[torch.Tensor], grads: list[torch.Tensor | None],
                        gamma: float) -> list[torch.Tensor]:
    """v_l = γ·‖w_l‖·g_l/‖g_l‖ per layer, zero where w_l is exactly zero (pruned) or
    where no gradient reached the layer."""
    out = []
    for w, g in zip(weights, grads):
        if g is None:
            out.append(torch.zeros_like(w))
            continue
        g = torch.where(w == 0, torch.zeros_like(g), g)
        out.append(gamma * w.norm() / (g.norm() + EPS) * g)
    return out


@METHODS.register()
class AWP(Stateless, Modifier):
    """AWP: one ascent step on the weights per layer (‖v‖ = γ‖w‖, γ=5e-3), removed after the update."""

    name = "awp"
    Config = AWPConfig
    requires_adversarial = True
    citation = "Wu et al. 2020"

    def __init__(self, config: AWPConfig):
        super().__init__(config)
        self.applied: list[tuple[torch.nn.Parameter, torch.Tensor]] | None = None

    def active(self, ctx: TrainContext) -> bool:
        warm = self.config.warmup
        start = int(warm) if warm >= 1 else round(warm * ctx.epochs)
        return self.config.gamma > 0 and ctx.epoch >= start

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return (self.active(ctx),)  # an active step adds one forward-backward pass

    def after_attack(self, ctx: TrainContext, batch: Batch, x_adv: torch.Tensor) -> None:
        if not self.active(ctx):
            return
        model = ctx.model
        weights = perturbed_parameters(model)
        buffers = [b.detach().clone() for b in model.buffers()]
        was_training = model.training
        model.train()
        replay = Batch(x=batch.x, y=batch.y, index=batch.index, replay=batch.replay, x_adv=x_adv)
        loss = ctx.step_loss(replay)  # the base's objective on this x', no new attack
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        model.train(was_training)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)  # BatchNorm statistics: the code's proxy pass leaves them alone
            v = weight_perturbation([w.detach() for w in weights], list(grads), self.config.gamma)
            for w, d in zip(weights, v):
                w.add_(d)
        self.applied = list(zip(weights, v))

    def after_step(self, ctx: TrainContext, batch: Batch) -> None:
        if not self.active(ctx):
            return
        if self.applied is None:
            raise RuntimeError("awp needs a base that crafts its adversarial examples with "
                               "ctx.attack (pgd_at, trades, mart, fast_at, fgsm); this base "
                               "made none this step")
        with torch.no_grad():
            for w, d in self.applied:
                w.sub_(d)
        self.applied = None
