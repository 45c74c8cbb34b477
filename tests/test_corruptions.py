"""Corruptions: contract (shape, range, seeding), strength orderings, reference fidelity, loader.

Strength is the mean absolute difference (MAD) to the clean batch, measured on sklearn's
digits resized to each test size (a natural, non-synthetic image). A monotone MAD is asserted
only where the corruption guarantees it or where it is deterministic and holds on this fixed
image; the rest get weaker properties that follow from their construction. Fidelity to the
reference generator is checked where its library is at hand (PIL for JPEG and pixelate,
colorsys for brightness).
"""
from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits

from bench.corruptions import (
    CORRUPTION_NAMES,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    corrupt,
    load_cifar_c,
)
from bench.corruptions.jpeg import LUMINANCE_TABLE, jpeg_compress, quantization_table
from bench.corruptions.weather import luminance

SEVERITIES = (1, 2, 3, 4, 5)
SHAPES = {"rgb32": (3, 32, 32), "grey28": (1, 28, 28), "grey8": (1, 8, 8)}
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression"}
RANDOM = set(CORRUPTION_NAMES) - DETERMINISTIC
# MAD rises with severity: guaranteed for noise (larger spread, same draws), contrast and
# brightness (pixelwise); for these blurs (same seed, so the same motion angle) it holds on
# the fixed images below, which a change of kernel or scaling would upset
MONOTONE = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur",
            "zoom_blur", "brightness", "contrast")
# convex resamplings: every output value is a weighted mean of input values
RESAMPLING = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "elastic_transform",
              "pixelate")


def digits(shape: tuple[int, int, int], n: int = 4) -> torch.Tensor:
    """n digits in [0, 1] resized to (C, H, W); colour images get a different tint per channel."""
    c, h, w = shape
    x = torch.tensor(load_digits().images[:n], dtype=torch.float32).unsqueeze(1) / 16
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    return torch.cat([x, 0.5 * x + 0.2, 1 - 0.7 * x], 1) if c == 3 else x


@pytest.fixture(scope="module")
def outputs():
    """{(shape, name, severity): (clean, seed 0, seed 0 again, seed 1)} for every pair."""
    table = {}
    for key, shape in SHAPES.items():
        x = digits(shape)
        for name in CORRUPTION_NAMES:
            for s in SEVERITIES:
                runs = [corrupt(x, name, s, torch.Generator().manual_seed(seed))
                        for seed in (0, 0, 1)]
                table[key, name, s] = (x, *runs)
    return table


def mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().mean().item()


# --- registry --------------------------------------------------------------------------------

def test_registry_names_the_fifteen_in_benchmark_order():
    assert CORRUPTION_NAMES == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
        "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
        "elastic_transform", "pixelate", "jpeg_compression")
    assert CORRUPTIONS.list() == sorted(CORRUPTION_NAMES)
    for name in CORRUPTION_NAMES:
        doc = CORRUPTIONS.describe(name)
        assert doc and "\n" not in doc, name


@pytest.mark.parametrize("name", ["fog2", "Gaussian Noise", "speckle_noise", None])
def test_unknown_corruption_names_the_allowed_ones(name):
    with pytest.raises(ValueError, match=r"unknown corruption .*allowed: gaussian_noise, shot_"):
        corrupt(torch.rand(1, 3, 8, 8), name, 1, torch.Generator())


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, True, "3"])
def test_severity_outside_one_to_five_is_refused(severity):
    with pytest.raises(ValueError, match="severity must be one of 1, 2, 3, 4, 5"):
        corrupt(torch.rand(1, 3, 8, 8), "fog", severity, torch.Generator())


@pytest.mark.parametrize("x, message", [
    (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), r"float tensor .* got torch\.uint8"),
    (torch.rand(1, 2, 8, 8), r"C = 1 or 3, got torch\.float32 \(1, 2, 8, 8\)"),
    (torch.rand(3, 8, 8), r"got torch\.float32 \(3, 8, 8\)"),
    (np.zeros((1, 3, 8, 8)), "needs a torch.Tensor, got ndarray"),
    (torch.rand(1, 3, 8, 8) * 2 - 0.5, r"pixels in \[0, 1\]"),
])
def test_bad_batches_are_refused(x, message):
    with pytest.raises(ValueError, match=message):
        corrupt(x, "contrast", 1, torch.Generator())


