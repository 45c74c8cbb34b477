"""The local executor: fill in whatever cells of a grid are missing, in order.

Run by run: a training cell, then its attack cells; the latency cells last (alone, never
beside another cell: this executor runs one cell at a time). A cell is done when its primary file exists, so an interrupted run (Ctrl-C or
kill -9) resumes from the last finished cell and a finished grid re-runs nothing.
A cell that fails deterministically is recorded once as failed with its reason.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench import runner, store
from bench.cells import Grid, expand
from bench.faults import fault_point
from bench.spec import GridSpec

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    trained: int = 0
    evaluated: int = 0
    timed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def did_work(self) -> int:
        return self.trained + self.evaluated + self.timed


def _error(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def pending(grid: Grid, results: Path, retry_failed: bool = False) -> tuple[list, list, list]:
    """The cells of ``grid`` with no finished file yet (failed ones too with ``retry_failed``)."""

    def todo(table: str, key: str) -> bool:
        if not store.has_cell(results, table, key):
            return True
        if retry_failed:
            status = store.read_cell(results, table, key).get("status")
            return status is not None and (status == "failed").any()
        return False

    train = [c for c in grid.train if todo("runs", c.key)]
    attacks = [c for c in grid.attacks if todo("robustness", c.key)]
    latency = [c for c in grid.latency if todo("latency", c.key)]
    return train, attacks, latency


def _trained_ok(results: Path, key: str) -> bool:
    if not store.has_cell(results, "runs", key):
        return False
    return bool((store.read_cell(results, "runs", key)["status"] == "ok").all())


def run_local(spec: GridSpec, results: Path, *, retry_failed: bool = False,
              device: torch.device | None = None, show_progress: bool = True) -> RunReport:
    """Run the missing cells run by run (train, then attack that model), so an interrupted
    grid leaves evaluated models rather than many unevaluated ones; then all latency cells,
    short and last, so they can be re-timed on a quiet machine without the long work."""
    results = Path(results)
    grid = expand(spec)
    train, attacks, latency = pending(grid, results, retry_failed)
    report = RunReport(skipped=len(grid.train) + len(grid.attacks) + len(grid.latency)
                       - len(train) - len(attacks) - len(latency))
    total = len(train) + len(attacks) + len(latency)
    to_train = {c.key for c in train}
    bar = tqdm(total=total, desc=spec.name, unit="cell", disable=not show_progress or total == 0)
    try:
        for run in grid.train:
            if run.key in to_train:
                _train(run, results, device, report, bar, show_progress)
            for cell in [c for c in attacks if c.train.key == run.key]:
                _attack(cell, results, device, report, bar)
        for cell in latency:
            bar.set_postfix_str(cell.describe())
            if _trained_ok(results, cell.train.key):
                store.write_cell(results, "latency", cell.key, runner.run_latency_cell(cell, results))
                report.timed += 1
            bar.update(1)
    finally:
        bar.close()
    return report


def _train(cell, results: Path, device, report: RunReport, bar, show_progress: bool) -> None:
    bar.set_postfix_str(f"train {cell.describe()}")
    epoch_bar = tqdm(total=None, desc="  epochs", leave=False, disable=not show_progress)

    def on_epoch(row: dict) -> None:
        epoch_bar.update(1)
        epoch_bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc'] or 0:.3f}")

    try:
        run, tables = runner.run_train_cell(cell, results, device, progress=on_epoch)
        for table, rows in tables.items():
            store.write_cell(results, table, cell.key, rows)
        report.trained += 1
    except Exception as exc:  # a method's bug fails its cell, not the grid
        run = runner.failed_run_row(cell, _error(exc))
        report.failed.append(f"{cell.describe()}: {run['error']}")
        log.debug("training failed", exc_info=True)
    finally:
        epoch_bar.close()
    store.write_cell(results, "runs", cell.key, [run])  # primary file last
    bar.update(1)
    fault_point("cell")


def _attack(cell, results: Path, device, report: RunReport, bar) -> None:
    bar.set_postfix_str(cell.describe())
    if not _trained_ok(results, cell.train.key):
        bar.update(1)
        return  # nothing to attack; the failed run row already says why
    try:
        row = runner.run_attack_cell(cell, results, device)
        report.evaluated += 1
    except Exception as exc:
        row = runner.failed_attack_row(cell, _error(exc))
        report.failed.append(f"{cell.describe()}: {row['error']}")
    store.write_cell(results, "robustness", cell.key, [row])
    bar.update(1)
    fault_point("cell")
