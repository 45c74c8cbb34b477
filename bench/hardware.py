"""Hardware profiles: where and how latency is measured (DESIGN, Hardware profiles).

A profile fixes device, thread count, dtype and compilation, so a latency row names the
conditions it was measured under. ``HARDWARE.create(name, **overrides)`` returns one.
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


def _register(profile: HardwareProfile) -> None:
    def create(**overrides) -> HardwareProfile:
        return replace(profile, **overrides)

    HARDWARE.register(profile.name, doc=profile.description)(create)


_register(HardwareProfile("cpu-1t", "cpu", threads=1,
                          description="one CPU thread, float32: an edge-device proxy"))
_register(HardwareProfile("cpu", "cpu", description="all available CPU cores, float32"))
_register(HardwareProfile("cuda", "cuda", description="one CUDA GPU, float32"))
_register(HardwareProfile("cuda-bf16", "cuda", dtype="bfloat16",
                          description="one CUDA GPU, bfloat16 autocast"))
