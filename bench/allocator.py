"""Keep freed memory in the process instead of handing it back to the OS after every batch.

PyTorch allocates CPU tensors with the C library's malloc. glibc serves blocks above its
mmap threshold (128 KiB at first) with a fresh ``mmap`` and unmaps them on free, and trims
the heap top back to the OS, so a training step's activations (12.8 MB for one
128×32×28×28 float tensor) are page-faulted in again on every step: on these 2-core VMs a
PGD-AT step spent about a fifth of its time in page faults (``aten::copy_`` into a new
tensor ran at ~1 GB/s). PyTorch's CPU performance guide recommends a caching allocator
(jemalloc, tcmalloc) for the same reason; those need ``LD_PRELOAD`` before the process
starts, so PERBench sets glibc's own knobs instead, from inside the process:

- ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum on 64-bit): blocks up to that size come
  from the heap and are reused after free;
- ``M_TRIM_THRESHOLD`` = 1 GiB: free memory at the heap top is kept up to that much.

The process then keeps its peak working set, as a caching allocator would. Measured on
the fashion-mnist PGD-AT CNN (2 threads, one epoch of 1,024 images, PGD-7): 1.25 million
minor page faults per PGD-AT epoch before, 5 thousand after; 56 -> 75 GFLOP/s for PGD-AT
and 83 -> 98 for ERM (docs/conventions.md#speed-figures-and-the-allocator). Numbers do not change: only where memory comes from. Set ``PERBENCH_MALLOC=system`` to keep glibc's defaults; PERBench also
leaves them alone when ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``GLIBC_TUNABLES`` say what the user wants, and where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
SETTING = f"glibc malloc: mmap_threshold {MMAP_THRESHOLD >> 20} MiB, trim_threshold {TRIM_THRESHOLD >> 20} MiB"

_state: dict[str, str] = {}


def keep_freed_memory() -> str:
    """Apply the settings once per process; return what this process's allocator does (the
    setting, or why glibc's defaults were left), to record beside timings."""
    if "setting" not in _state:
        _state["setting"] = _apply()
    return _state["setting"]


def current_setting() -> str:
    """What this process's allocator does, without changing it: for records written by
    code that may run outside ``perbench`` (a direct API call that never applied it)."""
    return _state.get("setting", "system default (not set in this process)")


def _apply() -> str:
    if os.environ.get("PERBENCH_MALLOC") == "system":
        return "system default (PERBENCH_MALLOC=system)"
    chosen = [v for v in USER_SETTINGS if v in os.environ]
    if chosen:
        return f"system, as set by {', '.join(chosen)}"
    if not sys.platform.startswith("linux"):
        return f"system default ({sys.platform})"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others: no glibc mallopt
        return "system default (no glibc mallopt)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "system default (mallopt refused the settings)"
    return SETTING
