"""Parameter counts, inference FLOPs (torch vs fvcore) and the training FLOP meter."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.measures import (
    FlopMeter,
    count_nonzero_params,
    count_params,
    fvcore_flops,
    fvcore_flops_by_module,
    inference_flops,
)


def small_cnn() -> nn.Sequential:
    """conv(1→4, 3x3, pad 1) on 8x8, conv(4→8, 3x3, stride 2) to 4x4, linear 128→10."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


def bn_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def fvcore_extra(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """What fvcore charges beyond torch's counter, in 2-FLOPs-per-MAC units.

    Eval-mode affine batch norm: 2 MACs per element (scale, shift) = 4 FLOPs; adaptive
    average pooling: 1 MAC per input element = 2 FLOPs. torch counts neither.
    """
    extra = 0.0

    def bn_hook(_m, _inp, out):
        nonlocal extra
        extra += 4 * out.numel()

    def pool_hook(_m, inp, _out):
        nonlocal extra
        extra += 2 * inp[0].numel()

    hooks = [m.register_forward_hook(bn_hook) for m in model.modules()
             if isinstance(m, nn.BatchNorm2d)]
    hooks += [m.register_forward_hook(pool_hook) for m in model.modules()
              if isinstance(m, nn.AdaptiveAvgPool2d)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return extra


def test_count_params_by_hand():
    # conv 1→4 3x3: 4·9 + 4 = 40; BN(4): weight+bias 8 (running stats are buffers);
    # linear 4·6·6=144 → 3: 144·3 + 3 = 435.
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3))
    assert count_params(model) == 40 + 8 + 435
    assert count_nonzero_params(model) == 40 + 8 + 435 - 4  # BN bias starts at zero


def test_count_nonzero_after_zeroing():
    model = small_cnn()
    total = count_params(model)
    with torch.no_grad():
        model[0].weight[:2] = 0  # two whole filters: 2·1·3·3 = 18 weights
        model[5].bias.zero_()  # 10 biases
    assert count_params(model) == total
    assert count_nonzero_params(model) == total - 18 - 10


def test_linear_flops_exclude_bias():
    # 2 FLOPs per multiply-add; the 5 bias adds are not counted (torch's convention).
    assert inference_flops(nn.Linear(10, 5), (10,)) == 2 * 10 * 5
    assert fvcore_flops(nn.Linear(10, 5), (10,)) == 2 * 10 * 5


def test_conv_net_flops_match_hand_formula():
    # conv: 2 · C_in · k² · C_out · H_out · W_out
    conv1 = 2 * 1 * 9 * 4 * 8 * 8
    conv2 = 2 * 4 * 9 * 8 * 4 * 4
    linear = 2 * 128 * 10
    assert inference_flops(small_cnn(), (1, 8, 8)) == conv1 + conv2 + linear


def test_inference_flops_per_image_and_mode_restored():
    model = bn_cnn().train()
    flops = inference_flops(model, (3, 8, 8))
    assert model.training  # the caller's mode survives
    with torch.no_grad(), FlopMeter() as meter:
        model.eval()(torch.zeros(4, 3, 8, 8))
    assert meter.total == 4 * flops


def test_fvcore_agrees_on_small_cnn():
    model, shape = bn_cnn(), (3, 8, 8)
    torch_flops, fv = inference_flops(model, shape), fvcore_flops(model, shape)
    # Conv and linear agree exactly; fvcore adds BN and pooling (~11% on this tiny net,
    # whose convs are small next to its normalisation).
    assert fv == torch_flops + fvcore_extra(model, shape)
    assert fv == pytest.approx(torch_flops, rel=0.15)


def test_fvcore_agrees_on_resnet18_32px():
    torchvision = pytest.importorskip("torchvision")
    model, shape = torchvision.models.resnet18(num_classes=10), (3, 32, 32)
    torch_flops, fv = inference_flops(model, shape), fvcore_flops(model, shape)
    assert torch_flops == 74_033_152  # conv 74,022,912 + fc 10,240
    assert fv == torch_flops + fvcore_extra(model, shape)  # BN 202,752 + avgpool 1,024
    assert fv == pytest.approx(torch_flops, rel=0.01)


