"""A small, fast CNN for quick tests and the digits quickstart (~94k params at 1 channel)."""
from __future__ import annotations

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


def conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(conv3x3(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch), nn.ReLU())


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU layers (widths 32/64/128, the last two with stride 2) and a pooled
    linear head: 8 px digits end at 2×2, 28 px at 7×7, 32 px at 8×8 before pooling."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, widths[0]),
            conv_bn_relu(widths[0], widths[1], stride=2),
            conv_bn_relu(widths[1], widths[2], stride=2),
        )
        self.head = PooledHead(widths[2], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@ARCHS.register()
def small_cnn(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """Small 3-layer CNN for quick runs (digits quickstart, tests); ~94k params."""
    net = SmallCNN(kwargs["in_channels"], kwargs["num_classes"])
    return normalized(net, kwargs["mean"], kwargs["std"], kwargs["in_channels"])
