"""The shared training loop: one base objective, any modifiers, every pass metered.

The loop owns batching, augmentation, the learning rate, the optimizer step and the
per-epoch validation; the method owns only its loss (docs/ARCHITECTURE.md, "The
training loop"). Validation runs with the meter paused: it is the harness's work, not the
method's; everything else, the method's set-up and epoch-end hooks included, is charged.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from bench.api import Base, Batch, Modifier, TrainContext
from bench.faults import fault_point
from bench.measures import FlopMeter


class NonFiniteLossError(RuntimeError):
    """The method produced a NaN or infinite loss; the cell fails with this reason."""


class ResumeError(RuntimeError):
    """A resume snapshot could not be put back (another code version, another
    composition); the caller starts the cell over."""


@dataclass
class TrainStats:
    train_flops: float = 0.0
    train_samples: int = 0
    train_seconds: float = 0.0
    peak_mem_bytes: int | None = None
    history: list[dict] = field(default_factory=list)
    resumed_after: list[int] = field(default_factory=list)  # epochs done at each resume


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
          meter: FlopMeter | None = None,
          snapshot: Callable[[dict], None] | None = None,
          resume: dict | None = None,
          audit_steps: Collection[int] | None = None) -> TrainStats:
    """Run ``base`` with ``modifiers`` for the budget in ``ctx``; return measured costs.

    ``meter``: the caller's FlopMeter (default ``FlopMeter(audit_steps=audit_steps)``);
    tests set its memo and audits, and ``perbench bench`` passes ``FlopMeter(enabled=False)``
    (train_flops 0) to measure what counting costs. The meter is the loop's own: a method
    is never handed it. ``train_seconds`` leaves out validation and snapshots.

    ``snapshot(state)`` is handed everything the run needs to continue after each epoch
    (when every method has a ``state_dict``); ``resume=state`` continues from one, to the
    same weights, FLOPs and history as a run never stopped (on the CPU, bit for bit)."""
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
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    meter = meter if meter is not None else FlopMeter(audit_steps=audit_steps)
    methods = [base, *modifiers]
    harness = _Stopwatch()  # validation and snapshots: the harness's time, not the method's
    start = time.perf_counter()
    # Everything a method runs is charged, from building its optimizer (a base could
    # pre-train there) to its last hook; the harness pauses the meter for validation only.
    with meter:
        ctx.optimizer = base.optimizer(ctx)
        ctx.base_adversarial = base.adversarial
        ctx.peak_lr = getattr(base.config, "lr", None)
        ctx.step_loss = lambda batch: _replayed_loss(base, ctx, batch)
        for mod in modifiers:
            crit = mod.criterion(ctx)
            if crit is not None:
                ctx.criterion = crit
        epochs = ctx.epochs = base.epochs(ctx)
        replays = base.replays(ctx)
        bs = ctx.budget.batch_size
        model.train()
        for mod in modifiers:
            mod.on_train_start(ctx)
        first_epoch = 0
        if resume is not None:
            try:
                first_epoch = _restore(resume, model, methods, ctx, meter, stats)
            except Exception as exc:
                raise ResumeError(f"the resume snapshot does not fit this run: {exc}") from exc
            start = time.perf_counter() - resume["seconds"]
        for epoch in range(first_epoch, epochs):
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
                    with meter.step(_step_cost_key(base, modifiers, ctx, batch), ctx.step):
                        with autocast():  # forward passes only; backward runs outside
                            loss = _scalar(_base_loss(base, modifiers, ctx, batch),
                                           f"{base.name}.loss")
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
            with harness, meter.paused():
                val_acc = accuracy(model, ctx.val_x, ctx.val_y) if len(ctx.val_y) else None
            row = {
                "epoch": epoch, "lr": lr, "train_loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1), "val_acc": val_acc,
                "val_robust_acc": ctx.state.pop("val_robust_acc", None),
                "samples_seen": stats.train_samples, "flops_so_far": meter.total,
                "seconds_so_far": time.perf_counter() - start - harness.seconds,
            }
            row.update(ctx.state.pop("log", {}))
            for mod in modifiers:  # the method's own epoch-end work: charged
                mod.on_epoch_end(ctx, row)
            model.train()
            stats.history.append(row)
            if progress is not None:
                progress(row)
            if snapshot is not None:
                with harness, meter.paused():
                    state = _capture(epoch, model, methods, ctx, meter, stats,
                                     time.perf_counter() - start - harness.seconds)
                    if state is not None:
                        snapshot(state)
            fault_point("epoch")
        for mod in modifiers:
            mod.on_train_end(ctx)
    ctx.model = model
    stats.train_flops = meter.total
    stats.train_seconds = time.perf_counter() - start - harness.seconds
    if cuda:
        stats.peak_mem_bytes = max(torch.cuda.max_memory_allocated(ctx.device),
                                   stats.peak_mem_bytes or 0)
    model.eval()
    return stats


class _Stopwatch:
    """Adds up the time spent inside it (``with watch: ...``), over any number of uses."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since = 0.0

    def __enter__(self) -> None:
        self._since = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._since


