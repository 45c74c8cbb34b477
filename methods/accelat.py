"""AccelAT: lower the learning rate when validation accuracy stops rising.

Source: Nikfam et al., "AccelAT: A Framework for Accelerating the Adversarial Training of
Deep Neural Networks through Accuracy Gradient", IEEE Access 2022, §III–V
(docs/methods.md#accelat), Algorithm 1, plus the authors' code.

Rule (Algorithm 1, read with means as its line 9 and §V's example state it): start at lr_max; after each
epoch e take the mean validation accuracy over the last n epochs; once a previous mean
exists, if mean_e − mean_{e−1} < Δacc then lr ← max(lr·p, lr_min). The code preset also
waits ``cooldown`` epochs after a drop before testing again. Under adversarial training
the monitored accuracy is *adversarial* validation accuracy (PGD on a fixed validation
subset); the authors' code monitored the test set, which the harness never allows.

The first test ends epoch n+1 (two window means exist), so a run of n+1 epochs or fewer
could only lower the LR after training: grid validation refuses it (``check_budget``).
Each LR change, and at the end the number that took effect, go to the ``mechanism`` table.

Options (default — source):
- ``preset`` "paper" — "paper": n=10, Δacc=1%, p=0.9, cooldown 0 (§V example);
  "code": n=5, Δacc=0.5%, p=0.8, cooldown 5 (authors' code). ``n``, ``delta_acc``, ``p``,
  ``cooldown`` override the preset when set.
- ``lr_max`` None — the base's peak LR (paper: the LR finder's choice; see ``lr_finder``).
- ``lr_min`` 1e-6 — authors' code.
- ``monitor`` "auto" — adversarial validation accuracy when the base trains adversarially
  (paper §V), else clean; or force "clean" / "adversarial".
- ``val_points`` 500, ``val_steps`` 10 — size of the validation subset and PGD steps (α =
  ε/4) for adversarial validation accuracy; ours (the paper does not give them). These
  passes are the method's work and are charged to its training FLOPs.
- ``lr_finder`` False — run the LR finder first (§III-B): an exponential LR sweep from
  ``finder_min`` 1e-5 to ``finder_max`` 10 over ``finder_steps`` 100 steps of the base's
  objective, then lr_max = (LR at the smoothed-loss minimum) / 10; the weights and the
  optimizer are restored afterwards, the sweep is charged and logged in ``history``.
"""
from __future__ import annotations

import copy
import json
import math
from typing import Literal

import torch
from pydantic import Field

from bench.api import METHODS, Batch, MethodConfig, Modifier, TrainContext

PRESETS = {
    "paper": {"n": 10, "delta_acc": 0.01, "p": 0.9, "cooldown": 0},
    "code": {"n": 5, "delta_acc": 0.005, "p": 0.8, "cooldown": 5},
}


class AccelATConfig(MethodConfig):
    preset: Literal["paper", "code"] = Field("paper", description="paper §V or authors' code")
    n: int | None = Field(None, ge=1, description="epochs in the accuracy window (paper 10, code 5)")
    delta_acc: float | None = Field(None, ge=0, description="minimum rise of the window mean, as a fraction (paper 0.01)")
    p: float | None = Field(None, gt=0, lt=1, description="LR factor on a plateau (paper 0.9, code 0.8)")
    cooldown: int | None = Field(None, ge=0, description="epochs after a drop before the next test (code 5)")
    lr_max: float | None = Field(None, gt=0, description="initial LR; None = the base's peak LR")
    lr_min: float = Field(1e-6, gt=0, description="LR floor (authors' code)")
    monitor: Literal["auto", "clean", "adversarial"] = Field("auto", description="accuracy watched")
    val_points: int = Field(500, ge=1, description="validation points for adversarial accuracy")
    val_steps: int = Field(10, ge=1, description="PGD steps for adversarial validation accuracy")
    lr_finder: bool = Field(False, description="run the LR finder for lr_max (paper §III-B)")
    finder_min: float = Field(1e-5, gt=0, description="LR finder sweep start")
    finder_max: float = Field(10.0, gt=0, description="LR finder sweep end")
    finder_steps: int = Field(100, ge=5, description="LR finder steps")

    def resolved(self, key: str):
        value = getattr(self, key)
        return PRESETS[self.preset][key] if value is None else value


class PlateauRule:
    """Algorithm 1 as a small state machine, separate from training so it can be tested."""

    def __init__(self, lr: float, n: int, delta_acc: float, p: float, lr_min: float, cooldown: int):
        self.lr, self.n, self.delta, self.p, self.lr_min, self.cooldown = lr, n, delta_acc, p, lr_min, cooldown
        self.accs: list[float] = []
        self.prev_mean: float | None = None
        self.wait = 0

    def update(self, acc: float) -> bool:
        """Record one epoch's accuracy; return True when the LR was lowered."""
        self.accs.append(acc)
        if len(self.accs) < self.n:
            return False
        mean = sum(self.accs[-self.n:]) / self.n
        prev, self.prev_mean = self.prev_mean, mean
        if self.wait > 0:
            self.wait -= 1
            return False
        if prev is None or mean - prev >= self.delta:
            return False
        self.lr = max(self.lr * self.p, self.lr_min)
        self.wait = self.cooldown
        return True


