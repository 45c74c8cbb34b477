"""The CIFAR "python version" files (Krizhevsky 2009; https://www.cs.toronto.edu/~kriz/cifar.html).

Each file is a pickled dict with byte-string keys: ``b'data'`` a uint8 array (N, 3072) holding
the red, green and blue 32×32 planes of each image in turn, and ``b'labels'`` (CIFAR-10) or
``b'fine_labels'`` (CIFAR-100).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

# A pickle can run arbitrary code; these files need only numpy's array reconstruction
# (protocol 2 as in the official files, 4 and 5 as Python 3 writes them; numpy 1 and 2 names)
# and, for protocol 2 written by Python 3, _codecs.encode for byte strings.
_ALLOWED_GLOBALS = {
    (f"numpy{core}.{module}", name)
    for core in (".core", "._core")
    for module, name in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"CIFAR file refers to {module}.{name}, which a CIFAR "
                                         "file never needs; refusing to load it")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one CIFAR python batch file."""
    with open(path, "rb") as f:
        batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    data = np.asarray(_field(batch, b"data", path), dtype=np.uint8)
    labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data (N, 3072) and N labels, got data {data.shape} "
                         f"and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _field(batch: dict, key: bytes, path: Path):
    """``batch[key]``; files re-pickled with ``encoding="latin1"`` have str keys instead."""
    for k in (key, key.decode()):
        if k in batch:
            return batch[k]
    raise ValueError(f"{path}: no {key!r} entry (has {sorted(map(repr, batch))})")
