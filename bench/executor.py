"""The local executor: fill in whatever cells of a grid are missing, in order.

Run by run: a training cell, then its attacks, ε sweeps and corruptions, then its checks;
then the transfer matrix; the latency cells last (alone, never beside another cell: this
executor runs one cell at a time). A cell is done when its primary file exists, so an
interrupted run (Ctrl-C or kill -9) resumes from the last finished cell and a finished
grid re-runs nothing.
A cell that fails deterministically is recorded once as failed with its reason.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from bench import evaluations, runner, store
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


def _trained_ok(results: Path, key: str) -> bool:
    if not store.has_cell(results, "runs", key):
        return False
    return bool((store.read_cell(results, "runs", key)["status"] == "ok").all())


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
    results = Path(results)
    grid = expand(spec, extra_runs)
    mine = grid if only_methods is None else restrict(grid, only_methods)
    todo = pending(mine, results, retry_failed)
    cells = lambda g: (g.train, g.attacks, g.sweeps, g.corruptions, g.transfer, g.latency)  # noqa: E731
    total = sum(map(len, cells(todo)))
    report = RunReport(skipped=sum(map(len, cells(mine))) - total)
    to_train = {c.key for c in todo.train}
    bar = tqdm(total=total, desc=spec.name, unit="cell", disable=not show_progress or total == 0)
    trainer = _Trainer(results, device, show_progress, submission_id, isolate, cell_timeout)
    try:
        for run in mine.train:
            if run.key in to_train and not getattr(run, "external", False):
                trainer(run, report, bar)
            of_run = lambda cs: [c for c in cs if c.train.key == run.key]  # noqa: E731
            evaluated = [_evaluate(c, "robustness", runner.run_attack_cell, runner.failed_attack_row,
                                   results, device, report, bar) for c in of_run(todo.attacks)]
            evaluated += [_evaluate(c, "robustness", evaluations.run_sweep_cell, _failed_sweep_rows,
                                    results, device, report, bar) for c in of_run(todo.sweeps)]
            for cell in of_run(todo.corruptions):
                _evaluate(cell, "corruption", evaluations.run_corruption_cell, None, results,
                          device, report, bar)
            if spec.checks.enabled and _trained_ok(results, run.key) and (
                    any(evaluated) or not store.has_cell(results, "checks", run.key)):
                _check(run, grid, results, spec.checks.n_eval, device, report)
        for source in grid.train:  # every source: a submission is also a transfer target
            _transfer(source, [c for c in todo.transfer if c.source.key == source.key], results,
                      device, report, bar)
        for cell in todo.latency:
            bar.set_postfix_str(cell.describe())
            if _trained_ok(results, cell.train.key):
                store.write_cell(results, "latency", cell.key, runner.run_latency_cell(cell, results))
                report.timed += 1
            bar.update(1)
    finally:
        bar.close()
    return report


@dataclass
class _Trainer:
    """Trains one cell and writes its tables, in this process or an isolated one."""

    results: Path
    device: torch.device | None
    show_progress: bool
    submission_id: str | None = None
    isolate: tuple[str, ...] | None = None
    timeout: float | None = None

    def __call__(self, cell, report: RunReport, bar) -> None:
        from bench.isolation import CellFailed, call_isolated

        bar.set_postfix_str(f"train {cell.describe()}")
        # Epoch progress cannot cross the process boundary cheaply; an isolated cell shows
        # only its name in the main bar.
        epoch_bar = tqdm(total=None, desc="  epochs", leave=False,
                         disable=not self.show_progress or self.isolate is not None)

        def on_epoch(row: dict) -> None:
            epoch_bar.update(1)
            epoch_bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc'] or 0:.3f}")

        try:
            if self.isolate is None:
                run, tables = runner.run_train_cell(cell, self.results, self.device,
                                                    progress=on_epoch)
            else:
                run, tables = call_isolated(runner.run_train_cell, cell, self.results,
                                            self.device, plugins=self.isolate,
                                            timeout=self.timeout)
            for table, rows in tables.items():
                store.write_cell(self.results, table, cell.key, rows)
            report.trained += 1
        except Exception as exc:  # a method's bug fails its cell, not the grid
            run = runner.failed_run_row(cell, str(exc) if isinstance(exc, CellFailed)
                                        else _error(exc))
            report.failed.append(f"{cell.describe()}: {run['error']}")
            log.debug("training failed", exc_info=True)
        finally:
            epoch_bar.close()
        run["submission_id"] = self.submission_id
        store.write_cell(self.results, "runs", cell.key, [run])  # primary file last
        bar.update(1)
        fault_point("cell")


def _evaluate(cell, table: str, run_cell, failed_rows, results: Path, device,
              report: RunReport, bar) -> bool:
    """Run one evaluation cell of a trained model; True when it wrote new rows.

    A failure is written as a failed row where the table has a status (so it is not retried
    forever); otherwise it is only reported, and the next run tries again.
    """
    bar.set_postfix_str(cell.describe())
    if not _trained_ok(results, cell.train.key):
        bar.update(1)
        return False  # nothing to evaluate; the failed run row already says why
    try:
        rows = run_cell(cell, results, device)
        rows = rows if isinstance(rows, list) else [rows]
        report.evaluated += 1
    except Exception as exc:
        report.failed.append(f"{cell.describe()}: {_error(exc)}")
        log.debug("evaluation failed", exc_info=True)
        rows = None if failed_rows is None else failed_rows(cell, _error(exc))
        rows = rows if rows is None or isinstance(rows, list) else [rows]
    if rows is not None:
        store.write_cell(results, table, cell.key, rows)
    bar.update(1)
    fault_point("cell")
    return rows is not None


def _failed_sweep_rows(cell, error: str) -> list[dict]:
    sw = cell.sweep
    return [{"run_id": cell.train.key, "eval_id": cell.key, "attack": sw.name, "norm": sw.norm,
             "eps": sw.schedule()[0], "steps": sw.steps, "restarts": sw.restarts,
             "n_examples": cell.n_eval, "status": "failed", "error": error,
             "created_at": runner.now(), "sweep": sw.label}]


def _check(run, grid: Grid, results: Path, n_eval: int, device, report: RunReport) -> None:
    """(Re)write the run's checks: model-level rows once, result-level rows over its
    robustness rows as they now stand. The file is derived, so rewriting it is safe."""
    keys = [c.key for c in (*grid.attacks, *grid.sweeps) if c.train.key == run.key]
    frames = [store.read_cell(results, "robustness", k) for k in keys
              if store.has_cell(results, "robustness", k)]
    robustness = pd.concat(frames, ignore_index=True) if frames else store.empty_table("robustness")
    old = (store.read_cell(results, "checks", run.key) if store.has_cell(results, "checks", run.key)
           else None)
    model_rows = None
    if old is not None and (old["kind"] == "model").any():
        model_rows = old[old["kind"] == "model"].drop(columns=["run_id", "created_at"]) \
            .to_dict("records")
    try:
        rows = evaluations.run_checks(run, robustness, results, n_eval=n_eval,
                                      model_rows=model_rows, device=device)
    except Exception as exc:  # a broken check must not cost the grid its results
        report.failed.append(f"checks on {run.describe()}: {_error(exc)}")
        return
    store.write_cell(results, "checks", run.key, rows)


def _transfer(source, cells: list, results: Path, device, report: RunReport, bar) -> None:
    """Every pending target of one source, from one crafting of its examples."""
    if not cells:
        return
    ready = [c for c in cells if _trained_ok(results, c.target.key)]
    if not _trained_ok(results, source.key) or not ready:
        bar.update(len(cells))
        return
    bar.set_postfix_str(f"transfer from {source.describe()}")
    try:
        for cell, row in evaluations.run_transfer_source(source, ready, results, device):
            store.write_cell(results, "transfer", cell.key, [row])
            report.evaluated += 1
    except Exception as exc:
        report.failed.append(f"transfer from {source.describe()}: {_error(exc)}")
    bar.update(len(cells))
    fault_point("cell")
