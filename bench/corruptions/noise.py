"""Noise corruptions (Hendrycks & Dietterich, ICLR 2019, §3): Gaussian, shot and impulse.

Severity constants are those of the CIFAR-10-C generator (``make_cifar_c.py``). Noise is
drawn per pixel and per channel, so it needs no rescaling with image size.
"""
from __future__ import annotations

import torch

from bench.corruptions.base import CORRUPTIONS

GAUSSIAN_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_PHOTONS = (500, 250, 100, 75, 50)  # photons at full intensity: fewer is noisier
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # fraction of values replaced


@CORRUPTIONS.register(doc="Additive Gaussian noise (sensor noise in low light).")
def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + GAUSSIAN_STD[severity - 1] * noise


@CORRUPTIONS.register(doc="Poisson shot noise (photon counting).")
def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    photons = SHOT_PHOTONS[severity - 1]
    return torch.poisson(x * photons, generator=generator) / photons


@CORRUPTIONS.register(doc="Salt-and-pepper impulse noise (bit errors).")
def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    # skimage's random_noise(mode="s&p"): each value flips with probability `amount`,
    # to 1 or 0 with equal odds
    draws = torch.rand((2, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    flipped = draws[0] < IMPULSE_AMOUNT[severity - 1]
    return torch.where(flipped, (draws[1] < 0.5).to(x.dtype), x)
