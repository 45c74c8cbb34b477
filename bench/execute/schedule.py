"""The one schedule every executor runs: a grid's pending cells as tasks with dependencies.

Run by run: a run's training, then its evaluations (every kind of stage ``evaluation``,
in kind order), then its checks; then the transfer matrix, one task per source, after
every model it touches; then the latency cells, last and alone. The sequential executor
runs the tasks in this order (so an interrupted grid leaves evaluated models rather than
many unevaluated ones); the process pool and Ray start each task once its dependencies
are done. A cell is done when its primary file exists, so a finished grid schedules
nothing and an interrupted one resumes from its last finished cell.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from bench import sandbox
from bench.execute import tasks
from bench.grid.cells import Grid
from bench.grid.spec import GridSpec
from bench.results import store
from bench.work.kinds import KINDS, all_kinds, expand


def pending(grid: Grid, results: Path, retry_failed: bool = False) -> Grid:
    """The cells of ``grid`` with no finished file yet, or one its kind calls outdated
    (failed ones too with ``retry_failed``)."""

    def todo(kind: str, cell) -> bool:
        k = KINDS.create(kind)
        table, key = k.primary, k.key(cell)
        if not store.has_cell(results, table, key):
            return True
        rows = store.read_cell(results, table, key)
        if k.outdated(rows):
            return True
        if retry_failed:
            status = rows.get("status")
            return status is not None and (status == "failed").any()
        return False

    return grid.keep(todo)


def restrict(grid: Grid, labels: set[str]) -> Grid:
    """The cells that involve the methods labelled ``labels``: their training and
    evaluation cells, and transfer pairs with one of them on either side."""
    return grid.keep(lambda kind, cell: any(
        run.method.display in labels for run in KINDS.create(kind).runs(cell)))


def robustness_keys(grid: Grid, train_key: str) -> list[str]:
    """The robustness files of one run that its result-level checks read."""
    return [KINDS.create(kind).key(c) for kind in _evaluation_kinds(grid, "robustness")
            for c in grid[kind] if c.train.key == train_key]


def _evaluation_kinds(grid: Grid, table: str | None = None) -> list[str]:
    return [k.name for k in all_kinds() if k.stage == "evaluation" and k.name in grid.cells
            and (table is None or k.primary == table)]


@dataclass(frozen=True)
class Task:
    name: str
    fn: Callable[..., tasks.Outcome]
    args: tuple
    deps: tuple[int, ...] = ()
    cells: int = 1
    threads: int = 1
    train: Any = None  # the training cell, when this task trains it
    hardware: str | None = None  # a latency task: runs alone, where hw:<name> is
    kwargs: dict = field(default_factory=dict)
    # a check task whose file exists: needed only when one of its deps wrote rows
    # (the sequential executor, which sees the outcomes, skips it otherwise)
    only_if_wrote: bool = False


@dataclass
class Schedule:
    tasks: list[Task]
    grid: Grid  # every cell of the grid
    todo: Grid  # the pending ones (of the chosen methods)
    skipped: int  # cells of the chosen methods already done
    cells: int = field(init=False)  # cells the tasks cover (progress bars)

    def __post_init__(self) -> None:
        self.cells = sum(t.cells for t in self.tasks)


def build(spec: GridSpec, results: Path, retry_failed: bool = False, *,
          only_methods: set[str] | None = None, extra_runs: tuple = (),
          device: torch.device | None = None, train_options: dict | None = None) -> Schedule:
    """The schedule of the grid's missing cells. ``only_methods``: only the cells of those
    method labels (a submission; transfer pairs with them on either side);
    ``extra_runs``: models trained elsewhere, to evaluate; ``train_options``: keywords
    of :func:`bench.execute.tasks.train` (submission_id, isolate, timeout, sandbox).
    Raises :class:`bench.sandbox.SandboxUnavailable` when training cells are due, sandboxed,
    and no sandbox can start here."""
    store.sweep_partial(results)  # what killed writers left, once no writer can own it
    grid = expand(spec, extra_runs)
    mine = grid if only_methods is None else restrict(grid, only_methods)
    todo = pending(mine, results, retry_failed)
    out: list[Task] = []
    trains: dict[str, int] = {}

    def add(task: Task) -> int:
        out.append(task)
        return len(out) - 1

    to_train = {c.key for c in todo.train}
    for run in mine.train:
        if run.key in to_train and not getattr(run, "external", False):
            trains[run.key] = add(Task(f"train {run.describe()}", tasks.train,
                                       (run, results, device), threads=run.threads, train=run,
                                       kwargs=dict(train_options or {})))
        after_train = (trains[run.key],) if run.key in trains else ()
        evals = tuple(add(Task(cell.describe(), tasks.evaluate, (kind, cell, results, device),
                               after_train, threads=run.threads))
                      for kind in _evaluation_kinds(todo) for cell in todo[kind]
                      if cell.train.key == run.key)
        checked = store.has_cell(results, "checks", run.key)
        if spec.checks.enabled and (evals or not checked):
            add(Task(f"checks {run.describe()}", tasks.check,
                     (run, robustness_keys(grid, run.key), results, spec.checks.n_eval, device),
                     after_train + evals, cells=0, threads=run.threads,
                     kwargs={"large_eps": spec.checks.large_eps},
                     only_if_wrote=bool(evals) and checked))
    for source, cells in _transfer_groups(grid, todo):
        keys = {source.key, *(c.target.key for c in cells)}
        add(Task(f"transfer from {source.describe()}", tasks.transfer,
                 (source, cells, results, device),
                 tuple(trains[k] for k in sorted(keys) if k in trains), cells=len(cells),
                 threads=source.threads))
    for cell in todo.latency:
        add(Task(cell.describe(), tasks.latency, (cell, results), hardware=cell.hardware))
    if trains and (train_options or {}).get("sandbox", True):
        sandbox.ensure_available()  # before any work: the sandbox is missing, or it works
    return Schedule(out, grid, todo, mine.count() - todo.count())


def _transfer_groups(grid: Grid, todo: Grid) -> list[tuple[object, list]]:
    """Pending transfer cells grouped by source (one crafting per source), in grid order;
    every source of the grid, since a submission is also a transfer target."""
    groups = []
    for source in grid.train:
        cells = [c for c in todo.transfer if c.source.key == source.key]
        if cells:
            groups.append((source, cells))
    return groups


def recompute_checks(spec: GridSpec, results: Path, quiet: bool = False) -> list[str]:
    """Rewrite every trained run's checks over its robustness rows as they stand: after an
    upgrade of PERBench's checks, or evaluations added by hand. Model-level rows already
    stored are kept (they need the model; the result-level ones need only the table).
    Prints and returns what failed."""
    grid = expand(spec)
    failed = []
    for run in tqdm(grid.train, desc="checks", unit="run", disable=quiet):
        outcome = tasks.check(run, robustness_keys(grid, run.key), results, spec.checks.n_eval,
                              large_eps=spec.checks.large_eps)
        failed += outcome.failed
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return failed


# A parallel executor retries a task whose worker died (killed, out of memory) this often.
DEFAULT_RETRIES = 2


def worker_died(task: Task, results: Path, attempts: int) -> str:
    """A task whose worker died on every attempt: a training task gets a failed run row
    (so it is not retried forever); an evaluation is only reported (the next run retries).
    Returns the report's line."""
    reason = (f"the worker process died on all {attempts} attempts (killed, or out of "
              "memory?)")
    if task.train is not None:
        kind = KINDS.create("train")
        store.write_cell(results, kind.primary, task.train.key,
                         kind.failed_rows(task.train, reason))
    return f"{task.name}: {reason}"
