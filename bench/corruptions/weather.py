"""Weather corruptions (Hendrycks & Dietterich, ICLR 2019, §3): snow, frost, fog, brightness.

Severity constants are those of the CIFAR-10-C generator (``make_cifar_c.py``). Snow, frost
and fog add a layer that is rendered at no less than the 32-pixel reference resolution and
box-filtered down to smaller images, so flakes, crystals and fog patches cover the same
fraction of an 8×8 image as of a 32×32 one. Frost deviates most: the reference blends crops
of six frost photographs, which are not shipped here; ``frost_texture`` approximates them
procedurally (smooth plasma noise plus thin bright crystal streaks).
"""
from __future__ import annotations

import math

import torch

from bench.corruptions.base import CORRUPTIONS
from bench.corruptions.filters import (
    REFERENCE_SIZE,
    box_resize,
    directions,
    grid_density,
    image_scale,
    motion_smear,
    shift_sum,
    zoom,
)

# snow: layer mean, std, zoom, threshold, motion radius, motion sigma, weight of the image
SNOW = ((0.1, 0.2, 1.0, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1.0, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))
SNOW_ANGLE_DEG = (-135.0, -45.0)  # streaks fall roughly downwards
FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # image, frost weights
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))  # fog weight, wibble decay
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY

# procedural frost (our stand-in for the photographs; tuned by eye, not from the reference)
FROST_DECAY = 2.0  # rougher plasma than fog's: patchy rime
FROST_SEED_DENSITY = 0.04  # crystal seeds per reference pixel
FROST_NEEDLE = 3.0  # crystal arm length, reference pixels
FROST_TINT = (0.82, 0.91, 1.0)  # pale blue ice; grey images take the untinted texture


