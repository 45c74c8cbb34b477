"""Pre-activation ResNets: PreAct ResNet-18 and Wide ResNets (WRN-28-10, WRN-34-10).

Pre-activation blocks follow He et al. 2016, "Identity Mappings in Deep Residual Networks";
WRN-d-k follows Zagoruyko & Komodakis 2016 ((d-4)/6 blocks per stage, widths 16k/32k/64k).
PreAct ResNet-18 and WRN-34-10 are the standard adversarial-training backbones (Rice et al.
2020; Madry et al. 2018; TRADES, Zhang et al. 2019).
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


class PreActBlock(ResidualBlock):
    """BN → ReLU → conv, twice; a projection shortcut sees the pre-activated input."""

    def __init__(self, in_ch: int, width: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.shortcut = conv1x1(in_ch, width, stride) if stride != 1 or in_ch != width else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Stem conv, stages of `PreActBlock` (stride 2 entering each stage after the first),
    a final BN → ReLU (pre-activation leaves the last block's output un-normalized)."""

    def __init__(self, depths: Sequence[int], widths: Sequence[int], stem_width: int,
                 in_channels: int, num_classes: int):
        super().__init__()
        self.stem = conv3x3(in_channels, stem_width)
        stages, ch = [], stem_width
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(PreActBlock(ch, width, stride=2 if i > 0 and j == 0 else 1))
                ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU())
        self.head = PooledHead(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.final(self.stages(self.stem(x))))


def _create_preact(depths: Sequence[int], widths: Sequence[int], stem_width: int, *,
                   num_classes: int, in_channels: int, image_size: int, mean: Sequence[float],
                   std: Sequence[float]) -> nn.Module:
    del image_size  # the pooled head adapts to any size
    net = PreActResNet(depths, widths, stem_width, in_channels, num_classes)
    return normalized(net, mean, std, in_channels)


def _create_wrn(depth: int, widen: int, **kwargs: Unpack[ArchArgs]) -> nn.Module:
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4, got {depth}")
    n = (depth - 4) // 6
    return _create_preact((n, n, n), (16 * widen, 32 * widen, 64 * widen), 16, **kwargs)


@ARCHS.register()
def preact_resnet18(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """PreAct ResNet-18 (He et al. 2016b), the AT benchmark backbone; 11.2M params (CIFAR-10)."""
    return _create_preact((2, 2, 2, 2), (64, 128, 256, 512), 64, **kwargs)


@ARCHS.register()
def wrn28_10(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """Wide ResNet-28-10 (Zagoruyko & Komodakis 2016); 36.5M params (CIFAR-10)."""
    return _create_wrn(28, 10, **kwargs)


@ARCHS.register()
def wrn34_10(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """Wide ResNet-34-10 (Madry et al. 2018, TRADES); 46.2M params (CIFAR-10)."""
    return _create_wrn(34, 10, **kwargs)


@ARCHS.register()
def preact_resnet18_w16(**kwargs: Unpack[ArchArgs]) -> nn.Module:
    """PreAct ResNet-18 at a quarter width (16/32/64/128): a narrow residual net for CPU grids."""
    return _create_preact((2, 2, 2, 2), (16, 32, 64, 128), 16, **kwargs)
