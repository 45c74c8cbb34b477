"""What a corruption is, the registry that names them, and ``corrupt`` that runs one.

A corruption is a function ``(x, severity, generator) -> Tensor`` of a float batch
(N, C, H, W) in [0, 1] with C = 1 or 3, a severity in 1..5 and a ``torch.Generator`` on
``x``'s device that supplies all of its randomness; it returns a batch of the same shape,
dtype and device, clipped to [0, 1]. Errors here are ones a caller makes, so they name the
value given and what is allowed.
"""
from __future__ import annotations

import torch

from bench.registry import Registry

CORRUPTIONS: Registry[torch.Tensor] = Registry("corruption")

# Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C: the 15 benchmark corruptions in the order
# of the paper's figures and of the released files.
CORRUPTION_NAMES: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# half precision would round away the weak severities; work in float32 (or the caller's float64)
_WORK_DTYPES = (torch.float32, torch.float64)


def check_severity(severity: int) -> None:
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))}, "
                         f"got {severity!r}")


def check_corruption_name(name: str, allowed: tuple[str, ...] = CORRUPTION_NAMES) -> None:
    if name not in allowed:
        raise ValueError(f"unknown corruption {name!r}; allowed: {', '.join(allowed)}")


def corrupt(x: torch.Tensor, name: str, severity: int,
            generator: torch.Generator) -> torch.Tensor:
    """``name`` at ``severity`` applied to the batch ``x``; randomness from ``generator`` only."""
    check_corruption_name(name)
    check_severity(severity)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"corruption {name!r} needs a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point() or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"corruption {name!r} needs a float tensor (N, C, H, W) with C = 1 or 3, "
                         f"got {x.dtype} {tuple(x.shape)}")
    if generator.device.type != x.device.type:
        raise ValueError(f"corruption {name!r}: the generator is on {generator.device} but x is "
                         f"on {x.device}; make it with torch.Generator(device=x.device)")
    if x.numel() == 0:
        return x.clone()
    lo, hi = x.aminmax()
    if lo < 0 or hi > 1:
        raise ValueError(f"corruption {name!r} needs pixels in [0, 1] (before normalization), "
                         f"got values in [{lo.item():.3g}, {hi.item():.3g}]")
    work = x if x.dtype in _WORK_DTYPES else x.float()
    out = CORRUPTIONS.create(name, work, severity, generator)
    return out.clamp(0, 1).to(x.dtype)
