"""Learning-rate (and momentum) schedules as pure functions of training progress in [0, 1).

Progress-based (not epoch-based) so a schedule written for 200 CIFAR epochs scales to
any grid budget unchanged. AccelAT (Nikfam et al. 2022, §III) compares its LR rule with
constant, step, one-cycle, cyclical and warm-restart schedules; all are here so a grid can
run each as a base option (``config: {schedule: one_cycle}``).
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
def step(lr: float, progress: float) -> float:
    """FAT's 3-step LR as AccelAT quotes it (§IV-B): lr, lr/10, lr/100 over iterations
    [0, 40k), [40k, 60k), [60k, 80k) — the same 50%/75% boundaries as ``piecewise``."""
    return piecewise(lr, progress)


@_schedule
def cyclic(lr: float, progress: float) -> float:
    """Triangle 0 -> lr -> 0 peaking at 2/5 of training (Wong et al. 2020, Fast-AT)."""
    peak = 0.4
    return lr * (progress / peak if progress < peak else max(0.0, (1 - progress) / (1 - peak)))


# One-cycle (Smith 2018, as AccelAT §III-C describes it): a triangle lr/10 -> lr -> lr/10
# over the first 90% of training, then a fast decay to lr/1000; momentum mirrors it.
ONE_CYCLE_END = 0.9
ONE_CYCLE_MOMENTUM = (0.95, 0.85)  # (at the LR's minimum, at its peak)


@_schedule
def one_cycle(lr: float, progress: float) -> float:
    if progress < ONE_CYCLE_END:
        tri = 1 - abs(2 * progress / ONE_CYCLE_END - 1)  # 0 -> 1 -> 0
        return lr / 10 + (lr - lr / 10) * tri
    tail = (progress - ONE_CYCLE_END) / (1 - ONE_CYCLE_END)
    return lr / 10 + (lr / 1000 - lr / 10) * tail


def one_cycle_momentum(progress: float) -> float:
    """Inverse of the one-cycle LR: 0.95 -> 0.85 -> 0.95, then held at 0.95 (AccelAT Fig. 6)."""
    high, low = ONE_CYCLE_MOMENTUM
    if progress >= ONE_CYCLE_END:
        return high
    tri = 1 - abs(2 * progress / ONE_CYCLE_END - 1)
    return high - (high - low) * tri


CYCLICAL_CYCLES = 4  # triangles per run (Smith 2017 uses 2-10 epochs per half cycle)


@_schedule
def cyclical(lr: float, progress: float) -> float:
    """Smith's triangular policy: repeated lr/10 <-> lr cycles (AccelAT §III-D)."""
    phase = (progress * CYCLICAL_CYCLES) % 1.0
    return lr / 10 + (lr - lr / 10) * (1 - abs(2 * phase - 1))


# SGDR (Loshchilov & Hutter 2017): cosine from lr to 0, restarting; each period twice the
# last. Three periods of 1/7, 2/7 and 4/7 of the run end exactly at the end of training.
WARM_RESTART_PERIODS = (1 / 7, 2 / 7, 4 / 7)


@_schedule
def warm_restarts(lr: float, progress: float) -> float:
    start = 0.0
    for period in WARM_RESTART_PERIODS:
        if progress < start + period or period is WARM_RESTART_PERIODS[-1]:
            return cosine(lr, min((progress - start) / period, 1.0))
        start += period
    raise AssertionError("unreachable")


MOMENTUM_SCHEDULES: dict[str, Callable[[float], float]] = {"one_cycle": one_cycle_momentum}


def schedule_lr(name: str, lr: float, progress: float) -> float:
    return SCHEDULES[name](lr, progress)


def schedule_momentum(name: str, progress: float) -> float | None:
    """The momentum a schedule sets at ``progress``; None = leave the optimizer's own."""
    fn = MOMENTUM_SCHEDULES.get(name)
    return None if fn is None else fn(progress)
