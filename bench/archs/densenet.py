"""DenseNet-121, CIFAR variant (Huang et al. 2017, "Densely Connected Convolutional Networks").

DenseNet-BC: bottleneck layers (BN-ReLU-1×1 conv to 4k, BN-ReLU-3×3 conv to k), transitions
that halve the channels (compression 0.5) and the resolution; growth k = 32 and blocks
(6, 12, 24, 16) as the ImageNet DenseNet-121, with a 3×3 stem and no max-pool for 32 px.
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
    conv1x1,
    conv3x3,
    init_weights,
    normalized,
)


class DenseLayer(nn.Module):
    """Adds ``growth`` new feature maps to its input's (concatenation, not a residual sum)."""

    def __init__(self, in_ch: int, growth: int, bottleneck: int = 4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1x1(in_ch, bottleneck * growth)
        self.bn2 = nn.BatchNorm2d(bottleneck * growth)
        self.conv2 = conv3x3(bottleneck * growth, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


def transition(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(), conv1x1(in_ch, out_ch), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    def __init__(self, depths: Sequence[int], growth: int, in_channels: int, num_classes: int,
                 compression: float = 0.5):
        super().__init__()
        ch = 2 * growth
        self.stem = conv3x3(in_channels, ch)
        stages: list[nn.Module] = []
        for i, depth in enumerate(depths):
            for _ in range(depth):
                stages.append(DenseLayer(ch, growth))
                ch += growth
            if i < len(depths) - 1:
                stages.append(transition(ch, int(ch * compression)))
                ch = int(ch * compression)
        self.features = nn.Sequential(*stages, nn.BatchNorm2d(ch), nn.ReLU())
        self.head = PooledHead(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x)))


@ARCHS.register()
def densenet121(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """DenseNet-121 (BC, k=32), CIFAR stem (Huang et al. 2017); 7.0M params (CIFAR-10)."""
    net = DenseNet((6, 12, 24, 16), 32, kwargs["in_channels"], kwargs["num_classes"])
    return normalized(net, kwargs["mean"], kwargs["std"], kwargs["in_channels"])
