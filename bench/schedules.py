"""Learning-rate schedules as pure functions of training progress in [0, 1).

Progress-based (not epoch-based) so a schedule written for 200 CIFAR epochs scales to
any grid budget unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES: dict[str, Callable[[float, float], float]] = {}


def _schedule(fn):
    SCHEDULES[fn.__name__] = fn
    return fn


@_schedule
def constant(lr: float, progress: float) -> float:
    return lr


@_schedule
def cosine(lr: float, progress: float) -> float:
    return 0.5 * lr * (1 + math.cos(math.pi * progress))


@_schedule
def piecewise(lr: float, progress: float) -> float:
    """Decay by 10 at 50% and 75% of training (Madry / Rice et al. PGD-AT)."""
    return lr * (0.1 ** (int(progress >= 0.5) + int(progress >= 0.75)))


@_schedule
def cyclic(lr: float, progress: float) -> float:
    """Triangle 0 -> lr -> 0 peaking at 2/5 of training (Wong et al. 2020, Fast-AT)."""
    peak = 0.4
    return lr * (progress / peak if progress < peak else max(0.0, (1 - progress) / (1 - peak)))


def schedule_lr(name: str, lr: float, progress: float) -> float:
    return SCHEDULES[name](lr, progress)
