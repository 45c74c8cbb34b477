"""Transfer cells: examples crafted on one run, scored on another (``transfer`` rows).

Run by source, not by cell: one crafting of the source's examples serves every target.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.attacks import ATTACKS, craft_examples
from bench.grid.cells import TrainCell, TransferCell
from bench.grid.spec import GridSpec
from bench.work.kinds.base import KINDS, CellKind
from bench.work.model import evaluation_of, load_trained, predict
from bench.work.rows import now


def run_transfer_source(source: TrainCell, cells: list[TransferCell], results: Path,
                        device: torch.device | None = None) -> list[tuple[TransferCell, dict]]:
    """Craft the examples on ``source`` once; one ``transfer`` row per target cell.

    Crafting is seeded, so a later run that adds targets crafts the very same examples.
    """
    a, n_eval = cells[0].attack, cells[0].n_eval
    out = []
    with evaluation_of(source, results, n_eval, device) as ev:
        x, y = ev.x, ev.y
        attack = ATTACKS.create(a.name, norm=a.norm, eps=a.eps, steps=a.steps,
                                restarts=a.restarts, **a.config)
        x_adv, white_box = craft_examples(ev.model, x, y, attack, seed=source.seed)
        for cell in cells:
            _, target = load_trained(cell.target, results, ev.device)
            clean_ok, adv_ok = predict(target, x) == y, predict(target, x_adv) == y
            out.append((cell, {
                "source_run": source.key, "target_run": cell.target.key, "eval_id": cell.key,
                "attack": a.name, "norm": a.norm, "eps": a.eps, "n_examples": len(y),
                "acc": adv_ok.float().mean().item(), "clean_acc": clean_ok.float().mean().item(),
                "robust_acc": (clean_ok & adv_ok).float().mean().item(),
                "source_robust_acc": white_box.robust_acc,
                "attack_config": json.dumps({**attack.config(), "seed": source.seed},
                                            sort_keys=True, default=str),
                "created_at": now()}))
    return out


@KINDS.register()
class TransferKind(CellKind):
    """The transfer matrix (grid key ``transfer``): every pair of chosen runs of a dataset."""

    name = label = "transfer"
    tables = ("transfer",)
    stage = "transfer"
    order = 80

    def expand(self, spec: GridSpec, runs: list) -> list:
        ts = spec.transfer
        if ts is None:
            return []
        chosen = [t for t in runs if ts.seeds is None or t.seed in ts.seeds]
        return [TransferCell(src, tgt, ts.attack, ts.n_eval or spec.budget.n_eval)
                for src in chosen for tgt in chosen if src.dataset == tgt.dataset]

    def runs(self, cell: TransferCell) -> tuple:
        return (cell.source, cell.target)

    def run_source(self, source: TrainCell, cells: list[TransferCell], results: Path,
                   device: torch.device | None = None) -> list[tuple[TransferCell, dict]]:
        """(cell, row) of every target in ``cells``, from one crafting on ``source``."""
        return run_transfer_source(source, cells, results, device)
