"""The local executor: fill in whatever cells of a grid are missing, one task at a time.

It runs the tasks of :mod:`bench.execute.schedule` in schedule order: run by run (a
training cell, then its evaluations, then its checks), then the transfer matrix, then the
latency cells (alone, never beside another cell: this executor runs one cell at a time).
An interrupted run (Ctrl-C or kill -9) resumes from the last finished cell and a finished
grid re-runs nothing. A cell that fails deterministically is recorded once as failed with
its reason. The cell work itself is in :mod:`bench.execute.tasks`, shared with the
parallel executors (:mod:`bench.execute.processes`, :mod:`bench.execute.ray_cluster`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.execute import schedule, tasks
from bench.grid.spec import GridSpec
from bench.results import store


def run_local(spec: GridSpec, results: Path, *, retry_failed: bool = False,
              device: torch.device | None = None, show_progress: bool = True,
              only_methods: set[str] | None = None, submission_id: str | None = None,
              isolate: tuple[str, ...] | None = None, cell_timeout: float | None = None,
              extra_runs: tuple = (), sandbox: bool = True) -> tasks.RunReport:
    """Run the missing cells run by run (train, then evaluate that model), so an interrupted
    grid leaves evaluated models rather than many unevaluated ones; then the transfer
    matrix, which needs every model; then all latency cells, short and last, so they can be
    re-timed on a quiet machine without the long work.

    ``only_methods`` restricts the work to the cells of those method labels (a submission);
    ``submission_id`` tags the runs it trains; ``isolate`` trains each run in a fresh
    process that first loads these plugin sources, stopped after ``cell_timeout`` seconds.
    ``extra_runs``: models trained elsewhere, already recorded in ``runs``, to evaluate.
    ``sandbox``: train in the bubblewrap sandbox (the default; False: ``--no-sandbox``).
    """
    results = store.location(results)
    plan = schedule.build(spec, results, retry_failed, only_methods=only_methods,
                          extra_runs=extra_runs, device=device,
                          train_options={"submission_id": submission_id, "isolate": isolate,
                                         "timeout": cell_timeout, "sandbox": sandbox})
    report = tasks.RunReport(skipped=plan.skipped)
    bar = tqdm(total=plan.cells, desc=spec.name, unit="cell",
               disable=not show_progress or plan.cells == 0)
    outcomes: list[tasks.Outcome] = []
    try:
        for task in plan.tasks:
            if task.only_if_wrote and not any(outcomes[d].wrote for d in task.deps):
                outcomes.append(tasks.Outcome(cells=0))
                continue
            bar.set_postfix_str(task.name)
            if task.train is not None:
                reports = sandbox or isolate is None  # a spawned process cannot report
                with _epoch_bar(show_progress and reports) as on_epoch:
                    progress = {"progress": on_epoch} if reports else {}
                    outcome = task.fn(*task.args, **task.kwargs, **progress)
            else:
                outcome = task.fn(*task.args, **task.kwargs)
            outcomes.append(outcome)
            report.add(outcome)
            bar.update(outcome.cells)
    finally:
        bar.close()
    return report


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
