"""Inference latency and throughput of a trained model under one hardware profile.

Single-stream protocol: one query at a time, each waited for, warm-up excluded; the
median (p50) of the ``iters`` timed calls, and their spread: p10, p25, p75 and p90, with
the number of calls (``latency_repeats``), so that two medians can be told apart from
noise (an interquartile range wider than their difference says they cannot). Batch 1 is
the single-image latency; a larger batch size gives throughput (images/s from the median
batch time). Rows follow the ``latency``
table schema; a profile this machine cannot provide yields skipped rows, never none.

Execution: ``dense`` runs the model as it is. ``sparse`` runs a pruned model with the
weights of its mostly-zero layers (at least ``MIN_ZERO_FRACTION`` zeros) stored as
sparse CSR tensors: linear layers as ``torch.sparse.mm`` and convolutions as im2col
(``F.unfold``) followed by ``torch.sparse.mm`` — torch 2.14 has no sparse convolution
kernel, and ``to_sparse_semi_structured`` (2:4) needs CUDA and a 2:4 pattern that ADMM
pruning does not produce. Sparse execution is probed on the profile's device; where
torch offers no path the rows are skipped with the error as the reason.
"""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.hardware import HardwareProfile
from bench.results.provenance import load_avg

INPUT_SEED = 0
# Sparse kernels only stand a chance against dense BLAS when most weights are zero.
MIN_ZERO_FRACTION = 0.5
Execution = Literal["dense", "sparse"]


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], profile: HardwareProfile,
                    *, batch_sizes: Sequence[int] = (1, 128), warmup: int = 10, iters: int = 50,
                    execution: Execution = "dense", run_id: str | None = None,
                    eval_id: str | None = None) -> list[dict]:
    """One ``latency`` row per batch size; ``model`` itself is left untouched."""
    if iters < 1 or warmup < 0 or any(b < 1 for b in batch_sizes):
        raise ValueError(f"need iters >= 1, warmup >= 0 and batch sizes >= 1; got iters={iters}, "
                         f"warmup={warmup}, batch_sizes={list(batch_sizes)}")
    if profile.compile:
        warmup = max(warmup, 1)  # the first call per batch size compiles; never time it
    created_at = pd.Timestamp.now(tz="UTC")

    def row(device_name: str | None, threads: int | None, batch_size: int,
            times_ms: Sequence[float] | None, skipped_reason: str | None) -> dict:
        return latency_row(profile, run_id=run_id, eval_id=eval_id, device_name=device_name,
                           threads=threads, batch_size=batch_size, times_ms=times_ms,
                           skipped_reason=skipped_reason, created_at=created_at,
                           execution=execution)

    reason = profile.unavailable_reason()
    if reason is None and execution == "sparse" and not sparse_layers(model):
        reason = (f"no conv or linear layer has at least {MIN_ZERO_FRACTION:.0%} zero weights; "
                  "there is nothing to run sparse")
    if reason is not None:
        return [row(None, profile.threads, b, None, reason) for b in batch_sizes]

    device = torch.device(profile.device)
    threads = profile.resolved_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        forward = _prepare(model, profile, device, len(input_shape), execution)
        rows = []
        for b in batch_sizes:
            x = _input(b, input_shape, device)
            if execution == "sparse":
                reason = _sparse_unsupported(forward, x, device)
                if reason is not None:
                    return [row(profile.device_name(), threads, b, None, reason)
                            for b in batch_sizes]
            times_ms = _time(forward, x, device, warmup, iters)
            rows.append(row(profile.device_name(), threads, b, times_ms, None))
        return rows
    finally:
        torch.set_num_threads(before)


# The quantiles of the timed calls a latency row keeps: the median and its spread.
QUANTILES = (10, 25, 50, 75, 90)


def latency_quantiles(times_ms: Sequence[float] | None) -> dict[str, float | None]:
    """``latency_ms_p<q>`` for each of QUANTILES (numpy's linear interpolation) and
    ``latency_repeats``, the number of timed calls; all None for no measurement."""
    if times_ms is None or len(times_ms) == 0:
        return {**{f"latency_ms_p{q}": None for q in QUANTILES}, "latency_repeats": None}
    values = np.percentile(np.asarray(times_ms, dtype=float), QUANTILES)
    return {**{f"latency_ms_p{q}": float(v) for q, v in zip(QUANTILES, values)},
            "latency_repeats": len(times_ms)}


def latency_row(profile: HardwareProfile, *, run_id: str | None, eval_id: str | None,
                device_name: str | None, threads: int | None, batch_size: int,
                times_ms: Sequence[float] | None, skipped_reason: str | None,
                created_at: pd.Timestamp | None = None, execution: Execution = "dense") -> dict:
    """One ``latency`` row: the quantiles of ``times_ms`` (the timed calls, milliseconds),
    or, with ``times_ms`` None, skipped with its reason."""
    q = latency_quantiles(times_ms)
    p50 = q["latency_ms_p50"]
    return {"run_id": run_id, "eval_id": eval_id, "hardware": profile.name,
            "device_name": device_name, "threads": threads, "dtype": profile.dtype,
            "compiled": profile.compile, "batch_size": batch_size, **q,
            "throughput_per_s": None if p50 is None else batch_size * 1000.0 / p50,
            "skipped_reason": skipped_reason,
            "created_at": created_at if created_at is not None else pd.Timestamp.now(tz="UTC"),
            "execution": execution, "load_avg": load_avg()}


