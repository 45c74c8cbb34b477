"""Plain PyTorch: the textbook loops PERBench's engine is measured against.

Written the way a careful researcher writes them by hand, and nothing more: no PERBench
imports, no early stopping, no skipping of points. Same model, data, batch size and
thread count as the PERBench side of each figure (the caller sets threads).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def pgd_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
               alpha: float, steps: int, batch_size: int,
               generator: torch.Generator) -> torch.Tensor:
    """Per-point robustness under PGD (uniform start): eval mode, weights frozen, the
    gradient taken only with respect to the perturbation; one forward at the end."""
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    robust = []
    try:
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            delta = (torch.rand(xb.shape, generator=generator, device=xb.device) * 2 - 1) * eps
            delta = ((xb + delta).clamp(0, 1) - xb).requires_grad_(True)
            for _ in range(steps):
                loss = F.cross_entropy(model(xb + delta), yb)
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    delta += alpha * grad.sign()
                    delta.clamp_(-eps, eps)
                    delta.copy_((xb + delta).clamp(0, 1) - xb)
            with torch.no_grad():
                robust.append(model(xb + delta).argmax(1) == yb)
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return torch.cat(robust)


def train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                lr: float = 0.01, adversarial: bool = False, eps: float = 0.1,
                alpha: float = 0.025, steps: int = 7, seed: int = 0,
                device: torch.device | None = None, precision: str = "fp32",
                channels_last: bool = False, compile: bool = False) -> int:
    """One epoch of SGD fed by a ``DataLoader`` (shuffled ``TensorDataset`` on the host,
    pinned and copied without blocking when ``device`` is a GPU): ERM, or PGD-AT crafting
    in train mode as Madry/Rice do. ``precision="bf16"`` runs the forward passes under
    autocast, ``channels_last`` uses NHWC, ``compile`` calls ``torch.compile(model)``: the
    standard recipes for each. Returns the number of images trained on."""
    device = device or x.device
    cuda = device.type == "cuda"
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), pin_memory=cuda)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    net = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()
    seen = 0
    for xb, yb in loader:
        xb = xb.to(device, non_blocking=True, memory_format=fmt)
        yb = yb.to(device, non_blocking=True)
        if adversarial:
            delta = ((torch.rand_like(xb) * 2 - 1) * eps).requires_grad_(True)
            for _ in range(steps):
                with autocast:
                    loss = F.cross_entropy(net((xb + delta).clamp(0, 1)), yb)
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    delta += alpha * grad.sign()
                    delta.clamp_(-eps, eps)
            xb = (xb + delta.detach()).clamp(0, 1)
        with autocast:
            loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(yb)
    return seen


def autoattack_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                      norm: str = "Linf", seed: int = 0) -> torch.Tensor:
    """pyautoattack's standard AutoAttack called directly, as its README shows."""
    from pyautoattack import AutoAttack

    model.eval()
    aa = AutoAttack(model, norm=norm, eps=eps, version="standard", device=x.device, seed=seed)
    aa.verbose = False
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(y))
    with torch.no_grad():
        return model(x_adv).argmax(1) == y
