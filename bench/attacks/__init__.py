"""Adversarial attacks: ``perturb`` for training loops, ``ATTACKS`` + ``evaluate_attack`` for scoring.

Training and evaluation need different things from an attack (every sample and FLOP
metering vs. early stopping and per-point worst cases), so they get separate entry
points over one shared ascent loop. Importing this package registers every attack.
"""
from bench.attacks import autoattack, gradient  # noqa: F401  (registration side effect)
from bench.attacks.base import ATTACKS, Attack, register_attack
from bench.attacks.evaluate import AttackResult, craft_examples, evaluate_attack
from bench.attacks.train import perturb

__all__ = ["ATTACKS", "Attack", "AttackResult", "craft_examples", "evaluate_attack", "perturb", "register_attack"]
