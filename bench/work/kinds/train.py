"""Training cells: one per (dataset, arch, method, seed) of the grid (bench.work.train)."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.grid.cells import TrainCell
from bench.grid.spec import GridSpec
from bench.results.schema import METHOD_TABLES
from bench.work.kinds.base import KINDS, CellKind
from bench.work.train import failed_run_row, run_train_cell


@KINDS.register()
class TrainKind(CellKind):
    """Train a run: its checkpoint, runs row, history and method tables."""

    name = label = "train"
    tables = ("history", *METHOD_TABLES, "runs")
    stage = "train"
    order = 0

    def expand(self, spec: GridSpec, runs: list) -> list:
        return list(runs)  # expand() lists them first: every other kind builds on them

    def runs(self, cell: TrainCell) -> tuple:
        return (cell,)

    def run(self, cell: TrainCell, results: Path, device: torch.device | None = None,
            progress=None, **options) -> tuple[dict, dict[str, list[dict]]]:
        """(runs row, {table: rows}) of a trained run; the caller writes ``runs`` last.
        ``options``: bench.work.train.run_train_cell's (sandbox, plugins, timeout)."""
        return run_train_cell(cell, results, device, progress=progress, **options)

    def failed_rows(self, cell: TrainCell, error: str) -> list[dict]:
        return [failed_run_row(cell, error)]
