"""Fault injection at named points, for the kill-and-resume tests.

``PERBENCH_FAULT=<point>:<n>`` kills this process with SIGKILL (no cleanup, like
``kill -9``) the n-th time execution reaches ``<point>``. Points: ``write`` (a results
file is fully written to its temp name but not yet renamed), ``cell`` (between cells).
Unset in normal use: then this is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def fault_point(point: str) -> None:
    spec = os.environ.get("PERBENCH_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