SNAPSHOT_FORMAT = 1


def _capture(epoch: int, model: torch.nn.Module, methods: Sequence[Base | Modifier], ctx: TrainContext,
             meter: FlopMeter, stats: TrainStats, seconds: float) -> dict | None:
    """The run's state after ``epoch``, or None when a method cannot say what it keeps."""
    method_states = [m.state_dict() for m in methods]
    if any(s is None for s in method_states):
        return None
    rng = {"generator": ctx.generator.get_state(), "torch": torch.get_rng_state()}
    peak = stats.peak_mem_bytes
    if ctx.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(ctx.device)
        peak = max(peak or 0, torch.cuda.max_memory_allocated(ctx.device))
    return {
        "format": SNAPSHOT_FORMAT, "epoch": epoch, "methods": method_states,
        "model": model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
        "step": ctx.step, "train_mask": ctx.train_mask, "state": dict(ctx.state),
        "tables": ctx.tables, "run_fields": ctx.run_fields, "meter": meter.state_dict(),
        "rng": rng, "seconds": seconds, "train_samples": stats.train_samples,
        "history": stats.history, "peak_mem_bytes": peak, "resumed_after": stats.resumed_after,
    }


def _restore(snap: dict, model: torch.nn.Module, methods: Sequence[Base | Modifier], ctx: TrainContext,
             meter: FlopMeter, stats: TrainStats) -> int:
    """Put a ``_capture`` back; return the first epoch still to run."""
    if snap.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"format {snap.get('format')!r}; this version reads {SNAPSHOT_FORMAT}")
    if len(snap["methods"]) != len(methods):
        raise ValueError("the resume snapshot is of a different composition")
    model.load_state_dict(snap["model"])
    ctx.optimizer.load_state_dict(snap["optimizer"])
    for method, state in zip(methods, snap["methods"]):
        method.load_state_dict(state)
    ctx.step = snap["step"]
    mask = snap["train_mask"]
    ctx.train_mask = None if mask is None else mask.to(ctx.train_y.device)
    # In place: the caller's log() closes over these very objects.
    ctx.state.clear()
    ctx.state.update(snap["state"])
    ctx.tables.clear()
    ctx.tables.update(snap["tables"])
    ctx.run_fields.clear()
    ctx.run_fields.update(snap["run_fields"])
    meter.load_state_dict(snap["meter"])
    rng = snap["rng"]
    ctx.generator.set_state(rng["generator"].cpu())
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), ctx.device)
    stats.train_samples = snap["train_samples"]
    stats.history = list(snap["history"])
    stats.peak_mem_bytes = snap["peak_mem_bytes"]
    stats.resumed_after = [*snap["resumed_after"], snap["epoch"] + 1]
    return snap["epoch"] + 1


def _autocast(device: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def _base_loss(base: Base, modifiers: Sequence[Modifier], ctx: TrainContext,
               batch: Batch) -> torch.Tensor:
    """The base's loss for one step, with the modifiers' ``after_attack`` hooks run when
    the base's first ``ctx.attack`` returns. ``ctx.attack`` is wrapped for this call only,
    so attacks a method runs elsewhere (AccelAT's validation) never reach the hooks."""
    hooked = [m for m in modifiers if type(m).after_attack is not Modifier.after_attack]
    if not hooked:
        return base.loss(ctx, batch)
    attack = ctx.attack

    def attack_then_hooks(*args, **kwargs) -> torch.Tensor:
        x_adv = attack(*args, **kwargs)
        ctx.attack = attack  # once per step: a second attack goes straight through
        for mod in hooked:
            mod.after_attack(ctx, batch, x_adv)
        return x_adv

    ctx.attack = attack_then_hooks
    try:
        return base.loss(ctx, batch)
    finally:
        ctx.attack = attack


def _replayed_loss(base: Base, ctx: TrainContext, batch: Batch) -> torch.Tensor:
    """``ctx.step_loss``: the base's loss on ``batch``; when ``batch.x_adv`` is set, the
    base's ``ctx.attack`` returns it instead of attacking again."""
    if batch.x_adv is None:
        return base.loss(ctx, batch)
    crafted, attack = batch.x_adv, ctx.attack
    ctx.attack = lambda *args, **kwargs: crafted
    try:
        return base.loss(ctx, batch)
    finally:
        ctx.attack = attack


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
