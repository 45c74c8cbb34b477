"""Fault injection at named points, for the kill-and-resume tests.

``PERBENCH_FAULT=<point>:<n>`` kills this process with SIGKILL (no cleanup, like
``kill -9``) the n-th time execution reaches ``<point>``. Points: ``write`` (a results
file is fully written to its temp name but not yet renamed), ``cell`` (after a cell's
files, in whichever process ran it), ``epoch`` (after a training epoch: mid-cell),
``driver`` (a parallel executor's driver, after it collected a finished task).
``PERBENCH_FAULT_ONCE=<path>`` makes it fire once across processes: the file is created
just before the kill and no process fires while it exists (a retried cell then succeeds).
Inside the training sandbox the process is its namespace's init, which no signal from
inside can kill: there the fault is relayed (``PERBENCH_FAULT_RELAY`` names a file the
parent watches; it then kills itself, as a ``kill -9`` of the whole run would).
Unset in normal use: then this is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

_counts: dict[str, int] = {}


def fault_point(point: str) -> None:
    spec = os.environ.get("PERBENCH_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != int(nth or 1):
        return
    once = os.environ.get("PERBENCH_FAULT_ONCE")
    if once:
        try:
            Path(once).touch(exist_ok=False)  # atomic: one process wins
        except FileExistsError:
            return
    relay = os.environ.get("PERBENCH_FAULT_RELAY")
    if relay:
        Path(relay).write_text(point)
        os._exit(137)
    os.kill(os.getpid(), signal.SIGKILL)
