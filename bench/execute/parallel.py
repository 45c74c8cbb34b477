"""Parallel executors: local worker processes (``--workers N``) and a Ray cluster
(``--executor ray``).

Both plan the grid's missing cells into tasks with dependencies (a run's evaluations after
its training, its checks after its evaluations, a transfer group after every model it
touches) and run them with :mod:`bench.execute.tasks`, the code the sequential executor runs, so
every executor writes the same rows. Workers write their own files into the shared
results folder, one per cell, atomically: there is no central writer to lose.

Faults: a worker that dies mid-task (killed, out of memory) has its task retried, at most
``max_retries`` times; then a training task is recorded as failed with that reason. A
task that fails by itself (exception, NaN) is recorded once as failed by the task and not
retried. Killing the driver loses nothing finished: the same command resumes. Latency
cells run last, one at a time with nothing beside them, and on Ray only on a node that
declares the profile's resource ``hw:<profile>``; with no such node they are recorded as
skipped with the reason.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from bench.work import runner

from bench.results import store

from bench.execute import tasks
from bench.grid.cells import expand
from bench.execute.sequential import (RunReport, count, evaluation_cells, pending, robustness_keys,
                            transfer_groups)
from bench.faults import fault_point
from bench.execute.isolation import exit_with_parent
from bench.grid.spec import GridSpec

DEFAULT_RETRIES = 2


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


def plan(spec: GridSpec, results: Path, retry_failed: bool = False) -> tuple[list[Task], int]:
    """(tasks in dependency order, cells already done) for the grid's missing cells."""
    store.sweep_partial(results)  # what killed writers left, once no writer can own it
    grid = expand(spec)
    todo = pending(grid, results, retry_failed)
    out: list[Task] = []
    trains: dict[str, int] = {}
    to_train = {c.key for c in todo.train}

    def add(task: Task) -> int:
        out.append(task)
        return len(out) - 1

    for run in grid.train:
        if run.key in to_train:
            trains[run.key] = add(Task(f"train {run.describe()}", tasks.train, (run, results),
                                       threads=run.threads, train=run))
        after_train = (trains[run.key],) if run.key in trains else ()
        evals = tuple(add(Task(cell.describe(), tasks.evaluate, (kind, cell, results),
                               after_train, threads=run.threads))
                      for kind, cell in evaluation_cells(todo, run.key))
        if spec.checks.enabled and (evals or not store.has_cell(results, "checks", run.key)):
            add(Task(f"checks {run.describe()}", tasks.check,
                     (run, robustness_keys(grid, run.key), results, spec.checks.n_eval),
                     after_train + evals, cells=0, threads=run.threads))
    for source, cells in transfer_groups(grid, todo):
        keys = {source.key, *(c.target.key for c in cells)}
        add(Task(f"transfer from {source.describe()}", tasks.transfer, (source, cells, results),
                 tuple(trains[k] for k in sorted(keys) if k in trains), cells=len(cells),
                 threads=source.threads))
    for cell in todo.latency:
        add(Task(cell.describe(), tasks.latency, (cell, results), hardware=cell.hardware))
    return out, count(grid) - count(todo)


def _worker_died(task: Task, results: Path, attempts: int, report: RunReport) -> None:
    """A task whose worker died on every attempt: a training task gets a failed run row
    (so it is not retried forever); an evaluation is only reported (the next run retries)."""
    reason = (f"the worker process died on all {attempts} attempts (killed, or out of "
              "memory?)")
    if task.train is not None:
        store.write_cell(results, "runs", task.train.key,
                         [runner.failed_run_row(task.train, reason)])
    report.failed.append(f"{task.name}: {reason}")


# -- local processes ---------------------------------------------------------------------

def run_processes(spec: GridSpec, results: Path, workers: int, *, retry_failed: bool = False,
                  show_progress: bool = True, max_retries: int = DEFAULT_RETRIES) -> RunReport:
    """The grid on ``workers`` local processes (spawned: no state shared with the driver)."""
    import multiprocessing as mp

    results = store.location(results)
    todo, skipped = plan(spec, results, retry_failed)
    report = RunReport(skipped=skipped)
    work = [i for i, t in enumerate(todo) if t.hardware is None]
    latency = [i for i, t in enumerate(todo) if t.hardware is not None]
    bar = tqdm(total=sum(t.cells for t in todo), desc=spec.name, unit="cell",
               disable=not show_progress or not todo)
    done: set[int] = set()
    attempts = dict.fromkeys(work, 0)
    waiting = list(work)
    ctx = mp.get_context("spawn")

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                   initializer=exit_with_parent, initargs=(os.getpid(),))

    pool = new_pool()
    running: dict[Any, int] = {}
    try:
        while waiting or running:
            for i in [i for i in waiting if set(todo[i].deps) <= done]:
                if len(running) >= workers:
                    break
                waiting.remove(i)
                attempts[i] += 1
                running[pool.submit(todo[i].fn, *todo[i].args)] = i
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                i = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    # Some worker died; every task the pool was running is lost with it.
                    broken = True
                    if attempts[i] > max_retries:
                        _worker_died(todo[i], results, attempts[i], report)
                        done.add(i)
                        bar.update(todo[i].cells)
                    else:
                        waiting.insert(0, i)
                    continue
                except Exception as exc:  # escaped the task's own handling (e.g. a full disk)
                    report.failed.append(f"{todo[i].name}: {tasks.error_text(exc)}")
                    done.add(i)
                    bar.update(todo[i].cells)
                    continue
                report.add(outcome)
                done.add(i)
                bar.update(outcome.cells)
                fault_point("driver")
            if broken:
                for future, i in list(running.items()):  # lost too: run them again
                    waiting.insert(0, i)
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for i in latency:  # last, alone: nothing else runs now
        bar.set_postfix_str(todo[i].name)
        outcome = todo[i].fn(*todo[i].args)
        report.add(outcome)
        bar.update(outcome.cells)
    bar.close()
    return report


