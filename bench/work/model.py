"""The model a cell works on: its dataset, its architecture, its trained checkpoint, and the
evaluation subset of the test split, with the cell's thread count set.

Every evaluation body starts the same way (threads, then the trained model, then the
subset); :func:`evaluation_of` is that prologue, so a new evaluation kind starts from it too.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from bench.archs import ARCHS
from bench.data.datasets import DATASETS
from bench.grid.cells import EVAL_PERMUTATION_SEED
from bench.results import store
from bench.results.provenance import default_device


@contextmanager
def threads(n: int):
    """Run with exactly ``n`` torch threads (thread count changes results), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_root: str | None):
    return DATASETS.create(name, data_root=data_root)


def model_shape(data) -> dict:
    """What building an architecture for ``data`` needs, as plain values (the sandboxed
    training process gets these, not the dataset)."""
    return {"num_classes": int(data.num_classes), "in_channels": int(data.train_x.shape[1]),
            "image_size": int(data.train_x.shape[-1]), "mean": list(map(float, data.mean)),
            "std": list(map(float, data.std))}


def build_model_for(arch: str, *, num_classes: int, in_channels: int, image_size: int,
                    mean, std) -> torch.nn.Module:
    return ARCHS.create(arch, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size, mean=mean, std=std)


def build_model(data, arch: str) -> torch.nn.Module:
    return build_model_for(arch, **model_shape(data))


def load_trained(cell, results: Path, device: torch.device):
    """(dataset, model in eval mode on ``device``) of a trained run (``cell``: its TrainCell)."""
    data = load_dataset(cell.dataset, cell.data_root)
    model = build_model(data, cell.arch)
    # weights_only: checkpoints in a results folder may come from someone else's run.
    with store.open_read(store.checkpoint_path(results, cell.key)) as f:
        state = torch.load(f, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return data, model.to(device).eval()


def eval_subset(data, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``n`` points of one fixed permutation of the test split (nested subsets)."""
    g = torch.Generator().manual_seed(EVAL_PERMUTATION_SEED)
    perm = torch.randperm(len(data.test_y), generator=g)[:n]
    return data.test_x[perm].to(device), data.test_y[perm].to(device)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels of ``model`` (in eval mode) for ``x``."""
    model.eval()
    return torch.cat([model(xb).argmax(dim=1) for xb in x.split(batch_size)])


@dataclass
class Evaluation:
    """What :func:`evaluation_of` yields: the trained model and the points to evaluate it on."""

    data: Any
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    device: torch.device


@contextmanager
def evaluation_of(train, results: Path, n_eval: int,
               device: torch.device | None = None) -> Iterator[Evaluation]:
    """With the run's thread count set: its trained model and the first ``n_eval`` points
    of the evaluation permutation, on ``device`` (default: the machine's)."""
    device = device or default_device()
    with threads(train.threads):
        data, model = load_trained(train, results, device)
        x, y = eval_subset(data, n_eval, device)
        yield Evaluation(data, model, x, y, device)