@METHODS.register()
class AccelAT(Modifier):
    """AccelAT: LR × p whenever mean validation accuracy over n epochs stops rising by Δacc."""

    name = "accelat"
    Config = AccelATConfig
    controls_lr = True
    citation = "Nikfam et al., IEEE Access 2022"

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # it only sets the LR; its validation runs at epoch end

    def check_budget(self, epochs: int) -> str | None:
        # The first test compares the window means ending at epochs n−1 and n (0-based), at
        # the end of epoch n; a drop there lowers the LR of epoch n+1, which must exist.
        n = self.config.resolved("n")
        if n + 1 < epochs:
            return None
        fix = f"use n <= {epochs - 2}" if epochs >= 3 else "it needs a run of 3 epochs or more"
        return (f"accelat: n={n} needs {n + 1} epochs of validation accuracy before its "
                f"first test, and this {epochs}-epoch run would have no epoch left to train "
                f"at a lowered LR, so the rule could not act; {fix}")

    def on_train_start(self, ctx: TrainContext) -> None:
        cfg = self.config
        lr = cfg.lr_max or ctx.peak_lr
        if cfg.lr_finder:
            lr = self._find_lr(ctx)
        if lr is None:
            raise ValueError("accelat: the base has no 'lr' option; set accelat's lr_max")
        self.rule = PlateauRule(lr, cfg.resolved("n"), cfg.resolved("delta_acc"),
                                cfg.resolved("p"), cfg.lr_min, cfg.resolved("cooldown"))
        self.adversarial = (cfg.monitor == "adversarial"
                            or (cfg.monitor == "auto" and ctx.base_adversarial))
        self.drops = 0

    def learning_rate(self, ctx: TrainContext, progress: float, base_lr: float) -> float:
        return self.rule.lr

    def state_dict(self) -> dict:
        r = self.rule
        return {"lr": r.lr, "accs": list(r.accs), "prev_mean": r.prev_mean, "wait": r.wait,
                "drops": self.drops}

    def load_state_dict(self, state: dict) -> None:
        r = self.rule
        r.lr, r.accs, r.prev_mean, r.wait = state["lr"], list(state["accs"]), state["prev_mean"], state["wait"]
        self.drops = state["drops"]

    def on_epoch_end(self, ctx: TrainContext, metrics: dict) -> None:
        if self.adversarial:
            with ctx.charged():
                acc = self._adversarial_val_acc(ctx)
            metrics["val_robust_acc"] = acc
        else:
            acc = metrics["val_acc"]
        if acc is None:
            raise ValueError("accelat needs a validation split (budget.val_size > 0)")
        old_lr = self.rule.lr
        dropped = self.rule.update(acc)
        self.drops += dropped
        if dropped:
            # A drop at the end of the last epoch is recorded too: the rule fired, but no
            # step trained at the new LR (applies_from_epoch == epochs).
            ctx.record_mechanism(self.name, "lr_change", self.rule.lr, old_lr=old_lr,
                                 new_lr=self.rule.lr, applies_from_epoch=ctx.epoch + 1,
                                 epochs=ctx.epochs, monitored=acc,
                                 window_mean=self.rule.prev_mean)
        metrics.update(accelat_monitored=acc, accelat_dropped=dropped,
                       accelat_next_lr=self.rule.lr, accelat_drops=self.drops)

    def on_train_end(self, ctx: TrainContext) -> None:
        # One row whatever happened, so a run whose rule never fired says so in the table.
        changes = [r for r in ctx.tables.get("mechanism", [])
                   if r["modifier"] == self.name and r["event"] == "lr_change"]
        applied = sum(1 for r in changes if r["epoch"] + 1 < ctx.epochs)
        ctx.record_mechanism(self.name, "lr_changes", applied, epoch=ctx.epochs - 1,
                             fired=len(changes), final_lr=self.rule.lr, epochs=ctx.epochs)

    def _adversarial_val_acc(self, ctx: TrainContext) -> float:
        x, y = ctx.val_x[:self.config.val_points], ctx.val_y[:self.config.val_points]
        eps = ctx.threat.eps
        model = ctx.model
        model.eval()
        correct = 0
        for i in range(0, len(y), 256):
            xb, yb = x[i:i + 256], y[i:i + 256]
            adv = ctx.attack(model, xb, yb, kind="pgd", norm=ctx.threat.norm, eps=eps,
                             alpha=eps / 4, steps=self.config.val_steps, random_start="uniform",
                             generator=ctx.generator)
            with torch.no_grad():
                correct += (model(adv).argmax(1) == yb).sum().item()
        return correct / max(len(y), 1)

    def _find_lr(self, ctx: TrainContext) -> float:
        """LR finder (§III-B): exponential sweep, lr_max one decade below the loss minimum."""
        cfg, model, opt = self.config, ctx.model, ctx.optimizer
        saved_model = copy.deepcopy(model.state_dict())
        saved_opt = copy.deepcopy(opt.state_dict())
        active = ctx.active_indices()
        bs = ctx.budget.batch_size
        ratio = cfg.finder_max / cfg.finder_min
        sweep, smooth, best = [], None, (math.inf, cfg.finder_min)
        for k in range(cfg.finder_steps):
            lr = cfg.finder_min * ratio ** (k / (cfg.finder_steps - 1))
            pick = active[torch.randint(len(active), (bs,), generator=ctx.generator,
                                        device=ctx.generator.device).to(active.device)]
            batch = Batch(x=ctx.train_x[pick], y=ctx.train_y[pick], index=pick)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = ctx.step_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                break
            smooth = value if smooth is None else 0.9 * smooth + 0.1 * value  # EMA: one noisy
            sweep.append((lr, value, smooth))                                # batch must not decide
            if smooth < best[0]:
                best = (smooth, lr)
            if smooth > 4 * best[0] and k > 5:
                break  # diverged: the rest of the sweep carries no information
        model.load_state_dict(saved_model)
        opt.load_state_dict(saved_opt)
        chosen = best[1] / 10
        ctx.log(lr_finder=json.dumps({"sweep": sweep, "lr_max": chosen}))
        return chosen