def _render_shape(height: int, width: int) -> tuple[int, int]:
    """The layer's resolution: the image's, enlarged so its shorter side is at least 32."""
    grow = max(1.0, REFERENCE_SIZE / min(height, width))
    return round(height * grow), round(width * grow)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey level; a grey image is its own luminance."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def plasma_fractal(n: int, size: int, wibble_decay: float, generator: torch.Generator,
                   like: torch.Tensor) -> torch.Tensor:
    """(n, 1, size, size) diamond-square height maps in [0, 1]; ``size`` a power of two.

    The reference's plasma (after FLHerne/mapgen), batched: the map wraps around, and the
    random offset at each level is ``wibble * U(-wibble, wibble)`` with ``wibble`` starting
    at 100 and divided by ``wibble_decay`` per level, so a larger decay gives a smoother map.
    """
    heights = torch.zeros(n, size, size, device=like.device, dtype=like.dtype)
    step, wibble = size, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        jitter = torch.rand(total.shape, generator=generator, device=like.device, dtype=like.dtype)
        return total / 4 + wibble * wibble * (2 * jitter - 1)

    while step >= 2:
        half = step // 2
        corners = heights[:, ::step, ::step]
        square = corners + corners.roll(-1, 1)
        heights[:, half::step, half::step] = wibbled_mean(square + square.roll(-1, 2))
        centres, corners = heights[:, half::step, half::step], heights[:, ::step, ::step]
        heights[:, ::step, half::step] = wibbled_mean(
            centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        heights[:, half::step, ::step] = wibbled_mean(
            centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step, wibble = half, wibble / wibble_decay
    heights -= heights.amin((1, 2), keepdim=True)
    return (heights / heights.amax((1, 2), keepdim=True)).unsqueeze(1)


def _plasma_layer(n: int, shape: tuple[int, int], wibble_decay: float,
                  generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """A plasma map cropped to ``shape``, as the reference crops its 32×32 map to the image."""
    size = 2 ** math.ceil(math.log2(max(shape)))
    return plasma_fractal(n, size, wibble_decay, generator, like)[..., :shape[0], :shape[1]]


def _uniform(n: int, low: float, high: float, generator: torch.Generator,
             like: torch.Tensor) -> torch.Tensor:
    draw = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
    return low + (high - low) * draw


@CORRUPTIONS.register(doc="Snow: bright motion-streaked flakes over a whitened image.")
def snow(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    mean, std, magnify, threshold, radius, sigma, keep = SNOW[severity - 1]
    n, _, h, w = x.shape
    shape = _render_shape(h, w)
    # flakes start as one noise value per reference pixel, then are magnified and thresholded
    grain = round(h / image_scale(h, w)), round(w / image_scale(h, w))
    flakes = mean + std * torch.randn((n, 1, *grain), generator=generator, device=x.device,
                                      dtype=x.dtype)
    flakes = zoom(flakes, magnify, size=shape)
    flakes = torch.where(flakes < threshold, 0, flakes).clamp(0, 1)
    angles = _uniform(n, *SNOW_ANGLE_DEG, generator, x)
    flakes = motion_smear(flakes, angles, radius, sigma, image_scale(*shape))
    # the reference adds the layer to its half-turn, so streaks run both ways
    flakes = box_resize(flakes + flakes.flip(-2, -1), h, w)
    whitened = torch.maximum(x, luminance(x) * 1.5 + 0.5)
    return keep * x + (1 - keep) * whitened + flakes


def frost_texture(n: int, channels: int, height: int, width: int, generator: torch.Generator,
                  like: torch.Tensor) -> torch.Tensor:
    """(n, channels, height, width) procedural frost in [0, 1].

    Approximates the reference's frost photographs (which we do not ship): a rough plasma
    map for uneven rime plus star-shaped crystals: random seeds drawn out along six arms 60°
    apart, at a random orientation per image. Its look is matched by eye only.
    """
    shape = _render_shape(height, width)
    scale = image_scale(*shape)
    rime = _plasma_layer(n, shape, FROST_DECAY, generator, like)
    draws = torch.rand((2, n, 1, *shape), generator=generator, device=like.device, dtype=like.dtype)
    seeds = (draws[0] < FROST_SEED_DENSITY).to(like.dtype) * (0.5 + 0.5 * draws[1])
    # three lines through each seed: six arms 60° apart, one random orientation per image
    first_arm = _uniform(n, 0.0, 60.0, generator, like)[:, None]
    arms = first_arm + 60.0 * torch.arange(6, device=like.device)
    density = grid_density(scale)
    along = torch.arange(1, round(FROST_NEEDLE * density) + 1, device=like.device,
                         dtype=like.dtype) / density
    offsets = (directions(arms)[:, :, None, :] * (along * scale)[:, None]).reshape(n, -1, 2)
    offsets = torch.cat([torch.zeros_like(offsets[:, :1]), offsets], dim=1)
    # the seed itself, then each arm's taps fading outwards so that crystals taper
    weights = [1.0] + (1 - along / (FROST_NEEDLE + 1)).tolist() * 6
    needles = shift_sum(seeds, offsets, weights)
    needles = needles / needles.amax((2, 3), keepdim=True).clamp_min(1e-6)
    # a dim base, rime shading and bright needles: mean ≈ 0.47, which looked like the crops
    texture = box_resize((0.2 + 0.45 * rime + 0.8 * needles).clamp(0, 1), height, width)
    if channels == 1:
        return texture
    tint = torch.tensor(FROST_TINT, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)
    return texture * tint


@CORRUPTIONS.register(doc="Frost: a procedural ice-crystal texture blended over the image.")
def frost(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    keep, amount = FROST[severity - 1]
    n, c, h, w = x.shape
    return keep * x + amount * frost_texture(n, c, h, w, generator, x)


@CORRUPTIONS.register(doc="Fog: a plasma-fractal haze that also lowers contrast.")
def fog(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    amount, wibble_decay = FOG[severity - 1]
    n, _, h, w = x.shape
    haze = box_resize(_plasma_layer(n, _render_shape(h, w), wibble_decay, generator, x), h, w)
    brightest = x.amax((1, 2, 3), keepdim=True)
    return (x + amount * haze) * brightest / (brightest + amount)


@CORRUPTIONS.register(doc="Brightness: the HSV value raised, hue and saturation kept.")
def brightness(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    # With hue and saturation fixed, RGB is proportional to V = max(R, G, B), so raising V
    # scales the pixel; a black pixel (V = 0, no hue) becomes grey. Grey images: x + c.
    value = x.amax(1, keepdim=True)
    raised = (value + BRIGHTNESS[severity - 1]).clamp(max=1)
    return torch.where(value > 0, x * (raised / value.clamp_min(1e-12)), raised)
