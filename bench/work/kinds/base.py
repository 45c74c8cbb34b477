"""What a cell kind is: one object that knows its name, its tables, its cells in a grid,
their keys, how to run one, and what a failed one leaves behind.

Kinds register in :data:`KINDS`; expanding a grid, finding its pending cells, restricting
it to some methods, counting and estimating it, and the executors' schedule all iterate
the registry, so a new evaluation kind is one module (its class), its table's schema and
its grid.yaml key. ``stage`` places a kind in the schedule: ``train`` cells first, each
run's ``evaluation`` cells right after its training, ``transfer`` once every model it
touches is trained, ``latency`` last and alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from bench.grid.spec import GridSpec
from bench.registry import Registry

STAGES = ("train", "evaluation", "transfer", "latency")


class CellKind:
    """One kind of grid cell. Subclasses set the class attributes and ``expand``/``run``."""

    name: ClassVar[str]  # how tasks and the registry name it ("attack")
    label: ClassVar[str]  # its row in ``--plan`` and its attribute on a Grid ("attacks")
    tables: ClassVar[tuple[str, ...]]  # the tables it writes, the primary one last
    stage: ClassVar[str] = "evaluation"
    order: ClassVar[int] = 50  # position among kinds (plan rows, progress): built-ins 0-90

    @property
    def primary(self) -> str:
        """The table whose file marks a cell done (written last)."""
        return self.tables[-1]

    def expand(self, spec: GridSpec, runs: list) -> list:
        """The kind's cells in ``spec``, given the grid's training cells ``runs``."""
        raise NotImplementedError

    def key(self, cell) -> str:
        """Existing results are found by this key (bench.grid.cells defines them)."""
        return cell.key

    def runs(self, cell) -> tuple:
        """The training cells a cell involves (restricting a grid to some methods)."""
        return (cell.train,)

    def run(self, cell, results: Path, device: torch.device | None = None) -> list[dict]:
        """Rows of the primary table for one cell (evaluation kinds)."""
        raise NotImplementedError

    def failed_rows(self, cell, error: str) -> list[dict] | None:
        """Rows recording a failed cell, or None where the table has no status (the cell
        is then only reported, and the next run tries again)."""
        return None

    def outdated(self, rows) -> bool:
        """Whether a finished cell's rows (its primary table's file, a DataFrame) lack
        something this version records, so that ``perbench run`` evaluates it again and
        replaces the file (e.g. rows written before per-point results)."""
        return False

    def alike(self, cell) -> str | None:
        """What makes two cells of this kind cost alike, for ``--plan`` (from their
        ``robustness`` rows' attack_seconds); None: not estimated."""
        return None


def _check_stage(name: str, cls: type[CellKind]) -> None:
    if cls.stage not in STAGES:
        raise ValueError(f"cell kind {name!r}: stage {cls.stage!r} is not one of {STAGES}")


# Registered like every other axis: ``@KINDS.register()`` on the class (named by ``name``).
KINDS: Registry[CellKind] = Registry("cell kind", check=_check_stage)


def lacks_points(rows) -> bool:
    """``robustness`` rows measured (status ok) without per-point results."""
    if "robust_points" not in rows.columns:
        return bool((rows["status"] == "ok").any())
    return bool(((rows["status"] == "ok") & rows["robust_points"].isna()).any())


def all_kinds() -> list[CellKind]:
    """Every registered kind, in schedule order."""
    kinds = [KINDS.create(name) for name in KINDS.list()]
    return sorted(kinds, key=lambda k: (STAGES.index(k.stage), k.order, k.name))
