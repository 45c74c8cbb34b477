"""ATAS: fast adversarial training with a per-sample adaptive step size and a carried start.

Source: Huang, Fan, Liu, Zhang, Zhang, Salzmann, Süsstrunk & Wang, "Fast Adversarial
Training with Adaptive Step Size", IEEE Transactions on Image Processing 2023 (arXiv
2206.02417; the authors' README gives this venue), the ATAS algorithm: each sample's FGSM
step starts from its own previous-epoch perturbation and its size falls as a moving
average of its input-gradient norm rises. Every formula and default below is read from
the authors' code (github.com/HuangZhiChao95/ATAS: ``ATAS.py``, ``adv_attack.py``,
``ATAS_CIFAR.sh``).

State carried across epochs, per training sample i: its perturbation δᵢ (starts U(−ε, ε))
and vᵢ, the moving average of the squared input-gradient norm (starts 0). Per batch:
1. x₀ = clip₍₀,₁₎(x + δ), g = ∇ CE(f(x₀), y) (batch-mean cross-entropy, as the code; the
   model in eval mode for the attack, as the code).
2. After the warm-up: vᵢ ← β·vᵢ + (1 − β)·‖gᵢ‖², αᵢ = clip(a·ε / (1 + √vᵢ / c), lo·ε, hi·ε).
   During the warm-up: αᵢ = w·ε and v is not updated.
3. x_adv = clip₍₀,₁₎(Π_ε(x₀ + αᵢ·sign gᵢ)); δᵢ ← x_adv − x for the next epoch.
4. Cross-entropy on x_adv, train mode.
At the start of every ``reset``-th epoch (but the last) all δ are redrawn from U(−ε, ε);
v is kept. The per-sample state is the method's (``state_dict``): resumed runs carry it.

The code's step sizes are absolute (a = 2·8/255, lo = 4/255, hi = 14/255 for every ε it
trains); PERBench scales them with ε, as it does every step size, so they are the code's
at ε = 8/255. The code transforms δ with each image's crop and flip; PERBench's loop does
not tell a method the augmentation, so under ``augment: crop``/``crop_flip`` the carried δ
is not aligned with the image it is added to (grids without augmentation are exact). Defined
for L∞; under an L2 threat model the cell fails with the reason.

Options (default — source):
- ``c`` 0.01 — the step-size scale on √v (``ATAS_CIFAR.sh``: C=0.01). The gradient is of
  the batch-mean loss, as in the code (batch 128 there), so c depends on the batch size.
- ``beta`` 0.5 — momentum of v (code ``--beta``).
- ``step_ratio`` 2.0, ``min_ratio`` 0.5, ``max_ratio`` 1.75 — a, lo, hi over ε (code: 2·8/255,
  4/255, 14/255 at ε = 8/255).
- ``warmup`` 1/6, ``warmup_ratio`` 1.0 — warm-up epochs with a constant step w·ε (code: 5 of
  30 epochs, ``--step-size 1.0``·ε). A value < 1 is a fraction of the epochs, else a count.
- ``reset`` 1/3 — period of the δ reset (code: every 10 of 30 epochs); same units; 0 never.
- ``lr`` 0.1, ``momentum`` 0.9, ``weight_decay`` 5e-4 — code (``ATAS_CIFAR.sh``).
- ``schedule`` piecewise — LR ÷10 at 50% and 75%; the code divides by 10 at epochs 24 and
  28 of 30 (80%, 93%), which no PERBench schedule reproduces.
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
    TrainContext,
)


class ATASConfig(AdversarialConfig):
    c: float = Field(0.01, gt=0, description="scale of the gradient norm in the step size (code: 0.01)")
    beta: float = Field(0.5, ge=0, lt=1, description="momentum of the gradient-norm average (code: 0.5)")
    step_ratio: float = Field(2.0, gt=0, description="a: step a*eps/(1+sqrt(v)/c) (code: 2*8/255 at 8/255)")
    min_ratio: float = Field(0.5, gt=0, description="smallest step / eps (code: 4/255 at 8/255)")
    max_ratio: float = Field(1.75, gt=0, description="largest step / eps (code: 14/255 at 8/255)")
    warmup: float = Field(1 / 6, ge=0, description="constant-step epochs: fraction if < 1, else count (code: 5 of 30)")
    warmup_ratio: float = Field(1.0, gt=0, description="warm-up step / eps (code: 1)")
    reset: float = Field(1 / 3, ge=0, description="period of the perturbation reset: fraction if < 1, else epochs; 0 never (code: 10 of 30)")
    schedule: Schedule = Field("piecewise", description="LR ÷10 at 50%/75% (code: at 80%/93%)")


def epochs_of(value: float, epochs: int) -> int:
    """A fraction of the run (< 1) or a count of epochs (≥ 1), as a count."""
    return int(value) if value >= 1 else round(value * epochs)


def adaptive_steps(grad_sq: torch.Tensor, v: torch.Tensor, *, beta: float, c: float, eps: float,
                   step_ratio: float, min_ratio: float, max_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample step sizes, updated v) from squared gradient norms and the old average."""
    v = beta * v + (1 - beta) * grad_sq
    steps = (step_ratio * eps / (1 + v.sqrt() / c)).clamp(min_ratio * eps, max_ratio * eps)
    return steps, v


