"""VGG-16 with BatchNorm, CIFAR variant (Simonyan & Zisserman 2015; BN as in Ioffe & Szegedy 2015).

CAPER (Ganesh et al., BMVC 2023, §4.1; docs/methods.md#caper) trains a CIFAR version of VGG16; this one replaces the
three 4096-wide FC layers by one linear layer on the pooled 512 features, as common CIFAR
code does (e.g. kuangliu/pytorch-cifar).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from typing_extensions import Unpack

from bench.archs.base import (
    ARCHS,
    ArchArgs,
    PooledHead,
    conv3x3,
    init_weights,
    normalized,
)

POOL = "M"
VGG16 = (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL)


class VGG(nn.Module):
    def __init__(self, config: Sequence[int | str], in_channels: int, num_classes: int,
                 image_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        ch, size = in_channels, image_size
        for item in config:
            if item == POOL:
                # Five 2× pools would shrink 8 px or 28 px inputs below 1 px: skip the pools
                # that would, and let the global pooling in the head finish the job.
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
            else:
                layers += [conv3x3(ch, int(item)), nn.BatchNorm2d(int(item)), nn.ReLU()]
                ch = int(item)
        self.features = nn.Sequential(*layers)
        self.head = PooledHead(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@ARCHS.register()
def vgg16_bn(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """VGG-16 with BatchNorm, CIFAR head (one linear layer); 14.7M params (CIFAR-10)."""
    net = VGG(VGG16, kwargs["in_channels"], kwargs["num_classes"], kwargs["image_size"])
    return normalized(net, kwargs["mean"], kwargs["std"], kwargs["in_channels"])
