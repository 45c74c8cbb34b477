"""The IDX file format of MNIST and Fashion-MNIST, raw or gzipped.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the
number of dimensions, one big-endian int32 per dimension, then the data in C order.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (raw first)."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file; gzip is detected from the content, not the name."""
    with open(path, "rb") as f:
        compressed = f.read(2) == GZIP_MAGIC
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
        data = bytearray(f.read())  # writable, so torch.from_numpy can share it
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (header {data[:4].hex()})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}i", data[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    body = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape)
