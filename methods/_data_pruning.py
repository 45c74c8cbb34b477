"""What CAPER and its random-subset ablation share: when to prune, how many, which mask.

Both score every training sample once at epoch τ, drop the γ highest-scoring samples for
the rest of training (``TrainContext.train_mask``; the loop then never batches them, so
the FLOP meter shows the saving), record the dropped samples in ``removed_samples`` and
the removal (count, epoch) in ``mechanism``. A τ outside the run fails grid validation.
The validation split is a separate tensor and is never scored or masked.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from bench.api import Batch, MethodConfig, Modifier, TrainContext


class PruningConfig(MethodConfig):
    tau: float = Field(0.25, gt=0, description=(
        "epoch at which samples are removed: a fraction (<1) of the epochs, or an epoch "
        "number (CAPER §4: τ=50 of 200 epochs, i.e. 0.25)"))
    gamma: float = Field(0.05, gt=0, description=(
        "samples removed: a fraction (<1) of the training split, or a count "
        "(CAPER Table 1: γ=2.5k of 50k CIFAR-10 images, i.e. 0.05)"))
    class_balanced: bool = Field(False, description=(
        "remove from each class in proportion to its size (an option; the paper ranks globally)"))
    label_smoothing: float = Field(0.1, ge=0, lt=1, description=(
        "label smoothing of the cross-entropy (CAPER Eq. 1 uses ℓ_ε; value not given, 0.1)"))

    @model_validator(mode="after")
    def _integral(self):
        for name in ("tau", "gamma"):
            value = getattr(self, name)
            if value >= 1 and value != int(value):
                raise ValueError(f"{name} >= 1 is a count and must be whole, got {value}")
        return self


def removal_epoch(tau: float, epochs: int) -> int:
    return int(tau) if tau >= 1 else int(round(tau * epochs))


def removal_count(gamma: float, n: int) -> int:
    return int(gamma) if gamma >= 1 else int(round(gamma * n))


def top_scores(scores: torch.Tensor, labels: torch.Tensor, count: int,
               class_balanced: bool) -> torch.Tensor:
    """Positions of the ``count`` largest scores (ties: lowest position first), globally or
    per class in proportion to class size (largest-remainder rounding)."""
    if not class_balanced:
        return _stable_topk(scores, count)
    classes, counts = torch.unique(labels, return_counts=True)
    quota = counts.double() * count / len(labels)
    per_class = quota.floor().long()
    leftover = count - int(per_class.sum())
    per_class[torch.sort(quota - per_class, descending=True, stable=True).indices[:leftover]] += 1
    picked = []
    for cls, k in zip(classes.tolist(), per_class.tolist()):
        members = (labels == cls).nonzero().flatten()
        picked.append(members[_stable_topk(scores[members], k)])
    return torch.cat(picked)


def _stable_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    # A stable descending sort makes ties deterministic across runs (topk's order is not).
    return torch.sort(scores, descending=True, stable=True).indices[:k]


class SamplePruner(Modifier):
    """Scores the active training samples at epoch τ and removes the γ highest-scoring."""

    replaces_criterion = True
    Config = PruningConfig

    def step_cost_key(self, ctx: TrainContext, batch: Batch) -> tuple:
        return ()  # scoring and removal run at epoch start, outside the steps

    def score(self, ctx: TrainContext, index: torch.Tensor) -> torch.Tensor:
        """One score per training-split position in ``index``; larger = removed first."""
        raise NotImplementedError

    def criterion(self, ctx: TrainContext):
        smoothing = self.config.label_smoothing
        return lambda logits, y: F.cross_entropy(logits, y, reduction="none",
                                                 label_smoothing=smoothing)

    def check_budget(self, epochs: int) -> str | None:
        # Removal at epoch 0 would rank samples by an untrained model's features; at or
        # after the last epoch nothing would train without them.
        tau = removal_epoch(self.config.tau, epochs)
        if 0 < tau < epochs:
            return None
        return (f"{self.name}: tau={self.config.tau:g} gives removal epoch {tau}, outside "
                f"1..{epochs - 1} of this {epochs}-epoch run; the mechanism could not act")

    def on_train_start(self, ctx: TrainContext) -> None:
        problem = self.check_budget(ctx.epochs)
        if problem is not None:
            raise ValueError(problem)
        self.tau = removal_epoch(self.config.tau, ctx.epochs)
        n = len(ctx.active_indices())
        self.gamma = removal_count(self.config.gamma, n)
        if not 0 < self.gamma < n:
            raise ValueError(f"{self.name}: gamma={self.config.gamma} removes {self.gamma} of "
                             f"{n} training samples; it must remove at least one and keep one")

    def state_dict(self) -> dict:
        return {}  # τ and γ follow from the config; the removal lives in ctx.train_mask

    def on_epoch_start(self, ctx: TrainContext) -> None:
        if ctx.epoch != self.tau:
            return
        active = ctx.active_indices()
        scores = self.score(ctx, active)
        drop = top_scores(scores, ctx.train_y[active], self.gamma, self.config.class_balanced)
        removed = active[drop]
        mask = torch.ones(len(ctx.train_y), dtype=torch.bool, device=ctx.train_y.device)
        if ctx.train_mask is not None:
            mask &= ctx.train_mask
        mask[removed] = False
        ctx.train_mask = mask
        ids = ctx.train_ids[removed] if ctx.train_ids is not None else removed
        ctx.emit("removed_samples", [
            {"sample_id": int(i), "label": int(y), "score": float(s), "epoch": ctx.epoch,
             "method": self.name}
            for i, y, s in zip(ids.tolist(), ctx.train_y[removed].tolist(),
                               scores[drop].tolist())])
        ctx.log(removed=len(removed), kept=int(mask.sum()))
        ctx.record_mechanism(self.name, "removed", len(removed), kept=int(mask.sum()),
                             tau=self.config.tau, gamma=self.config.gamma)


def batched(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
