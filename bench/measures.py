"""Model size and FLOP counts: parameters, inference FLOPs, and the training FLOP meter.

FLOPs follow DESIGN "Conventions: FLOPs": one multiply-add is 2 FLOPs, as counted by
``torch.utils.flop_counter.FlopCounterMode``. That counter charges matrix products and
convolutions only (no bias adds, activations, normalisation or pooling), which is where
nearly all the work of a CNN lies. fvcore (a multiply-add is 1 FLOP) is converted to the
same convention and serves for cross-checks and per-layer breakdowns.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
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


class FlopMeter:
    """Counts every forward and backward FLOP run inside it: the training cost of a method.

    Enter it once around the whole run. ``paused()`` excludes harness-side work such as
    validation. A pause closes the current counting window (banking its total) and resume
    opens a fresh one: a dispatch mode pushed and popped, nothing per op.

    Caveat (torch 2.14.1): inside FlopCounterMode, ``torch.autograd.grad`` taken with
    respect to a leaf tensor fed straight into a module raises "A leaf node was passed to
    _will_engine_execute_node". Attacks inside metered training take the gradient with
    respect to an added ``delta`` (``model(x + delta)``) instead; evaluation attacks run
    unmetered.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._banked = 0.0  # FLOPs of counting windows already closed
        self._counter: _OpCounter | None = None
        self._entered = False

    @property
    def total(self) -> float:
        """FLOPs counted so far; readable inside the context, while paused, and after."""
        running = self._counter.get_total_flops() if self._counter is not None else 0
        return self._banked + float(running)

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

    def _start(self) -> None:
        if self.enabled:
            self._counter = _OpCounter()
            self._counter.__enter__()

    def _stop(self, *exc) -> None:
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(*exc)
            self._banked += float(counter.get_total_flops())