# --- the contract, for every corruption × severity × size ------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_contract(outputs, shape, name):
    for s in SEVERITIES:
        x, y, again, other_seed = outputs[shape, name, s]
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1
        assert torch.equal(y, again), f"{name} s{s}: same seed, different output"
        # every severity moves some pixel by more than one 8-bit level, on 8×8 digits too
        assert (y - x).abs().max() > 1 / 255, f"{name} s{s} on {shape} is (nearly) the identity"
        if name in RANDOM:
            assert (y - other_seed).abs().max() > 1e-3, f"{name} s{s} ignores the seed"
        else:
            assert torch.equal(y, other_seed), f"{name} s{s} should not depend on the seed"


def test_half_precision_and_float64_keep_their_dtype():
    x = digits((3, 32, 32), n=2)
    for dtype in (torch.bfloat16, torch.float64):
        y = corrupt(x.to(dtype), "motion_blur", 3, torch.Generator().manual_seed(0))
        assert y.dtype == dtype and y.shape == x.shape


def test_non_square_and_large_images():
    for shape in ((2, 3, 20, 36), (1, 1, 64, 64), (1, 3, 224, 224)):  # ImageNet-sized too
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        for name in CORRUPTION_NAMES:
            y = corrupt(x, name, 5, torch.Generator().manual_seed(0))
            assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1, name


# --- strength --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MONOTONE)
def test_strength_rises_with_severity(outputs, shape, name):
    strength = [mad(outputs[shape, name, s][1], outputs[shape, name, s][0]) for s in SEVERITIES]
    # motion blur's severities 3 and 4 share a sigma; only taps below float resolution differ
    assert all(b >= a - 1e-6 for a, b in zip(strength, strength[1:])), strength
    assert strength[-1] > 1.5 * strength[0], strength


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["snow", "frost", "fog", "pixelate", "jpeg_compression"])
def test_severity_five_is_stronger_than_one(outputs, shape, name):
    # not monotone in between: e.g. frost's image weight drops while its frost weight levels off
    strength = [mad(outputs[shape, name, s][1], outputs[shape, name, s][0]) for s in SEVERITIES]
    assert strength[-1] > 1.2 * strength[0], strength


@pytest.mark.parametrize("shape", SHAPES)
def test_glass_blur_two_scrambles_beat_one(outputs, shape):
    strength = [mad(outputs[shape, "glass_blur", s][1], outputs[shape, "glass_blur", s][0])
                for s in SEVERITIES]
    assert min(strength[3:]) > max(strength[:3]), strength


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", RESAMPLING)
def test_resampling_corruptions_stay_within_the_input_range(outputs, shape, name):
    for s in SEVERITIES:
        x, y = outputs[shape, name, s][:2]
        assert (y.amin((2, 3)) >= x.amin((2, 3)) - 1e-5).all(), (name, s)
        assert (y.amax((2, 3)) <= x.amax((2, 3)) + 1e-5).all(), (name, s)


@pytest.mark.parametrize("shape", SHAPES)
def test_snow_only_brightens(outputs, shape):
    for s in SEVERITIES:
        x, y = outputs[shape, "snow", s][:2]
        assert (y >= x - 1e-6).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_pixelate_output_is_made_of_coarse_blocks(outputs, shape):
    c, h, w = SHAPES[shape]
    for s, fraction in zip(SEVERITIES, (0.95, 0.9, 0.85, 0.75, 0.65)):
        y = outputs[shape, "pixelate", s][1]
        coarse = int(h * fraction) * int(w * fraction)
        for image in y.flatten(2).unbind(0):
            assert all(len(channel.unique()) <= coarse for channel in image)