# -- Ray ---------------------------------------------------------------------------------

def _run_task(fn: Callable[..., tasks.Outcome], args: tuple, *deps: Any) -> tasks.Outcome:
    """The Ray task body. ``deps`` are the outcomes of the tasks this one waits for: Ray
    starts it only when they exist; it does not need their values."""
    return fn(*args)


def hardware_resource(profile: str) -> str:
    return f"hw:{profile}"


def local_hardware_resources() -> dict[str, float]:
    """``hw:<profile>`` for every profile this machine can provide: what a node started by
    ``ray.init()`` here declares (``ray start --resources`` does it for a cluster node)."""
    from bench.hardware import HARDWARE

    return {hardware_resource(name): 1.0 for name in HARDWARE.list()
            if HARDWARE.create(name).unavailable_reason() is None}


def run_ray(spec: GridSpec, results: Path, *, address: str | None = None,
            retry_failed: bool = False, show_progress: bool = True,
            max_retries: int = DEFAULT_RETRIES, gpus_per_cell: float = 0.0) -> RunReport:
    """The grid as Ray tasks: on the cluster at ``address`` ("auto": the one this machine
    belongs to), on a Ray already initialised by the caller, or on a local one started here.

    Each task asks for its cell's thread count in CPUs (the cell sets exactly that many
    torch threads, whatever Ray's default) and ``gpus_per_cell`` GPUs. ``results`` must be
    a folder every node sees at the same path (a shared filesystem), or an fsspec URI
    every node can reach (an object store).
    """
    import ray

    results = store.location(results)
    if not ray.is_initialized():
        # Faults and settings travel to the workers through PERBENCH_* variables.
        env = {k: v for k, v in os.environ.items() if k.startswith("PERBENCH_")}
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
        if address is None:
            options["resources"] = local_hardware_resources()
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", **options)
    todo, skipped = plan(spec, results, retry_failed)
    report = RunReport(skipped=skipped)
    remote = ray.remote(_run_task)
    bar = tqdm(total=sum(t.cells for t in todo), desc=f"{spec.name} (ray)", unit="cell",
               disable=not show_progress or not todo)
    refs: dict[int, Any] = {}
    for i, task in enumerate(todo):
        if task.hardware is None:
            refs[i] = remote.options(
                num_cpus=task.threads, num_gpus=gpus_per_cell, max_retries=max_retries,
                retry_exceptions=False, name=task.name[:120],
            ).remote(task.fn, task.args, *(refs[d] for d in task.deps))
    index = {ref: i for i, ref in refs.items()}
    left = list(refs.values())
    while left:
        ready, left = ray.wait(left, num_returns=1)
        i = index[ready[0]]
        try:
            outcome = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            # the worker died beyond its retries (or its node did), or a task it waits for
            if todo[i].train is not None:
                _worker_died(todo[i], results, max_retries + 1, report)
            else:
                report.failed.append(f"{todo[i].name}: {type(exc).__name__}")
            bar.update(todo[i].cells)
            continue
        report.add(outcome)
        bar.update(outcome.cells)
        fault_point("driver")
    available = ray.cluster_resources()
    for task in (t for t in todo if t.hardware is not None):  # last, one at a time
        bar.set_postfix_str(task.name)
        resource = hardware_resource(task.hardware)
        if available.get(resource, 0) < 1:
            cell = task.args[0]
            from bench.hardware import HARDWARE
            from bench.latency import skipped_rows

            store.write_cell(results, "latency", cell.key, skipped_rows(
                HARDWARE.create(task.hardware),
                f"no node of the Ray cluster declares resource {resource} "
                f"(ray start --resources='{{\"{resource}\": 1}}')",
                run_id=cell.train.key, eval_id=cell.key))
            report.timed += 1
            bar.update(1)
            continue
        outcome = ray.get(remote.options(num_cpus=1, resources={resource: 1},
                                         max_retries=max_retries).remote(task.fn, task.args))
        report.add(outcome)
        bar.update(outcome.cells)
    bar.close()
    return report
