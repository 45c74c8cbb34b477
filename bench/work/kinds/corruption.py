"""Corruption cells: every (corruption, severity) of the grid on one run, ``corruption`` rows."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.corruptions import CORRUPTION_NAMES, corrupt, load_cifar_c
from bench.grid.cells import CorruptionCell
from bench.grid.spec import GridSpec
from bench.work.kinds.base import KINDS, CellKind
from bench.work.model import evaluation_of, predict
from bench.work.rows import now

# One seed for every generated corruption: each run of a grid sees the very same corrupted
# images, so corruption accuracies (and mCE ratios) compare models, not noise draws.
CORRUPTION_SEED = 0


def run_corruption_cell(cell: CorruptionCell, results: Path,
                        device: torch.device | None = None) -> list[dict]:
    """``corruption`` rows: accuracy per (corruption, severity) on the same points."""
    spec = cell.spec
    names = CORRUPTION_NAMES if spec.names == "all" else spec.names
    rows = []
    with evaluation_of(cell.train, results, cell.n_eval, device) as ev:
        x, y = ev.x, ev.y
        clean = (predict(ev.model, x) == y).float().mean().item()
        for name in names:
            for severity in spec.severities:
                start = time.perf_counter()
                if spec.files is None:
                    # A stream per (corruption, severity): adding one leaves the others as they were.
                    g = torch.Generator(device=ev.device).manual_seed(
                        CORRUPTION_SEED + 10 * CORRUPTION_NAMES.index(name) + severity)
                    xc, yc, clean_c = corrupt(x, name, severity, g), y, clean
                else:
                    xc, yc = load_cifar_c(spec.files, name, severity, n=cell.n_eval)
                    xc, yc = xc.to(ev.device), yc.to(ev.device)
                    _check_shape(xc, x, spec.files)
                    # The official files keep the test split's own order: clean accuracy on
                    # those very images, not on our permutation's.
                    clean_c = None
                acc = (predict(ev.model, xc) == yc).float().mean().item()
                rows.append({"run_id": cell.train.key, "eval_id": cell.key, "corruption": name,
                             "severity": severity, "n_examples": len(yc), "acc": acc,
                             "clean_acc": clean_c,
                             "source": "generated" if spec.files is None else "files",
                             "seconds": time.perf_counter() - start, "created_at": now()})
    return rows


def _check_shape(xc: torch.Tensor, x: torch.Tensor, root: str) -> None:
    if xc.shape[1:] != x.shape[1:]:
        raise ValueError(f"{root}: corrupted images have shape {tuple(xc.shape[1:])} but the "
                         f"dataset's are {tuple(x.shape[1:])}; those files belong to another "
                         "dataset")


@KINDS.register()
class CorruptionKind(CellKind):
    """The grid's corruptions (grid key ``corruptions``) on one trained run."""

    name, label = "corruption", "corruptions"
    tables = ("corruption",)
    order = 30

    def expand(self, spec: GridSpec, runs: list) -> list:
        cs = spec.corruptions
        if cs is None:
            return []
        return [CorruptionCell(t, cs, cs.n_eval or spec.budget.n_eval)
                for t in runs if cs.seeds is None or t.seed in cs.seeds]

    def run(self, cell: CorruptionCell, results: Path, device: torch.device | None = None
            ) -> list[dict]:
        return run_corruption_cell(cell, results, device)
