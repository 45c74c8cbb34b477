"""Digital corruptions (Hendrycks & Dietterich, ICLR 2019, §3): contrast, elastic, pixelate, JPEG.

Severity constants are those of the CIFAR-10-C generator (``make_cifar_c.py``). Elastic
transform and pixelate are defined as fractions of the image, so they carry over to any
size; JPEG works on 8×8 pixel blocks at every size, as the codec does, through the torch
approximation in ``bench.corruptions.jpeg``. Elastic transform keeps the reference's random
affine warp (at severity 1 it is the whole corruption) and composes it with the smooth
displacement in a single ``grid_sample``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.corruptions.base import CORRUPTIONS
from bench.corruptions.filters import (
    REFERENCE_SIZE,
    box_resize,
    filter_separable,
    gaussian_kernel,
    image_scale,
    pixel_grid,
    sample,
)
from bench.corruptions.jpeg import jpeg_compress

CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # remaining fraction of each channel's deviation
# elastic: displacement amplitude, field smoothness sigma, affine corner jitter; fractions of
# the image side (the reference writes IMSIZE * fraction with IMSIZE = 32)
ELASTIC = ((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
           (0.1, 0.03, 0.03))
ELASTIC_TRUNCATE = 3.0  # the reference smooths with gaussian(..., truncate=3)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # side of the coarse image, as a fraction
JPEG_QUALITY = (80, 65, 58, 50, 40)


@CORRUPTIONS.register(doc="Contrast: each channel pulled towards its mean.")
def contrast(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) * CONTRAST[severity - 1] + mean


def _affine_inverse(n: int, jitter: float, generator: torch.Generator,
                    like: torch.Tensor) -> torch.Tensor:
    """(n, 3, 2): [x, y, 1] @ it maps output to source coordinates of the random affine warp.

    Three points a third of the image from the centre move by U(-jitter, jitter) each; the
    warp carries the old points to the new, so sampling needs its inverse (new to old).
    """
    # the reference's square_size, 32 // 3 pixels, in grid_sample units (the side is 2)
    reach = 2 * (REFERENCE_SIZE // 3) / REFERENCE_SIZE
    anchors = torch.tensor([[reach, reach], [reach, -reach], [-reach, -reach]],
                           device=like.device, dtype=like.dtype)
    moves = torch.rand((n, 3, 2), generator=generator, device=like.device, dtype=like.dtype)
    moved = anchors + (2 * moves - 1) * (2 * jitter)  # a fraction f of the side is 2f here
    ones = torch.ones(n, 3, 1, device=like.device, dtype=like.dtype)
    return torch.linalg.solve(torch.cat([moved, ones], dim=2), anchors.expand(n, 3, 2))


def _displacement(n: int, height: int, width: int, amplitude: float, sigma: float,
                  generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """(n, H, W, 2) smooth random field in grid_sample units, drawn on the 32-pixel grid."""
    grid = round(height / image_scale(height, width)), round(width / image_scale(height, width))
    noise = torch.rand((n, 2, *grid), generator=generator, device=like.device, dtype=like.dtype)
    sigma_ref = sigma * REFERENCE_SIZE  # in pixels of the 32-pixel grid the noise is drawn on
    kernel = gaussian_kernel(sigma_ref, ELASTIC_TRUNCATE * sigma_ref, 1.0)
    smooth = filter_separable(2 * noise - 1, kernel)
    field = F.interpolate(smooth * (2 * amplitude), size=(height, width), mode="bilinear",
                          align_corners=False)
    return field.permute(0, 2, 3, 1)


@CORRUPTIONS.register(doc="Elastic transform: a random affine warp and a smooth displacement.")
def elastic_transform(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    amplitude, sigma, jitter = ELASTIC[severity - 1]
    n, _, h, w = x.shape
    inverse = _affine_inverse(n, jitter, generator, x)
    where = pixel_grid(h, w, x).expand(n, h, w, 2)
    if amplitude > 0:  # severity 1 has no displacement field, only the affine warp
        where = where + _displacement(n, h, w, amplitude, sigma, generator, x)
    # the reference warps first, then displaces: out(p) = image(affine⁻¹(p + d(p)))
    source = torch.cat([where, torch.ones_like(where[..., :1])], dim=-1) @ inverse.unsqueeze(1)
    return sample(x, source, padding_mode="reflection")


@CORRUPTIONS.register(doc="Pixelate: box-filtered to a coarser grid, enlarged back by nearest.")
def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    fraction = PIXELATE[severity - 1]
    # PIL's BOX both ways, as the reference: an area average down, nearest neighbours back up
    coarse = box_resize(x, max(1, int(h * fraction)), max(1, int(w * fraction)))
    return box_resize(coarse, h, w)


@CORRUPTIONS.register(doc="JPEG compression at the reference's quality for each severity.")
def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    return jpeg_compress(x, JPEG_QUALITY[severity - 1])
