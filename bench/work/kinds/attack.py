"""Attack cells: one attack of the grid on one run, one ``robustness`` row."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.attacks import ATTACKS, evaluate_attack
from bench.grid.cells import AttackCell
from bench.grid.spec import GridSpec
from bench.work.kinds.base import KINDS, CellKind, lacks_points
from bench.work.model import evaluation_of
from bench.work.rows import robustness_row


@KINDS.register()
class AttackKind(CellKind):
    """One attack (grid key ``attacks``) on one trained run."""

    name, label = "attack", "attacks"
    tables = ("robustness",)
    order = 10

    def expand(self, spec: GridSpec, runs: list) -> list:
        return [AttackCell(t, atk, atk.n_eval or spec.budget.n_eval)
                for t in runs for atk in spec.attacks
                if atk.seeds is None or t.seed in atk.seeds]

    def run(self, cell: AttackCell, results: Path, device: torch.device | None = None
            ) -> list[dict]:
        a = cell.attack
        with evaluation_of(cell.train, results, cell.n_eval, device) as ev:
            attack = ATTACKS.create(a.name, norm=a.norm, eps=a.eps, steps=a.steps,
                                    restarts=a.restarts, **a.config)
            res = evaluate_attack(ev.model, ev.x, ev.y, attack, seed=cell.train.seed)
        steps = a.steps if a.steps is not None else attack.default_steps
        return [robustness_row(cell.train.key, cell.key, attack=a.name, norm=a.norm, eps=a.eps,
                               steps=steps, restarts=a.restarts, n_examples=res.n_examples,
                               result=res)]

    def failed_rows(self, cell: AttackCell, error: str) -> list[dict]:
        a = cell.attack
        return [robustness_row(cell.train.key, cell.key, attack=a.name, norm=a.norm, eps=a.eps,
                               steps=a.steps, restarts=a.restarts, n_examples=cell.n_eval,
                               error=error)]

    def outdated(self, rows) -> bool:
        return lacks_points(rows)

    def alike(self, cell: AttackCell) -> str:
        return cell.attack.model_dump_json()
