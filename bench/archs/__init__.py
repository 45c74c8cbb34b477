"""Architectures: ``ARCHS.create(name, num_classes=, in_channels=, image_size=, mean=, std=)``.

Every model takes pixels in [0, 1] and starts with a `Normalize` layer. CIFAR-style nets
(3×3 stem, no max-pool) end in global average pooling, so they also run on 8 px digits and
28 px Fashion-MNIST. ``timm:<name>`` builds any timm model the same way; ``py:<module>:<fn>`` a user's own factory.
"""
from __future__ import annotations

import sys
from functools import cache

import torch
from torch import nn

from bench.archs import (  # noqa: F401  (register)
    densenet,
    from_python,
    from_robustbench,
    from_timm,
    mobilenetv2,
    preact_resnet,
    resnet,
    small_cnn,
    vgg,
)
from bench.archs.base import ARCHS, ArchArgs, Normalize, ResidualBlock

__all__ = ["ARCHS", "ArchArgs", "Normalize", "ResidualBlock", "residual_archs",
           "residual_blocks"]


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The residual blocks of ``model`` in forward order; empty for non-residual archs.

    Each has ``conv1``, ``conv2`` (bottlenecks also ``conv3``); EWS masks the input channels of
    ``conv2``. timm's ResNet blocks share that layout and are included.
    """
    kinds: tuple[type, ...] = (ResidualBlock,)
    timm_resnet = sys.modules.get("timm.models.resnet")  # loaded iff a timm model may exist
    if timm_resnet is not None:
        kinds += (timm_resnet.BasicBlock, timm_resnet.Bottleneck)
    return [m for m in model.modules() if isinstance(m, kinds)]


@cache
def residual_archs() -> tuple[str, ...]:
    """Registered archs whose models have residual blocks (built on the meta device:
    no memory, milliseconds each); named when a method that needs blocks refuses an arch."""
    names = []
    for name in ARCHS.list():
        with torch.device("meta"):
            model = ARCHS.create(name, num_classes=10, in_channels=3, image_size=32,
                                 mean=[0.5] * 3, std=[0.5] * 3)
        if residual_blocks(model):
            names.append(name)
    return tuple(names)