@METHODS.register()
class ATAS(SGDBase):
    """ATAS: FGSM from each sample's previous perturbation, step a·ε/(1+√v/c) in [ε/2, 1.75ε]."""

    name = "atas"
    Config = ATASConfig
    adversarial = True
    citation = "Huang et al. 2023"

    def __init__(self, config: ATASConfig):
        super().__init__(config)
        self.delta: torch.Tensor | None = None  # per training sample, on the data's device
        self.v: torch.Tensor | None = None
        self.epoch = -1  # last epoch a step ran in: a reset happens once, when a new one starts

    def state_dict(self) -> dict:
        if self.delta is None:
            return {"epoch": self.epoch}
        return {"delta": self.delta.cpu(), "v": self.v.cpu(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.delta, self.v = state.get("delta"), state.get("v")

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # one attack step on every input, whatever its size

    def _draw(self, ctx: TrainContext, eps: float) -> torch.Tensor:
        x = ctx.train_x
        return (2 * torch.rand(x.shape, generator=ctx.generator, device=ctx.generator.device,
                               dtype=x.dtype).to(x.device) - 1) * eps

    def _start_epoch(self, ctx: TrainContext, eps: float) -> None:
        """First step of an epoch: set up the state, or redraw δ on a reset epoch."""
        device = ctx.train_x.device
        if self.delta is None:
            self.delta = self._draw(ctx, eps)
            self.v = torch.zeros(len(ctx.train_x), device=device)
        else:
            self.delta, self.v = self.delta.to(device), self.v.to(device)
            period = epochs_of(self.config.reset, ctx.epochs)
            number = ctx.epoch + 1  # the code counts epochs from 1
            if period > 0 and number % period == 0 and number != ctx.epochs:
                self.delta = self._draw(ctx, eps)
        self.epoch = ctx.epoch

    def loss(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        if self.norm(ctx) != "Linf":
            raise ValueError(f"atas is defined for the Linf threat model, not {self.norm(ctx)}")
        cfg, model, eps = self.config, ctx.model, self.eps(ctx)
        if self.epoch != ctx.epoch:
            self._start_epoch(ctx, eps)
        x, y, index = batch.x.detach(), batch.y, batch.index
        start = (x + self.delta[index]).clamp(0.0, 1.0)
        # The code crafts in eval mode; the gradient is w.r.t. an added zero tensor, never a
        # leaf fed to the model (FlopCounterMode raises on that).
        model.eval()
        probe = torch.zeros_like(start, requires_grad=True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.cross_entropy(model(start + probe), y), probe)
        model.train()
        with torch.no_grad():
            if ctx.epoch >= epochs_of(cfg.warmup, ctx.epochs):
                steps, self.v[index] = adaptive_steps(
                    grad.flatten(1).norm(dim=1) ** 2, self.v[index], beta=cfg.beta, c=cfg.c,
                    eps=eps, step_ratio=cfg.step_ratio, min_ratio=cfg.min_ratio,
                    max_ratio=cfg.max_ratio)
            else:
                steps = torch.full((len(x),), cfg.warmup_ratio * eps, device=x.device, dtype=x.dtype)
            moved = start + steps.view(-1, *[1] * (x.dim() - 1)) * grad.sign()
            batch.x_adv = torch.min(torch.max(moved, x - eps), x + eps).clamp(0.0, 1.0)
            self.delta[index] = batch.x_adv - x
        batch.logits = model(batch.x_adv)
        return ctx.criterion(batch.logits, y).mean()
