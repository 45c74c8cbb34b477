"""The grid as Ray tasks (``perbench run --executor ray``), on a cluster or a local Ray.

Runs the tasks of :mod:`bench.execute.schedule`, each a Ray task that waits for the
tasks it depends on, with :mod:`bench.execute.tasks` (the code every executor runs).
Workers write their own files into a results location every node sees.

Faults: Ray retries a task whose worker died, at most ``max_retries`` times; then a
training task is recorded as failed with that reason. Latency cells run last, one at a
time, and only on a node that declares the profile's resource ``hw:<profile>``; with no
such node they are recorded as skipped with the reason.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from bench.execute import schedule, tasks
from bench.execute.schedule import DEFAULT_RETRIES, worker_died
from bench.faults import fault_point
from bench.grid.spec import GridSpec
from bench.hardware import HARDWARE
from bench.latency import skipped_rows
from bench.results import store


def _run_task(fn: Callable[..., tasks.Outcome], args: tuple, kwargs: dict,
              *deps: Any) -> tasks.Outcome:
    """The Ray task body. ``deps`` are the outcomes of the tasks this one waits for: Ray
    starts it only when they exist; it does not need their values."""
    return fn(*args, **kwargs)


def hardware_resource(profile: str) -> str:
    return f"hw:{profile}"


def local_hardware_resources() -> dict[str, float]:
    """``hw:<profile>`` for every profile this machine can provide: what a node started by
    ``ray.init()`` here declares (``ray start --resources`` does it for a cluster node)."""
    return {hardware_resource(name): 1.0 for name in HARDWARE.list()
            if HARDWARE.create(name).unavailable_reason() is None}


def run_ray(spec: GridSpec, results: Path, *, address: str | None = None,
            retry_failed: bool = False, show_progress: bool = True,
            max_retries: int = DEFAULT_RETRIES, gpus_per_cell: float = 0.0,
            sandbox: bool = True) -> tasks.RunReport:
    """The grid as Ray tasks: on the cluster at ``address`` ("auto": the one this machine
    belongs to), on a Ray already initialised by the caller, or on a local one started here.

    Each task asks for its cell's thread count in CPUs (the cell sets exactly that many
    torch threads, whatever Ray's default) and ``gpus_per_cell`` GPUs. ``results`` must be
    a folder every node sees at the same path (a shared filesystem), or an fsspec URI
    every node can reach (an object store). ``sandbox``: each training cell in the
    bubblewrap sandbox of the node that runs it (False: ``--no-sandbox``).
    """
    import ray  # optional (perbench[ray]): imported only when this executor runs

    results = store.location(results)
    if not ray.is_initialized():
        # Faults and settings travel to the workers through PERBENCH_* variables.
        env = {k: v for k, v in os.environ.items() if k.startswith("PERBENCH_")}
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
        if address is None:
            options["resources"] = local_hardware_resources()
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", **options)
    plan = schedule.build(spec, results, retry_failed, train_options={"sandbox": sandbox})
    todo, report = plan.tasks, tasks.RunReport(skipped=plan.skipped)
    remote = ray.remote(_run_task)
    bar = tqdm(total=sum(t.cells for t in todo), desc=f"{spec.name} (ray)", unit="cell",
               disable=not show_progress or not todo)
    refs: dict[int, Any] = {}
    for i, task in enumerate(todo):
        if task.hardware is None:
            refs[i] = remote.options(
                num_cpus=task.threads, num_gpus=gpus_per_cell, max_retries=max_retries,
                retry_exceptions=False, name=task.name[:120],
            ).remote(task.fn, task.args, task.kwargs, *(refs[d] for d in task.deps))
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
                report.failed.append(worker_died(todo[i], results, max_retries + 1))
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
            store.write_cell(results, "latency", cell.key, skipped_rows(
                HARDWARE.create(task.hardware),
                f"no node of the Ray cluster declares resource {resource} "
                f"(ray start --resources='{{\"{resource}\": 1}}')",
                run_id=cell.train.key, eval_id=cell.key))
            report.timed += 1
            bar.update(1)
            continue
        outcome = ray.get(remote.options(num_cpus=1, resources={resource: 1},
                                         max_retries=max_retries).remote(task.fn, task.args,
                                                                          task.kwargs))
        report.add(outcome)
        bar.update(outcome.cells)
    bar.close()
    return report
