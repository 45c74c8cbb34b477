"""Inference latency and throughput of a trained model under one hardware profile.

Single-stream protocol: one query at a time, each waited for, warm-up excluded; p50 and
p90 over the timed iterations. Batch 1 is the single-image latency; a larger batch size
gives throughput (images/s from the median batch time). Rows follow the ``latency``
table schema; a profile this machine cannot provide yields skipped rows, never none.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.hardware import HardwareProfile

INPUT_SEED = 0


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], profile: HardwareProfile,
                    *, batch_sizes: Sequence[int] = (1, 128), warmup: int = 10, iters: int = 50,
                    run_id: str | None = None, eval_id: str | None = None) -> list[dict]:
    """One ``latency`` row per batch size; ``model`` itself is left untouched."""
    if iters < 1 or warmup < 0 or any(b < 1 for b in batch_sizes):
        raise ValueError(f"need iters >= 1, warmup >= 0 and batch sizes >= 1; got iters={iters}, "
                         f"warmup={warmup}, batch_sizes={list(batch_sizes)}")
    if profile.compile:
        warmup = max(warmup, 1)  # the first call per batch size compiles; never time it
    created_at = pd.Timestamp.now(tz="UTC")

    def row(device_name: str | None, threads: int | None, batch_size: int, p50: float | None,
            p90: float | None, skipped_reason: str | None) -> dict:
        return {"run_id": run_id, "eval_id": eval_id, "hardware": profile.name,
                "device_name": device_name, "threads": threads, "dtype": profile.dtype,
                "compiled": profile.compile, "batch_size": batch_size, "latency_ms_p50": p50,
                "latency_ms_p90": p90,
                "throughput_per_s": None if p50 is None else batch_size * 1000.0 / p50,
                "skipped_reason": skipped_reason, "created_at": created_at}

    reason = profile.unavailable_reason()
    if reason is not None:
        return [row(None, profile.threads, b, None, None, reason) for b in batch_sizes]

    device = torch.device(profile.device)
    threads = profile.resolved_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        forward = _prepare(model, profile, device, len(input_shape))
        rows = []
        for b in batch_sizes:
            x = _input(b, input_shape, device)
            times_ms = _time(forward, x, device, warmup, iters)
            p50, p90 = (float(q) for q in np.percentile(times_ms, [50, 90]))
            rows.append(row(profile.device_name(), threads, b, p50, p90, None))
        return rows
    finally:
        torch.set_num_threads(before)


def _prepare(model: nn.Module, profile: HardwareProfile, device: torch.device,
             input_dims: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A copy of ``model`` on the profile's device, in eval mode, compiled if asked."""
    local = copy.deepcopy(model).to(device).eval()
    if device.type == "cuda" and input_dims == 3:
        # DESIGN performance habits: channels_last on CUDA (tensor cores want NHWC).
        local = local.to(memory_format=torch.channels_last)
    # dynamic=False: each batch size gets its own specialised graph, as a deployment would.
    net = torch.compile(local, dynamic=False) if profile.compile else local
    bf16 = profile.dtype == "bfloat16"

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return net(x)

    return forward


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
