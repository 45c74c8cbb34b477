"""Hardware profiles: where and how latency is measured (docs/conventions.md#hardware-profiles).

A profile fixes device, thread count, dtype and compilation, so a latency row names the
conditions it was measured under. ``HARDWARE.create(name, **overrides)`` returns one; a new
profile is a factory decorated ``@HARDWARE.register("name")``, as every registry's entries.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal

import torch

from bench.registry import Registry


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    device: Literal["cpu", "cuda"]
    threads: int | None = None  # None: every CPU this process may run on
    dtype: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False
    description: str = ""

    def resolved_threads(self) -> int:
        """The torch thread count the measurement runs with."""
        return self.threads or available_cpus()

    def unavailable_reason(self) -> str | None:
        """Why this machine cannot provide the profile, or None when it can."""
        if self.device == "cuda":
            if not torch.cuda.is_available():
                return "no CUDA device (torch.cuda.is_available() is False)"
            if self.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
                return f"{torch.cuda.get_device_name()} does not support bfloat16"
        return None

    def device_name(self) -> str:
        """The GPU's name, or the CPU's model name (a latency is meaningless without it)."""
        if self.device == "cuda":
            return torch.cuda.get_device_name()
        return cpu_model_name()


def available_cpus() -> int:
    # The affinity mask, not os.cpu_count(): containers and Ray workers may be pinned.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@cache
def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall back to what platform knows
    return platform.processor() or platform.machine() or "unknown cpu"


HARDWARE: Registry[HardwareProfile] = Registry("hardware profile")


# Each profile is a factory registered like every other axis's entries:
# ``HARDWARE.create(name, **overrides)`` returns it with fields overridden.

@HARDWARE.register("cpu-1t")
def cpu_one_thread(**overrides) -> HardwareProfile:
    """one CPU thread, float32: an edge-device proxy"""
    return replace(HardwareProfile("cpu-1t", "cpu", threads=1, description=cpu_one_thread.__doc__),
                   **overrides)


@HARDWARE.register("cpu")
def cpu(**overrides) -> HardwareProfile:
    """all available CPU cores, float32"""
    return replace(HardwareProfile("cpu", "cpu", description=cpu.__doc__), **overrides)


@HARDWARE.register("cuda")
def cuda(**overrides) -> HardwareProfile:
    """one CUDA GPU, float32"""
    return replace(HardwareProfile("cuda", "cuda", description=cuda.__doc__), **overrides)


@HARDWARE.register("cuda-bf16")
def cuda_bf16(**overrides) -> HardwareProfile:
    """one CUDA GPU, bfloat16 autocast"""
    return replace(HardwareProfile("cuda-bf16", "cuda", dtype="bfloat16",
                                   description=cuda_bf16.__doc__), **overrides)
