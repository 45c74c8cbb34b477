"""ε-sweep cells: one sweep of the grid (``eps_sweeps``) on one run, a ``robustness`` row
per ε visited."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.attacks import ATTACKS, evaluate_attack
from bench.grid.cells import SweepCell
from bench.grid.spec import GridSpec
from bench.work.kinds.base import KINDS, CellKind
from bench.work.model import evaluation_of
from bench.work.rows import robustness_row


def run_sweep_cell(cell: SweepCell, results: Path, device: torch.device | None = None
                   ) -> list[dict]:
    """``robustness`` rows along the sweep's ε schedule (thesis Algorithm 2).

    Each ε attacks only the points still robust at the ε before it: an example that fools
    the model inside the smaller ball lies inside the larger one too, so robust accuracy
    never rises with ε and the larger radii cost less. A doubling sweep stops once robust
    accuracy falls below chance (1/classes), as the thesis does.
    """
    sw = cell.sweep
    rows: list[dict] = []
    with evaluation_of(cell.train, results, cell.n_eval, device) as ev:
        robust = None
        for eps in sw.schedule():
            attack = ATTACKS.create(sw.name, norm=sw.norm, eps=eps, steps=sw.steps,
                                    restarts=sw.restarts, **sw.config)
            res = evaluate_attack(ev.model, ev.x, ev.y, attack, seed=cell.train.seed,
                                  robust=robust)
            robust = res.robust
            rows.append(robustness_row(cell.train.key, cell.key, attack=sw.name, norm=sw.norm,
                                       eps=eps, steps=attack.steps, restarts=sw.restarts,
                                       n_examples=res.n_examples, result=res, sweep=sw.label))
            if sw.doubling_from is not None and res.robust_acc < 1.0 / ev.data.num_classes:
                break
    return rows


@KINDS.register()
class SweepKind(CellKind):
    """One ε sweep (grid key ``eps_sweeps``) on one trained run."""

    name, label = "sweep", "sweeps"
    tables = ("robustness",)
    order = 20

    def expand(self, spec: GridSpec, runs: list) -> list:
        return [SweepCell(t, sw, sw.n_eval or spec.budget.n_eval)
                for t in runs for sw in spec.eps_sweeps
                if sw.seeds is None or t.seed in sw.seeds]

    def run(self, cell: SweepCell, results: Path, device: torch.device | None = None
            ) -> list[dict]:
        return run_sweep_cell(cell, results, device)

    def failed_rows(self, cell: SweepCell, error: str) -> list[dict]:
        sw = cell.sweep
        return [robustness_row(cell.train.key, cell.key, attack=sw.name, norm=sw.norm,
                               eps=sw.schedule()[0], steps=sw.steps, restarts=sw.restarts,
                               n_examples=cell.n_eval, error=error, sweep=sw.label)]

    def alike(self, cell: SweepCell) -> str:
        return cell.sweep.model_dump_json()
