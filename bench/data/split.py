"""Seeded, class-stratified hold-out splits (docs/conventions.md#validation-split)."""
from __future__ import annotations

import torch


def split_validation(x: torch.Tensor, y: torch.Tensor, val_size: int | float, seed: int,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, val_x, val_y): ``val_size`` points (a count, or a fraction of
    ``len(y)``) held out, each class in proportion to its size (see `split_indices`)."""
    train_idx, val_idx = split_indices(y, val_size, seed)
    return x[train_idx.to(x.device)], y[train_idx], x[val_idx.to(x.device)], y[val_idx]


def split_indices(y: torch.Tensor, val_size: int | float, seed: int,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) into ``y``: ``val_size`` points (a count, or a fraction of
    ``len(y)``) held out, each class in proportion to its size.

    Per-class counts are rounded by largest remainder so they sum to exactly ``val_size``;
    which points of a class are held out follows one seeded permutation. Both parts keep
    the original order, and the same inputs and seed always give the same split.
    """
    n = len(y)
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise TypeError(f"val_size must be an int count or a float fraction, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"val_size as a fraction must be in [0, 1), got {val_size}")
        val_size = round(val_size * n)
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}) for {n} points, got {val_size}")

    labels = y.detach().cpu()
    classes, class_of, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    quota = counts.double() * val_size / n
    per_class = quota.floor().long()
    # Largest remainder: the classes with the largest fractional parts get the leftover points.
    leftover = val_size - int(per_class.sum())
    order = torch.sort(quota - per_class, descending=True, stable=True).indices
    per_class[order[:leftover]] += 1

    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    # Group the permuted points by class; a point's rank is its position within its class.
    by_class = perm[torch.sort(class_of[perm], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts.repeat_interleave(counts)
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[by_class] = rank < per_class.repeat_interleave(counts)

    val_idx = is_val.nonzero().squeeze(1).to(y.device)
    train_idx = (~is_val).nonzero().squeeze(1).to(y.device)
    return train_idx, val_idx