def skipped_rows(profile: HardwareProfile, reason: str, *, run_id: str | None,
                 eval_id: str | None, batch_sizes: Sequence[int] = (1, 128)) -> list[dict]:
    """Rows saying why ``profile`` was not measured: recorded, never silently dropped."""
    return [latency_row(profile, run_id=run_id, eval_id=eval_id, device_name=None,
                        threads=profile.threads, batch_size=b, times_ms=None,
                        skipped_reason=reason) for b in batch_sizes]


def _prepare(model: nn.Module, profile: HardwareProfile, device: torch.device,
             input_dims: int, execution: Execution = "dense",
             ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A copy of ``model`` on the profile's device, in eval mode, compiled if asked."""
    local = copy.deepcopy(model).to(device).eval()
    if execution == "sparse":
        to_sparse_execution(local)
    if device.type == "cuda" and input_dims == 3:
        # docs/conventions.md#performance-habits: channels_last on CUDA (tensor cores want NHWC).
        local = local.to(memory_format=torch.channels_last)
    # dynamic=False: each batch size gets its own specialised graph, as a deployment would.
    net = torch.compile(local, dynamic=False) if profile.compile else local
    bf16 = profile.dtype == "bfloat16"
    # Sparse CSR ops bump version counters, which inference tensors refuse; no_grad is
    # the closest mode they accept.
    grad_off = torch.no_grad if execution == "sparse" else torch.inference_mode

    def forward(x: torch.Tensor) -> torch.Tensor:
        with grad_off(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return net(x)

    return forward


def _sparse_unsupported(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        device: torch.device) -> str | None:
    """Run the sparse model once; the error, as a skip reason, if torch has no path for it."""
    try:
        forward(x)
    except (RuntimeError, NotImplementedError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"sparse execution unsupported on {device.type}: {type(exc).__name__}: {first_line}"
    return None


# -- sparse execution ----------------------------------------------------------------------

def _zero_fraction(weight: torch.Tensor) -> float:
    return 1.0 - int(torch.count_nonzero(weight)) / weight.numel()


def _convertible(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    # im2col needs numeric zero padding; other convolutions stay dense.
    return (isinstance(module, nn.Conv2d) and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def sparse_layers(model: nn.Module) -> list[str]:
    """Conv and linear layers whose weights are at least MIN_ZERO_FRACTION zero: those
    sparse execution converts. Empty for a dense model."""
    # name "" is the model itself, which cannot be swapped for a twin in place.
    return [name for name, m in model.named_modules()
            if name and _convertible(m) and _zero_fraction(m.weight.detach()) >= MIN_ZERO_FRACTION]


def _csr(matrix: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch warns on every CSR construction that the layout is in beta.
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        return matrix.detach().contiguous().to_sparse_csr()


class SparseLinear(nn.Module):
    """``nn.Linear`` with a CSR weight: y = (W·xᵀ)ᵀ + b."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = _csr(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        y = torch.sparse.mm(self.weight, flat.t().contiguous()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


class SparseConv2d(nn.Module):
    """``nn.Conv2d`` as im2col and a CSR matrix product. Grouped convolutions become one
    block-diagonal matrix, whose off-block zeros CSR does not store."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = _csr(_ungrouped(conv).flatten(1))
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.out_channels = conv.out_channels
        self.unfold = {"kernel_size": conv.kernel_size, "dilation": conv.dilation,
                       "padding": conv.padding, "stride": conv.stride}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        cols = F.unfold(x, **self.unfold)  # (N, C·kh·kw, L)
        h, w = _conv_output_size(x.shape[-2:], **self.unfold)
        # One product for the whole batch: (O, C·kh·kw) @ (C·kh·kw, N·L).
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)
        y = torch.sparse.mm(self.weight, cols)
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.view(self.out_channels, n, h, w).transpose(0, 1)


def _ungrouped(conv: nn.Conv2d) -> torch.Tensor:
    """The (O, C, kh, kw) weight of ``conv`` with its groups expanded to zeros."""
    weight = conv.weight.detach()
    if conv.groups == 1:
        return weight
    full = weight.new_zeros(conv.out_channels, conv.in_channels, *weight.shape[2:])
    per_out, per_in = conv.out_channels // conv.groups, conv.in_channels // conv.groups
    for g in range(conv.groups):
        rows, cols = slice(g * per_out, (g + 1) * per_out), slice(g * per_in, (g + 1) * per_in)
        full[rows, cols] = weight[rows]
    return full


def _conv_output_size(size: Sequence[int], kernel_size: Sequence[int], dilation: Sequence[int],
                      padding: Sequence[int], stride: Sequence[int]) -> tuple[int, int]:
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                 for s, k, d, p, st in zip(size, kernel_size, dilation, padding, stride))


def to_sparse_execution(model: nn.Module) -> nn.Module:
    """Replace, in place, every layer ``sparse_layers`` names by its CSR twin; returns model."""
    for name in sparse_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        twin = SparseLinear(layer) if isinstance(layer, nn.Linear) else SparseConv2d(layer)
        setattr(parent, child, twin)
    return model


def _input(batch_size: int, input_shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A fixed seeded batch in [0, 1] (pixel space), generated on CPU so every device sees it."""
    g = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.rand((batch_size, *input_shape), generator=g).to(device)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _time(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
          device: torch.device, warmup: int, iters: int) -> list[float]:
    """Milliseconds per call over ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        forward(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return _time_cuda(forward, x, iters)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        forward(x)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _time_cuda(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               iters: int) -> list[float]:
    # CUDA calls return before the GPU finishes: time with events and wait for each
    # query before issuing the next (single-stream).
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        forward(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times
