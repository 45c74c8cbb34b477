"""Per-point outcomes of an evaluation, packed one bit per point.

Point ``i`` of every ``robustness`` row is the ``i``-th point of the one fixed permutation
of the test split (``bench.grid.cells.EVAL_PERMUTATION_SEED``); an evaluation of ``n``
points covers points ``0..n-1``. Two evaluations of one run therefore share their first
``min(n1, n2)`` points, which is what the worst case over attacks and the paired
comparisons (bench.views.stats) are computed on.

Packed with :func:`numpy.packbits` (big bit order): 1,000 points are 125 bytes per row.
"""
from __future__ import annotations

import numpy as np


def pack(flags) -> bytes:
    """``flags`` (a bool sequence, tensor or array) as bytes."""
    arr = np.asarray(flags.cpu() if hasattr(flags, "cpu") else flags, dtype=bool)
    return np.packbits(arr).tobytes()


def unpack(data: bytes | None, n: int) -> np.ndarray | None:
    """The ``n`` flags packed in ``data`` (None where a row predates per-point results)."""
    if data is None or (isinstance(data, float) and np.isnan(data)):
        return None
    bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8), count=int(n))
    return bits.astype(bool)
