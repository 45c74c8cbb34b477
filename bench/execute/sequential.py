"""The local executor: fill in whatever cells of a grid are missing, in order.

Run by run: a training cell, then its attacks, ε sweeps and corruptions, then its checks;
then the transfer matrix; the latency cells last (alone, never beside another cell: this
executor runs one cell at a time). A cell is done when its primary file exists, so an
interrupted run (Ctrl-C or kill -9) resumes from the last finished cell and a finished
grid re-runs nothing.
A cell that fails deterministically is recorded once as failed with its reason.
The cell work itself is in :mod:`bench.execute.tasks`, shared with the parallel executors
(:mod:`bench.execute.parallel`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.results import store

from bench.execute import tasks
from bench.grid.cells import Grid, expand
from bench.grid.spec import GridSpec


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

    def add(self, outcome: tasks.Outcome) -> None:
        self.trained += outcome.trained
        self.evaluated += outcome.evaluated
        self.timed += outcome.timed
        self.failed += outcome.failed


def pending(grid: Grid, results: Path, retry_failed: bool = False) -> Grid:
    """The cells of ``grid`` with no finished file yet (failed ones too with ``retry_failed``)."""

    def todo(table: str, key: str) -> bool:
        if not store.has_cell(results, table, key):
            return True
        if retry_failed:
            status = store.read_cell(results, table, key).get("status")
            return status is not None and (status == "failed").any()
        return False

    return Grid(train=[c for c in grid.train if todo("runs", c.key)],
                attacks=[c for c in grid.attacks if todo("robustness", c.key)],
                latency=[c for c in grid.latency if todo("latency", c.key)],
                sweeps=[c for c in grid.sweeps if todo("robustness", c.key)],
                corruptions=[c for c in grid.corruptions if todo("corruption", c.key)],
                transfer=[c for c in grid.transfer if todo("transfer", c.key)])


def restrict(grid: Grid, labels: set[str]) -> Grid:
    """The cells that involve the methods labelled ``labels``: their training and
    evaluation cells, and transfer pairs with one of them on either side."""
    mine = lambda t: t.method.display in labels  # noqa: E731
    return Grid(train=[c for c in grid.train if mine(c)],
                attacks=[c for c in grid.attacks if mine(c.train)],
                latency=[c for c in grid.latency if mine(c.train)],
                sweeps=[c for c in grid.sweeps if mine(c.train)],
                corruptions=[c for c in grid.corruptions if mine(c.train)],
                transfer=[c for c in grid.transfer if mine(c.source) or mine(c.target)])


def run_local(spec: GridSpec, results: Path, *, retry_failed: bool = False,
              device: torch.device | None = None, show_progress: bool = True,
              only_methods: set[str] | None = None, submission_id: str | None = None,
              isolate: tuple[str, ...] | None = None, cell_timeout: float | None = None,
              extra_runs: tuple = ()) -> RunReport:
    """Run the missing cells run by run (train, then evaluate that model), so an interrupted
    grid leaves evaluated models rather than many unevaluated ones; then the transfer
    matrix, which needs every model; then all latency cells, short and last, so they can be
    re-timed on a quiet machine without the long work.

    ``only_methods`` restricts the work to the cells of those method labels (a submission);
    ``submission_id`` tags the runs it trains; ``isolate`` trains each run in a fresh
    process that first loads these plugin sources, stopped after ``cell_timeout`` seconds.
    ``extra_runs``: models trained elsewhere, already recorded in ``runs``, to evaluate.
    """
    results = store.location(results)
    store.sweep_partial(results)
    grid = expand(spec, extra_runs)
    mine = grid if only_methods is None else restrict(grid, only_methods)
    todo = pending(mine, results, retry_failed)
    total = count(todo)
    report = RunReport(skipped=count(mine) - total)
    to_train = {c.key for c in todo.train}
    bar = tqdm(total=total, desc=spec.name, unit="cell", disable=not show_progress or total == 0)

    def done(outcome: tasks.Outcome) -> tasks.Outcome:
        report.add(outcome)
        bar.update(outcome.cells)
        return outcome

    try:
        for run in mine.train:
            if run.key in to_train and not getattr(run, "external", False):
                bar.set_postfix_str(f"train {run.describe()}")
                with _epoch_bar(show_progress and isolate is None) as on_epoch:
                    done(tasks.train(run, results, device, submission_id=submission_id,
                                     isolate=isolate, timeout=cell_timeout, progress=on_epoch))
            wrote = False
            for kind, cell in evaluation_cells(todo, run.key):
                bar.set_postfix_str(cell.describe())
                wrote |= done(tasks.evaluate(kind, cell, results, device)).wrote
            if spec.checks.enabled and (wrote or not store.has_cell(results, "checks", run.key)):
                done(tasks.check(run, robustness_keys(grid, run.key), results, spec.checks.n_eval,
                                 device))
        for source, cells in transfer_groups(grid, todo):
            bar.set_postfix_str(f"transfer from {source.describe()}")
            done(tasks.transfer(source, cells, results, device))
        for cell in todo.latency:
            bar.set_postfix_str(cell.describe())
            done(tasks.latency(cell, results))
    finally:
        bar.close()
    return report


def count(grid: Grid) -> int:
    return sum(len(g) for g in (grid.train, grid.attacks, grid.sweeps, grid.corruptions,
                                grid.transfer, grid.latency))


def evaluation_cells(grid: Grid, train_key: str) -> list[tuple[str, object]]:
    """(kind, cell) of one run's attacks, sweeps and corruptions, in that order."""
    return [(kind, c) for kind, cells in (("attack", grid.attacks), ("sweep", grid.sweeps),
                                         ("corruption", grid.corruptions))
            for c in cells if c.train.key == train_key]


def robustness_keys(grid: Grid, train_key: str) -> list[str]:
    """The robustness files of one run that its result-level checks read."""
    return [c.key for c in (*grid.attacks, *grid.sweeps) if c.train.key == train_key]


def transfer_groups(grid: Grid, todo: Grid) -> list[tuple[object, list]]:
    """Pending transfer cells grouped by source (one crafting per source), in grid order;
    every source of the grid, since a submission is also a transfer target."""
    groups = []
    for source in grid.train:
        cells = [c for c in todo.transfer if c.source.key == source.key]
        if cells:
            groups.append((source, cells))
    return groups


class _epoch_bar:
    """A nested per-epoch bar for in-process training (an isolated cell cannot report)."""

    def __init__(self, enabled: bool):
        self.bar = tqdm(total=None, desc="  epochs", leave=False, disable=not enabled)

    def __enter__(self):
        def on_epoch(row: dict) -> None:
            # By epoch number, not by calls: a resumed run's bar starts where it left off.
            self.bar.update(row["epoch"] + 1 - self.bar.n)
            self.bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc'] or 0:.3f}")

        return on_epoch

    def __exit__(self, *exc) -> None:
        self.bar.close()
