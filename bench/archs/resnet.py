"""ResNet-18/34/50 with the CIFAR stem (He et al. 2016, "Deep Residual Learning", §4.2).

A 3×3 stride-1 stem and no max-pool keep 32 px inputs at full resolution in stage 1;
stages 2–4 halve it, and the pooled head makes 8 px and 28 px inputs work too.
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
    ResidualBlock,
    conv1x1,
    conv3x3,
    init_weights,
    normalized,
)


def projection(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Identity when shapes match, else 1×1 conv + BN (the paper's option B)."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class BasicBlock(ResidualBlock):
    """Two 3×3 convs; post-activation (conv → BN → ReLU)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = projection(in_ch, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(ResidualBlock):
    """1×1 reduce → 3×3 (carries the stride, as torchvision's "ResNet v1.5") → 1×1 expand ×4."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = projection(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], depths: Sequence[int],
                 in_channels: int, num_classes: int, widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, ch = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(ch, width, stride=2 if i > 0 and j == 0 else 1))
                ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = PooledHead(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _create_resnet(block: type[BasicBlock | Bottleneck], depths: Sequence[int], *, num_classes: int,
                   in_channels: int, image_size: int, mean: Sequence[float],
                   std: Sequence[float]) -> nn.Module:
    del image_size  # the pooled head adapts to any size
    return normalized(ResNet(block, depths, in_channels, num_classes), mean, std, in_channels)


@ARCHS.register()
def resnet18(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """ResNet-18, CIFAR stem (He et al. 2016); 11.2M params (CIFAR-10)."""
    return _create_resnet(BasicBlock, (2, 2, 2, 2), **kwargs)


@ARCHS.register()
def resnet34(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """ResNet-34, CIFAR stem (He et al. 2016); 21.3M params (CIFAR-10)."""
    return _create_resnet(BasicBlock, (3, 4, 6, 3), **kwargs)


@ARCHS.register()
def resnet50(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """ResNet-50 (bottleneck), CIFAR stem (He et al. 2016); 23.5M params (CIFAR-10)."""
    return _create_resnet(Bottleneck, (3, 4, 6, 3), **kwargs)
