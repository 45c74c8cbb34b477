"""Deprecated: import these from :mod:`bench.api`.

Plugins written from the first template imported the SGD base from here; they keep working,
with a ``DeprecationWarning``. Nothing in PERBench imports this module.
"""
from __future__ import annotations

import warnings

from bench.api import AdversarialConfig, Schedule, SGDBase, SGDConfig, Stateless

__all__ = ["AdversarialConfig", "SGDBase", "SGDConfig", "Schedule", "Stateless"]

warnings.warn("methods._common is deprecated: import SGDBase, SGDConfig, AdversarialConfig, "
              "Stateless and Schedule from bench.api", DeprecationWarning, stacklevel=2)
