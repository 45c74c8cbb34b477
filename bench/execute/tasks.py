"""One unit of grid work each: train a run, evaluate it, check it, transfer from it, time it.

Every executor — the sequential one, the local process pool (``--workers N``) and Ray —
calls these same functions, so a cell gives the same rows whichever runs it. Each writes
its own files (one per cell and table, atomically; the primary table last), so workers
need no central writer, and returns an :class:`Outcome` for the driver's report. A cell
that raises is written as failed where its table has a status (so it is recorded once,
not retried forever) and reported in the outcome.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench.work import evaluations

from bench.work import runner

from bench.results import store
from bench.allocator import keep_freed_memory
from bench.faults import fault_point

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


def error_text(exc: BaseException) -> str:
    from bench.execute.isolation import CellFailed, describe_error

    return str(exc) if isinstance(exc, CellFailed) else describe_error(exc)


def trained_ok(results: Path, key: str) -> bool:
    if not store.has_cell(results, "runs", key):
        return False
    return bool((store.read_cell(results, "runs", key)["status"] == "ok").all())


def train(cell, results: Path, device: torch.device | None = None, *,
          submission_id: str | None = None, isolate: tuple[str, ...] | None = None,
          timeout: float | None = None, progress=None) -> Outcome:
    """Train ``cell`` (in a fresh process that loads ``isolate`` first, when given) and
    write its tables, ``runs`` last; a failure becomes a failed ``runs`` row."""
    from bench.execute.isolation import call_isolated

    keep_freed_memory()
    out = Outcome()
    try:
        if isolate is None:
            run, tables = runner.run_train_cell(cell, results, device, progress=progress)
        else:
            run, tables = call_isolated(runner.run_train_cell, cell, results, device,
                                        plugins=isolate, timeout=timeout)
        for table, rows in tables.items():
            store.write_cell(results, table, cell.key, rows)
        out.trained = 1
    except Exception as exc:  # a method's bug fails its cell, not the grid
        run = runner.failed_run_row(cell, error_text(exc))
        out.failed.append(f"{cell.describe()}: {run['error']}")
        log.debug("training failed", exc_info=True)
    run["submission_id"] = submission_id
    store.write_cell(results, "runs", cell.key, [run])  # primary file last
    # Finished, either way: a retry of a failed cell starts over (the failure may have
    # come from code since fixed), so the snapshot goes too.
    store.remove(store.resume_path(results, cell.key))
    fault_point("cell")
    return out


# kind -> (table, cell function, failed-row function or None when the table has no status)
def _kinds() -> dict:
    return {
        "attack": ("robustness", runner.run_attack_cell, runner.failed_attack_row),
        "sweep": ("robustness", evaluations.run_sweep_cell, failed_sweep_rows),
        "corruption": ("corruption", evaluations.run_corruption_cell, None),
    }


def evaluate(kind: str, cell, results: Path, device: torch.device | None = None) -> Outcome:
    """One evaluation cell of a trained model. Nothing to do when the model failed to train
    (its run row says why). A failure without a status column is only reported: the next
    run tries again."""
    keep_freed_memory()
    table, run_cell, failed_rows = _kinds()[kind]
    out = Outcome()
    if not trained_ok(results, cell.train.key):
        return out
    try:
        rows = run_cell(cell, results, device)
        rows = rows if isinstance(rows, list) else [rows]
        out.evaluated = 1
    except Exception as exc:
        out.failed.append(f"{cell.describe()}: {error_text(exc)}")
        log.debug("evaluation failed", exc_info=True)
        rows = None if failed_rows is None else failed_rows(cell, error_text(exc))
        rows = rows if rows is None or isinstance(rows, list) else [rows]
    if rows is not None:
        store.write_cell(results, table, cell.key, rows)
        out.wrote = True
    fault_point("cell")
    return out


def failed_sweep_rows(cell, error: str) -> list[dict]:
    sw = cell.sweep
    return [{"run_id": cell.train.key, "eval_id": cell.key, "attack": sw.name, "norm": sw.norm,
             "eps": sw.schedule()[0], "steps": sw.steps, "restarts": sw.restarts,
             "n_examples": cell.n_eval, "status": "failed", "error": error,
             "created_at": runner.now(), "sweep": sw.label}]


def check(run, robustness_keys: list[str], results: Path, n_eval: int,
          device: torch.device | None = None) -> Outcome:
    """(Re)write the run's checks: model-level rows once, result-level rows over its
    robustness rows as they now stand. The file is derived, so rewriting it is safe."""
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
        rows = evaluations.run_checks(run, robustness, results, n_eval=n_eval,
                                      model_rows=model_rows, device=device)
    except Exception as exc:  # a broken check must not cost the grid its results
        out.failed.append(f"checks on {run.describe()}: {error_text(exc)}")
        return out
    store.write_cell(results, "checks", run.key, rows)
    return out


def transfer(source, cells: list, results: Path, device: torch.device | None = None) -> Outcome:
    """Every pending target of one source, from one crafting of its examples."""
    keep_freed_memory()
    out = Outcome(cells=len(cells))
    ready = [c for c in cells if trained_ok(results, c.target.key)]
    if not cells or not trained_ok(results, source.key) or not ready:
        return out
    try:
        for cell, row in evaluations.run_transfer_source(source, ready, results, device):
            store.write_cell(results, "transfer", cell.key, [row])
            out.evaluated += 1
    except Exception as exc:
        out.failed.append(f"transfer from {source.describe()}: {error_text(exc)}")
    fault_point("cell")
    return out


def latency(cell, results: Path) -> Outcome:
    keep_freed_memory()
    out = Outcome()
    if trained_ok(results, cell.train.key):
        store.write_cell(results, "latency", cell.key, runner.run_latency_cell(cell, results))
        out.timed = 1
    return out

