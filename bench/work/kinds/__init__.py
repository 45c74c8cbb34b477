"""Cell kinds (:mod:`bench.work.kinds.base`): every module of this package defines one and
registers it on import, and :func:`expand` lists a grid's cells kind by kind."""
from __future__ import annotations

import importlib
import pkgutil

from bench.grid.cells import Grid, train_cells
from bench.grid.spec import GridSpec
from bench.work.kinds.base import KINDS, CellKind, all_kinds

# Every module here is a kind: importing them all registers them, so a new kind is a new
# module and nothing else in this package changes.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["KINDS", "CellKind", "all_kinds", "expand"]


def expand(spec: GridSpec, extra_runs: tuple = ()) -> Grid:
    """Every cell of ``spec``, per kind. ``extra_runs`` are models trained elsewhere
    (:class:`bench.interop.external.ExternalRun`): they get the grid's evaluation cells too,
    and join the transfer matrix, but have no training cell of their own to run."""
    runs = train_cells(spec) + list(extra_runs)
    kinds = all_kinds()
    return Grid({k.name: k.expand(spec, runs) for k in kinds}, {k.label: k.name for k in kinds})
