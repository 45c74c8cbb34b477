"""One unit of grid work each: train a run, evaluate it, check it, transfer from it, time it.

Every executor (the sequential one, the local process pool ``--workers N`` and Ray) runs
the tasks of one schedule (:mod:`bench.execute.schedule`) through these same functions, so
a cell gives the same rows whichever runs it. Each writes its own files (one per cell and
table, atomically; the primary table last), so workers need no central writer, and
returns an :class:`Outcome` for the driver's report. A cell that raises is written as
failed where its kind has failed rows (so it is recorded once, not retried forever) and
reported in the outcome.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench.allocator import keep_freed_memory
from bench.execute.isolation import CellFailed, call_isolated, describe_error
from bench.faults import fault_point
from bench.grid.spec import LargeEpsSpec
from bench.results import store
from bench.work.checks import DEFAULT_LARGE_EPS, run_checks
from bench.work.kinds import KINDS
from bench.work.train import SandboxFailed, run_train_cell

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one task did: ``cells`` grid cells covered (for progress bars)."""

    cells: int = 1
    trained: int = 0
    evaluated: int = 0
    timed: int = 0
    failed: list[str] = field(default_factory=list)
    wrote: bool = False  # new evaluation rows (the run's checks are then refreshed)


@dataclass
class RunReport:
    """What an executor did: the sum of its tasks' outcomes, and the cells already done."""

    trained: int = 0
    evaluated: int = 0
    timed: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def did_work(self) -> int:
        return self.trained + self.evaluated + self.timed

    def add(self, outcome: Outcome) -> None:
        self.trained += outcome.trained
        self.evaluated += outcome.evaluated
        self.timed += outcome.timed
        self.failed += outcome.failed


def error_text(exc: BaseException) -> str:
    # a failure another process reported is already one line naming its own location
    return str(exc) if isinstance(exc, (CellFailed, SandboxFailed)) else describe_error(exc)


def trained_ok(results: Path, key: str) -> bool:
    if not store.has_cell(results, "runs", key):
        return False
    return bool((store.read_cell(results, "runs", key)["status"] == "ok").all())


def train(cell, results: Path, device: torch.device | None = None, *,
          submission_id: str | None = None, isolate: tuple[str, ...] | None = None,
          timeout: float | None = None, progress=None, sandbox: bool = True) -> Outcome:
    """Train ``cell`` and write its tables, ``runs`` last; a failure becomes a failed
    ``runs`` row. ``sandbox`` (the default): in a bubblewrap sandbox that sees the method's
    files ``isolate`` and nothing of the test split, stopped after ``timeout`` seconds.
    Without it (trusted code): here, or in a fresh process that loads ``isolate`` first."""
    keep_freed_memory()
    kind = KINDS.create("train")
    out = Outcome()
    try:
        if sandbox:
            run, tables = kind.run(cell, results, device, progress=progress, sandbox=True,
                                   plugins=tuple(isolate or ()), timeout=timeout)
        elif isolate is None:
            run, tables = kind.run(cell, results, device, progress=progress)
        else:
            run, tables = call_isolated(run_train_cell, cell, results, device,
                                        plugins=isolate, timeout=timeout)
        for table, rows in tables.items():
            store.write_cell(results, table, cell.key, rows)
        out.trained = 1
    except Exception as exc:  # a method's bug fails its cell, not the grid
        [run] = kind.failed_rows(cell, error_text(exc))
        out.failed.append(f"{cell.describe()}: {run['error']}")
        log.debug("training failed", exc_info=True)
    run["submission_id"] = submission_id
    store.write_cell(results, kind.primary, cell.key, [run])  # primary file last
    # Finished, either way: a retry of a failed cell starts over (the failure may have
    # come from code since fixed), so the snapshot goes too.
    store.remove(store.resume_path(results, cell.key))
    fault_point("cell")
    return out


def evaluate(kind: str, cell, results: Path, device: torch.device | None = None) -> Outcome:
    """One evaluation cell of a trained model. Nothing to do when the model failed to train
    (its run row says why). A failure with no failed rows is only reported: the next run
    tries again."""
    keep_freed_memory()
    k = KINDS.create(kind)
    out = Outcome()
    if not trained_ok(results, cell.train.key):
        return out
    try:
        rows = k.run(cell, results, device)
        out.evaluated = 1
    except Exception as exc:
        out.failed.append(f"{cell.describe()}: {error_text(exc)}")
        log.debug("evaluation failed", exc_info=True)
        rows = k.failed_rows(cell, error_text(exc))
    if rows is not None:
        store.write_cell(results, k.primary, cell.key, rows)
        out.wrote = True
    fault_point("cell")
    return out


def check(run, robustness_keys: list[str], results: Path, n_eval: int,
          device: torch.device | None = None,
          large_eps: LargeEpsSpec | None = DEFAULT_LARGE_EPS) -> Outcome:
    """(Re)write the run's checks: model-level rows once (the large-ε attack of
    ``large_eps`` among them), result-level rows over its robustness rows as they now
    stand. The file is derived, so rewriting it is safe."""
    keep_freed_memory()
    out = Outcome(cells=0)
    if not trained_ok(results, run.key):
        return out
    frames = [store.read_cell(results, "robustness", k) for k in robustness_keys
              if store.has_cell(results, "robustness", k)]
    robustness = pd.concat(frames, ignore_index=True) if frames else store.empty_table("robustness")
    old = (store.read_cell(results, "checks", run.key) if store.has_cell(results, "checks", run.key)
           else None)
    model_rows = None
    if old is not None and (old["kind"] == "model").any():
        model_rows = old[old["kind"] == "model"].drop(columns=["run_id", "created_at"]) \
            .to_dict("records")
    try:
        rows = run_checks(run, robustness, results, n_eval=n_eval, model_rows=model_rows,
                          device=device, large_eps=large_eps)
    except Exception as exc:  # a broken check must not cost the grid its results
        out.failed.append(f"checks on {run.describe()}: {error_text(exc)}")
        return out
    store.write_cell(results, "checks", run.key, rows)
    return out


def transfer(source, cells: list, results: Path, device: torch.device | None = None) -> Outcome:
    """Every pending target of one source, from one crafting of its examples."""
    keep_freed_memory()
    kind = KINDS.create("transfer")
    out = Outcome(cells=len(cells))
    ready = [c for c in cells if trained_ok(results, c.target.key)]
    if not cells or not trained_ok(results, source.key) or not ready:
        return out
    try:
        for cell, row in kind.run_source(source, ready, results, device):
            store.write_cell(results, kind.primary, cell.key, [row])
            out.evaluated += 1
    except Exception as exc:
        out.failed.append(f"transfer from {source.describe()}: {error_text(exc)}")
    fault_point("cell")
    return out


def latency(cell, results: Path) -> Outcome:
    keep_freed_memory()
    kind = KINDS.create("latency")
    out = Outcome()
    if trained_ok(results, cell.train.key):
        store.write_cell(results, kind.primary, cell.key, kind.run(cell, results))
        out.timed = 1
    return out
