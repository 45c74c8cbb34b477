"""Batched, seeded data augmentation on the data's own device (no per-sample PIL work).

Random crop with zero padding and horizontal flip are the standard CIFAR augmentation
(He et al. 2016 §4.2: 4 px padding at 32 px); the padding scales with the image as
``round(size / 8)``. Done on whole batches as in airbench (Jordan 2024).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTS = ("none", "crop", "crop_flip")


def crop_padding(size: int) -> int:
    return round(size / 8)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by its own offset in [-pad, pad]², exposed borders zero-filled."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """``x`` (B, C, H, W) augmented by ``kind`` (one of `AUGMENTS`); draws come from
    ``generator``, which must live on ``x.device``. ``"none"`` returns ``x`` itself."""
    if kind not in AUGMENTS:
        raise ValueError(f"unknown augment {kind!r}; allowed: {', '.join(AUGMENTS)}")
    if kind == "none":
        return x
    x = random_crop(x, crop_padding(x.shape[-1]), generator)
    return random_flip(x, generator) if kind == "crop_flip" else x
