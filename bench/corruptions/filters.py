"""Filtering and resampling on the pixel grid, with lengths given for 32-pixel images.

Hendrycks & Dietterich (ICLR 2019) tuned CIFAR-10-C's spatial constants (blur radii and
sigmas, motion lengths) for 32×32 images. An image whose shorter side is m pixels has
scale s = m / 32 here, and every such length is multiplied by s. Kernels are drawn on a
grid no coarser than the 32-pixel reference (spacing min(s, 1) image pixels) and splatted
bilinearly onto the image's pixels: at s = 1 this is the reference's point-sampled kernel,
and on an 8×8 image (s = 1/4) a sub-pixel blur stays a weak blur instead of rounding away
to the identity. Borders are edge-replicated throughout (the reference mixes OpenCV's
reflect-101, scipy's reflect and ImageMagick's edge; only border pixels differ).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REFERENCE_SIZE = 32


def image_scale(height: int, width: int) -> float:
    """s = shorter side / 32: the factor applied to the reference's pixel lengths."""
    return min(height, width) / REFERENCE_SIZE


def _splat_matrix(n: int, spacing: float) -> torch.Tensor:
    """(m, n) float64: n centred taps ``spacing`` pixels apart, spread bilinearly onto pixels."""
    pos = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    half = math.ceil(pos.abs().max().item())
    lo = pos.floor()
    frac = pos - lo
    # one spare row each side so lo + 1 never falls off; both stay zero (|pos| <= half)
    rows = lo.long() + half + 1
    out = torch.zeros(2 * half + 3, n, dtype=torch.float64)
    cols = torch.arange(n)
    out.index_put_((rows, cols), 1 - frac, accumulate=True)
    out.index_put_((rows + 1, cols), frac, accumulate=True)
    return out[1:-1]


def grid_density(scale: float) -> float:
    """Grid points per reference pixel: 1 on small images, s on large ones (one per pixel)."""
    return max(scale, 1.0)


def _gaussian_taps(sigma: float, radius: float, density: float) -> torch.Tensor:
    """Point-sampled Gaussian (sigma, radius in reference pixels) on a grid of ``density``."""
    reach = math.floor(radius * density + 0.5)  # scipy's int(truncate * sigma + 0.5)
    u = torch.arange(-reach, reach + 1, dtype=torch.float64) / density
    taps = torch.exp(-0.5 * (u / sigma) ** 2)
    return taps / taps.sum()


def gaussian_kernel(sigma: float, radius: float, scale: float) -> torch.Tensor:
    """1-D Gaussian (sigma, truncation radius in reference pixels) on an image of ``scale``."""
    density = grid_density(scale)
    taps = _gaussian_taps(sigma, radius, density)
    return _splat_matrix(len(taps), scale / density) @ taps


def disk_kernel(radius: float, alias_sigma: float, scale: float) -> torch.Tensor:
    """2-D defocus kernel: a disk smoothed by a 3-tap Gaussian, as in the reference's ``disk``."""
    density = grid_density(scale)
    reach = math.floor(radius * density)
    j = torch.arange(-reach, reach + 1, dtype=torch.float64)
    disk = ((j[:, None] ** 2 + j[None, :] ** 2) <= (radius * density) ** 2).double()
    disk /= disk.sum()
    # the reference anti-aliases with cv2.GaussianBlur(ksize=3): one reference pixel each side
    alias = _gaussian_taps(alias_sigma, 1.0, density)
    pad = len(alias) // 2
    smooth = F.conv2d(F.pad(disk, (pad,) * 4)[None, None], torch.outer(alias, alias)[None, None],
                      padding=pad)[0, 0]
    splat = _splat_matrix(smooth.shape[0], scale / density)
    return splat @ smooth @ splat.T


def _filter_matrix(kernel: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """(n, n) M such that M @ v is v correlated with the odd 1-D ``kernel``, edges replicated."""
    reach = len(kernel) // 2
    rows = torch.arange(n)[:, None].expand(n, len(kernel))
    sources = (rows + torch.arange(-reach, reach + 1)).clamp(0, n - 1)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows, sources), kernel.expand(n, -1), accumulate=True)
    return matrix.to(device=like.device, dtype=like.dtype)


