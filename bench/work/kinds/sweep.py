"""ε-sweep cells: one sweep of the grid (``eps_sweeps``) on one run, a ``robustness`` row
per ε visited."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.attacks import ATTACKS, evaluate_attack
from bench.grid.cells import SweepCell
from bench.grid.spec import GridSpec
from bench.work.kinds.base import KINDS, CellKind, lacks_points
from bench.work.model import evaluation_of
from bench.work.rows import robustness_row


# A doubling sweep visits at least this many radii, so that whether robust accuracy falls
# with ε can be checked (the eps_monotone check) even for a model below chance at the first.
MIN_RADII = 3


def run_sweep_cell(cell: SweepCell, results: Path, device: torch.device | None = None
                   ) -> list[dict]:
    """``robustness`` rows along the sweep's ε schedule (thesis Algorithm 2).

    Each ε is an independent evaluation of every clean-correct point, from the same seed:
    not only the points still robust at the ε before it, as the thesis does to save time.
    Nested evaluations are monotone by construction, so robust accuracy rising with ε (an
    attack that fails to converge, gradient masking) could never show; independent ones let
    the ``eps_monotone`` check fail. A doubling sweep stops once robust accuracy falls below
    chance (1/classes), after at least :data:`MIN_RADII` radii.
    """
    sw = cell.sweep
    rows: list[dict] = []
    with evaluation_of(cell.train, results, cell.n_eval, device) as ev:
        for i, eps in enumerate(sw.schedule()):
            attack = ATTACKS.create(sw.name, norm=sw.norm, eps=eps, steps=sw.steps,
                                    restarts=sw.restarts, **sw.config)
            res = evaluate_attack(ev.model, ev.x, ev.y, attack, seed=cell.train.seed)
            res.config["sweep_points"] = "independent"
            rows.append(robustness_row(cell.train.key, cell.key, attack=sw.name, norm=sw.norm,
                                       eps=eps, steps=attack.steps, restarts=sw.restarts,
                                       n_examples=res.n_examples, result=res, sweep=sw.label))
            if (sw.doubling_from is not None and i + 1 >= MIN_RADII
                    and res.robust_acc < 1.0 / ev.data.num_classes):
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

    def outdated(self, rows) -> bool:
        return lacks_points(rows)

    def alike(self, cell: SweepCell) -> str:
        return cell.sweep.model_dump_json()
