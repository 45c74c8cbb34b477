"""What an evaluation attack is, and the registry that names them.

Every attack takes the same four threat-model arguments (norm, eps, steps, restarts) plus
its own options, so a grid row, the spec validator and the runner treat them alike, and
``config()`` records exactly what ran. Errors here are ones a grid author makes, so they
name the attack, the value given and what is allowed.
"""
from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from bench.registry import Registry


class Attack(ABC):
    """An evaluation attack: ``run`` crafts x_adv for a batch; ``evaluate_attack`` scores it."""

    name: ClassVar[str]
    supported_norms: ClassVar[tuple[str, ...]] = ("Linf", "L2")
    default_steps: ClassVar[int]
    fixed_steps: ClassVar[bool] = False  # True: the attack is defined by its step count
    randomized: ClassVar[bool] = True  # False: restarts would repeat the same attack
    options: ClassVar[dict[str, Any]] = {}  # the attack's own config keys and defaults

    def __init__(self, norm: str = "Linf", eps: float = 0.1, steps: int | None = None,
                 restarts: int = 1, **config: Any):
        if norm not in self.supported_norms:
            raise ValueError(f"attack {self.name!r} does not support norm {norm!r}; "
                             f"allowed norms: {', '.join(self.supported_norms)}")
        if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps >= 0):
            raise ValueError(f"attack {self.name!r}: eps must be a finite number >= 0, got {eps!r}")
        unknown = sorted(set(config) - set(self.options))
        if unknown:
            raise ValueError(f"attack {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(self.options)) or 'none'}")
        if steps is None:
            steps = self.default_steps
        elif self.fixed_steps and steps != self.default_steps:
            raise ValueError(f"attack {self.name!r} always takes {self.default_steps} steps; "
                             f"got steps={steps} (leave steps unset)")
        if steps < 1:
            raise ValueError(f"attack {self.name!r}: steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ValueError(f"attack {self.name!r}: restarts must be >= 1, got {restarts}")
        self.norm, self.eps, self.steps, self.restarts = norm, float(eps), int(steps), int(restarts)
        self.opts = self.resolve({**self.options, **config})
        if restarts > 1 and not self.randomized:
            raise ValueError(f"attack {self.name!r} is deterministic: restarts={restarts} would "
                             f"repeat the same attack; use restarts=1")

    def resolve(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Fill options whose defaults depend on eps or steps (e.g. alpha)."""
        return opts

    def config(self) -> dict[str, Any]:
        """Every parameter that determines the attack, JSON-able, for ``attack_config``."""
        return {"name": self.name, "norm": self.norm, "eps": self.eps, "steps": self.steps,
                "restarts": self.restarts, **self.opts}

    @abstractmethod
    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            generator: torch.Generator) -> torch.Tensor:
        """x_adv for one batch of clean-correct points (model in eval mode, under no_grad)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """``@register_attack``: the same as ``@ATTACKS.register()`` (registers ``cls`` under
    ``cls.name``), kept for code written before every registry took one decorator style."""
    return ATTACKS.register()(cls)
