"""Methods beside their registry: registering, loading and composing them.

- registering: ``METHODS`` and its decorator ``@METHODS.register()`` (``register_method``
  is the same), also published by :mod:`bench.api` for method authors;
- loading (:mod:`bench.plugins._loading`): the built-in ``methods`` package, a submitted
  ``.py`` file, installed packages' ``perbench.methods`` entry points;
- composing (:mod:`bench.plugins._compose`): ``base+modifier+...`` names built into
  checked :class:`Composition` objects.

Nothing here imports the engine that runs methods (:mod:`bench.execute`, :mod:`bench.work`):
the engine imports this.
"""
from __future__ import annotations

from bench._method_registry import METHODS, register_method
from bench.plugins._compose import Composition, CompositionError, compose, split_name
from bench.plugins._loading import (
    ENTRY_POINT_GROUP,
    ENTRY_POINT_PREFIX,
    Source,
    SubmissionError,
    entry_points,
    load_builtin_methods,
    load_entry_point,
    load_file,
    load_installed_plugins,
    load_source,
    methods_of,
)

__all__ = [
    "ENTRY_POINT_GROUP", "ENTRY_POINT_PREFIX", "METHODS", "Composition", "CompositionError",
    "Source", "SubmissionError", "compose", "entry_points", "load_builtin_methods",
    "load_entry_point", "load_file", "load_installed_plugins", "load_source", "methods_of",
    "register_method", "split_name",
]
