"""What every architecture shares: the registry, in-model normalization, weight init.

Models take pixels in [0, 1] (docs/conventions.md#pixel-range-and-normalization); `Normalize` is their first layer
so attacks and corruptions never see normalized inputs.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import nn

from bench.registry import Registry

ARCHS: Registry[nn.Module] = Registry("arch")


class ArchArgs(TypedDict):
    """The keyword arguments every ARCHS factory takes."""

    num_classes: int
    in_channels: int
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers, so they follow ``.to()``
    and are saved in the checkpoint with the weights they belong to."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive per channel, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())}"


class ResidualBlock(nn.Module):
    """Marker base for blocks that add a residual branch to a shortcut.

    The branch's convolutions are named ``conv1``, ``conv2`` (and ``conv3`` for bottlenecks);
    ``conv2.in_channels`` is the block's inner width, the layer EWS masks (docs/methods.md#ews).
    """


def normalized(net: nn.Module, mean: Sequence[float], std: Sequence[float],
               in_channels: int) -> nn.Sequential:
    """``net`` behind a `Normalize` layer: the one shape every factory returns."""
    if len(mean) != in_channels:
        raise ValueError(f"mean/std give {len(mean)} channels but in_channels={in_channels}")
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), net=net))


def init_weights(net: nn.Module) -> None:
    """He-normal convolutions (He et al. 2015, fan-out as in torchvision's ResNet), BatchNorm
    as identity, zero linear biases."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class PooledHead(nn.Sequential):
    """Global average pooling and a linear classifier: the head works at any input size."""

    def __init__(self, features: int, num_classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))
