"""The one gradient-ascent loop that every first-order attack here is a setting of.

FGSM, PGD, MI-FGSM, DI-FGSM, FFGSM and CW-Linf differ only in their start, loss, step
size, momentum and input transform; sharing the loop keeps the threat-model geometry
(step direction, projection, [0,1] box) in one place, used by training and evaluation
alike. Gradients are taken with respect to an added ``delta``, never the input itself:
FlopCounterMode raises on ``autograd.grad`` w.r.t. a leaf fed straight into a module.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["Linf", "L2"]
RandomStart = Literal["uniform", "normal"] | None
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def _per_point(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-point vector to broadcast over an image batch."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def distances(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-point distance in the threat model's norm."""
    d = (x_adv - x).flatten(1)
    return d.abs().amax(dim=1) if norm == "Linf" else d.norm(dim=1)


def project_(delta: torch.Tensor, x: torch.Tensor, norm: Norm, eps: float) -> torch.Tensor:
    """In place: into the eps-ball, then into the [0,1] box (which cannot leave the ball)."""
    if norm == "Linf":
        delta.clamp_(-eps, eps)
    else:
        delta.mul_(_per_point((eps / l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0), delta))
    return delta.add_(x).clamp_(0.0, 1.0).sub_(x)


def random_delta(x: torch.Tensor, norm: Norm, eps: float, kind: RandomStart,
                 generator: torch.Generator | None) -> torch.Tensor:
    """A starting perturbation, already projected; zeros when ``kind`` is None."""
    if kind is None:
        return torch.zeros_like(x)
    if kind == "normal":  # TRADES' start: x + 0.001 * N(0, 1)
        delta = 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    elif kind != "uniform":
        raise ValueError(f"random_start must be 'uniform', 'normal' or None, not {kind!r}")
    elif norm == "Linf":
        delta = (2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1) * eps
    else:  # uniform in the L2 ball: uniform direction, radius eps * U^(1/d)
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction /= _per_point(l2_norms(direction).clamp_min(1e-12), x)
        u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        delta = direction * _per_point(eps * u.pow(1.0 / x[0].numel()), x)
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    if nhwc and not x.is_contiguous():
        # Drawn in NCHW order (the seeded stream stays the same), laid out like x, so
        # x + delta stays NHWC for a channels_last model.
        delta = delta.contiguous(memory_format=torch.channels_last)
    return project_(delta, x, norm, eps)


def step_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest ascent direction of unit norm: sign for Linf, normalised gradient for L2."""
    if norm == "Linf":
        return grad.sign()
    return grad / _per_point(l2_norms(grad).clamp_min(1e-12), grad)


def input_diversity(x: torch.Tensor, generator: torch.Generator | None, *, resize_rate: float = 0.9,
                    prob: float = 0.5) -> torch.Tensor:
    """DI-FGSM (Xie et al. 2019): with probability ``prob``, shrink to a random size in
    [resize_rate*size, size) and pad back randomly, so the output keeps the input's shape."""
    device = x.device if generator is None else generator.device
    if torch.rand((), generator=generator, device=device).item() >= prob:
        return x
    h, w = x.shape[-2:]
    new_h = int(torch.randint(int(h * resize_rate), h, (1,), generator=generator, device=device))
    new_w = max(1, round(new_h * w / h))
    top = int(torch.randint(0, h - new_h + 1, (1,), generator=generator, device=device))
    left = int(torch.randint(0, w - new_w + 1, (1,), generator=generator, device=device))
    small = F.interpolate(x, size=(new_h, new_w), mode="nearest")
    return F.pad(small, (left, w - new_w - left, top, h - new_h - top))


@contextmanager
def _input_gradient_only(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring grad while the attack runs (training attacks run with
    them on). Eager autograd already skips weight gradients that ``autograd.grad`` w.r.t.
    delta does not ask for, but a torch.compile'd model's backward graph computes every
    gradient its inputs require: without this, each compiled attack step also paid for the
    weight gradients it throws away. Compile specialises on the flag, so the attack and
    the training step each get their own graph."""
    flags = [(p, p.requires_grad) for p in model.parameters() if p.requires_grad]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def ascend(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: Norm, eps: float,
           alpha: float, steps: int, random_start: RandomStart, loss_fn: LossFn,
           generator: torch.Generator | None = None, momentum: float = 0.0,
           transform: Transform | None = None, stop_when_fooled: bool = False) -> torch.Tensor:
    """``steps`` ascent steps of size ``alpha`` on ``loss_fn`` within the eps-ball; returns x_adv.

    ``stop_when_fooled`` (evaluation): a point misclassified at any iterate keeps that iterate
    and leaves the batch, so later steps cost less. It reads the logits already computed for
    the gradient, so it needs ``transform`` to be None (transformed logits are not x_adv's).
    """
    if stop_when_fooled and transform is not None:
        raise ValueError("stop_when_fooled needs the logits of x_adv itself; drop the transform")
    with _input_gradient_only(model):
        x, y = x.detach(), y.detach()
        delta = random_delta(x, norm, eps, random_start, generator).requires_grad_(True)
        velocity = torch.zeros_like(x) if momentum else None
        out = x.clone() if stop_when_fooled else None
        active = torch.arange(x.shape[0], device=x.device) if stop_when_fooled else None
        for _ in range(steps):
            with torch.enable_grad():
                inputs = x + delta
                logits = model(inputs if transform is None else transform(inputs, generator))
                (grad,) = torch.autograd.grad(loss_fn(logits, y), delta)
            with torch.no_grad():
                if stop_when_fooled:
                    fooled = logits.argmax(dim=1) != y
                    if fooled.any():
                        out[active[fooled]] = inputs[fooled].clamp(0.0, 1.0)
                        keep = ~fooled
                        active, x, y, grad = active[keep], x[keep], y[keep], grad[keep]
                        delta = delta[keep].detach().requires_grad_(True)
                        velocity = velocity[keep] if velocity is not None else None
                        if active.numel() == 0:
                            return out
                if velocity is not None:  # MI-FGSM: accumulate L1-normalised gradients
                    grad = velocity.mul_(momentum).add_(
                        grad / _per_point(grad.abs().flatten(1).sum(1).clamp_min(1e-12), grad))
                delta.add_(step_direction(grad, norm), alpha=alpha)
                project_(delta, x, norm, eps)
        x_adv = (x + delta.detach()).clamp_(0.0, 1.0)
        if out is None:
            return x_adv
        out[active] = x_adv
        return out
