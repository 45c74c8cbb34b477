"""Model size and FLOP counts: parameters, inference FLOPs, and the training FLOP meter.

FLOPs follow docs/conventions.md#flops: one multiply-add is 2 FLOPs, as counted by
``torch.utils.flop_counter.FlopCounterMode``. That counter charges matrix products and
convolutions only (no bias adds, activations, normalisation or pooling), which is where
nearly all the work of a CNN lies. fvcore (a multiply-add is 1 FLOP) is converted to the
same convention and serves for cross-checks and per-layer breakdowns.
"""
from __future__ import annotations

import random
import warnings
from collections.abc import Collection, Hashable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

# fvcore counts one multiply-add as one FLOP; we count it as two.
FVCORE_TO_FLOPS = 2.0


def count_params(model: nn.Module) -> int:
    """All parameters (weights and biases), trainable or not; buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero: the size a pruned model really has."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


def inference_flops(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """FLOPs of one eval-mode forward pass on one image of ``input_shape`` (C, H, W).

    Biases are not counted (torch's convention): ``nn.Linear(10, 5)`` costs 2·10·5 = 100.
    Run this outside an active ``FlopMeter``: nested counters both count the same ops.
    """
    x = _example_input(model, input_shape)
    with _eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def _fvcore_analysis(model: nn.Module, input_shape: tuple[int, ...]):
    with warnings.catch_warnings():
        # fvcore.nn scripts a loss function at import; torch deprecates torch.jit.script.
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (_example_input(model, input_shape),))
    # fvcore warns about every op it has no formula for (relu, add, ...); those are the
    # ops torch's counter leaves out too, so the warnings carry no news here.
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def fvcore_flops(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """fvcore's eval-mode FLOPs per image, converted to 2 FLOPs per multiply-add.

    fvcore also charges batch norm (eval: 2 multiply-adds per element with affine) and
    adaptive average pooling, which torch's counter does not; on CNNs it reads slightly
    higher than ``inference_flops``. Its conv and linear counts agree exactly.
    """
    analysis = _fvcore_analysis(model, input_shape)
    with _eval_mode(model), torch.no_grad():
        return float(analysis.total()) * FVCORE_TO_FLOPS


def fvcore_flops_by_module(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """Per-module FLOPs per image (fvcore, converted); ``""`` is the whole model."""
    analysis = _fvcore_analysis(model, input_shape)
    with _eval_mode(model), torch.no_grad():
        return {name: float(n) * FVCORE_TO_FLOPS for name, n in analysis.by_module().items()}


def _example_input(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """A batch of one on the model's device and floating dtype (zeros: FLOPs ignore values)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros((1, *input_shape), device=device, dtype=dtype)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the caller's mode back (BN/dropout change the graph)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class _OpCounter(TorchDispatchMode):
    """Torch's FLOP formulas (``flop_registry``, the ones FlopCounterMode applies) summed
    over every op run inside, and nothing else.

    FlopCounterMode also attributes FLOPs to modules (a ModuleTracker that hooks every
    module's forward and backward) and tries to decompose every op it has no formula for
    (relu, add, batch norm, ...) before running it. Neither changes the total, and together
    they cost 40-75% of a small CNN's PGD-AT step on 2 CPU cores (``perbench bench``,
    figure meter_overhead); this class costs one Python call per op. Totals agree with
    FlopCounterMode exactly on every registered architecture (tests/test_measures.py).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out

    def get_total_flops(self) -> int:
        return self.total


def draw_audit_steps(expected_steps: int, per: int = 32) -> list[int]:
    """Training steps to audit, drawn from the OS's random source (``random.SystemRandom``,
    i.e. ``os.urandom``): each of ``2 * expected_steps`` indices with probability ``1/per``
    (twice the span, since a method may run more steps than the budget suggests). With the
    default, a run is audited about twice as often as every 64th step of each key was."""
    rng = random.SystemRandom()
    return sorted(i for i in range(2 * max(expected_steps, 1)) if rng.random() < 1 / per)


class MeterMismatchError(RuntimeError):
    """A step's FLOPs differed from the ones its declared key promised (see FlopMeter)."""


