"""Robust accuracy (docs/conventions.md#robust-accuracy): per-point worst case over every input tried.

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
    # With ``keep_adv``: per point, the x_adv that fooled the model, else the last one tried
    # (x itself where nothing was tried). On the attack's device.
    x_adv: torch.Tensor | None = None

    @property
    def clean_acc(self) -> float:
        return self.clean_correct.float().mean().item()

    @property
    def robust_acc(self) -> float:
        return self.robust.float().mean().item()


@contextmanager
def evaluating(model: nn.Module, channels_last: bool = False) -> Iterator[None]:
    """Eval mode and frozen weights (FAB calls ``backward``), both restored afterwards.

    ``channels_last``: run a convolutional model with NHWC weights for the duration. oneDNN
    (CPU) and cuDNN (GPU) convolutions are faster in that layout: PGD-10 on the fashion-mnist
    PGD-AT CNN ran 1.47x faster on 2 CPU cores (``perbench bench``, figure pgd10_eval), with
    the same robust accuracy. The weights go back to their layout afterwards.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    converted = channels_last and uses_conv2d(model)
    if converted:
        model.to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            yield
    finally:
        if converted:
            model.to(memory_format=torch.contiguous_format)
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def uses_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _verified_fools(model: nn.Module, attack: Attack, x_adv: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(points x_adv fools from inside the threat model, count of fools from outside it)."""
    if x_adv.shape != x.shape:
        raise RuntimeError(f"attack {attack.name!r} returned shape {tuple(x_adv.shape)} "
                           f"for inputs of shape {tuple(x.shape)}")
    wrong = model(x_adv).argmax(dim=1) != y
    inside = _inside(attack, x_adv, x)
    return wrong & inside, int((wrong & ~inside).sum())


def _inside(attack: Attack, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per point: x_adv lies in [0,1] and in the attack's ε-ball around x."""
    in_box = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(dim=1)
    return in_box & (distances(x_adv, x, attack.norm) <= attack.eps + BALL_TOLERANCE)


def eval_batch_size(device: torch.device) -> int:
    """Points attacked at once: 500 on CPU (larger gains nothing on a few cores, and the
    batches fix which random start each point draws, so CPU results stay as they were);
    4096 on a GPU, which needs large batches to be busy. Recorded in ``attack_config``."""
    return 4096 if device.type == "cuda" else 500


def evaluate_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                    seed: int = 0, batch_size: int | None = None,
                    robust: torch.Tensor | None = None, keep_adv: bool = False) -> AttackResult:
    """Clean and robust flags of ``model`` on (x, y) under ``attack``, seeded and batched.

    ``robust`` (bool [n]) marks the points still robust from an earlier evaluation, e.g.
    at a smaller ε of a sweep; only those are attacked. ``keep_adv`` returns the examples.
    """
    start = time.perf_counter()
    x, y = x.detach(), y.detach()
    batch_size = batch_size or eval_batch_size(x.device)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    rejected = 0
    kept = x.clone() if keep_adv else None
    channels_last = x.dim() == 4 and uses_conv2d(model)
    with evaluating(model, channels_last):
        clean_correct = torch.cat([model(xb).argmax(dim=1) == yb
                                   for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
        if robust is None:
            robust = clean_correct.clone()
        else:
            robust = robust.to(clean_correct.device) & clean_correct
        # The eps-ball of radius 0 holds only x itself: attacking it could only cost time
        # (Square would spend its whole query budget finding nothing).
        restarts = attack.restarts if attack.eps > 0 else 0
        for _ in range(restarts):
            todo = robust.nonzero().squeeze(1)
            for idx in todo.split(batch_size):
                x_adv = attack.run(model, x[idx], y[idx], generator)
                fooled, outside = _verified_fools(model, attack, x_adv, x[idx], y[idx])
                robust[idx[fooled]] = False
                if kept is not None:  # never hand on an example from outside the threat model
                    ok = _inside(attack, x_adv, x[idx])
                    kept[idx[ok]] = x_adv[ok].detach()
                rejected += outside
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    if rejected:
        warnings.warn(f"attack {attack.name!r}: {rejected} misclassified inputs left the "
                      f"{attack.norm} ball of radius {attack.eps} or [0,1] and were not counted",
                      RuntimeWarning, stacklevel=2)
    return AttackResult(clean_correct=clean_correct.cpu(), robust=robust.cpu(),
                        seconds=time.perf_counter() - start, n_examples=int(y.shape[0]),
                        config={**attack.config(), "seed": seed, "batch_size": batch_size,
                                **({"memory_format": "channels_last"} if channels_last else {})},
                        rejected=rejected, x_adv=kept)


def craft_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, *,
                   seed: int = 0, batch_size: int | None = None,
                   ) -> tuple[torch.Tensor, AttackResult]:
    """An adversarial example for every point, to carry to other models (transfer attacks).

    The clean-correct points go through ``evaluate_attack`` exactly as in a white-box
    evaluation (same seed, same batches), so scoring the examples on the source model itself
    reproduces its white-box robust accuracy. The points the source already misclassifies
    are then attacked too (from a second seeded stream): another model may get them right.
    """
    batch_size = batch_size or eval_batch_size(x.device)
    result = evaluate_attack(model, x, y, attack, seed=seed, batch_size=batch_size,
                             keep_adv=True)
    x_adv = result.x_adv
    wrong = (~result.clean_correct).nonzero().squeeze(1).to(x.device)
    if len(wrong) and attack.eps > 0:
        generator = torch.Generator(device=x.device).manual_seed(seed + 1)
        with evaluating(model, channels_last=x.dim() == 4):
            for idx in wrong.split(batch_size):
                adv = attack.run(model, x[idx], y[idx], generator)
                ok = _inside(attack, adv, x[idx])
                x_adv[idx[ok]] = adv[ok].detach()
    return x_adv, result
