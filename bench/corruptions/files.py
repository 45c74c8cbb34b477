"""The released CIFAR-10-C / CIFAR-100-C files (Hendrycks & Dietterich, ICLR 2019).

A release folder holds ``<corruption>.npy``, uint8 (50000, 32, 32, 3): the 10,000 test
images corrupted at severity 1, then at 2, ... up to 5; and ``labels.npy`` (50000,), the test
labels repeated five times. Both datasets share the layout. Files are memory-mapped, so
reading one severity's first n images touches only those bytes of a 150 MB file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.corruptions.base import (
    CORRUPTION_NAMES,
    SEVERITIES,
    check_corruption_name,
    check_severity,
)

# the release also ships four held-out corruptions (the paper's validation set)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
IMAGE_SHAPE = (32, 32, 3)


def _open(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-C file not found: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{path} is not a .npy array file: {err}") from err


def load_cifar_c(root: str | Path, corruption: str, severity: int,
                 n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 (N, 3, 32, 32) in [0, 1], labels int64 (N,)) for one severity.

    ``n`` keeps the first n images of that severity (all of them if None).
    """
    root = Path(root)
    check_corruption_name(corruption, CORRUPTION_NAMES + EXTRA_CORRUPTIONS)
    check_severity(severity)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-C folder not found: {root} (expected the extracted "
                                f"release with <corruption>.npy and labels.npy)")
    image_path, label_path = root / f"{corruption}.npy", root / "labels.npy"
    images, labels = _open(image_path), _open(label_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{image_path}: expected uint8 images (N, 32, 32, 3), "
                         f"got {images.dtype} {images.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(images),):
        raise ValueError(f"{label_path}: expected one integer label per image of {image_path} "
                         f"({len(images)}), got {labels.dtype} {labels.shape}")
    if len(images) % len(SEVERITIES):
        raise ValueError(f"{image_path}: expected {len(SEVERITIES)} equal blocks of images, one "
                         f"per severity; {len(images)} images do not split evenly")
    per_severity = len(images) // len(SEVERITIES)
    count = per_severity if n is None else n
    if not 0 <= count <= per_severity:
        raise ValueError(f"n must be between 0 and {per_severity} (the images per severity in "
                         f"{image_path}), got {n}")
    start = (severity - 1) * per_severity
    x = torch.from_numpy(np.array(images[start:start + count])).permute(0, 3, 1, 2)
    y = torch.from_numpy(np.array(labels[start:start + count], dtype=np.int64))
    return x.float().div_(255).contiguous(), y