def test_fvcore_by_module_sums_to_total():
    model, shape = bn_cnn(), (3, 8, 8)
    by_module = fvcore_flops_by_module(model, shape)
    assert by_module[""] == fvcore_flops(model, shape)
    assert sum(by_module[str(i)] for i in range(len(model))) == by_module[""]
    assert by_module["0"] == 2 * 3 * 9 * 8 * 8 * 8


def test_meter_charges_each_forward():
    model, x = small_cnn(), torch.rand(2, 1, 8, 8)
    single = 2 * inference_flops(model, (1, 8, 8))  # batch of 2
    with torch.no_grad(), FlopMeter() as meter:
        model(x)
        assert meter.total == single  # readable while counting
        model(x)
    assert meter.total == 2 * single


def test_meter_training_step_close_to_three_forwards():
    model, x = small_cnn(), torch.rand(2, 1, 8, 8)
    forward = 2 * inference_flops(model, (1, 8, 8))
    first_conv = 2 * (2 * 1 * 9 * 4 * 8 * 8)
    with FlopMeter() as meter:
        model(x).sum().backward()
    # Backward costs ~2 forwards (input grads + weight grads), but the first conv's input
    # needs no grad, so its input-gradient pass is skipped: exactly 3F - F_conv1 here.
    assert meter.total == 3 * forward - first_conv
    assert 2.5 <= meter.total / forward <= 3.0


def test_meter_attack_step_via_delta_is_two_forwards():
    # The metered-attack idiom: gradient w.r.t. an added delta (a leaf input fed straight
    # into the model raises inside FlopCounterMode in torch 2.14.1). Weights need no
    # gradient, so the backward pass is input gradients only: ~1 forward.
    model, x = small_cnn(), torch.rand(2, 1, 8, 8)
    forward = 2 * inference_flops(model, (1, 8, 8))
    delta = torch.zeros_like(x, requires_grad=True)
    with FlopMeter() as meter:
        (grad,) = torch.autograd.grad(model(x + delta).sum(), delta)
    assert grad.shape == x.shape
    assert meter.total == 2 * forward


def test_meter_paused_excludes_work():
    model, x = small_cnn(), torch.rand(2, 1, 8, 8)
    single = 2 * inference_flops(model, (1, 8, 8))
    with torch.no_grad(), FlopMeter() as meter:
        model(x)
        with meter.paused():
            model(x)
            with meter.paused():  # nested pauses are harmless
                model(x)
            assert meter.total == single
        model(x)
    assert meter.total == 2 * single


def test_meter_disabled_and_not_reentrant():
    model, x = small_cnn(), torch.rand(2, 1, 8, 8)
    with torch.no_grad(), FlopMeter(enabled=False) as meter:
        model(x)
        with meter.paused():
            model(x)
    assert meter.total == 0
    meter = FlopMeter()
    with meter, pytest.raises(RuntimeError, match="already active"):
        with meter:
            pass


@pytest.mark.parametrize("arch", ["small_cnn", "preact_resnet18_w16", "resnet18", "mobilenetv2",
                                  "vgg16_bn", "densenet121", "wrn28_10"])
def test_meter_total_equals_flop_counter_mode(arch):
    """The meter's lean op counter applies torch's formulas without FlopCounterMode's module
    tracking and decompositions: the totals must still agree exactly, for a training step's
    forward and backward and for an attack's gradient w.r.t. an added delta."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.archs import ARCHS

    torch.manual_seed(0)
    model = ARCHS.create(arch, num_classes=10, in_channels=3, image_size=16,
                         mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([1, 2])

    def step() -> None:
        delta = torch.zeros_like(x, requires_grad=True)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x + delta), y), delta)
        nn.functional.cross_entropy(model(x + grad.sign() * 0.01), y).backward()

    with FlopCounterMode(display=False) as reference:
        step()
    with FlopMeter() as meter:
        step()
    assert reference.get_total_flops() > 0
    assert meter.total == reference.get_total_flops()
