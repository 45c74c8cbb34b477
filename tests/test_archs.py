"""Architectures: every registered arch builds for digits-, MNIST- and CIFAR-shaped inputs,
normalizes inside the model, and exposes its residual blocks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.archs import ARCHS, Normalize, residual_blocks
from bench.registry import UnknownNameError

RESIDUAL = ["preact_resnet18", "resnet18", "resnet34", "resnet50", "wrn28_10", "wrn34_10"]
NON_RESIDUAL = ["small_cnn", "vgg16_bn", "densenet121"]
# Forward cost at 32 px is what makes these slow on CPU; one image is enough to check shapes.
HEAVY = {"wrn28_10", "wrn34_10", "resnet50", "densenet121"}


def build(name: str, channels: int, size: int, classes: int = 10, mean: float = 0.5) -> nn.Module:
    return ARCHS.create(name, num_classes=classes, in_channels=channels, image_size=size,
                        mean=(mean,) * channels, std=(0.25,) * channels).eval()


def forward(model: nn.Module, batch: int, channels: int, size: int) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0)))


def test_registry_lists_the_contract_names():
    expected = {"small_cnn", "preact_resnet18", "resnet18", "resnet34", "resnet50", "wrn28_10",
                "wrn34_10", "vgg16_bn", "mobilenetv2", "densenet121"}
    assert expected <= set(ARCHS.list())
    assert "timm:<name>" in ARCHS.allowed()
    assert all(ARCHS.describe(n) for n in ARCHS.list()), "perbench ls archs shows these docs"


@pytest.mark.parametrize("name", ARCHS.list())
def test_builds_for_one_channel_8px_digits(name):
    model = build(name, channels=1, size=8)
    assert isinstance(model[0], Normalize), "normalization is the model's first layer"
    assert forward(model, 2, 1, 8).shape == (2, 10)


@pytest.mark.parametrize("name", ARCHS.list())
def test_forward_shape_on_cifar_inputs(name):
    batch = 1 if name in HEAVY else 2
    assert forward(build(name, channels=3, size=32, classes=7), batch, 3, 32).shape == (batch, 7)


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "vgg16_bn", "mobilenetv2"])
def test_forward_shape_on_28px_fashion_mnist_inputs(name):
    assert forward(build(name, channels=1, size=28), 2, 1, 28).shape == (2, 10)


def test_small_cnn_is_small():
    params = sum(p.numel() for p in build("small_cnn", 1, 8).parameters())
    assert 50_000 <= params <= 150_000


def test_normalize_is_inside_the_model():
    torch.manual_seed(0)
    a = build("small_cnn", 1, 8, mean=0.2)
    torch.manual_seed(0)
    b = build("small_cnn", 1, 8, mean=0.7)
    assert not torch.allclose(forward(a, 2, 1, 8), forward(b, 2, 1, 8))
    assert "normalize.mean" in a.state_dict(), "mean/std travel with the checkpoint"


def test_normalize_maps_per_channel():
    norm = Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 0.125))
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)


def test_mean_must_match_in_channels():
    with pytest.raises(ValueError, match="in_channels=3"):
        ARCHS.create("small_cnn", num_classes=10, in_channels=3, image_size=32, mean=(0.5,), std=(0.2,))


@pytest.mark.parametrize("name", RESIDUAL)
def test_residual_archs_expose_blocks_with_conv1_conv2(name):
    blocks = residual_blocks(build(name, 1, 8))
    assert blocks
    for block in blocks:
        assert isinstance(block.conv1, nn.Conv2d) and isinstance(block.conv2, nn.Conv2d)
    if name == "resnet50":
        assert all(isinstance(b.conv3, nn.Conv2d) for b in blocks)


@pytest.mark.parametrize("name", NON_RESIDUAL)
def test_non_residual_archs_have_no_blocks(name):
    assert residual_blocks(build(name, 1, 8)) == []


def test_block_counts_follow_depth():
    assert len(residual_blocks(build("resnet18", 1, 8))) == 8
    assert len(residual_blocks(build("wrn34_10", 1, 8))) == 15  # (34 - 4) / 6 = 5 per stage


def test_masking_conv2_inputs_changes_the_output():
    """The EWS hook point: zeroing the inner channels of one block changes the prediction."""
    model = build("preact_resnet18", 1, 8)
    before = forward(model, 2, 1, 8)
    block = residual_blocks(model)[0]
    mask = torch.zeros(1, block.conv2.in_channels, 1, 1)
    handle = block.conv2.register_forward_pre_hook(lambda _m, args: (args[0] * mask,))
    after = forward(model, 2, 1, 8)
    handle.remove()
    assert not torch.allclose(before, after)


def test_timm_prefix_builds_an_untrained_model_behind_normalize():
    model = build("timm:resnet18", channels=1, size=32, classes=5)
    assert isinstance(model[0], Normalize)
    assert forward(model, 2, 1, 32).shape == (2, 5)
    assert residual_blocks(model), "timm ResNet blocks share the conv1/conv2 layout"
    assert "timm:resnet18" in ARCHS and "timm:no_such_net" not in ARCHS


def test_unknown_names_list_what_is_allowed():
    with pytest.raises(UnknownNameError) as err:
        ARCHS.create("resnet999", num_classes=10, in_channels=1, image_size=8, mean=(0.5,), std=(0.2,))
    assert "small_cnn" in str(err.value) and "timm:<name>" in str(err.value)
    with pytest.raises(UnknownNameError, match="timm:resnet18"):
        ARCHS.get("timm:resnet188")