def filter_separable(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` with the outer product of a 1-D ``kernel``.

    Two banded matrix products: on CPU several times faster than a one-channel ``conv2d``.
    """
    h, w = x.shape[-2:]
    return _filter_matrix(kernel, h, x) @ x @ _filter_matrix(kernel, w, x).T


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` with an odd-sized 2-D ``kernel`` (edge-replicated).

    The kernel is split by SVD into separable terms, each two matrix products; terms below
    float32 resolution (singular value < 1e-7 of the largest) are dropped. A defocus disk
    needs one to three terms.
    """
    h, w = x.shape[-2:]
    u, sing, vh = torch.linalg.svd(kernel)
    out = torch.zeros_like(x)
    for i in range(int((sing > 1e-7 * sing[0]).sum())):
        rows, cols = _filter_matrix(u[:, i], h, x), _filter_matrix(vh[i], w, x)
        out += float(sing[i]) * (rows @ x @ cols.T)
    return out


def pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) ``grid_sample`` coordinates (x, y) of the pixel centres (align_corners=False)."""
    ys = (torch.arange(height, device=like.device, dtype=like.dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=like.device, dtype=like.dtype) * 2 + 1) / width - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def sample(x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinear ``grid_sample`` of ``x`` at ``grid`` ([N,] H', W', 2), pixel-centre convention."""
    return F.grid_sample(x, grid.expand(x.shape[0], *grid.shape[-3:]), mode="bilinear",
                         padding_mode=padding_mode, align_corners=False)


def shift_sum(x: torch.Tensor, offsets: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Σ_t weights[t] · x(p + offsets[:, t]), read bilinearly, edge-replicated.

    ``offsets`` (N, T, 2) holds each image's own (x, y) shifts in pixels: a per-image kernel
    without building one (a long thin kernel has few taps but a large bounding box).
    """
    n, _, h, w = x.shape
    per_pixel = torch.tensor([2 / w, 2 / h], device=x.device, dtype=x.dtype)  # grid_sample units
    base = pixel_grid(h, w, x)
    out = torch.zeros_like(x)
    for t, weight in enumerate(weights):
        out += weight * sample(x, base + (offsets[:, t] * per_pixel).view(n, 1, 1, 2))
    return out


def directions(angles_deg: torch.Tensor) -> torch.Tensor:
    """(..., 2) unit (x, y) vectors; y points down the image, as in ImageMagick."""
    radians = angles_deg * (math.pi / 180)
    return torch.stack([radians.cos(), radians.sin()], dim=-1)


def motion_smear(x: torch.Tensor, angles_deg: torch.Tensor, radius: float, sigma: float,
                 scale: float) -> torch.Tensor:
    """ImageMagick's motion blur, one angle per image: out(p) = Σ_i w_i x(p + i·(cos a, sin a)).

    Taps i = 0 .. 2⌈radius⌉ reference pixels with w_i ∝ exp(-i²/2σ²) (MotionBlurImage);
    ImageMagick rounds each tap to a whole pixel, here taps are read bilinearly. Taps
    lighter than float32's resolution (2⁻²⁴ of the total) cannot change the result and are
    skipped.
    """
    density = grid_density(scale)
    u = torch.arange(math.floor(2 * math.ceil(radius) * density) + 1, dtype=torch.float64) / density
    weights = torch.exp(-0.5 * (u / sigma) ** 2)
    weights /= weights.sum()
    kept = weights >= 2.0 ** -24
    offsets = (u[kept] * scale).to(x)[None, :, None] * directions(angles_deg.to(x))[:, None, :]
    return shift_sum(x, offsets, weights[kept].tolist())


def zoom(x: torch.Tensor, factor: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Magnify ``x`` by ``factor`` about its centre, resampled to ``size`` (default: x's size)."""
    h, w = size or x.shape[-2:]
    return sample(x, pixel_grid(h, w, x) / factor)


def _box_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) weights of PIL's ``BOX`` resampling (``ImagingResample``).

    Output pixel i averages, with equal weights, the input pixels whose centres fall in its
    footprint, (i + ½)·ratio ± ½·max(ratio, 1): a plain average over whole pixels when
    shrinking and the nearest pixel when enlarging.
    """
    ratio = n_in / n_out
    reach = 0.5 * max(ratio, 1.0)
    centre = (torch.arange(n_out, dtype=torch.float64)[:, None] + 0.5) * ratio
    j = torch.arange(n_in, dtype=torch.float64)[None, :]
    offset = j + 0.5 - centre
    # PIL's box is open on the left and closed on the right; its window cut [lo, hi) too
    inside = (offset > -reach) & (offset <= reach)
    inside &= (j >= (centre - reach + 0.5).floor()) & (j < (centre + reach + 0.5).floor())
    weights = inside.double()
    return (weights / weights.sum(1, keepdim=True)).to(device=like.device, dtype=like.dtype)


def box_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` resized to (height, width) as PIL's ``Image.resize(..., BOX)`` does, in floats."""
    rows = _box_matrix(x.shape[-2], height, x)
    cols = _box_matrix(x.shape[-1], width, x)
    return rows @ x @ cols.T
