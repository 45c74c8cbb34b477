"""Run a function in a fresh process, so a method's crash, hang or runaway memory fails
one cell instead of the grid.

Submitted methods are other people's code: a segfault in an extension, an infinite loop,
an ``os._exit`` would otherwise take the whole ``perbench submit`` down with them. Each
isolated call gets a new interpreter (``spawn``: no state inherited from the driver, the
same in every OS), loads the plugin sources it needs, runs, and sends its result back
through a pipe. What comes back is either the result or a :class:`CellFailed` with one line
saying what happened.

Isolation protects the *grid*, not the measurements: the child runs with the user's rights.
It serves ``--no-sandbox`` (trusted code); submissions train in the bubblewrap sandbox
(:mod:`bench.sandbox`, :mod:`bench.work.train`), which also keeps the method away from the
test split, the network and the results.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from bench.allocator import keep_freed_memory
from bench.plugins import load_source


class CellFailed(RuntimeError):
    """The isolated call raised, died or ran out of time; ``str()`` says which and why."""


def describe_error(exc: BaseException) -> str:
    """``Type: message (file.py:line)``, the line being the innermost frame: for a method's
    bug that is the line of the user's file to look at."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def exit_with_parent(parent_pid: int, every_s: float = 1.0) -> None:
    """In a child process: exit when ``parent_pid`` is gone (killed with -9, it cannot stop
    us), so no orphan keeps computing, or holds the terminal's or a caller's pipes open."""
    def watch() -> None:
        while True:
            time.sleep(every_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _child(conn, parent_pid: int, plugins: Sequence[str], fn: Callable, args: tuple,
           kwargs: dict) -> None:
    exit_with_parent(parent_pid)
    try:
        keep_freed_memory()
        for source in plugins:
            load_source(source)
        result = fn(*args, **kwargs)
        conn.send(("ok", result))
    except BaseException as exc:  # noqa: BLE001  (everything goes back as the cell's reason)
        conn.send(("error", describe_error(exc), traceback.format_exc()))
    finally:
        conn.close()


def call_isolated(fn: Callable, *args: Any, plugins: Sequence[str] = (),
                  timeout: float | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a new process after loading ``plugins`` there.

    ``fn`` and its arguments must be picklable (module-level functions, dataclasses).
    Raises :class:`CellFailed` when ``fn`` raises (its message and location), when the
    process dies without answering (the signal or exit code), or after ``timeout`` seconds
    (the process is killed).
    """
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, os.getpid(), tuple(plugins), fn, args, kwargs),
                       daemon=True)
    start = time.monotonic()
    proc.start()
    send.close()  # the child holds the only writer: EOF here means it died
    answered = False
    try:
        if not receive.poll(timeout):
            raise CellFailed(f"timeout: no result after {timeout:g} s; the process was stopped")
        try:
            message = receive.recv()
            answered = True
        except EOFError:
            proc.join(5)
            raise CellFailed(f"the process died after {time.monotonic() - start:.0f} s "
                             f"({_exit_reason(proc.exitcode)})") from None
    finally:
        proc.join(5 if answered else 0)  # one that answered exits on its own; else kill it
        if proc.is_alive():
            proc.kill()
            proc.join(10)
        receive.close()
    if message[0] == "ok":
        return message[1]
    raise CellFailed(message[1])


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
