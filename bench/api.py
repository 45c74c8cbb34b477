"""The public method API: everything a training method (built-in or submitted) sees, may
use, and registers itself with. A method's module imports from here, and nowhere else in
``bench``.

A method is a **base** (owns the per-batch objective) or a **modifier** (hooks into the
shared training loop). Both are classes with a pydantic ``Config``; the harness builds
them from the grid, hands them a :class:`TrainContext`, runs the loop in
:mod:`bench.work.loop`, and owns the test split, the evaluation and the cost accounting.

A method must not read the test split (it never receives it), change the model's
architecture, or declare its own cost: every forward and backward pass it runs through
the context's model is counted by the FLOP meter.

What is here:

- the classes: :class:`Base`, :class:`Modifier`, :class:`MethodConfig`, :class:`Resumable`;
- what a method receives: :class:`TrainContext`, :class:`Batch`, :class:`Budget`,
  :class:`ThreatModel`, :class:`Execution`;
- what a modifier reports and refuses: ``TrainContext.record_mechanism`` (one row of the
  ``mechanism`` table: what its mechanism did) and ``Modifier.check_budget`` (why its
  mechanism could not act within a run's epochs; grid validation calls it);
- the built-in bases' SGD base and options: :class:`SGDBase`, :class:`SGDConfig`,
  :class:`AdversarialConfig`, :class:`Stateless`, ``Schedule``;
- the learning-rate schedules: ``SCHEDULES``, :func:`schedule_lr`, :func:`schedule_momentum`;
- residual-block discovery, for methods that act on blocks: :func:`residual_blocks`,
  :func:`residual_archs`;
- registration: ``@METHODS.register()`` on the class (``register_method`` is the same).

The implementation lives in private modules (``bench._method``, ``bench._sgd``,
``bench._method_registry``); this module only publishes it, and imports nothing of the
engine that runs methods.
"""
from __future__ import annotations

from bench._method import (
                           Base,
                           Batch,
                           Budget,
                           Execution,
                           MethodConfig,
                           Modifier,
                           Resumable,
                           ThreatModel,
                           TrainContext,
)
from bench._method_registry import METHODS, register_method
from bench._sgd import AdversarialConfig, Schedule, SGDBase, SGDConfig, Stateless
from bench.archs import residual_archs, residual_blocks
from bench.schedules import SCHEDULES, schedule_lr, schedule_momentum

__all__ = [
    "METHODS", "SCHEDULES", "AdversarialConfig", "Base", "Batch", "Budget", "Execution",
    "MethodConfig", "Modifier", "Resumable", "SGDBase", "SGDConfig", "Schedule", "Stateless",
    "ThreatModel", "TrainContext", "register_method", "residual_archs", "residual_blocks",
    "schedule_lr", "schedule_momentum",
]
