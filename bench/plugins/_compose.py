"""Composition rules (``base+modifier+...``): the methods a grid names, built and checked.

Bases own the per-batch objective; modifiers hook into the shared loop
(docs/ARCHITECTURE.md, docs/methods.md#composition). Which modifier fits which base is
checked here, once, at spec validation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bench._method import Base, Budget, MethodConfig, Modifier, planning_context
from bench._method_registry import METHODS
from bench.plugins._loading import load_builtin_methods
from bench.registry import UnknownNameError


class CompositionError(ValueError):
    """A composition that cannot run (unknown part, two bases, incompatible modifier)."""


@dataclass(frozen=True)
class Composition:
    """A resolved ``base+modifier+...`` with validated configs."""

    name: str
    base: Base
    modifiers: tuple[Modifier, ...]

    def resolved_config(self) -> dict[str, dict[str, Any]]:
        parts = [self.base, *self.modifiers]
        return {p.name: p.config.model_dump(mode="json") for p in parts}

    def epochs(self, budget: Budget) -> int:
        """Passes over the data the base makes of ``budget`` (Free-AT: epochs / replays)."""
        return self.base.epochs(planning_context(budget))

    def budget_problems(self, budget: Budget) -> list[str]:
        """Each modifier's reason its mechanism could not act within ``budget``
        (``Modifier.check_budget``), said with the epochs the base makes of it."""
        epochs = self.epochs(budget)
        problems = [p for mod in self.modifiers if (p := mod.check_budget(epochs)) is not None]
        if problems and epochs != budget.epochs:
            # the reason names the run's epochs; say where they come from
            problems = [f"{p} ({self.base.name} turns the budget's {budget.epochs} epochs "
                        f"into {epochs})" for p in problems]
        return problems


def split_name(name: str) -> list[str]:
    return [p.strip() for p in name.split("+")]


def compose(name: str, config: dict[str, Any] | None = None) -> Composition:
    """Build a composition. ``config`` is keyed by part name, or flat for a single part.

    Raises :class:`CompositionError` or pydantic's ``ValidationError`` with the part name.
    """
    load_builtin_methods()
    parts = split_name(name)
    config = dict(config or {})
    if len(parts) == 1 and config and parts[0] not in config:
        config = {parts[0]: config}
    unknown_keys = set(config) - set(parts)
    if unknown_keys:
        raise CompositionError(
            f"config keys {sorted(unknown_keys)} name no part of {name!r}; allowed: {parts}")
    classes = []
    for part in parts:
        try:
            classes.append(METHODS.get(part))
        except UnknownNameError as exc:
            raise CompositionError(str(exc)) from None
    base_cls, *mod_classes = classes
    if not issubclass(base_cls, Base):
        bases = [n for n in METHODS.list() if issubclass(METHODS.get(n), Base)]
        raise CompositionError(
            f"{name!r} must start with a base method; {base_cls.name!r} is a modifier. "
            f"Bases: {', '.join(bases)}")
    for cls in mod_classes:
        if not issubclass(cls, Modifier):
            raise CompositionError(f"{name!r} has two bases ({base_cls.name}, {cls.name}); "
                                   "a composition is one base followed by modifiers")
    if len(set(parts)) != len(parts):
        raise CompositionError(f"{name!r} names a part twice")
    _check_compatible(name, base_cls, mod_classes)
    base = base_cls(_make_config(base_cls, config.get(base_cls.name)))
    mods = tuple(cls(_make_config(cls, config.get(cls.name))) for cls in mod_classes)
    return Composition(name="+".join(parts), base=base, modifiers=mods)


def _make_config(cls, values: dict[str, Any] | None) -> MethodConfig:
    try:
        return cls.Config(**(values or {}))
    except ValidationError as exc:
        raise CompositionError(f"config of {cls.name!r}: {_pydantic_message(exc, cls)}") from None


def _pydantic_message(exc: ValidationError, cls) -> str:
    allowed = ", ".join(cls.Config.model_fields)
    msgs = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msgs.append(f"{loc}: {err['msg']}")
    return "; ".join(msgs) + f" (allowed options: {allowed or 'none'})"


def _check_compatible(name: str, base_cls: type[Base], mod_classes: list[type[Modifier]]) -> None:
    for cls in mod_classes:
        if cls.requires_adversarial and not base_cls.adversarial:
            raise CompositionError(
                f"{name!r}: {cls.name} needs adversarial examples from its base, and "
                f"{base_cls.name} makes none; use an adversarial base (pgd_at, trades, fast_at, free_at)")
    for flag, what in (("controls_lr", "learning-rate controllers"),
                       ("replaces_criterion", "loss criteria")):
        owners = [c.name for c in mod_classes if getattr(c, flag)]
        if len(owners) > 1:
            raise CompositionError(f"{name!r} has two {what} ({', '.join(owners)}); keep one")
