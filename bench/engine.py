"""The shared training loop: one base objective, any modifiers, every pass metered.

The loop owns batching, augmentation, the learning rate, the optimizer step and the
per-epoch validation; the method owns only its loss (DESIGN core ideas 3-5). Validation
runs with the meter paused: it is the harness's work, not the method's.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from bench.api import Base, Batch, Modifier, TrainContext
from bench.faults import fault_point
from bench.measures import FlopMeter


class NonFiniteLossError(RuntimeError):
    """The method produced a NaN or infinite loss; the cell fails with this reason."""


@dataclass
class TrainStats:
    train_flops: float = 0.0
    train_samples: int = 0
    train_seconds: float = 0.0
    peak_mem_bytes: int | None = None
    history: list[dict] = field(default_factory=list)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Clean accuracy in eval mode; restores the model's previous mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(len(y), 1)


def train(base: Base, modifiers: Sequence[Modifier], ctx: TrainContext, *,
          augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
          progress: Callable[[dict], None] | None = None,
          meter: FlopMeter | None = None) -> TrainStats:
    """Run ``base`` with ``modifiers`` for the budget in ``ctx``; return measured costs.

    ``meter``: the caller's FlopMeter (default ``FlopMeter()``); tests set its memo and
    audits, and ``perbench bench`` passes ``FlopMeter(enabled=False)`` (train_flops 0) to
    measure what counting costs."""
    stats = TrainStats()
    model = ctx.model
    ex = ctx.execution
    if ex.channels_last:
        model.to(memory_format=torch.channels_last)
    if ex.compile:
        # Steps call the compiled module; validation and the caller keep the eager one
        # (same parameters). Steps the meter counts op by op run eagerly under its
        # dispatch mode; memoized ones run compiled.
        ctx.model = torch.compile(model)
    autocast = _autocast(ctx.device, ex.precision)
    ctx.optimizer = base.optimizer(ctx)
    ctx.base_adversarial = base.adversarial
    ctx.peak_lr = getattr(base.config, "lr", None)
    ctx.step_loss = lambda batch: base.loss(ctx, batch)
    for mod in modifiers:
        crit = mod.criterion(ctx)
        if crit is not None:
            ctx.criterion = crit
    epochs = ctx.epochs = base.epochs(ctx)
    replays = base.replays(ctx)
    bs = ctx.budget.batch_size
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    meter = meter if meter is not None else FlopMeter()
    ctx.meter = meter
    start = time.perf_counter()
    model.train()
    with meter:
        for mod in modifiers:
            mod.on_train_start(ctx)
        for epoch in range(epochs):
            ctx.epoch = epoch
            for mod in modifiers:
                mod.on_epoch_start(ctx)
            active = ctx.active_indices()
            order = active[torch.randperm(len(active), generator=ctx.generator,
                                          device=ctx.generator.device)]
            ctx.steps_per_epoch = math.ceil(len(order) / bs)
            loss_sum = correct = seen = 0.0
            lr = float("nan")
            for i in range(ctx.steps_per_epoch):
                index = order[i * bs:(i + 1) * bs]
                x = ctx.train_x[index]
                if augment is not None:
                    x = augment(x, ctx.generator)
                if ex.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                batch = Batch(x=x, y=ctx.train_y[index], index=index)
                for r in range(replays):
                    batch.replay = r
                    lr = _set_lr(base, modifiers, ctx, (epoch + i / ctx.steps_per_epoch) / epochs)
                    with meter.step(_step_cost_key(base, modifiers, ctx, batch)):
                        with autocast():  # forward passes only; backward runs outside
                            loss = _scalar(base.loss(ctx, batch), f"{base.name}.loss")
                            for mod in modifiers:
                                extra = mod.extra_loss(ctx, batch)
                                if extra is not None:
                                    loss = loss + _scalar(extra, f"{mod.name}.extra_loss",
                                                          need_grad=False)
                        if not torch.isfinite(loss):
                            raise NonFiniteLossError(
                                f"loss is {loss.item()} at epoch {epoch}, step {i}, replay {r}")
                        ctx.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        base.after_backward(ctx, batch)
                        for mod in modifiers:
                            mod.before_step(ctx, batch)
                        ctx.optimizer.step()
                        for mod in modifiers:
                            mod.after_step(ctx, batch)
                    ctx.step += 1
                    n = len(index)
                    stats.train_samples += n
                    loss_sum += loss.item() * n
                    if batch.logits is not None:
                        correct += (batch.logits.argmax(1) == batch.y).sum().item()
                    seen += n
            with meter.paused():
                row = {
                    "epoch": epoch, "lr": lr, "train_loss": loss_sum / max(seen, 1),
                    "train_acc": correct / max(seen, 1),
                    "val_acc": accuracy(model, ctx.val_x, ctx.val_y) if len(ctx.val_y) else None,
                    "val_robust_acc": ctx.state.pop("val_robust_acc", None),
                    "samples_seen": stats.train_samples, "flops_so_far": meter.total,
                    "seconds_so_far": time.perf_counter() - start,
                }
                row.update(ctx.state.pop("log", {}))
                for mod in modifiers:
                    mod.on_epoch_end(ctx, row)
                model.train()
            stats.history.append(row)
            if progress is not None:
                progress(row)
            fault_point("epoch")
        for mod in modifiers:
            mod.on_train_end(ctx)
    ctx.model = model
    stats.train_flops = meter.total
    stats.train_seconds = time.perf_counter() - start
    if cuda:
        stats.peak_mem_bytes = torch.cuda.max_memory_allocated(ctx.device)
    model.eval()
    return stats


def _autocast(device: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def _step_cost_key(base: Base, modifiers: Sequence[Modifier], ctx: TrainContext,
                   batch: Batch) -> tuple | None:
    """The key the meter memoizes this step's FLOPs under, or None (count it op by op) when
    the base or any modifier cannot say what the step's cost depends on."""
    parts = [base.step_cost_key(ctx, batch)]
    parts += [mod.step_cost_key(ctx, batch) for mod in modifiers]
    if any(p is None for p in parts):
        return None
    return (tuple(batch.x.shape), batch.replay, *parts)


def _scalar(value, where: str, need_grad: bool = True) -> torch.Tensor:
    """A method's loss must be a 0-d tensor carrying gradients; say so at the first step
    rather than failing somewhere inside backward (a submitter's most common slip)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} returned {type(value).__name__}; it must return a scalar "
                        "torch.Tensor (e.g. F.cross_entropy(logits, y)), not a Python number")
    if value.ndim != 0:
        raise TypeError(f"{where} returned a tensor of shape {tuple(value.shape)}; it must "
                        "return a scalar: reduce it, e.g. with .mean()")
    if need_grad and not value.requires_grad:
        raise TypeError(f"{where} returned a tensor without gradients: compute it from the "
                        "model's outputs (ctx.model(x)), not from detached values")
    return value


def _set_lr(base: Base, modifiers: Sequence[Modifier], ctx: TrainContext, progress: float) -> float:
    lr = base.learning_rate(ctx, progress)
    for mod in modifiers:
        override = mod.learning_rate(ctx, progress, lr)
        if override is not None:
            lr = override
    momentum = base.momentum(ctx, progress)
    for group in ctx.optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None and "momentum" in group:
            group["momentum"] = momentum
    return lr
