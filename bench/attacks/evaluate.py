"""Robust accuracy as DESIGN defines it: per-point worst case over every input tried.

The bookkeeping lives here, not in the attacks, so that every attack (ours or
pyautoattack's) is scored the same way: only points still robust are attacked, each
restart re-packs the survivors into full batches, and an x_adv counts only after our
own forward pass confirms it fools the model from inside the threat model.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.attacks.ascent import distances
from bench.attacks.base import Attack

# float32 slack for the ball check: projections round, and L2 norms accumulate error.
BALL_TOLERANCE = 1e-5


@dataclass
class AttackResult:
    """Per-point flags of one evaluation; tensors live on the CPU."""

    clean_correct: torch.Tensor  # bool [n]
    robust: torch.Tensor  # bool [n]: clean-correct and never fooled
    seconds: float
    n_examples: int
    config: dict[str, Any]
    rejected: int = field(default=0)  # misclassified x_adv discarded for leaving the threat model

    @property
    def clean_acc(self) -> float:
        return self.clean_correct.float().mean().item()

    @property
    def robust_acc(self) -> float:
        return self.robust.float().mean().item()


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen weights (FAB calls ``backward``), both restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _verified_fools(model: nn.Module, attack: Attack, x_adv: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(points x_adv fools from inside the threat model, count of fools from outside it)."""
    if x_adv.shape != x.shape:
        raise RuntimeError(f"attack {attack.name!r} returned shape {tuple(x_adv.shape)} "
                           f"for inputs of shape {tuple(x.shape)}")
    wrong = model(x_adv).argmax(dim=1) != y
    in_box = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(dim=1)
    inside = in_box & (distances(x_adv, x, attack.norm) <= attack.eps + BALL_TOLERANCE)
    return wrong & inside, int((wrong & ~inside).sum())


def evaluate_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                    seed: int = 0, batch_size: int = 500) -> AttackResult:
    """Clean and robust flags of ``model`` on (x, y) under ``attack``, seeded and batched."""
    start = time.perf_counter()
    x, y = x.detach(), y.detach()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    rejected = 0
    with _evaluating(model):
        clean_correct = torch.cat([model(xb).argmax(dim=1) == yb
                                   for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
        robust = clean_correct.clone()
        # The eps-ball of radius 0 holds only x itself: attacking it could only cost time
        # (Square would spend its whole query budget finding nothing).
        restarts = attack.restarts if attack.eps > 0 else 0
        for _ in range(restarts):
            todo = robust.nonzero().squeeze(1)
            for idx in todo.split(batch_size):
                x_adv = attack.run(model, x[idx], y[idx], generator)
                fooled, outside = _verified_fools(model, attack, x_adv, x[idx], y[idx])
                robust[idx[fooled]] = False
                rejected += outside
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    if rejected:
        warnings.warn(f"attack {attack.name!r}: {rejected} misclassified inputs left the "
                      f"{attack.norm} ball of radius {attack.eps} or [0,1] and were not counted",
                      RuntimeWarning, stacklevel=2)
    return AttackResult(clean_correct=clean_correct.cpu(), robust=robust.cpu(),
                        seconds=time.perf_counter() - start, n_examples=int(y.shape[0]),
                        config={**attack.config(), "seed": seed, "batch_size": batch_size},
                        rejected=rejected)
