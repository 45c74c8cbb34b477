"""A batched torch approximation of baseline JPEG at a given quality (for ``jpeg_compression``).

Follows what PIL's encoder (libjpeg) does with ``quality=q``: JFIF YCbCr, 4:2:0 chroma
subsampling, 8×8 block DCT, quantization with the ITU T.81 Annex K tables scaled by the
IJG quality rule, then decoding with triangle ("fancy") chroma upsampling, which equals
bilinear upsampling by two. It deviates from a real codec in keeping the DCT in floating
point and the decoded pixels unrounded; entropy coding is lossless and is skipped.
Grey images are coded as a single luminance plane, as PIL codes mode ``L``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BLOCK = 8
LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMINANCE_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
# JFIF full-range RGB -> YCbCr (rows Y, Cb, Cr), offsets added to Cb and Cr
RGB_TO_YCBCR = ((0.299, 0.587, 0.114),
                (-0.168736, -0.331264, 0.5),
                (0.5, -0.418688, -0.081312))
CHROMA_OFFSET = 128.0


def quantization_table(base: tuple[tuple[int, ...], ...], quality: int) -> torch.Tensor:
    """libjpeg's ``jpeg_quality_scaling``: quality 50 is the table itself, 100 is all ones."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = (torch.tensor(base, dtype=torch.float64) * scale + 50).div(100).floor()
    return table.clamp(1, 255)


def _dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II: JPEG's FDCT is D · block · Dᵀ."""
    k = torch.arange(BLOCK, dtype=torch.float64)[:, None]
    i = torch.arange(BLOCK, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
    d[0] /= math.sqrt(2)
    return d


def _code_planes(planes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Encode and decode (N, C, H, W) planes of 0..255 samples through quantized DCT blocks."""
    n, c, h, w = planes.shape
    # the encoder pads partial blocks by repeating the last row and column
    padded = F.pad(planes, (0, -w % BLOCK, 0, -h % BLOCK), mode="replicate") - 128
    ph, pw = padded.shape[-2:]
    blocks = padded.view(n, c, ph // BLOCK, BLOCK, pw // BLOCK, BLOCK).transpose(3, 4)
    dct = _dct_matrix().to(device=planes.device, dtype=planes.dtype)
    q = table.to(device=planes.device, dtype=planes.dtype)
    coefficients = torch.round(dct @ blocks @ dct.T / q) * q
    decoded = (dct.T @ coefficients @ dct).transpose(3, 4).reshape(n, c, ph, pw) + 128
    return decoded[..., :h, :w].clamp(0, 255)


def jpeg_compress(x: torch.Tensor, quality: int) -> torch.Tensor:
    """``x`` (N, 1 or 3, H, W) in [0, 1] after a JPEG round trip at ``quality`` (1..100)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be between 1 and 100, got {quality}")
    luma_table = quantization_table(LUMINANCE_TABLE, quality)
    if x.shape[1] == 1:
        return _code_planes(x * 255, luma_table) / 255
    h, w = x.shape[-2:]
    to_ycbcr = torch.tensor(RGB_TO_YCBCR, device=x.device, dtype=x.dtype)
    ycbcr = torch.einsum("kc,nchw->nkhw", to_ycbcr, x * 255)
    luma = _code_planes(ycbcr[:, :1], luma_table)
    # 4:2:0: chroma is averaged over 2×2 pixels (odd sizes padded by repetition) before coding
    chroma = F.pad(ycbcr[:, 1:], (0, w % 2, 0, h % 2), mode="replicate")
    chroma = _code_planes(F.avg_pool2d(chroma, 2) + CHROMA_OFFSET,
                          quantization_table(CHROMINANCE_TABLE, quality)) - CHROMA_OFFSET
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    decoded = torch.cat([luma, chroma[..., :h, :w]], dim=1)
    return torch.einsum("ck,nkhw->nchw", torch.linalg.inv(to_ycbcr), decoded) / 255
