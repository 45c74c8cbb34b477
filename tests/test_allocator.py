"""PERBench keeps freed memory in the process: a big tensor allocated again after free
comes back without page faults (counted by the kernel, not timed)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.allocator import SETTING, current_setting, keep_freed_memory

# A child process: the settings are per process and apply to later allocations. It prints
# the minor page faults of 20 training steps of a small CNN on a 128×1×28×28 batch (its
# first activations are 12.8 MB), after 3 warm-up steps.
PROBE = """
import resource, sys, torch
from torch import nn
from bench.allocator import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else "default")
torch.manual_seed(0)
torch.set_num_threads(1)
net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.Conv2d(32, 64, 3, stride=2), nn.Flatten(), nn.LazyLinear(10))
x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    nn.functional.cross_entropy(net(x), y).backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout.split("\n")
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reallocated_tensors_do_not_page_fault_again():
    setting, kept = faults("keep")
    _, default = faults("default")
    assert setting == SETTING
    # glibc's default hands the activations back and faults them in again every step
    # (on the fashion-mnist PGD-AT CNN: 1.2 million faults per epoch, 5 thousand kept).
    assert default > 20 * 1000, default
    assert kept < default / 5, (kept, default)


def test_the_user_can_keep_the_system_allocator():
    setting, _ = faults("keep", PERBENCH_MALLOC="system")
    assert setting == "system default (PERBENCH_MALLOC=system)"
    setting, _ = faults("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert setting == "system, as set by MALLOC_TRIM_THRESHOLD_"


def test_setting_is_applied_once_and_reported():
    assert keep_freed_memory() == keep_freed_memory() == current_setting()
