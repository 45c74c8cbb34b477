"""Datasets: ``DATASETS.create(name, data_root=None, download=True) -> DatasetSplits``.

Images come back as float32 CPU tensors (N, C, H, W) in [0, 1] with int64 labels; the
harness moves them to the compute device once and augments there (`augment_batch`).
Where files are looked for is explained in `bench.data.locate`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.augment import AUGMENTS, augment_batch
from bench.data.cifar_files import read_cifar_batch
from bench.data.idx import idx_file, read_idx
from bench.data.locate import DatasetNotFoundError, find_dataset_dir
from bench.data.split import split_indices, split_validation
from bench.registry import Registry

__all__ = ["AUGMENTS", "DATASETS", "DatasetNotFoundError", "DatasetSplits", "augment_batch",
           "split_indices", "split_validation"]


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's train and test splits, with what a model and the harness need to know."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, over the train split
    std: tuple[float, ...]
    augment: str  # one of AUGMENTS
    source: str  # where the data was loaded from

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")


DATASETS: Registry[DatasetSplits] = Registry("dataset")
DataRoot = str | os.PathLike | None


def _to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 images → float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)


def _splits(name: str, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
            num_classes: int, augment: str, source: str) -> DatasetSplits:
    train_x, train_y = train
    # Population std over all train pixels per channel, the convention behind the usual
    # CIFAR-10 constants (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616).
    var, mean = torch.var_mean(train_x, dim=(0, 2, 3), correction=0)
    return DatasetSplits(
        name=name, train_x=train_x, train_y=train_y, test_x=test[0], test_y=test[1],
        num_classes=num_classes, mean=tuple(mean.tolist()), std=tuple(var.sqrt().tolist()),
        augment=augment, source=source,
    )


# --- digits ------------------------------------------------------------------------------

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


@DATASETS.register("digits")
def digits(*, data_root: DataRoot = None, download: bool = True) -> DatasetSplits:
    """sklearn's 8×8 digits (1,797 images, bundled): fixed stratified split, 360 for test."""
    del data_root, download  # bundled with scikit-learn
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixels are 0..16
    y = torch.tensor(raw.target, dtype=torch.int64)
    train_x, train_y, test_x, test_y = split_validation(x, y, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    return _splits("digits", (train_x, train_y), (test_x, test_y), 10, "none",
                   "sklearn.datasets.load_digits (bundled with scikit-learn)")


# --- Fashion-MNIST -----------------------------------------------------------------------

FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Debian's dataset-fashion-mnist installs the four gzipped IDX files here.
FASHION_SYSTEM_DIRS = [(Path("/usr/share/datasets/fashion-mnist"), "Debian dataset-fashion-mnist")]


def _has_fashion_files(folder: Path) -> bool:
    return all(idx_file(folder, stem) for pair in FASHION_FILES.values() for stem in pair)


def _download_fashion(root: Path) -> None:
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)  # → root/FashionMNIST/raw/


def _read_fashion(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (read_idx(idx_file(folder, stem)) for stem in FASHION_FILES[split])
    return _to_float(images[:, None]), torch.from_numpy(labels.astype(np.int64))


@DATASETS.register("fashion-mnist")
def fashion_mnist(*, data_root: DataRoot = None, download: bool = True) -> DatasetSplits:
    """Fashion-MNIST (Xiao et al. 2017), 28×28 grey, 60k/10k; from disk, Debian or download."""
    folder, source = find_dataset_dir(
        "fashion-mnist", data_root=data_root, subdirs=("", "fashion-mnist", "FashionMNIST/raw"),
        is_complete=_has_fashion_files, system_dirs=FASHION_SYSTEM_DIRS,
        download=_download_fashion if download else None,
        how_to=["apt-get install dataset-fashion-mnist (Debian/Ubuntu)",
                "or get the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist"],
    )
    return _splits("fashion-mnist", _read_fashion(folder, "train"), _read_fashion(folder, "test"),
                   10, "crop", source)


# --- CIFAR-10 / CIFAR-100 ----------------------------------------------------------------

@dataclass(frozen=True)
class CifarLayout:
    """How torchvision lays out one CIFAR variant under a data root."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    torchvision_class: str
    url: str

    def is_complete(self, folder: Path) -> bool:
        return all((folder / f).is_file() for f in self.train_files + self.test_files)

    def download(self, root: Path) -> None:
        import torchvision.datasets

        getattr(torchvision.datasets, self.torchvision_class)(str(root), train=True, download=True)

    def read(self, folder: Path, files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [read_cifar_batch(folder / f, self.label_key) for f in files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return _to_float(images), torch.from_numpy(labels)


CIFAR10 = CifarLayout("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                      ("test_batch",), b"labels", 10, "CIFAR10",
                      "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
CIFAR100 = CifarLayout("cifar100", "cifar-100-python", ("train",), ("test",), b"fine_labels", 100,
                       "CIFAR100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")


def _load_cifar(layout: CifarLayout, data_root: DataRoot, download: bool) -> DatasetSplits:
    folder, source = find_dataset_dir(
        layout.name, data_root=data_root, subdirs=(layout.folder, ""),
        is_complete=layout.is_complete, download=layout.download if download else None,
        how_to=[f"unpack {layout.url} into a data root (it creates {layout.folder}/)"],
    )
    return _splits(layout.name, layout.read(folder, layout.train_files),
                   layout.read(folder, layout.test_files), layout.num_classes, "crop_flip", source)


@DATASETS.register("cifar10")
def cifar10(*, data_root: DataRoot = None, download: bool = True) -> DatasetSplits:
    """CIFAR-10 (Krizhevsky 2009), 32×32 RGB, 50k/10k; torchvision's on-disk layout."""
    return _load_cifar(CIFAR10, data_root, download)


@DATASETS.register("cifar100")
def cifar100(*, data_root: DataRoot = None, download: bool = True) -> DatasetSplits:
    """CIFAR-100 (Krizhevsky 2009), fine labels, 32×32 RGB, 50k/10k; torchvision's layout."""
    return _load_cifar(CIFAR100, data_root, download)
