"""Latency cells: one hardware profile of the grid on one run, ``latency`` rows."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.grid.cells import LatencyCell
from bench.grid.spec import GridSpec
from bench.hardware import HARDWARE
from bench.latency import measure_latency, sparse_layers
from bench.work.kinds.base import KINDS, CellKind
from bench.work.model import load_trained


def run_latency_cell(cell: LatencyCell, results: Path) -> list[dict]:
    """Dense latency rows, plus sparse-execution rows when the checkpoint is pruned (some
    conv or linear layer mostly zeros: what a pruning method is for)."""
    data, model = load_trained(cell.train, results, torch.device("cpu"))
    profile = HARDWARE.create(cell.hardware)
    shape = tuple(data.train_x.shape[1:])
    rows = measure_latency(model, shape, profile, run_id=cell.train.key, eval_id=cell.key)
    if sparse_layers(model):
        rows += measure_latency(model, shape, profile, execution="sparse",
                                run_id=cell.train.key, eval_id=cell.key)
    return rows


@KINDS.register()
class LatencyKind(CellKind):
    """Inference latency (grid key ``hardware``) of one run on one profile, on the CPU
    whatever the grid's device, alone on the machine."""

    name = label = "latency"
    tables = ("latency",)
    stage = "latency"
    order = 90

    def expand(self, spec: GridSpec, runs: list) -> list:
        return [LatencyCell(t, hw) for t in runs for hw in spec.hardware]

    def run(self, cell: LatencyCell, results: Path, device: torch.device | None = None
            ) -> list[dict]:
        return run_latency_cell(cell, results)
