"""AutoAttack (Croce & Hein 2020) and its four components, through pyautoattack.

The standardized number a leaderboard row is compared on must be the reference
implementation's, so these wrap pyautoattack rather than reimplement it. The wrapper
confines the library's side effects: it reseeds torch's global RNG (we fork and restore
it), logs progress (held at WARNING, so its reliability checks still speak) and resets
``sys.settrace`` in its dynamic-defense check (we restore the tracer, e.g. coverage's).
evaluate_attack re-verifies every x_adv it returns.
"""
from __future__ import annotations

import logging
import sys
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyautoattack
import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack
from torch import nn

from bench.attacks.base import ATTACKS, Attack

STANDARD_TARGET_CLASSES = 9  # AutoAttack standard: 9 target classes for APGD-T and FAB-T


@contextmanager
def _contained(device: torch.device) -> Iterator[None]:
    """Keep pyautoattack's global side effects from leaking into the caller."""
    logger = logging.getLogger("auto-attack")
    level, tracer = logger.level, sys.gettrace()
    logger.setLevel(logging.WARNING)
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        logger.setLevel(level)
        sys.settrace(tracer)


def _n_targets(model: nn.Module, x: torch.Tensor) -> int:
    """AutoAttack's 9 targets, capped at num_classes - 1 (there are no more to aim at)."""
    num_classes = model(x[:1]).shape[1]
    return min(STANDARD_TARGET_CLASSES, num_classes - 1)


class _PyAutoAttack(Attack):
    """Shared ``run``: draw the library's seed from our generator, then contain the call."""

    def config(self) -> dict[str, Any]:
        return {**super().config(), "library": f"pyautoattack {pyautoattack.__version__}"}

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        with _contained(x.device):
            return self._attack(model, x, y, seed)

    @abstractmethod
    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        """Run the library's attack, seeded with ``seed``."""


@ATTACKS.register()
class AutoAttackStandard(_PyAutoAttack):
    """AutoAttack, standard version: APGD-CE, APGD-T, FAB-T, Square on the points still robust."""

    name = "autoattack"
    default_steps = 100  # APGD and FAB iterations; Square keeps its 5,000 queries
    fixed_steps = True

    def config(self) -> dict[str, Any]:
        return {**super().config(), "version": "standard"}

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        aa = AutoAttack(model, norm=self.norm, eps=self.eps, version="standard", device=x.device,
                        seed=seed)
        aa.verbose = False
        aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = _n_targets(model, x)
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
        return x_adv


@ATTACKS.register()
class APGDCE(_PyAutoAttack):
    """APGD on cross-entropy (AutoAttack's first attack), 100 iterations by default."""

    name = "apgd-ce"
    default_steps = 100
    options = {"rho": 0.75}

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        return APGDAttack(model, n_iter=self.steps, norm=self.norm, eps=self.eps, seed=seed,
                          loss="ce", rho=self.opts["rho"], device=x.device).perturb(x, y)


@ATTACKS.register()
class APGDT(_PyAutoAttack):
    """APGD on the targeted DLR loss over the top 9 other classes, 100 iterations each."""

    name = "apgd-t"
    default_steps = 100
    options = {"rho": 0.75}

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        return APGDAttack_targeted(model, n_iter=self.steps, norm=self.norm, eps=self.eps,
                                   seed=seed, rho=self.opts["rho"], device=x.device,
                                   n_target_classes=_n_targets(model, x)).perturb(x, y)


@ATTACKS.register()
class FABT(_PyAutoAttack):
    """FAB, targeted, over the top 9 other classes, 100 iterations each, no random start."""

    name = "fab-t"
    default_steps = 100
    randomized = False  # pyautoattack only randomizes FAB's restarts after the first

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        return FABAttack_PT(model, norm=self.norm, n_iter=self.steps, eps=self.eps, seed=seed,
                            targeted=True, device=x.device,
                            n_target_classes=_n_targets(model, x)).perturb(x, y)


@ATTACKS.register()
class Square(_PyAutoAttack):
    """Square Attack (Andriushchenko et al. 2020), black-box; ``steps`` is its query budget."""

    name = "square"
    default_steps = 5000
    options = {"p_init": 0.8, "resc_schedule": False}  # AutoAttack's settings

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        return SquareAttack(model, norm=self.norm, n_queries=self.steps, eps=self.eps, seed=seed,
                            p_init=self.opts["p_init"], resc_schedule=self.opts["resc_schedule"],
                            device=x.device).perturb(x, y)