class FlopMeter:
    """Counts every forward and backward FLOP run inside it: the training cost of a method.

    Enter it once around the whole run. ``paused()`` excludes harness-side work such as
    validation. A pause closes the current counting window (banking its total) and resume
    opens a fresh one: a dispatch mode pushed and popped, nothing per op.

    ``step(key)`` wraps one training step. A method that declares its step's FLOPs a
    function of ``key`` (the batch shape, the replay and what the method's
    ``step_cost_key`` returns) has that step counted once, op by op, and later steps with
    the same key charged the same number without dispatching through Python: counting
    every op cost a small CNN's PGD-AT step 11-14% on 2 CPU cores, which is most of what
    the meter costs. Memoized steps are audited: counted again, and a count that differs
    raises :class:`MeterMismatchError` naming the step (a wrong declaration fails the run;
    it never skews a number). Which steps are audited is ``audit_steps`` (training step
    indices, drawn by the process that launched training from the OS's random source,
    :func:`draw_audit_steps`, so a method cannot know them in advance); without it, every
    ``audit_every``-th step of a key. Steps with no key are counted op by op.

    Caveat (torch 2.14.1): inside FlopCounterMode, ``torch.autograd.grad`` taken with
    respect to a leaf tensor fed straight into a module raises "A leaf node was passed to
    _will_engine_execute_node". Attacks inside metered training take the gradient with
    respect to an added ``delta`` (``model(x + delta)``) instead; evaluation attacks run
    unmetered.
    """

    def __init__(self, enabled: bool = True, *, memoize: bool = True, audit_every: int = 64,
                 audit_steps: Collection[int] | None = None):
        if audit_every < 1:
            raise ValueError(f"audit_every must be >= 1, got {audit_every}")
        self.enabled = enabled
        self.memoize = memoize  # False: every step op by op, whatever its key
        self.audit_every = audit_every
        self.audit_steps = None if audit_steps is None else frozenset(audit_steps)
        self._banked = 0.0  # FLOPs of counting windows already closed
        self._counter: _OpCounter | None = None
        self._entered = False
        self._charging = False  # inside a step charged from the memo: count nothing
        self._memo: dict[Hashable, int] = {}  # step key -> FLOPs of one such step
        self._seen: dict[Hashable, int] = {}  # step key -> steps run with it
        self._uncacheable: set[Hashable] = set()  # keys of steps that paused the meter
        self.steps_counted = 0  # steps counted op by op (first of a key, audits, no key)
        self.steps_charged = 0  # steps charged from the memo

    @property
    def total(self) -> float:
        """FLOPs counted so far; readable inside the context, while paused, and after."""
        running = self._counter.get_total_flops() if self._counter is not None else 0
        return self._banked + float(running)

    def state_dict(self) -> dict:
        return {"total": self.total, "steps_counted": self.steps_counted,
                "steps_charged": self.steps_charged}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a resumed run's count. The memo starts empty: each key's first
        step after the resume is counted op by op again (same total, one more audit)."""
        self._stop(None, None, None)
        self._banked = float(state["total"])
        self.steps_counted, self.steps_charged = state["steps_counted"], state["steps_charged"]
        if self._entered:
            self._start()

    def __enter__(self) -> FlopMeter:
        if self._entered:
            raise RuntimeError("FlopMeter is already active; enter it once around the run")
        self._entered = True
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop(*exc)
        self._entered = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Do not count the work run inside; a no-op when not counting (nested, disabled)."""
        if self._counter is None:
            yield
            return
        self._stop(None, None, None)
        try:
            yield
        finally:
            if self._entered:
                self._start()

    @contextmanager
    def resumed(self) -> Iterator[None]:
        """Count the work inside even while paused (a method's own epoch-end work)."""
        if self._counter is not None or not self._entered:
            yield
            return
        self._start()
        try:
            yield
        finally:
            self._stop(None, None, None)

    @contextmanager
    def step(self, key: Hashable | None, index: int | None = None) -> Iterator[None]:
        """One training step (the ``index``-th of the run) whose FLOPs are a function of
        ``key`` (None: unknown, count it op by op). See the class docstring for the memo
        and its audits."""
        if self._counter is None:  # disabled, paused or not entered: nothing to count
            yield
            return
        if key is None or not self.memoize or key in self._uncacheable:
            self.steps_counted += 1
            yield
            return
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        memo = self._memo.get(key)
        if memo is not None and not self._audited(seen, index):
            self._stop(None, None, None)
            self._charging = True
            try:
                yield
            finally:
                self._charging = False
                self._banked += memo
                self.steps_charged += 1
                if self._entered:
                    self._start()
            return
        self._stop(None, None, None)  # bank what ran before; count this step alone
        self._start()
        step_counter = self._counter
        try:
            yield
        finally:
            flops = step_counter.get_total_flops() if step_counter is not None else 0
            self.steps_counted += 1
            interrupted = self._counter is not step_counter  # the step paused the meter
            if not interrupted:
                self._stop(None, None, None)
                self._start()
        if interrupted:  # its count is split across windows: count such steps op by op
            self._uncacheable.add(key)
            self._memo.pop(key, None)
        elif memo is None:
            self._memo[key] = flops
        elif flops != memo:
            where = f"training step {index} ({seen}th of its key)" if index is not None \
                else f"its step {seen}"
            raise MeterMismatchError(
                f"{where}, declared to cost the same FLOPs as the others of key {key!r}, "
                f"counted {flops:.6g} when audited; {memo:.6g} the first time. The method's "
                "step_cost_key must return None (count every step) or a key that tells "
                "such steps apart")

    def _audited(self, seen: int, index: int | None) -> bool:
        if self.audit_steps is not None and index is not None:
            return index in self.audit_steps
        return (seen - 1) % self.audit_every == 0

    def _start(self) -> None:
        if self.enabled and not self._charging:
            self._counter = _OpCounter()
            self._counter.__enter__()

    def _stop(self, *exc) -> None:
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(*exc)
            self._banked += float(counter.get_total_flops())