def test_contrast_and_brightness_keep_the_mean_and_the_hue():
    x = digits((3, 32, 32))
    y = corrupt(x, "contrast", 5, torch.Generator())
    assert torch.allclose(y.mean((2, 3)), x.mean((2, 3)), atol=1e-6)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3).double()[::7]
    bright = corrupt(x, "brightness", 3, torch.Generator()).permute(0, 2, 3, 1).reshape(-1, 3)[::7]
    for rgb, out in zip(pixels.tolist(), bright.tolist()):
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        assert out == pytest.approx(colorsys.hsv_to_rgb(h, s, min(v + 0.15, 1)), abs=1e-5)


def test_grey_brightness_adds_the_constant():
    x = digits((1, 8, 8))
    assert torch.allclose(corrupt(x, "brightness", 5, torch.Generator()), (x + 0.3).clamp(max=1))


# --- JPEG ------------------------------------------------------------------------------------

def block_variance(x: torch.Tensor) -> float:
    """Mean variance inside the 8×8 blocks (their AC energy), which coarse quantization removes."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 8, 8, w // 8, 8).var((3, 5)).mean().item()


def blockiness(x: torch.Tensor) -> float:
    """Mean step between horizontal neighbours across block edges over the step inside blocks."""
    steps = (x[..., 1:] - x[..., :-1]).abs()
    across = torch.zeros(steps.shape[-1], dtype=torch.bool)
    across[7::8] = True
    return (steps[..., across].mean() / steps[..., ~across].mean()).item()


def pil_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """``x`` through PIL's JPEG encoder and decoder (the reference's jpeg_compression)."""
    out = []
    for image in (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).squeeze(-1).numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer)))
    decoded = torch.tensor(np.stack(out), dtype=torch.float32) / 255
    return decoded[:, None] if decoded.dim() == 3 else decoded.permute(0, 3, 1, 2)


def test_quantization_tables_follow_the_ijg_quality_rule():
    base = torch.tensor(LUMINANCE_TABLE, dtype=torch.float64)
    assert torch.equal(quantization_table(LUMINANCE_TABLE, 50), base)
    assert torch.equal(quantization_table(LUMINANCE_TABLE, 100), torch.ones(8, 8).double())
    assert quantization_table(LUMINANCE_TABLE, 1).max() == 255


def test_jpeg_at_quality_100_is_nearly_lossless():
    grey, rgb = digits((1, 32, 32)), digits((3, 32, 32))
    assert mad(jpeg_compress(grey, 100), grey) < 1 / 255
    # colour keeps 4:2:0 chroma subsampling (as PIL does), so only its luminance is near exact
    coded = jpeg_compress(rgb, 100)
    assert mad(luminance(coded), luminance(rgb)) < 1 / 255
    assert mad(coded, rgb) < 0.02


def test_low_quality_jpeg_is_blocky():
    texture = 0.25 + 0.5 * torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert block_variance(jpeg_compress(texture, 10)) < 0.5 * block_variance(texture)
    grain = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    x = (digits((1, 32, 32)) + 0.1 * grain).clamp(0, 1)
    assert blockiness(x) < 1.1  # block edges are nothing special in the clean image
    assert blockiness(jpeg_compress(x, 10)) > 1.5
    by_severity = [blockiness(corrupt(x, "jpeg_compression", s, torch.Generator()))
                   for s in SEVERITIES]
    assert min(by_severity) > blockiness(x) and by_severity[-1] > by_severity[0], by_severity


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("quality", [80, 40, 10])
def test_jpeg_matches_pil(shape, quality):
    x = (digits(shape, n=8) * 255).round() / 255
    ours = (jpeg_compress(x, quality).clamp(0, 1) * 255).round() / 255  # PIL decodes to 8 bits
    pil = pil_jpeg(x, quality)
    # far closer to PIL than either is to the input (grey ≤ 0.08, colour ≤ 0.22 of it)
    assert mad(ours, pil) < 0.25 * mad(pil, x)


def test_pixelate_matches_pil_box_resizing():
    x = (digits((3, 32, 32)) * 255).round() / 255
    y = corrupt(x, "pixelate", 5, torch.Generator())
    for image, out in zip(x, y):
        pil = Image.fromarray((image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
        pil = pil.resize((20, 20), Image.BOX).resize((32, 32), Image.BOX)
        assert (out.permute(1, 2, 0) * 255 - torch.tensor(np.asarray(pil))).abs().max() <= 1 + 1e-4


# --- the released files ----------------------------------------------------------------------

def write_release(root, per_severity: int = 4, name: str = "fog") -> np.ndarray:
    """A tiny CIFAR-C folder: severity s, image i is filled with 40*s + i (channel c adds c)."""
    images = np.zeros((5 * per_severity, 32, 32, 3), dtype=np.uint8)
    for s in range(5):
        for i in range(per_severity):
            images[s * per_severity + i] = 40 * (s + 1) + i + np.arange(3)
    np.save(root / f"{name}.npy", images)
    labels = np.tile(np.arange(per_severity) % 10, 5).astype(np.uint8)
    np.save(root / "labels.npy", labels)
    return images


@pytest.mark.parametrize("severity", SEVERITIES)
def test_load_cifar_c_slices_one_severity(tmp_path, severity):
    write_release(tmp_path)
    x, y = load_cifar_c(tmp_path, "fog", severity)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 3]
    expected = (40 * severity + torch.arange(4)[:, None] + torch.arange(3)[None, :]) / 255
    assert torch.allclose(x[:, :, 5, 7], expected.float())
    first = load_cifar_c(str(tmp_path), "fog", severity, n=2)
    assert torch.equal(first[0], x[:2]) and torch.equal(first[1], y[:2])


def test_load_cifar_c_accepts_the_extra_corruptions(tmp_path):
    write_release(tmp_path, name=EXTRA_CORRUPTIONS[0])
    assert load_cifar_c(tmp_path, EXTRA_CORRUPTIONS[0], 1)[0].shape == (4, 3, 32, 32)


def test_load_cifar_c_errors_name_the_path_and_what_is_allowed(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-C folder not found: .*nowhere"):
        load_cifar_c(tmp_path / "nowhere", "fog", 1)
    with pytest.raises(FileNotFoundError, match=r"CIFAR-C file not found: .*fog\.npy"):
        load_cifar_c(tmp_path, "fog", 1)
    write_release(tmp_path)
    with pytest.raises(ValueError, match="unknown corruption 'haze'; allowed: .*saturate"):
        load_cifar_c(tmp_path, "haze", 1)
    with pytest.raises(ValueError, match="severity must be one of 1, 2, 3, 4, 5, got 6"):
        load_cifar_c(tmp_path, "fog", 6)
    with pytest.raises(ValueError, match=r"n must be between 0 and 4 .*fog\.npy.*got 5"):
        load_cifar_c(tmp_path, "fog", 1, n=5)
    np.save(tmp_path / "snow.npy", np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"snow\.npy: expected uint8 images \(N, 32, 32, 3\)"):
        load_cifar_c(tmp_path, "snow", 1)
    np.save(tmp_path / "frost.npy", np.zeros((21, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels\.npy: expected one integer label per .*\(21\)"):
        load_cifar_c(tmp_path, "frost", 1)
    np.save(tmp_path / "labels.npy", np.zeros(21, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"frost\.npy: expected 5 equal blocks"):
        load_cifar_c(tmp_path, "frost", 1)
    (tmp_path / "contrast.npy").write_text("not an array")
    with pytest.raises(ValueError, match=r"contrast\.npy is not a \.npy array file"):
        load_cifar_c(tmp_path, "contrast", 1)


# --- CUDA ------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_stay_on_the_device_and_are_seeded():
    x = digits((3, 32, 32)).cuda()
    for name in CORRUPTION_NAMES:
        y = corrupt(x, name, 3, torch.Generator(device="cuda").manual_seed(0))
        again = corrupt(x, name, 3, torch.Generator(device="cuda").manual_seed(0))
        assert y.device == x.device and torch.equal(y, again), name
        if name in DETERMINISTIC:
            on_cpu = corrupt(x.cpu(), name, 3, torch.Generator().manual_seed(0))
            assert torch.allclose(y.cpu(), on_cpu, atol=1e-4), name
