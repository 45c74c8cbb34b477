"""The attack a training method calls per batch (PGD-AT, TRADES, Fast-AT, ...).

Training perturbs every sample of the batch (no early stopping: the loss needs them all)
and runs under the FLOP meter, so it goes through the delta-gradient loop in ``ascent``.
The caller owns train()/eval() mode: TRADES crafts in eval mode, PGD-AT in train mode.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.ascent import LossFn, Norm, RandomStart, ascend


def _mean_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
            kind: Literal["pgd", "fgsm"] = "pgd", norm: Norm = "Linf", eps: float = 0.1,
            alpha: float = 0.025, steps: int = 10, random_start: RandomStart = "uniform",
            loss_fn: LossFn | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Detached x_adv in [0,1] within the ``norm`` ball of radius ``eps`` around ``x``.

    ``kind="fgsm"`` takes a single step of size ``alpha`` (``steps`` is for PGD only), so
    Fast-AT is ``fgsm`` with ``random_start="uniform"`` and alpha = 1.25 eps.
    ``loss_fn(logits, y)`` returns the scalar to ascend (default: mean cross-entropy).
    """
    if kind not in ("pgd", "fgsm"):
        raise ValueError(f"perturb kind must be 'pgd' or 'fgsm', not {kind!r}")
    if norm not in ("Linf", "L2"):
        raise ValueError(f"perturb norm must be 'Linf' or 'L2', not {norm!r}")
    return ascend(model, x, y, norm=norm, eps=eps, alpha=alpha,
                  steps=1 if kind == "fgsm" else steps, random_start=random_start,
                  loss_fn=loss_fn or _mean_cross_entropy, generator=generator)
