"""The grid on local worker processes (``perbench run --workers N``).

Runs the tasks of :mod:`bench.execute.schedule` as soon as their dependencies are done,
with :mod:`bench.execute.tasks`, the code the sequential executor runs, so every executor
writes the same rows. Workers write their own files into the shared results folder, one
per cell, atomically: there is no central writer to lose.

Faults: a worker that dies mid-task (killed, out of memory) has its task retried, at most
``max_retries`` times; then a training task is recorded as failed with that reason. A task
that fails by itself (exception, NaN) is recorded once as failed by the task and not
retried. Killing the driver loses nothing finished: the same command resumes. Latency
cells run last, one at a time, with nothing beside them.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bench.execute import schedule, tasks
from bench.execute.isolation import exit_with_parent
from bench.execute.schedule import DEFAULT_RETRIES, worker_died
from bench.faults import fault_point
from bench.grid.spec import GridSpec
from bench.results import store


def run_processes(spec: GridSpec, results: Path, workers: int, *, retry_failed: bool = False,
                  show_progress: bool = True, max_retries: int = DEFAULT_RETRIES,
                  sandbox: bool = True) -> tasks.RunReport:
    """The grid on ``workers`` local processes (spawned: no state shared with the driver);
    ``sandbox``: each training cell in the bubblewrap sandbox (False: ``--no-sandbox``)."""
    results = store.location(results)
    plan = schedule.build(spec, results, retry_failed, train_options={"sandbox": sandbox})
    todo, report = plan.tasks, tasks.RunReport(skipped=plan.skipped)
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
                running[pool.submit(todo[i].fn, *todo[i].args, **todo[i].kwargs)] = i
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
                        report.failed.append(worker_died(todo[i], results, attempts[i]))
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
        outcome = todo[i].fn(*todo[i].args, **todo[i].kwargs)
        report.add(outcome)
        bar.update(outcome.cells)
    bar.close()
    return report
