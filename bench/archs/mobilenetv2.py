"""MobileNetV2, CIFAR variant (Sandler et al. 2018, "Inverted Residuals and Linear Bottlenecks").

For 32 px inputs the stem and the second stage keep stride 1 (ImageNet's stride-2 stem and
stage would leave 8 px after stage 2), as common CIFAR code does (kuangliu/pytorch-cifar).
"""
from __future__ import annotations

import torch
from torch import nn
from typing_extensions import Unpack

from bench.archs.base import (
    ARCHS,
    ArchArgs,
    PooledHead,
    ResidualBlock,
    conv1x1,
    conv3x3,
    init_weights,
    normalized,
)

# (expansion t, output channels c, blocks n, stride of the first block s): paper Table 2,
# with the CIFAR strides.
CIFAR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedBottleneck(nn.Module):
    """1×1 expand → 3×3 depthwise → 1×1 linear projection (no activation after it, §3.2).

    The expand conv is kept for t = 1 as well, so every block has ``conv1..conv3``.
    """

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        self.conv1 = conv1x1(in_ch, hidden)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = conv3x3(hidden, hidden, stride, groups=hidden)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = conv1x1(hidden, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.relu6(self.bn1(self.conv1(x)))
        out = nn.functional.relu6(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class InvertedResidual(InvertedBottleneck, ResidualBlock):
    """An inverted bottleneck with an identity skip (stride 1, same width in and out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def inverted_block(in_ch: int, out_ch: int, expansion: int, stride: int) -> InvertedBottleneck:
    cls = InvertedResidual if stride == 1 and in_ch == out_ch else InvertedBottleneck
    return cls(in_ch, out_ch, expansion, stride)


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, stem_width: int = 32,
                 last_width: int = 1280):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(in_channels, stem_width), nn.BatchNorm2d(stem_width),
                                  nn.ReLU6())
        blocks, ch = [], stem_width
        for t, c, n, s in CIFAR_STAGES:
            for j in range(n):
                blocks.append(inverted_block(ch, c, t, s if j == 0 else 1))
                ch = c
        self.blocks = nn.Sequential(*blocks)
        self.last = nn.Sequential(conv1x1(ch, last_width), nn.BatchNorm2d(last_width), nn.ReLU6())
        self.head = PooledHead(last_width, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))))


@ARCHS.register()
def mobilenetv2(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """MobileNetV2, CIFAR strides (Sandler et al. 2018); 2.2M params (CIFAR-10)."""
    net = MobileNetV2(kwargs["in_channels"], kwargs["num_classes"])
    return normalized(net, kwargs["mean"], kwargs["std"], kwargs["in_channels"])
